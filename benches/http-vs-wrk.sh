#!/usr/bin/env bash
# chatload's closed-model HTTP send rate next to wrk's, side by side in one run, against
# nginx answering a fixed 200 on loopback: the same 50 connections, the same duration,
# alternating ROUNDS times (DESIGN.md section 7). Installs nginx-light and wrk with apt-get
# when they are missing (as root).
#
#   benches/http-vs-wrk.sh            # 3 rounds of 10 s each
#   benches/http-vs-wrk.sh 5 20       # 5 rounds of 20 s
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
PORT=${PORT:-18080}
if ! command -v wrk >/dev/null || ! [ -x /usr/sbin/nginx ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light wrk >/dev/null
fi
cargo build --release --quiet
BIN=$PWD/target/release/chatload
WORK=$(mktemp -d)
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT;
    location / { return 200 "ok\n"; }
  }
}
CONF
/usr/sbin/nginx -c "$WORK/nginx.conf" -p "$WORK" &
nginx=$!
trap 'kill $nginx 2>/dev/null || true; wait $nginx 2>/dev/null || true' EXIT
sleep 0.5
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "round  wrk req/s  chatload req/s  ratio  chatload send p99  chatload CPU s  errors"
for r in $(seq 1 "$ROUNDS"); do
  w=$(wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$PORT/healthz" | awk '/Requests\/sec/{print $2}')
  "$BIN" run scenarios/bench-http.toml --target "http://127.0.0.1:$PORT" --duration "$((SECS * 1000 + 500))ms" \
    --quiet --out "$WORK/run-$r" > /dev/null &
  c=$!
  before=0
  while kill -0 $c 2>/dev/null; do last=$(cpu_of $c 2>/dev/null || echo "$before"); before=$last; sleep 0.2; done
  wait $c || true
  python3 - "$WORK/run-$r/summary.json" "$w" "$r" "$before" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); wrk = float(sys.argv[2]); ticks = int(sys.argv[4])
c = s["messages_per_s"]
print(f"{sys.argv[3]:>5}  {wrk:>9,.0f}  {c:>14,.0f}  {c / wrk:5.2f}  {s['metrics']['send']['p99_us'] / 1000:>14.2f} ms  {ticks / 100:>12.1f}  {s['errors_total']:>6}")
PY
done
