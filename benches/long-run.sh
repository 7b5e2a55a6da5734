#!/usr/bin/env bash
# Memory over a long run: chatload against `chatload serve` for MINUTES minutes at RATE
# conversations per minute per user (1,000 users, 10 messages each: RATE × 167 msg/s),
# sampling the client's resident memory every 30 s. Histograms, not samples, are kept, so
# resident memory should flatten after the first minute; the interval log grows by a few KB
# per second.
#
#   benches/long-run.sh            # 10 minutes at 15 conv/min/user (~2,500 msg/s)
#   benches/long-run.sh 60 15      # one hour
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
RATE=${2:-15}
cargo build --release --quiet
BIN=target/release/chatload
WORK=$(mktemp -d)
PORT=${PORT:-7078}
cat > "$WORK/long.toml" <<TOML
[scenario]
name = "long-run"
seed = 1
loss_deadline = "5s"
[population.consumers]
users = 1000
contacts = { uniform = { min = 5, max = 30 } }
[[pattern]]
kind = "direct_chat"
conversations = "$RATE/min per user"
messages = 10
gap = { exponential = { mean = "100ms" } }
size = 64
[load]
stages = [{ ramp = "5s" }, { hold = "$((MINUTES * 60 - 5))s" }]
TOML
$BIN serve --listen 127.0.0.1:$PORT 2>/dev/null &
server=$!
sleep 0.3
$BIN run "$WORK/long.toml" --target ws://127.0.0.1:$PORT/v1/ws --quiet --out "$WORK/out" > "$WORK/console.txt" &
client=$!
echo "minute  client RSS MiB  server RSS MiB"
t=0
while kill -0 $client 2>/dev/null; do
  sleep 30; t=$((t + 30))
  c=$(awk '/VmRSS/{print $2}' /proc/$client/status 2>/dev/null || echo 0)
  s=$(awk '/VmRSS/{print $2}' /proc/$server/status 2>/dev/null || echo 0)
  [ "$c" != 0 ] && awk -v t="$t" -v c="$c" -v s="$s" 'BEGIN { printf "%6.1f  %14.1f  %14.1f\n", t / 60, c / 1024, s / 1024 }'
done
wait $client || true
kill $server; wait $server 2>/dev/null || true
python3 - "$WORK/out" <<'PY'
import json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "summary.json")))
a = s["accounting"]
print(f"{s['duration_s']:.0f} s, {a['messages_sent']:,} messages ({s['messages_per_s']:.0f}/s), lost {a['lost']}, late sends {a['late_sends']}, "
      f"delivery p99 {s['metrics']['delivery']['p99_us']/1000:.2f} ms; latency.hlog {os.path.getsize(os.path.join(d, 'latency.hlog'))/1e6:.2f} MB, "
      f"summary.json {os.path.getsize(os.path.join(d, 'summary.json'))/1e6:.2f} MB")
PY
