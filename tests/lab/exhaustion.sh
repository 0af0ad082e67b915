#!/usr/bin/env bash
# Lab test (hardening): resource exhaustion.
#
# 1. An attacker that completes handshakes (valid cookies, from many
#    addresses) fills the flow table: moat holds exactly --flow_capacity
#    flows, refuses the rest with a RST to the client and
#    drop_flow_table_full, and an established keep-alive connection keeps
#    being served throughout; moat's memory does not grow.
# 2. An ACK flood with guessed cookies at full rate creates no state and
#    draws no replies (cookie_invalid only).
# 3. A flood from the backend side for flows moat does not know is dropped
#    and counted (drop_no_flow_server), without state.
# 4. When the attacker goes quiet its flows expire (--idle_timeout_s) and
#    new clients are served again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init le
trap lab_down EXIT
lab_up moat
lab_nginx
# The attacker's addresses (198.18.8.0/21) route back to the client
# namespace, as they would to a real attacker's network.
ip -n "$LAB_S" route add 198.18.8.0/21 via "$LAB_CLIENT4"
mac=$(ip -n "$LAB_S" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1])['$1'])" "$2"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$LAB_MOAT_PID/status"; }

CAP=512
EXTRA=300
IDLE=8
lab_moat_start --flow_capacity=$CAP --idle_timeout_s=$IDLE

# The start-up memory plan (issue 11 item 8): hugepages, the flow table
# sized for exactly --flow_capacity, a total.
grep -q "^moat: memory plan (from hugepages " "$LAB_DIR/moat.log" ||
  lab_fail "no memory plan from hugepages in moat's start-up log"
grep -Eq "^  flow table +[0-9.]+ [KM]iB  $CAP flows$" "$LAB_DIR/moat.log" ||
  lab_fail "the memory plan does not size the flow table for $CAP flows"
grep -Eq "^  total +[0-9.]+ MiB$" "$LAB_DIR/moat.log" || lab_fail "the memory plan has no total"
sed -n '/^moat: memory plan/,/^  total/p' "$LAB_DIR/moat.log"

# A legitimate client with one connection, a request every 0.5 s.
lab_c /usr/bin/python3 "$here/keepalive.py" "$LAB_SERVER4" 20 0.5 >"$LAB_DIR/keepalive.json" &
ka=$!
lab_wait_for 10 "the keep-alive client's flow" lab_counter_ge flows_active 1
rss0=$(rss_kb)

# --- 1. valid-cookie ACKs until the table is full ----------------------------
# The keep-alive flow holds one slot, so EXTRA + 1 attackers are refused.
out=$(lab_c /usr/bin/python3 "$here/exhaust.py" "$mac" $((CAP + EXTRA)) $((EXTRA + 1)))
echo "attacker: $out"
active=$(lab_counter flows_active)
full=$(lab_counter drop_flow_table_full)
# scapy may miss a few SYN-ACKs or RSTs on a busy machine, so the checks
# are on moat's own counters, with the attacker's view as a cross-check.
[ "$active" -eq $CAP ] || lab_fail "flows_active=$active with the table full, expected $CAP"
[ "$full" -ge $((EXTRA / 2)) ] || lab_fail "drop_flow_table_full=$full, expected about $EXTRA"
reset=$(field reset "$out")
[ $((reset * 10)) -ge $((full * 9)) ] || lab_fail "only $reset of $full refused attackers saw a RST"
# A new client is refused promptly too (RST, not a hang).
start=$(date +%s%N)
rc=0
lab_c curl -s -o /dev/null -m 5 "http://$LAB_SERVER4/" || rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
# (curl 7, 55 or 56: refused, or reset while sending or receiving.)
[ $rc -eq 7 ] || [ $rc -eq 55 ] || [ $rc -eq 56 ] || lab_fail "new client with the table full: curl exit $rc after $ms ms"
[ $ms -lt 2000 ] || lab_fail "the refusal took $ms ms"
rss1=$(rss_kb)
echo "table full: flows_active=$active drop_flow_table_full=$full, $reset attackers reset; new client refused in $ms ms; RSS $rss0 -> $rss1 kB"
[ $((rss1 - rss0)) -lt 2048 ] || lab_fail "RSS grew by $((rss1 - rss0)) kB under exhaustion"

