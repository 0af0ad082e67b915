#!/usr/bin/env bash
# Lab test: anti-reflection. A single-source spoofed SYN flood (hping3 -a
# 198.18.7.5 --flood, bounded by timeout) through moat with
# --synack_rate=N draws at most about N SYN-ACKs a second towards
# 198.18.7.0/24, while the lab client 198.18.0.1 (another /24) is served
# 100% by a paced curl loop during the flood.
#  - moat's counters: synack_sent minus the legit client's handshakes, and
#    drop_synack_rate, over the flood;
#  - cross-check: tcpdump in the client namespace counts the SYN-ACKs for
#    198.18.7.0/24 (they are bridged back there and dropped: nothing
#    leaves the lab);
#  - the flood must be well above N (else the test proves nothing);
#  - --deny: the same flood with 198.18.7.0/24 denied draws no SYN-ACK at
#    all (drop_denied), and --allow exempts it from the limit.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init lr
trap lab_down EXIT
N=${SYNACK_RATE:-200}
FLOOD_SECS=${FLOOD_SECS:-6}
SPOOF=198.18.7.5

# wait_for WHAT SECONDS CMD...: CMD until it succeeds, or fail at the deadline.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || lab_fail "$what: not within ${secs}s"
    sleep 0.1
  done
}
c() { lab_counter "$1"; }

