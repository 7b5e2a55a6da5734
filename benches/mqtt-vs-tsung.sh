#!/usr/bin/env bash
# chatload next to Tsung on the same MQTT broker at the same message rate: the CPU each
# load generator spends per 1,000 messages, and the broker's, side by side in one run
# (DESIGN.md section 7). Installs mosquitto and tsung with apt-get when missing (as root).
#
#   benches/mqtt-vs-tsung.sh                 # 5,000 and 10,000 messages/s, 20 s each
#   benches/mqtt-vs-tsung.sh 20 2000 8000    # SECS, then the rates to try
#   BINS="before=/tmp/old/chatload after=target/release/chatload" benches/mqtt-vs-tsung.sh
#                                            # builds side by side, each on a fresh broker
#   TSUNG=0 benches/mqtt-vs-tsung.sh         # chatload only
#
# The same work for both: 1,000 people, each subscribed to its own topic chat/u/<n>,
# publishing 64-byte messages at QoS 1 to other people's topics; every message is one
# PUBLISH + PUBACK from the sender and one PUBLISH + PUBACK to the recipient. Tsung's MQTT
# plugin cannot publish from a user that is also waiting on a subscription, so Tsung runs
# 1,000 subscribers and 1,000 publishers (2,000 connections, the idle half costs ~nothing);
# chatload's 1,000 users do both. chatload also times every message end to end (Tsung
# times the PUBACK only) and writes its whole report bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
shift || true
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(5000 10000)
USERS=1000
PORT=${PORT:-18830}
TSUNG=${TSUNG:-1}
if { [ "$TSUNG" = 1 ] && ! command -v tsung >/dev/null; } || ! [ -x /usr/sbin/mosquitto ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends mosquitto tsung >/dev/null
fi
if [ -z "${BINS:-}" ]; then
  cargo build --release --quiet --bin chatload
  BINS="chatload=$PWD/target/release/chatload"
fi
WORK=$(mktemp -d)
broker=""
stop_broker() {
  if [ -n "$broker" ]; then kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
  broker=""
}
trap 'stop_broker' EXIT
cat > "$WORK/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 100000
CONF
start_broker() {
  stop_broker
  /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
  broker=$!
  sleep 0.5
}
cpu_of() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
# CPU seconds of a process and all its descendants (Tsung runs an Erlang VM under a script).
tree_cpu() {
  local total child
  total=$(cpu_of "$1" 2>/dev/null || echo 0)
  for child in $(pgrep -P "$1" || true); do
    total=$(python3 -c "print($total + $(tree_cpu "$child"))")
  done
  echo "$total"
}
# The tree's CPU seconds over a steady window: from $2 s after now, for $3 s.
steady() {
  local c0
  sleep "$2"
  c0=$(tree_cpu "$1")
  sleep "$3"
  python3 -c "print($(tree_cpu "$1") - $c0)"
}
# Steady windows skip each tool's connecting and ramp (chatload ramps for 2 s; Tsung's
# publishers start 2–5 s in and think 1 s) and its end.
WINDOW=$((SECS - 5))

# cpu: the whole run's user + system seconds; per 1k: over every delivered message; steady
# per 1k: over the steady window, per 1,000 messages offered in it; broker per 1k: mosquitto's.
printf '%-8s %-9s %10s %10s %11s %11s %11s %s\n' rate tool delivered cpu "per 1k" "steady/1k" "broker/1k" "latency"
for rate in "${RATES[@]}"; do
  # chatload: conversations of 10 messages, so rate = users × conv/min ÷ 60 × 10.
  conv=$(python3 -c "print(round($rate * 6 / $USERS, 3))")
  cat > "$WORK/chat.toml" <<TOML
[scenario]
name = "mqtt-rate"
seed = 1
loss_deadline = "5s"
drain = "5s"
[population.consumers]
users = $USERS
contacts = { uniform = { min = 5, max = 30 } }
[[pattern]]
kind = "direct_chat"
conversations = "$conv/min per user"
messages = 10
gap = { exponential = { mean = "100ms" } }
size = 64
typing = 0
read = 0
media = { text = 1 }
[load]
stages = [{ ramp = "2s" }, { hold = "${SECS}s" }]
[target]
url = "mqtt://127.0.0.1:$PORT"
[target.mqtt]
qos = 1
clean_session = true
TOML
  for named in $BINS; do
  name=${named%%=*}
  bin=${named#*=}
  start_broker
  b0=$(cpu_of "$broker")
  /usr/bin/time -f "%U %S" -o "$WORK/time" "$bin" run "$WORK/chat.toml" --quiet --out "$WORK/chatload" >/dev/null 2>&1 &
  tool=$!
  steady "$tool" 3 "$WINDOW" > "$WORK/steady"
  wait "$tool" || true
  b1=$(cpu_of "$broker")
  python3 - "$WORK/chatload/summary.json" "$WORK/time" "$b0" "$b1" "$rate" "$(cat "$WORK/steady")" "$WINDOW" "$name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
u, k = map(float, open(sys.argv[2]).read().split())
a, m = s["accounting"], s["metrics"]
n = a["delivered"]
broker = float(sys.argv[4]) - float(sys.argv[3])
steady = float(sys.argv[6]) / (float(sys.argv[5]) * float(sys.argv[7])) * 1e3
lag = m.get("read_lag") or {}
waited = f", read_lag p50 {lag['p50_us'] / 1e3:.2f} ms of {lag['count']:,}" if lag.get("count") else ", no read_lag"
print(f"{sys.argv[5]:<8} {sys.argv[8]:<9} {n:>10,} {u + k:>8.2f} s {(u + k) / n * 1e3:>9.3f} s {steady:>9.3f} s {broker / n * 1e3:>9.3f} s"
      f"  delivery p50 {m['delivery']['p50_us'] / 1e3:.2f} ms p99 {m['delivery']['p99_us'] / 1e3:.2f} ms, lost {a['lost']}, late sends {a['late_sends']}{waited}")
PY
  rm -rf "$WORK/chatload"
  done

  [ "$TSUNG" = 1 ] || continue
  # Tsung: static subscribers 1..USERS, then USERS publishers at rate/USERS each.
  python3 - "$USERS" "$rate" "$SECS" "$PORT" > "$WORK/tsung.xml" <<'PY'
import sys
users, rate, secs, port = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
think = users / rate
loops = int(secs * rate / users)
subs = "\n".join(f'    <user session="sub" start_time="{i}" unit="millisecond"/>' for i in range(users))
# Publishers start after every subscriber, so subscribers hold the user ids 1..users.
pubs = "\n".join(f'    <user session="pub" start_time="{2000 + 3 * i}" unit="millisecond"/>' for i in range(users))
print(f'''<?xml version="1.0"?>
<!DOCTYPE tsung SYSTEM "/usr/share/tsung/tsung-1.0.dtd">
<tsung loglevel="warning" version="1.0">
  <clients><client host="localhost" use_controller_vm="true" maxusers="{3 * users}"/></clients>
  <servers><server host="127.0.0.1" port="{port}" type="tcp"/></servers>
  <load>
{subs}
{pubs}
  </load>
  <sessions>
    <session name="sub" probability="0" type="ts_mqtt">
      <request subst="true"><mqtt type="connect" clean_start="true" keepalive="60"/></request>
      <request subst="true"><mqtt type="subscribe" topic="chat/u/%%_tsung_userid%%" qos="1"/></request>
      <request><mqtt type="waitForMessages" timeout="{int(secs) + 12}"/></request>
      <request><mqtt type="disconnect"/></request>
    </session>
    <session name="pub" probability="0" type="ts_mqtt">
      <request subst="true"><mqtt type="connect" clean_start="true" keepalive="60"/></request>
      <thinktime value="1" random="false"/>
      <for from="1" to="{loops}" incr="1" var="i">
        <setdynvars sourcetype="random_number" start="1" end="{users}"><var name="to"/></setdynvars>
        <request subst="true"><mqtt type="publish" topic="chat/u/%%_to%%" qos="1">{"x" * 64}</mqtt></request>
        <thinktime value="{think:.4f}" random="true"/>
      </for>
      <request><mqtt type="disconnect"/></request>
    </session>
  </sessions>
</tsung>''')
PY
  start_broker
  b0=$(cpu_of "$broker")
  rm -rf "$WORK/tsung-log"
  /usr/bin/time -f "%U %S" -o "$WORK/time" timeout $((SECS + 60)) tsung -f "$WORK/tsung.xml" -l "$WORK/tsung-log" start >/dev/null 2>&1 &
  tool=$!
  steady "$tool" 8 "$WINDOW" > "$WORK/steady"
  wait "$tool" || true
  b1=$(cpu_of "$broker")
  python3 - "$WORK/tsung-log" "$WORK/time" "$b0" "$b1" "$rate" "$(cat "$WORK/steady")" "$WINDOW" <<'PY'
import glob, sys
log = glob.glob(sys.argv[1] + "/*/tsung.log")[0]
totals, request = {}, None
for line in open(log):
    f = line.split()
    if len(f) >= 3 and f[0] == "stats:":
        if f[1] == "request":
            request = f
        else:
            totals[f[1]] = f[-1]
u, k = map(float, open(sys.argv[2]).read().split())
n = float(totals.get("mqtt_server_published", 0))
broker = float(sys.argv[4]) - float(sys.argv[3])
mean = float(request[7]) if request else float("nan")
steady = float(sys.argv[6]) / (float(sys.argv[5]) * float(sys.argv[7])) * 1e3
print(f"{sys.argv[5]:<8} {'tsung':<9} {n:>10,.0f} {u + k:>8.2f} s {(u + k) / max(n, 1) * 1e3:>9.3f} s {steady:>9.3f} s {broker / max(n, 1) * 1e3:>9.3f} s"
      f"  publish→PUBACK mean {mean:.2f} ms, published {totals.get('mqtt_published')}, delivered {n:.0f}")
PY
done
stop_broker
rm -rf "$WORK"
