#!/usr/bin/env bash
# Lab test: blind in-window RSTs (RFC 5961 §3) must not make moat forget a
# connection both ends still hold. An idle keep-alive connection gets two
# in-window, not exact, RSTs 100 ms apart with the client's address
# (scapy). The backend answers the first with a challenge ACK and, rate
# limited, not the second; after --time_wait_ms of silence moat probes the
# backend, whose ACK keeps the flow. Past every deadline, the same
# connection still carries a request and its answer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lr
trap lab_down EXIT
lab_up moat
lab_nginx
lab_moat_start --time_wait_ms=1000

server_mac=$(ip -n "$LAB_S" -br link show eth0 | awk '{print $3}')
lab_c timeout 90 /usr/bin/python3 "$here/blindrst.py" "$server_mac" "$LAB_DIR" \
  >"$LAB_DIR/client.out" 2>&1 &
client=$!

wait_for() {  # wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds
  local what=$1 secs=$2 i
  shift 2
  for i in $(seq 1 $((secs * 10))); do
    "$@" && return 0
    kill -0 "$client" 2>/dev/null || { cat "$LAB_DIR/client.out" >&2; lab_fail "client exited while waiting for $what"; }
    sleep 0.1
  done
  cat "$LAB_DIR/client.out" >&2
  lab_fail "timed out waiting for $what"
}
counter_at_least() { [ "$(lab_counter "$1")" -ge "$2" ]; }

wait_for "the RSTs" 30 test -e "$LAB_DIR/injected"
wait_for "moat to see both RSTs" 10 counter_at_least rst_in_window 2
# The silence after the second RST: moat asks the backend, which answers.
wait_for "moat's probe" 20 counter_at_least rst_probe_sent 1
wait_for "the backend's answer" 20 counter_at_least rst_probe_answered 1
# Past the deadline an unanswered probe would have had (two more probe
# intervals): the flow must still be there, not merely not yet removed.
sleep 3
[ "$(lab_counter rst_probe_unanswered)" -eq 0 ] || lab_fail "a probe went unanswered"
[ "$(lab_counter flows_active)" -eq 1 ] || lab_fail "flows_active=$(lab_counter flows_active): moat forgot the flow"
lab_s ss -tn state established "( sport = :80 )" | grep -q "$LAB_CLIENT4" ||
  lab_fail "the backend dropped the connection (took a blind RST)"
[ "$(lab_counter flows_closed)" -eq 0 ] || lab_fail "moat removed a flow"
touch "$LAB_DIR/go"
wait "$client" || { cat "$LAB_DIR/client.out" >&2; lab_fail "the connection broke"; }
cat "$LAB_DIR/client.out"
for c in rst_in_window rst_probe_sent rst_probe_answered rst_probe_unanswered; do
  echo "$c=$(lab_counter $c)"
done
lab_moat_stop
echo "PASS: two blind in-window RSTs, moat probed, the backend answered, the idle connection still works both ways"