# flood_phase LABEL: spoofed flood + paced legit curls + capture. Sets
# d_syn d_synack d_limited d_denied legit_ok legit_total captured secs cap_secs.
flood_phase() {
  local label=$1
  rm -f "$LAB_DIR/cap.pcap" "$LAB_DIR/cap.log"
  # SYN-ACKs towards the flooded /24 as they arrive in the client namespace.
  ip netns exec "$LAB_C" timeout $((FLOOD_SECS + 15)) tcpdump -i eth0 -nn -U -w "$LAB_DIR/cap.pcap" \
    "src host $LAB_SERVER4 and dst net 198.18.7.0/24 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)" \
    2>"$LAB_DIR/cap.log" &
  local dump=$!
  wait_for "tcpdump listening" 10 grep -q "listening on" "$LAB_DIR/cap.log"
  local syn0 synack0 lim0 den0 valid0
  syn0=$(c syn_received) synack0=$(c synack_sent) lim0=$(c drop_synack_rate)
  den0=$(c drop_denied) valid0=$(c cookie_valid)
  local t0=$SECONDS
  timeout "$FLOOD_SECS" ip netns exec "$LAB_C" hping3 -q -S -a "$SPOOF" -p 80 --flood "$LAB_SERVER4" \
    >/dev/null 2>&1 &
  local flood=$!
  # Legit requests from 198.18.0.1, paced well under N a second so the
  # client's own /24 never reaches the limit; bounded in count and time.
  legit_total=0 legit_ok=0
  while kill -0 "$flood" 2>/dev/null && [ $legit_total -lt 400 ]; do
    legit_total=$((legit_total + 1))
    [ "$(lab_curl "http://$LAB_SERVER4/")" = 200 ] && legit_ok=$((legit_ok + 1))
    sleep 0.02
  done
  wait "$flood" || true
  secs=$((SECONDS - t0))
  [ "$secs" -ge 1 ] || secs=1
  # The counters settle once the rings are drained: wait until two reads agree.
  local prev=-1 cur
  for _ in $(seq 1 50); do
    cur=$(c syn_received)
    [ "$cur" = "$prev" ] && break
    prev=$cur
    sleep 0.1
  done
  d_syn=$(($(c syn_received) - syn0))
  d_synack=$(($(c synack_sent) - synack0))
  d_limited=$(($(c drop_synack_rate) - lim0))
  d_denied=$(($(c drop_denied) - den0))
  local legit_handshakes=$(($(c cookie_valid) - valid0))
  # SYN-ACKs that went to the spoofed /24: all of them minus the legit
  # client's (one per completed handshake, plus any SYN it retransmitted,
  # which would only make this estimate high).
  d_flood_synack=$((d_synack - legit_handshakes))
  # The capture also saw the SYN cache's retransmissions, which go on
  # (rate limited too) for up to 3 s after the flood: its own window.
  cap_secs=$((SECONDS - t0))
  kill "$dump" 2>/dev/null || true
  wait "$dump" 2>/dev/null || true
  captured=$(tcpdump -r "$LAB_DIR/cap.pcap" -nn 2>/dev/null | wc -l)
  echo "$label: flood ${d_syn} SYNs in ${secs}s (~$((d_syn / secs))/s); SYN-ACKs to 198.18.7.0/24:" \
    "$d_flood_synack by counters (~$((d_flood_synack / secs))/s), $captured captured;" \
    "drop_synack_rate $d_limited, drop_denied $d_denied; legit $legit_ok/$legit_total"
}

lab_up moat
lab_nginx
# The limit comes from a flagfile, so that phases 2 and 3 can reload it.
echo "--synack_rate=$N" >"$LAB_DIR/moat.flags"
lab_moat_start --flagfile="$LAB_DIR/moat.flags"

# --- 1. the limit ---
flood_phase "limit N=$N"
{ [ "$legit_ok" -eq "$legit_total" ] && [ "$legit_total" -ge 20 ]; } ||
  lab_fail "legit client served $legit_ok/$legit_total during the flood (expected all, >= 20)"
[ "$d_syn" -ge $((4 * N * secs)) ] ||
  lab_fail "flood only $d_syn SYNs in ${secs}s: not enough above N=$N to test the limit"
# A burst of N at the start, then N a second (the flood's own start-up
# and timeout slack: one extra second).
max=$((N * (secs + 2)))
[ "$d_flood_synack" -le "$max" ] ||
  lab_fail "$d_flood_synack SYN-ACKs towards the flooded /24 in ${secs}s, limit $N/s allows $max"
max_cap=$((N * (cap_secs + 2)))
[ "$captured" -le "$max_cap" ] ||
  lab_fail "tcpdump saw $captured SYN-ACKs towards 198.18.7.0/24 in ${cap_secs}s, limit allows $max_cap"
[ "$d_flood_synack" -ge $((N * (secs - 2))) ] ||
  lab_fail "only $d_flood_synack SYN-ACKs towards the flooded /24: the limit is much tighter than N=$N"
[ "$d_limited" -ge $((d_syn - max)) ] || lab_fail "drop_synack_rate=$d_limited does not account for the excess"
limit_rate=$((d_flood_synack / secs)) limit_legit="$legit_ok/$legit_total" limit_flood=$((d_syn / secs))

# --- 2. deny: reloaded in, the spoofed /24 gets nothing ---
echo "--synack_rate=$N" >"$LAB_DIR/moat.flags"
echo "--deny=198.18.7.0/24" >>"$LAB_DIR/moat.flags"
kill -HUP "$LAB_MOAT_PID"
wait_for "reload with --deny applied" 10 test "$(c config_generation_applied)" -ge 2
flood_phase "deny"
[ "$legit_ok" -eq "$legit_total" ] || lab_fail "legit client served $legit_ok/$legit_total under --deny"
{ [ "$d_flood_synack" -le 0 ] && [ "$captured" -eq 0 ]; } ||
  lab_fail "--deny: $d_flood_synack SYN-ACKs ($captured captured) went to the denied /24"
[ "$d_denied" -ge $((d_syn - legit_total - 5)) ] || lab_fail "drop_denied=$d_denied of $d_syn SYNs"

# --- 3. allow: exempt from the limit ---
echo "--synack_rate=$N" >"$LAB_DIR/moat.flags"
echo "--allow=198.18.7.0/24" >>"$LAB_DIR/moat.flags"
kill -HUP "$LAB_MOAT_PID"
wait_for "reload with --allow applied" 10 test "$(c config_generation_applied)" -ge 3
flood_phase "allow"
[ "$d_limited" -eq 0 ] || lab_fail "--allow: $d_limited SYNs of the allowed /24 were limited"
[ "$d_flood_synack" -gt "$max" ] || lab_fail "--allow: only $d_flood_synack SYN-ACKs; the limit still applied"

lab_moat_stop
echo "PASS: N=$N/s: ~$limit_rate SYN-ACKs/s towards the flooded /24 (flood ~$limit_flood SYN/s), legit $limit_legit; deny 0; allow unlimited"
