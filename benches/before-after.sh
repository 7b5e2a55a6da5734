#!/usr/bin/env bash
# Before and after a change, side by side in one run (DESIGN.md section 7): each figure is
# measured on the "before" tree and then on the "after" tree, with this checkout's bench
# scripts run in each tree, one after the other, nothing else running.
#
#   benches/before-after.sh 6ddf724            # before = that commit, after = this checkout
#
# Figures: test functions in the source (#[test] and #[tokio::test]); HTTP closed-loop rate as
# a ratio to wrk (benches/http-vs-wrk.sh, 1 round of 10 s); memory per connected user at
# 19,000 users (benches/connections.sh 19000); the end-to-end rate at about 10,000 msg/s
# offered (MIX=lean benches/message-rate.sh 60); the cost of recording one sample (cargo
# bench --bench record). Builds the "before" tree in a git worktree of its own (about 5
# minutes), then about 15 minutes of measuring. Run as root (the peer scripts apt-get nginx
# and wrk when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE_REV=${1:?usage: benches/before-after.sh BEFORE_REV}
AFTER=$PWD
WORK=$(mktemp -d)
BEFORE=$WORK/before
git worktree add --quiet --detach "$BEFORE" "$BEFORE_REV"
cleanup() { git -C "$AFTER" worktree remove --force "$BEFORE" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
# Both trees are measured by the same scripts (this checkout's): a figure changes only when
# chatload does.
cp "$AFTER"/benches/*.sh "$BEFORE"/benches/

label() { if [ "$1" = "$BEFORE" ]; then echo "before ($BEFORE_REV)"; else echo "after ($(git -C "$AFTER" rev-parse --short HEAD))"; fi; }
step() { printf '\n== %s\n' "$*"; }

step "building both trees (release)"
for tree in "$BEFORE" "$AFTER"; do (cd "$tree" && cargo build --release --quiet); done

step "test functions in the source"
for tree in "$BEFORE" "$AFTER"; do
  n=$(cd "$tree" && grep -rE '#\[(tokio::)?test' --include=*.rs src tests $( [ -d crates ] && echo crates ) | wc -l)
  printf '%-22s %s\n' "$(label "$tree")" "$n"
done

step "HTTP closed loop next to wrk (benches/http-vs-wrk.sh 1 10)"
for tree in "$BEFORE" "$AFTER"; do
  echo "-- $(label "$tree")"; (cd "$tree" && benches/http-vs-wrk.sh 1 10) | tail -4
done

step "memory per connected user at 19,000 (benches/connections.sh 19000)"
for tree in "$BEFORE" "$AFTER"; do
  echo "-- $(label "$tree")"; (cd "$tree" && benches/connections.sh 19000) | tail -2
done

step "end-to-end at about 10,000 msg/s offered (MIX=lean benches/message-rate.sh 60)"
for tree in "$BEFORE" "$AFTER"; do
  echo "-- $(label "$tree")"; (cd "$tree" && MIX=lean benches/message-rate.sh 60) | tail -3
done

step "cost of recording one sample (cargo bench --bench record)"
for tree in "$BEFORE" "$AFTER"; do
  echo "-- $(label "$tree")"; (cd "$tree" && cargo bench --quiet --bench record 2>/dev/null) | grep -E "time:|record" | head -4
done
