#!/usr/bin/env bash
# Open-model HTTP sends against nginx answering a fixed 200 on loopback: 1,000 users sending
# RATE POSTs a second in all, whatever the answers do, for 10 s after a 1 s ramp; chatload on
# core 0, nginx on core 1 (`taskset`). Prints per build and round: requests answered, errors,
# send p50/p99 (intended time → answer), how many answers carried an arrival stamp
# (`read_lag` count) and its p50, send_lag p99, CPU per request (user part too) and peak RSS.
# Compares builds side by side in one run when BINS names more than one (DESIGN.md
# section 7), alternating them for two rounds. Installs nginx-light with apt-get when missing
# (as root).
#
#   benches/http-open.sh 2000 10000 20000
#   BINS="before=/tmp/old/chatload after=target/release/chatload" benches/http-open.sh 10000
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(10000)
PORT=${PORT:-18081}
if ! [ -x /usr/sbin/nginx ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
if [ -z "${BINS:-}" ]; then
  cargo build --release --quiet --bin chatload
  BINS="chatload=$PWD/target/release/chatload"
fi
WORK=$(mktemp -d)
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:$PORT;
    location / { return 200 '{"id":1}'; }
  }
}
CONF
taskset -c 1 /usr/sbin/nginx -c "$WORK/nginx.conf" -p "$WORK" &
nginx=$!
trap 'kill $nginx 2>/dev/null || true; wait $nginx 2>/dev/null || true; rm -rf "$WORK"' EXIT
sleep 0.5
for rate in "${RATES[@]}"; do
  per_user_per_min=$(python3 -c "print($rate * 60 / 1000)")
  cat > "$WORK/open.toml" <<TOML
[scenario]
name = "http-open-$rate"
seed = 1
[population.consumers]
users = 1000
online = 1.0
contacts = 5
[[pattern]]
kind = "direct_chat"
conversations = "$per_user_per_min/min per user"
messages = 1
size = 64
typing = 0
read = 0
media = { text = 1 }
[load]
stages = [{ ramp = "1s" }, { hold = "10s" }]
[target]
protocol = "http"
[target.http]
method = "POST"
url = "/m"
body = '{"to":{{to}},"id":{{id}},"body":"{{body}}"}'
timeout = "5s"
deliveries = "none"
TOML
  for round in 1 2; do
    for named in $BINS; do
      name=${named%%=*}
      bin=${named#*=}
      out=$WORK/out-$name-$rate-$round
      /usr/bin/time -f "%U %S %M" -o "$WORK/time" taskset -c 0 "$bin" run "$WORK/open.toml" \
        --target "http://127.0.0.1:$PORT" --quiet --out "$out" > /dev/null 2>&1 || true
      python3 - "$out/summary.json" "$(cat "$WORK/time")" "$name" "$rate" "$round" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); user, system, rss = sys.argv[2].split()
a, m = s["accounting"], s["metrics"]
n = max(a["acked"], 1); cpu = float(user) + float(system)
stamped, lag = m.get("read_lag", {}), m.get("send_lag", {})
print(f"{sys.argv[4]:>6}/s  round {sys.argv[5]}  {sys.argv[3]:<10} answered {a['acked']:>9,}  errors {s['errors_total']:>6}"
      f"  send p50/p99 {m['send']['p50_us'] / 1000:.3f}/{m['send']['p99_us'] / 1000:.3f} ms"
      f"  stamped {stamped.get('count', 0):>9,} (read_lag p50 {stamped.get('p50_us', 0) / 1000:.3f} ms)"
      f"  send_lag p99 {lag.get('p99_us', 0) / 1000:.3f} ms"
      f"  CPU {cpu / n * 1e6:5.1f} µs/req (user {float(user) / n * 1e6:4.1f})  RSS {int(rss) / 1024:.0f} MiB")
PY
    done
  done
done
