#!/usr/bin/env bash
# Resident memory per connected virtual user: scenarios/bench-connections.toml (mostly idle
# WebSocket users with heartbeats) at N users against `chatload serve` in a second process,
# both processes' RSS sampled late in the hold and divided by the connections held.
#
#   benches/connections.sh                 # 19,000 users (one process may open 20,000 files here)
#   benches/connections.sh 1000 10000 19000
#   DURATION=160 benches/connections.sh 100000   # where the limits allow
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/chatload
WORK=$(mktemp -d)
PORT=${PORT:-7078}
DURATION=${DURATION:-60}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(19000)

echo "users  connected  client RSS  per user  server RSS  per connection  connect p99"
for users in "${SIZES[@]}"; do
  # serve closes connections past nine tenths of its file limit by default (18,000 here);
  # this bench holds up to 19,000, so it lets serve use nearly all of them.
  $BIN serve --listen 127.0.0.1:$PORT --max-connections 19900 2>/dev/null &
  server=$!
  sleep 0.3
  $BIN run scenarios/bench-connections.toml --users "$users" --duration "${DURATION}s" \
    --target ws://127.0.0.1:$PORT/v1/ws --quiet --out "$WORK/out-$users" > "$WORK/console-$users.txt" 2>&1 &
  client=$!
  # Late in the hold: everyone has connected and idled a while.
  sleep $((DURATION * 85 / 100))
  c_kb=$(awk '/VmRSS/ {print $2}' /proc/$client/status 2>/dev/null || echo 0)
  s_kb=$(awk '/VmRSS/ {print $2}' /proc/$server/status 2>/dev/null || echo 0)
  wait $client || true
  kill $server; wait $server 2>/dev/null || true
  if [ ! -f "$WORK/out-$users/summary.json" ]; then
    echo "$users: no bundle; chatload said:"; cat "$WORK/console-$users.txt"; continue
  fi
  python3 - "$WORK/out-$users/summary.json" "$users" "$c_kb" "$s_kb" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); users = int(sys.argv[2]); c = int(sys.argv[3]); srv = int(sys.argv[4])
n = max(s["peak_connected"], 1)
p99 = s["metrics"].get("connect", {}).get("p99_us", 0) / 1000
print(f"{users:>6,}  {n:>9,}  {c / 1024:>7.1f} MiB  {c / n:>5.1f} KiB  {srv / 1024:>7.1f} MiB  {srv / n:>11.1f} KiB  {p99:>8.2f} ms")
PY
done
rm -rf "$WORK"
