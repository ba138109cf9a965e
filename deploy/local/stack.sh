#!/usr/bin/env bash
# The whole stack on this machine: Kafka, Redis, topics and the four services.
#   stack.sh up      start whatever is not running (also after a crash) and return when everything is ready
#   stack.sh down    stop the services, Kafka and Redis started here
#   stack.sh run     up, load the sample drafts, print the reader URL, stop everything on Ctrl-C
#   stack.sh infra   only Kafka, Redis and the topics (what the test suite needs)
#   stack.sh status  what is running
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
RUN_DIR="${BROADSHEET_RUN_DIR:-$repo/.run}"
PY="$repo/.venv/bin/python"
SERVICES=(ingest related comments publisher)
declare -A PORTS=([publisher]="${PUBLISHER_HTTP_PORT:-8080}" [ingest]="${INGEST_HTTP_PORT:-8081}" \
                  [comments]="${COMMENTS_HTTP_PORT:-8082}" [related]="${RELATED_HTTP_PORT:-8083}")
export LOG_FORMAT="${LOG_FORMAT:-json}"
# The sample stories date from 2024, past any comment window: on this local stack comments never close, so the
# demo's "Leave a Reply" form takes comments. Deployments keep the 14-day default.
export COMMENTS_CLOSE_AFTER_DAYS="${COMMENTS_CLOSE_AFTER_DAYS:-0}"
# The header links the sample stories' sections, as a newsroom's own list would (empty by default elsewhere).
export SITE_NAV_SECTIONS="${SITE_NAV_SECTIONS-world=World,russia-ukraine-war=Russia-Ukraine war,business=Business,technology=Technology,sport=Sport,culture=Culture}"

# shellcheck source=pidfile.sh
. "$here/pidfile.sh"

die() { echo "stack: $*" >&2; exit 1; }
pidfile() { echo "$RUN_DIR/services/$1.pid"; }
alive() { runs "$(pidfile "$1")" "services.$1"; }
ready() { curl -fsS -m 2 "http://127.0.0.1:${PORTS[$1]}/readyz" >/dev/null 2>&1; }

infra() {
  [ -x "$PY" ] || die "no virtualenv at $repo/.venv: run \`make setup\` first (\`make run\` and \`make test\` do it themselves)"
  "$here/kafka.sh" start
  "$here/redis.sh" start
  "$PY" -m shared.cli topics create >/dev/null || die "could not create the topics"
}

start_service() {
  local svc="$1"
  mkdir -p "$RUN_DIR/services" "$RUN_DIR/logs"
  if alive "$svc"; then return 0; fi
  nohup "$PY" -m "services.$svc" >>"$RUN_DIR/logs/$svc.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$svc")"
}

wait_ready() {
  local deadline=$((SECONDS + ${STACK_READY_TIMEOUT:-60}))
  for svc in "${SERVICES[@]}"; do
    until ready "$svc"; do
      alive "$svc" || { tail -n 30 "$RUN_DIR/logs/$svc.log" >&2; die "$svc exited during start-up (log: $RUN_DIR/logs/$svc.log)"; }
      [ $SECONDS -lt $deadline ] || die "$svc not ready after ${STACK_READY_TIMEOUT:-60}s (log: $RUN_DIR/logs/$svc.log)"
      sleep 0.3
    done
  done
}

up() {
  infra
  for svc in "${SERVICES[@]}"; do start_service "$svc"; done
  wait_ready
  echo "stack: all services ready (logs in $RUN_DIR/logs)"
}

stop_services() {
  local pids=()
  for svc in "${SERVICES[@]}"; do
    if alive "$svc"; then pids+=("$(cat "$(pidfile "$svc")")"); kill -TERM "${pids[-1]}" 2>/dev/null || true; fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  done
  for svc in "${SERVICES[@]}"; do rm -f "$(pidfile "$svc")"; done
}

down() {
  stop_services
  "$here/kafka.sh" stop
  "$here/redis.sh" stop
}

status() {
  for svc in "${SERVICES[@]}"; do
    if alive "$svc"; then
      if ready "$svc"; then s=ready; else s="running, not ready"; fi
    else s=stopped; fi
    printf '%-10s %-20s http://127.0.0.1:%s\n' "$svc" "$s" "${PORTS[$svc]}"
  done
  "$here/kafka.sh" status && echo "kafka      ready" || echo "kafka      stopped"
  "$here/redis.sh" status && echo "redis      ready" || echo "redis      stopped"
}

stop_on_signal() {
  # Ctrl-C, kill, or the terminal closing (HUP). Once the terminal is gone every write to it fails: the rest of
  # the output goes to a log file, and no failure (set -e) may cut the stop short.
  trap - INT TERM HUP
  trap '' PIPE  # a pipe whose reader went with the Ctrl-C (make run | tee): fail the write, not the stop
  set +e
  { echo; echo "stack: stopping..."; } 2>/dev/null || exec >>"$RUN_DIR/logs/stack-stop.log" 2>&1
  down
  exit 0
}

run() {
  trap stop_on_signal INT TERM HUP
  up
  "$PY" -m shared.cli drafts post "$repo/tests/fixtures/seed_draft.json" >/dev/null
  "$PY" -m shared.cli drafts post "$repo/tests/fixtures/sample_drafts" >/dev/null
  local url="http://127.0.0.1:${PORTS[publisher]}/a/seed-russia-losses"
  for _ in $(seq 1 50); do
    curl -fsS -o /dev/null -m 2 -L "$url" 2>/dev/null && break
    sleep 0.2
  done
  cat <<MSG

  Broadsheet is running.
    Readers:     http://127.0.0.1:${PORTS[publisher]}/
    Seed story:  $url
    Moderation:  http://127.0.0.1:${PORTS[comments]}/moderation/   (token: ${MODERATION_TOKEN:-change-me-moderation-token})
    Post drafts: POST http://127.0.0.1:${PORTS[ingest]}/drafts      (token: ${INGEST_TOKEN:-change-me-ingest-token})
  Logs: $RUN_DIR/logs   Press Ctrl-C to stop everything.

MSG
  while true; do sleep 1 & wait $!; done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  run) run ;;
  infra) infra ;;
  status) status ;;
  *) echo "usage: $0 up|down|run|infra|status" >&2; exit 2 ;;
esac
