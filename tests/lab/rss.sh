#!/usr/bin/env bash
# Two RX queues, two workers: both halves of every flow must land on the
# same worker (net_af_packet qpairs use the kernel's symmetric fanout hash;
# NICs get the symmetric 0x6d5a Toeplitz key). Both workers get flows, and
# no worker ever sees a server-side segment for a flow it does not own
# (drop_no_flow_server stays 0) while every request succeeds.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init lq
trap lab_down EXIT
lab_up moat
lab_nginx
LAB_QUEUES=2 lab_moat_start

ok=$(seq 1 200 | xargs -P 8 -I{} ip netns exec "$LAB_C" curl -s -o /dev/null -m 5 -w '%{http_code}\n' "http://$LAB_SERVER4/" | grep -c '^200$' || true)
ok6=$(seq 1 100 | xargs -P 8 -I{} ip netns exec "$LAB_C" curl -s -o /dev/null -m 5 -w '%{http_code}\n' "http://[$LAB_SERVER6]/" | grep -c '^200$' || true)
[ "$ok" -eq 200 ] && [ "$ok6" -eq 100 ] || lab_fail "requests: $ok/200 IPv4, $ok6/100 IPv6"
for w in 0 1; do
  f=$(lab_counter flows_created $w)
  ns=$(lab_counter drop_no_flow_server $w)
  nc=$(lab_counter drop_no_flow_client $w)
  inv=$(lab_counter cookie_invalid $w)
  echo "worker $w: flows_created=$f drop_no_flow_server=$ns drop_no_flow_client=$nc cookie_invalid=$inv"
  [ "$f" -gt 0 ] || lab_fail "worker $w got no flows: the queues are not both used"
  [ "$ns" -eq 0 ] && [ "$nc" -eq 0 ] && [ "$inv" -eq 0 ] || lab_fail "worker $w saw segments of flows it does not own"
done
lab_moat_stop
echo "PASS: 300 requests over 2 workers, every flow on one worker"
