#!/usr/bin/env bash
# A second local Kafka broker that authenticates and authorizes, as production does: SASL/SCRAM-SHA-512 on its
# client listener, the StandardAuthorizer with `allow.everyone.if.no.acl.found=false`, `admin` as the only
# super user, and one SCRAM user per service with exactly the ACLs of the access matrix (shared/asyncapi.py).
#   kafka-sasl.sh start   format (new storage: SCRAM users created at format time), start, create topics + ACLs
#   kafka-sasl.sh stop    stop it
#   kafka-sasl.sh status  exit 0 when the broker answers an authenticated metadata request
#   kafka-sasl.sh env SERVICE   print the environment a service needs to connect as its own user
# It runs beside the plain development broker (kafka.sh) with its own state, ports and name.
# Environment: KAFKA_SASL_PORT (9094), KAFKA_SASL_CONTROLLER_PORT (9095), KAFKA_SASL_ADMIN_PASSWORD,
# KAFKA_SASL_<SERVICE>_PASSWORD, KAFKA_TOPIC_PREFIX (topics and ACLs under a prefix), BROADSHEET_RUN_DIR.
# The passwords default to local development values: this broker listens on 127.0.0.1 only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
PY="${BROADSHEET_PYTHON:-$repo/.venv/bin/python}"
SERVICES=(ingest related comments publisher)
PORT="${KAFKA_SASL_PORT:-9094}"
CONTROLLER_PORT="${KAFKA_SASL_CONTROLLER_PORT:-9095}"
ADMIN_PASSWORD="${KAFKA_SASL_ADMIN_PASSWORD:-admin-local-secret}"
RUN_DIR="${BROADSHEET_RUN_DIR:-$repo/.run}"
NAME="kafka-sasl"
STATE="$RUN_DIR/$NAME"

die() { echo "kafka-sasl.sh: $*" >&2; exit 1; }

user_of() { echo "broadsheet-$1"; }
password_of() {
  local var="KAFKA_SASL_${1^^}_PASSWORD"
  echo "${!var:-$1-local-secret}"
}

admin_env() {
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$PORT" KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT \
         KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_SASL_USERNAME=admin KAFKA_SASL_PASSWORD="$ADMIN_PASSWORD"
}

# kafka.sh checks readiness with "$PYTHON - $PORT" and a plaintext probe on stdin; this broker only speaks SASL,
# so kafka.sh is pointed at this script (PYTHON=...) and the probe below authenticates as the admin instead.
if [ "${1:-}" = "-" ]; then
  cat >/dev/null
  PORT="${2:-$PORT}"
  admin_env
  exec "$PY" - <<'PY'
import asyncio, sys
from aiokafka import AIOKafkaClient
from shared.cli import client_options
from shared.settings import ServiceSettings

async def probe() -> bool:
    client = AIOKafkaClient(request_timeout_ms=3000, **client_options(ServiceSettings()))
    try:
        await asyncio.wait_for(client.bootstrap(), 5)
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()

sys.exit(0 if asyncio.run(probe()) else 1)
PY
fi

render_template() {
  mkdir -p "$STATE"
  # The admin password goes in here; kafka.sh fills in the ports and the data directory.
  umask 077
  sed -e "s|@ADMIN_PASSWORD@|$ADMIN_PASSWORD|g" "$here/kafka/server-sasl.properties.in" > "$STATE/server.properties.in"
}

format_args() {
  # SCRAM credentials are part of the cluster metadata from the first instant (KIP-900): no unauthenticated window.
  local args="--add-scram SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]"
  for svc in "${SERVICES[@]}"; do
    args+=" --add-scram SCRAM-SHA-512=[name=$(user_of "$svc"),password=$(password_of "$svc")]"
  done
  echo "$args"
}

start() {
  render_template
  (
    set -f  # the [name=...] arguments must reach the storage tool as they are, never as glob patterns
    KAFKA_INSTANCE="$NAME" KAFKA_PORT="$PORT" KAFKA_CONTROLLER_PORT="$CONTROLLER_PORT" \
    KAFKA_CONFIG_TEMPLATE="$STATE/server.properties.in" KAFKA_FORMAT_ARGS="$(format_args)" \
    PYTHON="$here/kafka-sasl.sh" BROADSHEET_PYTHON="$PY" KAFKA_SASL_PORT="$PORT" \
      "$here/kafka.sh" start
  )
  admin_env
  (cd "$repo" && "$PY" -m shared.cli topics create >/dev/null) || die "could not create the topics as admin"
  (cd "$repo" && "$PY" -m shared.cli acls apply) || die "could not create the ACLs as admin"
  wait_for_coordinator || die "the group coordinator did not become available"
  echo "kafka-sasl.sh: SASL/SCRAM broker ready on 127.0.0.1:$PORT (users: admin, $(for s in "${SERVICES[@]}"; do printf '%s ' "$(user_of "$s")"; done))"
}

wait_for_coordinator() {
  # A new cluster creates __consumer_offsets on the first coordinator lookup and answers "not available" until
  # then; services that look up their group at start-up should find a cluster that is ready for them.
  (cd "$repo" && "$PY" - <<'PY'
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
from shared.cli import client_options
from shared.kafka import group_id
from shared.settings import ServiceSettings

async def wait() -> bool:
    settings = ServiceSettings()
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        for _ in range(150):
            try:
                await admin.find_coordinator(group_id(settings, "ingest"))
                return True
            except Exception:
                await asyncio.sleep(0.2)
        return False
    finally:
        await admin.close()

sys.exit(0 if asyncio.run(wait()) else 1)
PY
  )
}

stop() {
  KAFKA_INSTANCE="$NAME" KAFKA_PORT="$PORT" KAFKA_CONTROLLER_PORT="$CONTROLLER_PORT" "$here/kafka.sh" stop
}

status() {
  exec "$here/kafka-sasl.sh" - "$PORT" </dev/null
}

service_env() {
  local svc="${1:-}"
  [[ " ${SERVICES[*]} " == *" $svc "* ]] || die "usage: $0 env ingest|related|comments|publisher"
  cat <<ENV
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$PORT
KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USERNAME=$(user_of "$svc")
KAFKA_SASL_PASSWORD=$(password_of "$svc")
ENV
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) service_env "${2:-}" ;;
  *) echo "usage: $0 start|stop|status|env SERVICE" >&2; exit 2 ;;
esac
