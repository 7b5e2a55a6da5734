#!/usr/bin/env bash
# Resident memory per connected virtual user: N mostly idle users (one conversation per
# user-minute) held against `chatload serve` in a second process; samples both processes'
# RSS during the hold and prints it per connection.
#
#   benches/connections.sh            # 10,000 users
#   benches/connections.sh 1000 10000 # several sizes, to read the marginal cost per user
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/chatload
WORK=$(mktemp -d)
PORT=${PORT:-7078}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000)

for users in "${SIZES[@]}"; do
  cat > "$WORK/idle.toml" <<TOML
[scenario]
name = "idle$users"
seed = 1
[population.consumers]
users = $users
contacts = { uniform = { min = 5, max = 30 } }
[[pattern]]
kind = "direct_chat"
conversations = "1/min per user"
messages = { geometric = { mean = 7 } }
gap = { exponential = { mean = "2s" } }
size = 64
[load]
stages = [{ ramp = "10s" }, { hold = "30s" }]
TOML
  $BIN serve --listen 127.0.0.1:$PORT 2>/dev/null &
  server=$!
  sleep 0.3
  $BIN run "$WORK/idle.toml" --target ws://127.0.0.1:$PORT/v1/ws --quiet --out "$WORK/out" > /dev/null &
  client=$!
  sleep 30
  c_kb=$(awk '/VmRSS/ {print $2}' /proc/$client/status)
  s_kb=$(awk '/VmRSS/ {print $2}' /proc/$server/status)
  wait $client || true
  kill $server; wait $server 2>/dev/null || true
  connected=$(python3 -c "import json;print(json.load(open('$WORK/out/summary.json'))['peak_connected'])")
  echo "users $users connected $connected  client RSS $((c_kb/1024)) MiB ($((c_kb/connected)) KiB/user)  server RSS $((s_kb/1024)) MiB ($((s_kb/connected)) KiB/connection)"
done
rm -rf "$WORK"
