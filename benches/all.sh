#!/usr/bin/env bash
# Every figure in the README's "Performance" section and docs/performance.md, one after another
# on this machine, with the arguments they quote. Run as root on a fresh machine: the peer
# scripts install nginx-light, wrk, mosquitto and tsung with apt-get when they are missing.
# About 30 minutes; run nothing else meanwhile, the two cores are the measurement.
#
#   benches/all.sh
set -euo pipefail
cd "$(dirname "$0")"
step() { printf '\n== %s\n' "$*"; }

step "HTTP send rate next to wrk (benches/http-vs-wrk.sh 3 10)"
./http-vs-wrk.sh 3 10
step "Open-model HTTP sends against nginx (benches/http-open.sh 2000 10000 20000)"
./http-open.sh 2000 10000 20000
step "CPU per MQTT message next to Tsung (benches/mqtt-vs-tsung.sh 20 5000 10000 15000 20000)"
./mqtt-vs-tsung.sh 20 5000 10000 15000 20000
step "End-to-end rate on the embedded server (MIX=lean benches/message-rate.sh 6 60 90 120 150 180 240)"
MIX=lean ./message-rate.sh 6 60 90 120 150 180 240
step "Same, client and server pinned to a core each (PIN=1 MIX=lean benches/message-rate.sh 6 60 120 180 240 300 360)"
PIN=1 MIX=lean ./message-rate.sh 6 60 120 180 240 300 360
step "Same beside ws-floor (FLOOR=1 PIN=1 MIX=lean benches/message-rate.sh 60 120 240 360)"
FLOOR=1 PIN=1 MIX=lean ./message-rate.sh 60 120 240 360
step "CPU per chat message next to k6 (benches/ws-vs-k6.sh)"
./ws-vs-k6.sh
step "System calls per chat message (benches/syscalls.sh 3000 10000, and with --threads 1)"
./syscalls.sh 3000 10000
./syscalls.sh 3000 10000 -- --threads 1
step "50,000 messages/s over 100 users, next to 1,000/s (USERS=100 MIX=lean benches/message-rate.sh 60 3000)"
USERS=100 MIX=lean ./message-rate.sh 60 3000
step "Memory per connected user (benches/connections.sh 1000 10000 19000)"
./connections.sh 1000 10000 19000
step "Memory over 10 minutes at about 10,000 messages/s (benches/long-run.sh 10 60)"
./long-run.sh 10 60
step "Cost of recording one sample (cargo bench --bench record)"
cargo bench --quiet --bench record
step "Cost of the wire codec per message (cargo bench --bench codec)"
cargo bench --quiet --bench codec