# --- 2. guessed-cookie ACK flood: no state, no replies -----------------------
# From here on the attack flows may start to idle out (--idle_timeout_s;
# on a slow machine that happens while the flood runs), so "no state" is
# checked on flows_created, which only ever grows, and "no RSTs" on the
# RSTs the flood caused: moat's client RSTs come from idle expiry of a
# known flow (one per idle_rst_sent), a backend that refused or never
# answered (backend_refused, backend_timeout) and a full table
# (drop_flow_table_full); whatever client_rst_sent grew by beyond those
# the invalid ACKs drew (stats.h, engine.cc).
rst_causes() {  # prints "client_rst_sent sum-of-the-other-causes"
  lab_stats | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["client_rst_sent"], sum(d[k] for k in ("idle_rst_sent", "backend_refused", "backend_timeout", "drop_flow_table_full")))'
}
created0=$(lab_counter flows_created)
synack0=$(lab_counter synack_sent)
read -r rst0 other0 < <(rst_causes)
expired0=$(lab_counter flows_expired)
inv0=$(lab_counter cookie_invalid)
lab_c timeout 5 hping3 -q -A --rand-source -p 80 -c 200000 -i u5 "$LAB_SERVER4" >/dev/null 2>&1 || true
inv1=$(lab_counter cookie_invalid)
read -r rst1 other1 < <(rst_causes)
expired1=$(lab_counter flows_expired)
[ "$(lab_counter flows_created)" -eq "$created0" ] || lab_fail "the invalid-ACK flood created flows"
[ "$(lab_counter synack_sent)" -eq "$synack0" ] || lab_fail "the invalid-ACK flood drew SYN-ACKs"
drawn=$(( (rst1 - rst0) - (other1 - other0) ))
[ "$drawn" -le 0 ] ||
  lab_fail "the invalid-ACK flood drew $drawn RSTs (client_rst_sent +$((rst1 - rst0)), of which idle expiry and refusals explain $((other1 - other0)))"
[ $((inv1 - inv0)) -ge 1000 ] || lab_fail "cookie_invalid grew by $((inv1 - inv0)) only"
echo "invalid-ACK flood: $((inv1 - inv0)) dropped as cookie_invalid, no state, no replies (meanwhile $((expired1 - expired0)) attack flows idled out; client_rst_sent +$((rst1 - rst0)), all from idle expiry)"

# --- 3. backend-side flood for unknown flows --------------------------------
nf0=$(lab_counter drop_no_flow_server)
lab_s timeout 5 hping3 -q -I eth0 -A -s 80 -k -p 40000 -c 100000 -i u10 --rand-dest 198.18.9.x \
  >/dev/null 2>&1 || true
nf1=$(lab_counter drop_no_flow_server)
[ $((nf1 - nf0)) -ge 1000 ] || lab_fail "drop_no_flow_server grew by $((nf1 - nf0)) only"
[ "$(lab_counter flows_created)" -eq "$created0" ] || lab_fail "the backend-side flood created flows"
[ "$(lab_counter flows_passthrough)" -eq 0 ] || lab_fail "the backend-side flood created passthrough flows"
echo "backend-side flood: $((nf1 - nf0)) dropped as drop_no_flow_server, no state"

# The legitimate keep-alive connection was served through all of it.
wait $ka
ka_out=$(cat "$LAB_DIR/keepalive.json")
[ "$(field failed "$ka_out")" -eq 0 ] && [ "$(field ok "$ka_out")" -ge 20 ] ||
  lab_fail "the established client during the attack: $ka_out"
echo "established client during the attack: $ka_out"

# --- 4. recovery --------------------------------------------------------------
flows_below_cap() { [ "$(lab_counter flows_active)" -lt $CAP ]; }
lab_wait_for $((IDLE * 3)) "the attack flows to expire" flows_below_cap
code=$(lab_curl "http://$LAB_SERVER4/")
[ "$code" = 200 ] || lab_fail "after the attack: curl got $code"
expired=$(lab_counter flows_expired)
rss2=$(rss_kb)
[ $((rss2 - rss0)) -lt 2048 ] || lab_fail "RSS grew by $((rss2 - rss0)) kB"
echo "recovered: $expired attack flows expired, new client served; RSS $rss0 -> $rss2 kB"
lab_moat_stop
echo "PASS"
