#!/usr/bin/env bash
# Lab test 6: the ways a TCP connection ends (and one odd way it starts),
# through moat: half-close (RFC 9293 3.6: data keeps flowing on the open
# half), simultaneous close, a client that resets mid-transfer, and a
# simultaneous open across moat ending in one working connection. After
# each, moat's flow is gone once TIME_WAIT has passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lc
trap lab_down EXIT
lab_up moat
lab_moat_start --time_wait_ms=300

peer() {  # peer s|c ROLE NAME: close_peer.py in that namespace
  ip netns exec "$([ "$1" = s ] && echo "$LAB_S" || echo "$LAB_C")" timeout 30 \
    /usr/bin/python3 "$here/close_peer.py" "$2" "$3" >"$LAB_DIR/$3.$2" 2>&1
}
client_syn_sent() { [ -n "$(lab_c ss -Htn state syn-sent "sport = :40001")" ]; }
no_flows() { [ "$(lab_counter flows_active)" -eq 0 ]; }

scenario() {
  local name=$1 bg
  if [ "$name" = simopen ]; then
    # The client connects first; its SYN is held back (below), so it sits
    # in SYN-SENT, and only then does the server connect to it: its SYN
    # crosses moat and meets the client there (RFC 9293 3.5).
    peer c client "$name" &
    bg=$!
    lab_wait_for 10 "$name: the client in SYN-SENT" client_syn_sent
    peer s server "$name" || { cat "$LAB_DIR/$name.server" "$LAB_DIR/$name.client" >&2; lab_fail "$name: server failed"; }
    wait $bg || { cat "$LAB_DIR/$name.client" >&2; lab_fail "$name: client failed"; }
  else
    peer s server "$name" &
    bg=$!
    lab_wait_listen s tcp 81
    peer c client "$name" || { cat "$LAB_DIR/$name.client" "$LAB_DIR/$name.server" >&2; lab_fail "$name: client failed"; }
    wait $bg || { cat "$LAB_DIR/$name.server" >&2; lab_fail "$name: server failed"; }
  fi
  echo "$name: $(cat "$LAB_DIR/$name.client"); $(cat "$LAB_DIR/$name.server")"
  # The flow must go away (TIME_WAIT 300 ms, RST linger the same).
  lab_wait_for 10 "$name: flows_active back to 0 after close" no_flows
}

scenario halfclose
scenario simclose
scenario reset
rst=$(( $(lab_counter rst_teardown) + $(lab_counter rst_in_window) ))
[ "$rst" -ge 1 ] || lab_fail "the client's RST was not tracked"

# Simultaneous open: hold the client's pure SYN back in its namespace.
lab_c nft -f - <<'NFT'
table inet simopen {
  chain out {
    type filter hook output priority 0;
    tcp sport 40001 tcp flags & (syn | ack) == syn drop
  }
}
NFT
scenario simopen
passthrough=$(lab_counter flows_passthrough)
[ "$passthrough" -ge 1 ] || lab_fail "simultaneous open: moat did not track the backend-opened connection"
lab_moat_stop
echo "PASS: half-close, simultaneous close, reset and simultaneous open"
