#!/usr/bin/env bash
# The lab's choice of PMD (scripts/lib/lab.sh): net_af_xdp where the kernel
# lets it pass frames, net_af_packet otherwise, and never a hang.
#  1. auto on a healthy lab picks what the probe finds and serves HTTP.
#  2. auto when net_af_xdp cannot attach (the namespace ends' MTU is too
#     large for XDP on their root-side peers, as veth refuses a program
#     without multi-buffer support then) falls back to net_af_packet,
#     leaves no XDP program behind, and serves.
#  3. auto when moat starts on net_af_xdp but the probe's ping is lost
#     (here: dropped in the client namespace) falls back too.
#  4. auto when moat hangs on net_af_xdp (a wrapper that never starts it)
#     gives up after 10 s and falls back.
#  5. LAB_PMD=af_xdp where it cannot work is a clear failure, not a
#     fallback; LAB_PMD=af_packet is used as asked.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init ld
trap lab_down EXIT
real_moat=$LAB_MOAT

serve() {  # serve WHAT: one HTTP request through moat must succeed
  [ "$(lab_curl "http://$LAB_SERVER4/")" = 200 ] || lab_fail "$1: no HTTP through moat on net_$LAB_PMD_USED"
}
driver_is() {  # driver_is PMD: moat's log names the driver of both ports
  [ "$(grep -c "port [01] (net_$1[01], net_$1)" "$LAB_DIR/moat.log")" -eq 2 ]
}
no_xdp_left() {
  ! ip link show "$LAB_CIF" | grep -q "prog/xdp" && ! ip link show "$LAB_SIF" | grep -q "prog/xdp"
}
fresh() {  # a new lab, and a new probe
  lab_moat_stop
  lab_down_links
  lab_up moat
  lab_nginx
  LAB_PMD_PROBED=""
}

lab_up moat
lab_nginx

# --- 1. auto, healthy ----------------------------------------------------------
LAB_PMD=auto
lab_moat_start
driver_is "$LAB_PMD_USED" || lab_fail "auto: LAB_PMD_USED=$LAB_PMD_USED but moat's ports say otherwise"
serve "auto"
echo "auto: net_$LAB_PMD_USED"
healthy=$LAB_PMD_USED

# --- 2. auto, XDP cannot attach ------------------------------------------------
big_peer_mtu() {
  ip -n "$LAB_C" link set dev eth0 mtu 9000
  ip -n "$LAB_S" link set dev eth0 mtu 9000
}
fresh
big_peer_mtu
lab_moat_start 2>"$LAB_DIR/start.err"
cat "$LAB_DIR/start.err" >&2
[ "$LAB_PMD_USED" = af_packet ] || lab_fail "peer MTU 9000: auto chose net_$LAB_PMD_USED"
grep -q "falling back to net_af_packet" "$LAB_DIR/start.err" || [ "$healthy" = af_packet ] ||
  lab_fail "peer MTU 9000: the fallback was not reported"
driver_is af_packet || lab_fail "peer MTU 9000: moat's ports are not net_af_packet"
no_xdp_left || lab_fail "peer MTU 9000: an XDP program was left on the veths"
serve "fallback after a failed attach"
echo "auto with XDP unable to attach: fell back to net_af_packet and served"

# --- 3. auto, frames do not pass ----------------------------------------------
fresh
lab_c nft -f - <<'NFT'
table inet noping {
  chain out {
    type filter hook output priority 0;
    icmp type echo-request drop
  }
}
NFT
lab_moat_start 2>"$LAB_DIR/start.err"
cat "$LAB_DIR/start.err" >&2
[ "$LAB_PMD_USED" = af_packet ] || lab_fail "lost ping: auto chose net_$LAB_PMD_USED"
grep -q "a ping through moat got no answer" "$LAB_DIR/start.err" || lab_fail "lost ping: the reason was not reported"
no_xdp_left || lab_fail "lost ping: an XDP program was left on the veths"
serve "fallback after a lost ping"
echo "auto with the probe's ping lost: fell back to net_af_packet and served"

# --- 4. auto, moat hangs on af_xdp ---------------------------------------------
fresh
cat >"$LAB_DIR/hang-on-xdp" <<EOF
#!/bin/sh
case "\$*" in *net_af_xdp*) exec sleep 61.5 ;; esac
exec "$real_moat" "\$@"
EOF
chmod 755 "$LAB_DIR/hang-on-xdp"
LAB_MOAT=$LAB_DIR/hang-on-xdp
t0=$SECONDS
lab_moat_start 2>"$LAB_DIR/start.err"
took=$((SECONDS - t0))
cat "$LAB_DIR/start.err" >&2
[ "$LAB_PMD_USED" = af_packet ] || lab_fail "hang: auto chose net_$LAB_PMD_USED"
[ $took -le 20 ] || lab_fail "hang: start-up took $took s"
! pgrep -fx "sleep 61.5" >/dev/null || lab_fail "hang: the hung start was left running"
serve "fallback after a hang"
echo "auto with moat hanging on net_af_xdp: gave up after $took s, fell back, served"
LAB_MOAT=$real_moat

# --- 5. forced ----------------------------------------------------------------
fresh
big_peer_mtu
rc=0
( LAB_PMD=af_xdp; lab_moat_start ) 2>"$LAB_DIR/forced.err" || rc=$?
[ $rc -ne 0 ] || lab_fail "LAB_PMD=af_xdp on MTU 9000 veths: moat started"
grep -q "LAB_PMD=af_xdp: " "$LAB_DIR/forced.err" || { cat "$LAB_DIR/forced.err" >&2; lab_fail "LAB_PMD=af_xdp: no reason given"; }
echo "forced af_xdp where it cannot work: $(grep -m1 "LAB_PMD=af_xdp: " "$LAB_DIR/forced.err")"
fresh
LAB_PMD=af_packet
lab_moat_start
driver_is af_packet || lab_fail "LAB_PMD=af_packet: moat's ports are not net_af_packet"
serve "forced af_packet"
lab_moat_stop
echo "PASS: auto picked net_$healthy here; fallbacks on a failed attach and on a hang; forcing works both ways"
