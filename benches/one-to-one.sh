# Sourced by benches/ws-vs-k6.sh and benches/syscalls.sh: the one-to-one chat they both run.
# one_to_one_scenario NAME RATE USERS SECS prints a scenario of USERS users sending RATE
# messages/s in all, one 64-byte text per conversation to a random contact, no typing or read
# receipts, held SECS seconds after a 1 s ramp.
one_to_one_scenario() {
  local name=$1 rate=$2 users=$3 secs=$4
  local per_user_per_min
  per_user_per_min=$(python3 -c "print($rate * 60 / $users)")
  cat <<TOML
[scenario]
name = "$name"
seed = 1
loss_deadline = "5s"
[population.consumers]
users = $users
contacts = { uniform = { min = 5, max = 30 } }
[[pattern]]
kind = "direct_chat"
conversations = "$per_user_per_min/min per user"
messages = 1
size = 64
typing = 0
read = 0
media = { text = 1 }
[load]
stages = [{ ramp = "1s" }, { hold = "${secs}s" }]
TOML
}
