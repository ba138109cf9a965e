#!/usr/bin/env bash
# Provision and run a single-node Apache Kafka (KRaft) for development and tests.
#   kafka.sh fetch   download the broker jars from Maven Central into the cache (once)
#   kafka.sh start   fetch if needed, format storage if new, start, wait until the broker answers metadata
#   kafka.sh stop    stop the broker started by this script
#   kafka.sh status  exit 0 when the broker answers on the port
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
CACHE_DIR="${BROADSHEET_CACHE_DIR:-$HOME/.cache/broadsheet}"
LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
RUN_DIR="${BROADSHEET_RUN_DIR:-$repo/.run}"
NAME="${KAFKA_INSTANCE:-kafka}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
STATE="$RUN_DIR/$NAME"
PIDFILE="$STATE/kafka.pid"
LOGFILE="$STATE/logs/server.log"
CONFIG_TEMPLATE="${KAFKA_CONFIG_TEMPLATE:-$here/kafka/server.properties.in}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_java() {
  command -v java >/dev/null || die "java not found: install a JDK 17 (Debian: apt-get install openjdk-17-jre-headless)"
}

fetch() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven) to fetch Kafka $KAFKA_VERSION"
  echo "kafka.sh: fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  mkdir -p "$LIBS"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" -DincludeScope=runtime \
    || die "could not download Kafka $KAFKA_VERSION from Maven Central (see the Maven output above)"
  ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Maven finished but no kafka_2.13 jar is in $LIBS"
  touch "$LIBS/.complete"
}

java_run() {
  java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
       -Dkafka.logs.dir="$STATE/logs" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
       ${KAFKA_JVM_OPTS:-} -cp "$LIBS/*" "$@"
}

# shellcheck source=pidfile.sh
. "$here/pidfile.sh"
running() { runs "$PIDFILE" kafka.Kafka; }

# The probe needs only the standard library: the project's virtualenv when there is one, else the machine's python3
# (a broker started before `make setup` is still seen answering).
PROBE_PYTHON="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$PROBE_PYTHON" ] || PROBE_PYTHON="$(command -v python3 || echo python3)"

answers() {
  # A metadata request, not just an open port: the broker is ready only when it can serve clients.
  "$PROBE_PYTHON" - "$PORT" <<'PY' >/dev/null 2>&1
import socket, struct, sys
port = int(sys.argv[1])
# MetadataRequest v1 for all topics (null array), client id "probe".
client = b"probe"
body = struct.pack(">i", -1)
header = struct.pack(">hhih", 3, 1, 7, len(client)) + client
msg = header + body
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    s.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", s.recv(4))[0]
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            sys.exit(1)
        data += chunk
    corr, nbrokers = struct.unpack(">ii", data[:8])
    sys.exit(0 if corr == 7 and nbrokers >= 1 else 1)
PY
}

start() {
  need_java
  fetch
  mkdir -p "$STATE/logs" "$STATE/data"
  if running && answers; then echo "kafka.sh: Kafka already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; return 0; fi
  if running; then stop; fi
  if answers; then die "port $PORT already answers Kafka requests but not from this project's broker; stop it or set KAFKA_PORT"; fi
  sed -e "s:@LOG_DIR@:$STATE/data:" -e "s:@PORT@:$PORT:g" -e "s:@CONTROLLER_PORT@:$CONTROLLER_PORT:g" \
      "$CONFIG_TEMPLATE" > "$STATE/server.properties"
  if [ ! -f "$STATE/data/meta.properties" ]; then
    local cluster_id
    # The storage tool's chatter (SLF4J finds no logger binding on this class path) goes to format.log, shown
    # only when a step fails.
    cluster_id="$(java_run kafka.tools.StorageTool random-uuid 2>"$STATE/logs/format.log" | tail -n 1)"
    [ -n "$cluster_id" ] || { cat "$STATE/logs/format.log" >&2; die "no cluster id from kafka-storage random-uuid"; }
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE/server.properties" ${KAFKA_FORMAT_ARGS:-} >>"$STATE/logs/format.log" 2>&1 \
      || { cat "$STATE/logs/format.log" >&2; die "formatting storage in $STATE/data failed"; }
  fi
  echo "kafka.sh: starting Kafka $KAFKA_VERSION on 127.0.0.1:$PORT (log: $LOGFILE)"
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
       -Dkafka.logs.dir="$STATE/logs" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
       ${KAFKA_JVM_OPTS:-} -cp "$LIBS/*" kafka.Kafka "$STATE/server.properties" \
       >"$STATE/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until answers; do
    if ! running; then tail -n 30 "$STATE/logs/stdout.log" "$LOGFILE" >&2 2>/dev/null || true; die "the broker exited during start-up"; fi
    if [ $SECONDS -ge $deadline ]; then tail -n 30 "$LOGFILE" >&2 || true; die "the broker did not answer within ${KAFKA_START_TIMEOUT:-90}s"; fi
    sleep 0.3
  done
  echo "kafka.sh: Kafka ready on 127.0.0.1:$PORT"
}

stop() {
  if ! running; then rm -f "$PIDFILE"; return 0; fi
  local pid; pid="$(cat "$PIDFILE")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then echo "kafka.sh: broker did not stop in 30s, killing" >&2; kill -KILL "$pid" || true; fi
  rm -f "$PIDFILE"
  echo "kafka.sh: Kafka stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
