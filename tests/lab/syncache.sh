#!/usr/bin/env bash
# Lab test: the adaptive SYN cache (include/moat/proxy/syn_cache.h).
#  1. calm: a scapy client's SYN with MSS 1337, window scale 3, SACK, no
#     timestamps and ECE+CWR reaches the backend (captured in the server
#     namespace) with exactly those options, and only after the client's
#     third ACK; an uncompleted SYN gets its SYN-ACK again after 1 s and 3 s;
#  2. flood (hping3 --flood --rand-source, bounded by timeout) while curl
#     clients connect: >= 99.9% succeed, the backend never holds a SYN-RECV
#     entry, moat's RSS stays flat and the worker switches to cookie-only
#     mode (counter, gauge, log line);
#  3. calm again: the worker switches back and the odd client's options are
#     exact again.
# The client namespace's kernel would reset the handshakes scapy makes, so
# its RSTs from the scapy ports are dropped there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lsc
trap lab_down EXIT
FLOOD_SECS=${FLOOD_SECS:-12}
LEGIT=${LEGIT:-1000}

lab_up moat
lab_nginx 511
lab_c nft -f - <<'NFT'
table inet norst {
  chain out {
    type filter hook output priority 0;
    tcp sport 30000-30999 tcp flags rst drop
  }
}
NFT
lab_c sysctl -qw net.ipv4.ip_local_port_range="40000 60999"
mac=$(ip -n "$LAB_S" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
sc() { lab_c /usr/bin/python3 "$here/syncache.py" "$@"; }
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1]).get('$1'))" "$2"; }
lab_moat_start --stats_period=0
grep -q "SYN cache 4096 entries" "$LAB_DIR/moat.log" || lab_fail "no SYN-cache line in the start-up plan"

# exact_phase LABEL PORT: the odd client through moat, checked in a capture.
exact_phase() {
  local label=$1 port=$2 pcap=$LAB_DIR/$2.pcap json=$LAB_DIR/$2.json out res i
  # Not through lab_s: $! must be tcpdump itself (ip netns exec execs it).
  ip netns exec "$LAB_S" tcpdump -i eth0 -U -n -w "$pcap" "tcp port 80 and host $LAB_CLIENT4" 2>"$LAB_DIR/tcpdump.$port" &
  local td=$!
  for i in $(seq 1 50); do grep -q "listening on" "$LAB_DIR/tcpdump.$port" && break; sleep 0.1; done
  out=$(sc exact "$mac" "$port" "$json")
  sleep 0.5
  kill -INT $td 2>/dev/null || true
  wait $td 2>/dev/null || true
  echo "$label: client saw $out"
  [ "$(field answered "$out")" = True ] || lab_fail "$label: the backend did not answer the odd client"
  [ "$(field synack_flags "$out")" = SAE ] || lab_fail "$label: SYN-ACK flags $(field synack_flags "$out"), want SAE (ECN agreed)"
  [ "$(field synack_wscale "$out")" = 0 ] || lab_fail "$label: SYN-ACK window scale $(field synack_wscale "$out"), want 0 (syn_answer.cc)"
  res=$(lab_c /usr/bin/python3 "$here/syncache.py" check "$pcap" "$json")
  echo "$label: backend saw $res"
  [ "$(field exact "$res")" = True ] || lab_fail "$label: the backend SYN did not carry the client's exact options"
  [ "$(field backend_syns "$res")" = 1 ] || lab_fail "$label: $(field backend_syns "$res") backend SYNs"
}

# --- 1. calm ---
exact_phase "calm" 30001
[ "$(lab_counter syn_cache_hit)" -ge 1 ] || lab_fail "no syn_cache_hit"
[ "$(lab_counter syn_cache_cookie_mode)" -eq 0 ] || lab_fail "calm, yet in cookie-only mode"
rt=$(sc retransmit "$mac" 30002)
echo "calm: uncompleted SYN, SYN-ACKs at $rt"
/usr/bin/python3 - "$rt" <<'PY' || lab_fail "SYN-ACK retransmissions not at ~0, ~1 and ~3 s: $rt"
import json, sys
r = json.loads(sys.argv[1])
t = r["synacks"]
# One ISN, or two when a 60 s cookie slot ended in between.
ok = (len(t) == 3 and t[0] < 0.5 and 0.9 <= t[1] <= 1.6 and 2.9 <= t[2] <= 3.6 and r["isns"] <= 2)
sys.exit(0 if ok else 1)
PY
[ "$(lab_counter synack_retransmit)" -ge 2 ] || lab_fail "synack_retransmit below 2"

