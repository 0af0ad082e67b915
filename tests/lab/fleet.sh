#!/usr/bin/env bash
# Lab test (hardening): cookies across a fleet and across key rotation.
#
# 1. Fleet: moat A answers SYNs; A stops and moat B, a separate process
#    with the same --cookie_secret_file, takes its place (what an ECMP
#    rehash does to a fleet); the clients' ACKs land on B, which must
#    validate A's cookies and complete every connection to the backend.
#    Control: moat C with another secret refuses the same kind of ACKs
#    (cookie_invalid) and creates no state.
# 2. Rotation: handshakes whose SYN-ACK came before a key rotation and whose
#    ACK comes after it all complete (the previous key stays live), the key
#    id bit of the cookies flips at the boundary, and curl clients running
#    across the boundary all succeed. The rotation period is chosen, when
#    this part starts, so that a boundary falls 20-30 s later (epochs are
#    aligned to wall-clock multiples of the period, which is what lets a
#    fleet agree on them), however long part 1 took.
# 3. The secret file: missing, short, or readable by others is refused with
#    a one-line error that says how to fix it.
#
# The client namespace's kernel would reset the handshakes scapy makes on
# its behalf, so its outgoing RSTs are dropped there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lf
trap lab_down EXIT
lab_up moat
lab_nginx
lab_c nft -f - <<'NFT'
table inet norst {
  chain out {
    type filter hook output priority 0;
    tcp sport 30000-30999 tcp flags rst drop
  }
}
NFT
# The scapy handshakes use ports 30000-30999; keep the kernel's own
# connections (curl) out of that range so no 4-tuple is ever shared.
lab_c sysctl -qw net.ipv4.ip_local_port_range="40000 60999"
mac=$(ip -n "$LAB_S" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
hs() { lab_c /usr/bin/python3 "$here/handshake.py" "$@"; }
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1])['$1'])" "$2"; }
N=20

secret=$LAB_DIR/secret
other=$LAB_DIR/other-secret
head -c 32 /dev/urandom >"$secret"
head -c 32 /dev/urandom >"$other"
chmod 600 "$secret" "$other"

# Part 1 runs with an hour-long rotation period: should a boundary fall
# between a SYN-ACK and its ACK, the previous key still validates it.
flags=(--cookie_secret_file="$secret" --key_rotation_s=3600)

# --- 1. fleet: SYN-ACK from A, ACK into B ----------------------------------
lab_moat_start "${flags[@]}"
out=$(hs syn "$mac" "$LAB_DIR/fleet.json" $N 30000)
[ "$(field synacks "$out")" -eq $N ] || lab_fail "moat A answered $out"
lab_moat_stop
lab_moat_start "${flags[@]}"
out=$(hs ack "$mac" "$LAB_DIR/fleet.json")
[ "$(field answered "$out")" -eq $N ] ||
  lab_fail "moat B completed $out of moat A's handshakes (cookie_valid=$(lab_counter cookie_valid))"
valid=$(lab_counter cookie_valid)
[ "$valid" -eq $N ] || lab_fail "moat B: cookie_valid=$valid, expected $N"
echo "fleet: moat B validated all $N cookies moat A issued; every backend answered"

# Control: a moat with a different secret refuses them and keeps no state.
out=$(hs syn "$mac" "$LAB_DIR/control.json" $N 30100)
lab_moat_stop
lab_moat_start --cookie_secret_file="$other" --key_rotation_s=3600
out=$(hs ack "$mac" "$LAB_DIR/control.json" 2)  # expects no answer: watch for 2 s
[ "$(field answered "$out")" -eq 0 ] || lab_fail "moat C (other secret) completed $out"
invalid=$(lab_counter cookie_invalid)
created=$(lab_counter flows_created)
[ "$invalid" -eq $N ] || lab_fail "moat C: cookie_invalid=$invalid, expected $N"
[ "$created" -eq 0 ] || lab_fail "moat C: flows_created=$created, expected 0"
echo "control: another secret refused all $N (cookie_invalid=$invalid, no flows)"
lab_moat_stop

# --- 2. rotation with handshakes in flight ---------------------------------
# A rotation period whose next wall-clock boundary is 20-30 s away.
now=$(date +%s)
period=""
for p in $(seq 120 2000); do
  rem=$((p - now % p))
  if [ $rem -ge 20 ] && [ $rem -le 30 ]; then period=$p; break; fi
