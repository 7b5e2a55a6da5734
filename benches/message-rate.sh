#!/usr/bin/env bash
# Message-rate sweep: chatload against `chatload serve` in a second process, on loopback.
# For each offered rate it prints the achieved rate, loss, late sends, p99s, and the CPU
# seconds of the client and of the server, so the knee (the highest rate with loss 0 and no
# late sends) and the CPU per message can be read off one run.
#
#   benches/message-rate.sh                # default sweep: 30 60 120 240 conversations/min per user
#   benches/message-rate.sh 30 45 60       # conversations per minute per user to try
#   MIX=lean benches/message-rate.sh 60 90 # text only, no typing indicators, no read receipts
#   PIN=1 MIX=lean benches/message-rate.sh 360  # client on core 0, server on core 1 (taskset)
#   THREADS=1 benches/message-rate.sh 60      # chatload run --threads 1
#   FLOOR=1 PIN=1 MIX=lean benches/message-rate.sh 120 240 360
#       # after each chatload row a `floor` row: benches/ws_floor.rs (one thread on raw epoll,
#       # no runtime, no measurement) offering the same messages/s to a fresh server, under
#       # the same pinning — how far any client gets on this machine and with this server
#
# 1,000 users, one-to-one chat, 10 messages per conversation, 64-byte bodies, 22 s runs.
# Offered messages/s ≈ 1,000 × rate/60 × 10.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin chatload --example ws-floor
BIN=target/release/chatload
WORK=$(mktemp -d)
PORT=${PORT:-7079}
RATES=("$@")
USERS=${USERS:-1000}
MIX=${MIX:-default}
case "$MIX" in
  default) EXTRA="" ;;
  # Every message one send, one delivery and one receipt: the cheapest chat traffic, so the
  # rate measured is the transport's, not the typing and read traffic around it.
  lean) EXTRA=$'typing = 0\nread = 0\nmedia = { text = 1 }' ;;
  *) echo "MIX must be default or lean" >&2; exit 2 ;;
esac
[ ${#RATES[@]} -gt 0 ] || RATES=(30 60 120 240)
# PIN=1: the client on core 0 and the server on core 1, so the two no longer compete.
CLIENT_PIN=()
SERVER_PIN=()
if [ "${PIN:-0}" = 1 ]; then
  CLIENT_PIN=(taskset -c 0)
  SERVER_PIN=(taskset -c 1)
fi

for rate in "${RATES[@]}"; do
  cat > "$WORK/rate.toml" <<TOML
[scenario]
name = "rate$rate"
seed = 1
loss_deadline = "5s"
[population.consumers]
users = $USERS
contacts = { uniform = { min = 5, max = 30 } }
[[pattern]]
kind = "direct_chat"
conversations = "$rate/min per user"
messages = 10
gap = { exponential = { mean = "100ms" } }
size = 64
$EXTRA
[load]
stages = [{ ramp = "2s" }, { hold = "20s" }]
TOML
  "${SERVER_PIN[@]}" $BIN serve --listen 127.0.0.1:$PORT 2>/dev/null &
  server=$!
  sleep 0.3
  start_ticks=$(awk '{print $14+$15}' /proc/$server/stat)
  "${CLIENT_PIN[@]}" /usr/bin/time -f "%U %S" -o "$WORK/time" $BIN run "$WORK/rate.toml" --target ws://127.0.0.1:$PORT/v1/ws --quiet ${THREADS:+--threads $THREADS} --out "$WORK/out$rate" > /dev/null || true
  end_ticks=$(awk '{print $14+$15}' /proc/$server/stat)
  kill $server; wait $server 2>/dev/null || true
  python3 - "$WORK/out$rate/summary.json" "$WORK/time" "$rate" "$start_ticks" "$end_ticks" "$USERS" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
u, k = map(float, open(sys.argv[2]).read().split())
client = u + k
server = (float(sys.argv[5]) - float(sys.argv[4])) / 100
a = s["accounting"]
m = s["metrics"]
msgs = a["messages_sent"]
# read_lag: how long frames sat on this machine before chatload read them (excluded from
# the latencies, which end at arrival); absent from bundles older than the fourteenth session.
rl = m.get("read_lag")
read_lag = f"  read_lag p50 {rl['p50_us']/1000:.2f} p99 {rl['p99_us']/1000:.2f} ms" if rl else ""
print(f"offered {int(sys.argv[6])*int(sys.argv[3])/60*10:>8.0f}/s  achieved {s['messages_per_s']:>9.1f}/s  lost {a['lost']}  late {a['late_sends']}"
      f"  lag p99 {m['send_lag']['p99_us']/1000:.2f} ms  send p99 {m['send']['p99_us']/1000:.2f} ms  delivery p50 {m['delivery']['p50_us']/1000:.2f} p99 {m['delivery']['p99_us']/1000:.2f} ms{read_lag}"
      f"  client {client:.1f} s ({client/s['duration_s']:.2f} core, {client/msgs*1e6:.0f} µs/msg)"
      f"  server {server:.1f} s ({server/s['duration_s']:.2f} core, {server/msgs*1e6:.0f} µs/msg)")
PY
  if [ "${FLOOR:-0}" = 1 ]; then
    offered=$((USERS * rate / 6))
    "${SERVER_PIN[@]}" $BIN serve --listen 127.0.0.1:$PORT 2>/dev/null &
    server=$!
    sleep 0.3
    start_ticks=$(awk '{print $14+$15}' /proc/$server/stat)
    "${CLIENT_PIN[@]}" target/release/examples/ws-floor 127.0.0.1:$PORT "$offered" "$USERS" 22 > "$WORK/floor.log" || true
    end_ticks=$(awk '{print $14+$15}' /proc/$server/stat)
    kill $server; wait $server 2>/dev/null || true
    python3 - "$WORK/floor.log" "$offered" "$start_ticks" "$end_ticks" <<'PY'
import sys
f = open(sys.argv[1]).read().split()
get = lambda k: float(f[f.index(k) + 1]) if k in f else 0.0
sent, late, cpu = get("sent"), get("late"), get("cpu")
server = (float(sys.argv[4]) - float(sys.argv[3])) / 100
print(f"offered {int(sys.argv[2]):>8}/s  floor: sent {sent:,.0f}  delivered {get('delivered'):,.0f}  late {late:,.0f}"
      f"  client {cpu:.1f} s ({cpu / 22:.2f} core, {cpu / max(sent, 1) * 1e6:.0f} µs/msg)"
      f"  server {server:.1f} s ({server / 22:.2f} core, {server / max(sent, 1) * 1e6:.0f} µs/msg)")
PY
  fi
done
rm -rf "$WORK"
