#!/usr/bin/env bash
# Run Redis from Debian's redis-server package for development and tests.
#   redis.sh start   install redis-server if missing, start it on 127.0.0.1:${REDIS_PORT:-6379}, wait for PONG
#   redis.sh stop    stop the server this script started
#   redis.sh status  exit 0 when it answers PING
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
RUN_DIR="${BROADSHEET_RUN_DIR:-$repo/.run}"
PORT="${REDIS_PORT:-6379}"
MAXMEMORY="${REDIS_MAXMEMORY:-8gb}"
STATE="$RUN_DIR/redis-$PORT"
PIDFILE="$STATE/redis.pid"

die() { echo "redis.sh: $*" >&2; exit 1; }

install() {
  command -v redis-server >/dev/null && return 0
  echo "redis.sh: installing Debian's redis-server"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null || die "apt-get update failed; install redis-server yourself"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q redis-server >/dev/null \
    || die "apt-get install redis-server failed"
  # Debian starts its own service on install; this project runs its own instance with its own config.
  $sudo systemctl disable --now redis-server >/dev/null 2>&1 || $sudo service redis-server stop >/dev/null 2>&1 || true
}

answers() { redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null | grep -q PONG; }
# shellcheck source=pidfile.sh
. "$here/pidfile.sh"
running() { runs "$PIDFILE" redis-server; }

start() {
  install
  mkdir -p "$STATE"
  if running && answers; then echo "redis.sh: Redis already running on 127.0.0.1:$PORT"; return 0; fi
  if answers; then
    echo "redis.sh: a Redis not started by this project answers on 127.0.0.1:$PORT; using it" >&2
    return 0
  fi
  sed -e "s:@PORT@:$PORT:" -e "s:@MAXMEMORY@:$MAXMEMORY:" -e "s:@DIR@:$STATE:g" "$here/redis.conf.in" > "$STATE/redis.conf"
  nohup redis-server "$STATE/redis.conf" >/dev/null 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do
    answers && { echo "redis.sh: Redis ready on 127.0.0.1:$PORT"; return 0; }
    running || { tail -n 20 "$STATE/redis.log" >&2 || true; die "redis-server exited during start-up"; }
    sleep 0.1
  done
  die "Redis did not answer within 10s (log: $STATE/redis.log)"
}

stop() {
  running || { rm -f "$PIDFILE"; return 0; }
  local pid; pid="$(cat "$PIDFILE")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" || true
  rm -f "$PIDFILE"
  echo "redis.sh: Redis stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