done
[ -n "$period" ] || lab_fail "no rotation period with a boundary 20-30 s away"
boundary=$((now + rem))
flags=(--cookie_secret_file="$secret" --key_rotation_s="$period")
lab_moat_start "${flags[@]}"
[ "$(date +%s)" -lt $((boundary - 8)) ] || lab_fail "set-up too slow to reach the rotation in time"
out=$(hs syn "$mac" "$LAB_DIR/before.json" $N 30200)
[ "$(field synacks "$out")" -eq $N ] || lab_fail "before the rotation: $out"
# curl clients across the boundary, sequential, bounded in count and time.
(
  ok=0 bad=0
  end=$((boundary + 5))
  last=0
  for i in $(seq 1 5000); do
    last=$(date +%s)
    [ "$last" -lt $end ] || break
    code=$(lab_curl "http://$LAB_SERVER4/")
    if [ "$code" = 200 ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
  done
  echo "$ok $bad $last" >"$LAB_DIR/curl.txt"
) &
curl_pid=$!
while [ "$(date +%s)" -lt $((boundary + 2)) ]; do sleep 0.5; done
out=$(hs syn "$mac" "$LAB_DIR/after.json" $N 30300)
[ "$(field synacks "$out")" -eq $N ] || lab_fail "after the rotation: $out"
# The key id is bit 7 of the cookie (cookie.h): it must differ across the
# boundary and be the same within each side of it.
ids=$(/usr/bin/python3 - "$LAB_DIR/before.json" "$LAB_DIR/after.json" <<'PY'
import json, sys
for path in sys.argv[1:]:
    print(" ".join(sorted({str((c["cookie"] >> 7) & 1) for c in json.load(open(path))})))
PY
)
before_id=$(echo "$ids" | sed -n 1p)
after_id=$(echo "$ids" | sed -n 2p)
[ "$before_id" != "$after_id" ] && [ ${#before_id} -eq 1 ] && [ ${#after_id} -eq 1 ] ||
  lab_fail "key id bits before/after the rotation: '$before_id' / '$after_id'"
out=$(hs ack "$mac" "$LAB_DIR/before.json")
[ "$(field answered "$out")" -eq $N ] || lab_fail "SYN-ACK before, ACK after the rotation: $out"
out=$(hs ack "$mac" "$LAB_DIR/after.json")
[ "$(field answered "$out")" -eq $N ] || lab_fail "handshakes after the rotation: $out"
wait $curl_pid
read -r ok bad last <"$LAB_DIR/curl.txt"
[ "$bad" -eq 0 ] && [ "$ok" -ge 5 ] || lab_fail "curl across the rotation: $ok ok, $bad failed"
[ "$last" -ge $((boundary + 2)) ] || lab_fail "the curl loop stopped before the rotation"

invalid=$(lab_counter cookie_invalid)
[ "$invalid" -eq 0 ] || lab_fail "cookie_invalid=$invalid across the rotation"
echo "rotation (period ${period} s): key id $before_id -> $after_id; $N handshakes spanning it and $N after it completed; curl $ok/$ok"
lab_moat_stop

# --- 3. the secret file ----------------------------------------------------
expect_refusal() {  # NAME FILE PATTERN
  local rc=0
  "$LAB_MOAT" -l 0,1 --no-pci --file-prefix="moat-$LAB_NAME" \
    --vdev="net_af_packet0,iface=$LAB_CIF" --vdev="net_af_packet1,iface=$LAB_SIF" -- \
    --protect="$LAB_SERVER4:80" --cookie_secret_file="$2" >"$LAB_DIR/out" 2>&1 || rc=$?
  [ $rc -ne 0 ] || lab_fail "$1: moat started"
  local line
  line=$(grep -E "^moat: error:" "$LAB_DIR/out" || true)
  [ "$(echo "$line" | grep -c .)" -eq 1 ] || { cat "$LAB_DIR/out" >&2; lab_fail "$1: expected one error line"; }
  echo "$line" | grep -qE -- "$3" || lab_fail "$1: '$line' does not match '$3'"
  echo "$1: $line"
}
head -c 16 /dev/urandom >"$LAB_DIR/short"
chmod 600 "$LAB_DIR/short"
cp "$secret" "$LAB_DIR/shared"
chmod 644 "$LAB_DIR/shared"
expect_refusal "missing secret file" "$LAB_DIR/nonexistent" "cannot open.*head -c 32 /dev/urandom"
expect_refusal "short secret file" "$LAB_DIR/short" "holds 16 bytes, need at least 32"
expect_refusal "world-readable secret file" "$LAB_DIR/shared" "mode 0644.*chmod 600"
echo "PASS"
