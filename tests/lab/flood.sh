#!/usr/bin/env bash
# Lab test 2: a random-source SYN flood (hping3, as fast as this machine
# makes it, bounded in time) while legitimate clients connect.
#  - through moat: >= 99% of legitimate requests succeed and the backend
#    never holds a SYN-RECV entry (moat answers every SYN statelessly);
#  - control, same flood through a plain Linux bridge to a backend with
#    SYN cookies off and a small backlog: the backend's SYN queue fills.
# Prints the flood rate, legit success and half-open maxima for both.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init lf
trap lab_down EXIT
FLOOD_SECS=${FLOOD_SECS:-8}

# run_phase LABEL ARRIVED: flood + legit clients + SYN-RECV sampling; sets
# legit_ok, legit_total, synrecv_max. The clients start once ARRIVED (a
# command) says the flood reaches the protector.
run_phase() {
  local label=$1 arrived=$2
  echo 0 >"$LAB_DIR/synrecv.max"
  ( max=0
    end=$((SECONDS + FLOOD_SECS + 2))
    while [ $SECONDS -lt $end ]; do
      # Half-open entries from flood sources. The legitimate client's own
      # handshakes pass through SYN-RECV for the moment between the
      # backend's SYN-ACK and moat's third ACK; those are not half-open.
      n=$(ip netns exec "$LAB_S" ss -Htan state syn-recv 2>/dev/null | grep -vc " $LAB_CLIENT4:" || true)
      [ "$n" -gt "$max" ] && max=$n && echo "$max" >"$LAB_DIR/synrecv.max"
      sleep 0.1
    done ) &
  local sampler=$!
  timeout "$FLOOD_SECS" ip netns exec "$LAB_C" hping3 -q -S -p 80 --flood --rand-source "$LAB_SERVER4" >/dev/null 2>&1 &
  local flood=$!
  lab_wait_for 5 "$label: the flood to arrive" "$arrived"
  legit_total=100
  legit_ok=$(seq 1 $legit_total | xargs -P 4 -I{} ip netns exec "$LAB_C" curl -s -o /dev/null -m 5 -w '%{http_code}\n' "http://$LAB_SERVER4/" | grep -c '^200$' || true)
  wait $flood || true
  wait $sampler || true
  synrecv_max=$(cat "$LAB_DIR/synrecv.max")
  echo "$label: legit $legit_ok/$legit_total, backend SYN-RECV max $synrecv_max"
}

# --- through moat ---
lab_up moat
lab_nginx 16
lab_moat_start
syn0=$(lab_counter syn_received)
t0=$SECONDS
moat_flooded() { lab_counter_ge syn_received $((syn0 + 1000)); }
run_phase "moat" moat_flooded
syn1=$(lab_counter syn_received)
rate=$(( (syn1 - syn0) / (SECONDS - t0 > 0 ? SECONDS - t0 : 1) ))
synack=$(lab_counter synack_sent)
echo "moat: flood of $((syn1 - syn0)) SYNs (~$rate/s), SYN-ACKs sent $synack, cookie_valid $(lab_counter cookie_valid)"
moat_ok=$legit_ok moat_max=$synrecv_max
lab_moat_stop
lab_down_links

# --- control: plain bridge, backend without SYN cookies, small backlog ---
lab_up bridge
lab_s sysctl -qw net.ipv4.tcp_syncookies=0 net.ipv4.tcp_max_syn_backlog=16
lab_nginx 16
backend_flooded() { [ -n "$(ip netns exec "$LAB_S" ss -Htn state syn-recv 2>/dev/null)" ]; }
run_phase "control (bridge, no cookies, backlog 16)" backend_flooded
ctl_ok=$legit_ok ctl_max=$synrecv_max

[ "$moat_ok" -ge 99 ] || lab_fail "through moat only $moat_ok/100 legitimate requests succeeded"
[ "$moat_max" -eq 0 ] || lab_fail "backend held $moat_max SYN-RECV entries behind moat"
[ "$ctl_max" -ge 8 ] || lab_fail "control: backend SYN-RECV max only $ctl_max; the flood did not fill it (control broken)"
echo "PASS: moat legit $moat_ok/100 half-open 0; control legit $ctl_ok/100 half-open max $ctl_max; flood ~$rate SYN/s"
