#!/usr/bin/env bash
# Lab test 5: the backend has no listener on a protected port. moat has
# already answered the client's SYN (cookie), so it must relay the
# backend's refusal: the client gets a RST promptly ("Connection refused"),
# not a hang until its own timeout.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init lr
trap lab_down EXIT
lab_up moat
lab_moat_start

for url in "http://$LAB_SERVER4:81/" "http://[$LAB_SERVER6]:81/"; do
  start=$(date +%s%N)
  rc=0
  lab_c curl -s -o /dev/null -m 10 "$url" || rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  # curl: 7 = could not connect (refused), 55 = connection reset while
  # sending the request, 56 = reset while receiving: each means the RST
  # arrived; which one depends only on when it overtakes curl (moat has
  # answered the SYN itself, so curl is connected by then).
  [ $rc -eq 7 ] || [ $rc -eq 55 ] || [ $rc -eq 56 ] || lab_fail "$url: curl exit $rc after $ms ms, expected a refusal"
  [ $ms -lt 2000 ] || lab_fail "$url: refusal took $ms ms"
  echo "$url: refused after $ms ms (curl exit $rc)"
done
refused=$(lab_counter backend_refused)
rst=$(lab_counter client_rst_sent)
active=$(lab_counter flows_active)
[ "$refused" -ge 2 ] || lab_fail "backend_refused=$refused, expected >= 2"
[ "$rst" -ge 2 ] || lab_fail "client_rst_sent=$rst, expected >= 2"
[ "$active" -eq 0 ] || lab_fail "flows_active=$active after refusals, expected 0"
lab_moat_stop
echo "PASS: backend_refused=$refused client_rst_sent=$rst"