# --- 2. flood ---
pid=$LAB_MOAT_PID
rss0=$(ps -o rss= -p "$pid" | tr -d ' ')
echo 0 >"$LAB_DIR/synrecv.max"
echo 0 >"$LAB_DIR/mode.max"
( max=0 mode=0
  end=$((SECONDS + FLOOD_SECS + 2))
  while [ $SECONDS -lt $end ]; do
    # Half-open entries from flood sources (the legitimate client's own
    # handshakes pass through SYN-RECV for the moment between the
    # backend's SYN-ACK and moat's third ACK; those are not half-open).
    n=$(lab_s ss -Htan state syn-recv 2>/dev/null | grep -vc " $LAB_CLIENT4:" || true)
    [ "$n" -gt "$max" ] && max=$n && echo "$max" >"$LAB_DIR/synrecv.max"
    m=$(lab_counter syn_cache_cookie_mode 2>/dev/null || echo 0)
    [ "$m" -gt "$mode" ] && mode=$m && echo "$mode" >"$LAB_DIR/mode.max"
    sleep 0.2
  done ) &
sampler=$!
syn0=$(lab_counter syn_received)
t0=$SECONDS
timeout "$FLOOD_SECS" ip netns exec "$LAB_C" hping3 -q -S -p 80 --flood --rand-source "$LAB_SERVER4" >/dev/null 2>&1 &
flood=$!
sleep 1
# Legitimate clients, bounded: each curl gives up after 5 s, and the whole
# set after the flood plus 60 s.
legit_ok=$(seq 1 "$LEGIT" | timeout $((FLOOD_SECS + 60)) xargs -P 4 -I{} ip netns exec "$LAB_C" curl -s -o /dev/null -m 5 -w '%{http_code}\n' "http://$LAB_SERVER4/" | grep -c '^200$' || true)
wait $flood || true
wait $sampler || true
syn1=$(lab_counter syn_received)
rate=$(( (syn1 - syn0) / (SECONDS - t0 > 0 ? SECONDS - t0 : 1) ))
rss1=$(ps -o rss= -p "$pid" | tr -d ' ')
synrecv_max=$(cat "$LAB_DIR/synrecv.max")
mode_max=$(cat "$LAB_DIR/mode.max")
to_cookie=$(lab_counter syn_cache_to_cookie)
echo "flood: $((syn1 - syn0)) SYNs (~$rate/s), legit $legit_ok/$LEGIT, backend SYN-RECV max $synrecv_max, RSS ${rss0} -> ${rss1} KiB, switches to cookies $to_cookie, cookie-only SYNs $(lab_counter syn_cookie_only)"
[ $((legit_ok * 1000)) -ge $((LEGIT * 999)) ] || lab_fail "flood: only $legit_ok/$LEGIT legitimate requests succeeded (< 99.9%)"
[ "$synrecv_max" -eq 0 ] || lab_fail "flood: backend held $synrecv_max SYN-RECV entries behind moat"
[ "$to_cookie" -ge 1 ] || lab_fail "flood: the worker never switched to cookie-only mode"
[ "$mode_max" -eq 1 ] || lab_fail "flood: telemetry never showed syn_cache_cookie_mode=1"
[ $((rss1 - rss0)) -lt 4096 ] || lab_fail "flood: moat's RSS grew by $((rss1 - rss0)) KiB"
grep -q "answering with cookies only" "$LAB_DIR/moat.log" || lab_fail "flood: the mode change was not logged"

# --- 3. calm again: entries expire (7 s), then a calm second ---
for _ in $(seq 1 150); do
  [ "$(lab_counter syn_cache_cookie_mode)" -eq 0 ] && break
  sleep 0.1
done
[ "$(lab_counter syn_cache_cookie_mode)" -eq 0 ] || lab_fail "still in cookie-only mode 15 s after the flood"
[ "$(lab_counter syn_cache_to_cache)" -ge 1 ] || lab_fail "no switch back counted"
for _ in $(seq 1 50); do grep -q "calm: SYN cache on again" "$LAB_DIR/moat.log" && break; sleep 0.1; done
grep -q "calm: SYN cache on again" "$LAB_DIR/moat.log" || lab_fail "the switch back was not logged"
exact_phase "calm again" 30003
lab_moat_stop
grep "SYN flood\|SYN cache on again" "$LAB_DIR/moat.log" | head -4
echo "PASS: exact options calm and after the flood; flood ~$rate SYN/s: legit $legit_ok/$LEGIT, half-open 0, RSS +$((rss1 - rss0)) KiB, $to_cookie switch(es) to cookies and back"
