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
open(sys.argv[1] + ".per-user", "w").write(f"{c / n} {srv / n}")
PY
  LAST="$WORK/out-$users/summary.json.per-user"
done
# Toward a million: the last size's per-user figures projected, beside this box's limits.
if [ -n "${LAST:-}" ] && [ -f "$LAST" ]; then
  python3 - "$LAST" <<'PY'
import sys
c, s = map(float, open(sys.argv[1]).read().split())
def read(path, default):
    try:
        return open(path).read().split()
    except OSError:
        return default
nr_open = int(read("/proc/sys/fs/nr_open", ["?"])[0])
lo, hi = map(int, read("/proc/sys/net/ipv4/ip_local_port_range", ["32768", "60999"]))
conntrack = read("/proc/sys/net/netfilter/nf_conntrack_max", ["(not loaded)"])[0]
mem_kib = int([l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")][0])
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
n = 1_000_000
print(f"\nprojected for {n:,} connected users from the last row:")
print(f"  memory   client {c * n / 2**20:.1f} GiB + server {s * n / 2**20:.1f} GiB = {(c + s) * n / 2**20:.1f} GiB (this box: {mem_kib / 2**20:.1f} GiB)")
print(f"  files    {n:,} descriptors in each process (this process may open {hard:,}; the kernel's per-process ceiling fs.nr_open is {nr_open:,})")
ports = hi - lo + 1
print(f"  ports    {ports:,} ephemeral ports per source address and target: {-(-n // ports)} source addresses")
print(f"  conntrack table {conntrack} entries (when netfilter tracks connections, one per connection)")
PY
fi
rm -rf "$WORK"
