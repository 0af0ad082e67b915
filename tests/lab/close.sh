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

scenario() {
  local name=$1
  lab_s timeout 30 /usr/bin/python3 "$here/close_peer.py" server "$name" >"$LAB_DIR/$name.server" 2>&1 &
  local srv=$!
  sleep 0.3
  lab_c timeout 30 /usr/bin/python3 "$here/close_peer.py" client "$name" >"$LAB_DIR/$name.client" 2>&1 ||
    { cat "$LAB_DIR/$name.client" "$LAB_DIR/$name.server" >&2; lab_fail "$name: client failed"; }
  wait $srv || { cat "$LAB_DIR/$name.server" >&2; lab_fail "$name: server failed"; }
  echo "$name: $(cat "$LAB_DIR/$name.client"); $(cat "$LAB_DIR/$name.server")"
  # The flow must go away (TIME_WAIT 300 ms, RST linger the same).
  local i active=1
  for i in $(seq 1 40); do
    active=$(lab_counter flows_active)
    [ "$active" -eq 0 ] && break
    sleep 0.1
  done
  [ "$active" -eq 0 ] || lab_fail "$name: flows_active=$active after close"
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
