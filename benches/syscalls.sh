#!/usr/bin/env bash
# System calls and context switches per chat message, for the client (DESIGN.md section 7):
# the one-to-one chat of benches/ws-vs-k6.sh (1,000 users, 64-byte texts, each message
# acknowledged, delivered and delivery-acknowledged) against `chatload serve` in a process of
# its own, counted with `perf stat` on the kernel's syscall tracepoints. What it shows is the
# floor of the client's kernel work: a frame read is a `recvfrom` (chatload's a `recvmsg`,
# which carries the arrival stamp), a frame written a `sendto`, and a message is five frames
# over two connections. Each rate runs twice: chatload,
# then `floor` (benches/ws_floor.rs: the same frames from one thread on raw epoll, no runtime
# and no measurement), so the two clients' counts stand side by side.
#
#   benches/syscalls.sh                       # 3,000 and 10,000 messages/s, 20 s each
#   SECS=10 benches/syscalls.sh 10000 -- --threads 1
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/one-to-one.sh
RATES=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do RATES+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(3000 10000)
USERS=${USERS:-1000}
SECS=${SECS:-20}
PORT=${PORT:-7084}
command -v perf > /dev/null || { echo "needs perf (Debian: linux-perf)"; exit 2; }
cargo build --release --quiet --bin chatload --example ws-floor
BIN=$PWD/target/release/chatload
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CALLS=(sendto recvfrom recvmsg epoll_wait futex timerfd_settime write read)
EVENTS=()
for c in "${CALLS[@]}"; do EVENTS+=(-e "syscalls:sys_enter_$c"); done

for rate in "${RATES[@]}"; do
  one_to_one_scenario "syscalls-$rate" "$rate" "$USERS" "$SECS" > "$WORK/chat.toml"
  for tool in chatload floor; do
    label="chatload ${EXTRA[*]:-}"
    [ $tool = floor ] && label=floor
    $BIN serve --listen 127.0.0.1:$PORT 2>/dev/null &
    server=$!
    sleep 0.3
    rm -rf "$WORK/out" "$WORK/client.log"
    if [ $tool = chatload ]; then
      client=("$BIN" run "$WORK/chat.toml" "${EXTRA[@]}" --target ws://127.0.0.1:$PORT/v1/ws --quiet --out "$WORK/out")
    else
      client=(target/release/examples/ws-floor 127.0.0.1:$PORT "$rate" "$USERS" "$((SECS + 1))")
    fi
    perf stat -x, "${EVENTS[@]}" -e task-clock -e context-switches -o "$WORK/stat" \
      "${client[@]}" > "$WORK/client.log" 2>&1 || true
    kill $server; wait $server 2>/dev/null || true
    python3 - "$rate" "$WORK" "$label" <<'PY'
import json, sys
rate, work, extra = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if extra.startswith("floor"):
    f = open(f"{work}/client.log").read().split()
    sent = int(f[f.index("sent") + 1]) if "sent" in f else 0
else:
    sent = json.load(open(f"{work}/out/summary.json"))["accounting"]["messages_sent"]
per = {}
for line in open(f"{work}/stat"):
    f = line.strip().split(",")
    if len(f) > 2 and f[0] and not line.startswith("#"):
        try:
            per[f[2].replace("syscalls:sys_enter_", "")] = float(f[0]) / max(sent, 1)
        except ValueError:
            pass
# The tracepoints themselves cost CPU: read CPU per message from ws-vs-k6.sh, not here.
per.pop("task-clock", 0)
switches = per.pop("context-switches", 0)
calls = "  ".join(f"{k} {v:.2f}" for k, v in per.items())
print(f"{rate:>6}/s {extra:<20} sent {sent:>8,}  per message: {switches:.2f} context switches, {calls}")
PY
  done
done
