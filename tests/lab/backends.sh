#!/usr/bin/env bash
# Lab test: a backend that differs from moat's flags (issue 11 item 1).
# The backend namespace runs with net.ipv4.tcp_timestamps=0, tcp_sack=0
# and an advertised MSS of 1360 (advmss on its routes), while moat runs
# with the defaults (timestamps, SACK, MSS 1460). After the first
# connection moat has learned the backend: its SYN-ACKs then carry
# MSS <= 1360, no timestamps and no SACK-permitted, and transfers both
# ways stay sha256-exact, and /moat/backends shows the record.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lb
trap lab_down EXIT
lab_up moat
lab_s sysctl -qw net.ipv4.tcp_timestamps=0 net.ipv4.tcp_sack=0
# Every route of the backend advertises MSS 1360 (a tunnel's, say).
while read -r route; do
  [ -n "$route" ] || continue
  # shellcheck disable=SC2086 # the route's words are ip's arguments
  lab_s ip route replace $route advmss 1360
done < <(lab_s ip -4 route show)
lab_nginx
dd if=/dev/urandom of="$LAB_DIR/www/blob" bs=1M count=8 status=none
chmod 644 "$LAB_DIR/www/blob"
lab_moat_start

# 1. The first connection teaches moat (its SYN-ACK offered the flags).
[ "$(lab_curl "http://$LAB_SERVER4/")" = 200 ] || lab_fail "first request failed"
lab_wait_for 10 "moat learned the backend" lab_counter_ge backend_learned 1

# 2. The next connections: capture their SYN-ACKs on the client side.
rm -f "$LAB_DIR/synack.log"
lab_c timeout 30 tcpdump -i eth0 -nn -v -U -c 3 \
  "src host $LAB_SERVER4 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)" \
  >"$LAB_DIR/synack.log" 2>"$LAB_DIR/synack.err" &
dump=$!
lab_wait_for 10 "tcpdump listening" grep -q "listening on" "$LAB_DIR/synack.err"
want=$(sha256sum "$LAB_DIR/www/blob" | cut -d' ' -f1)
for _ in 1 2 3; do
  got=$(lab_c curl -s -m 30 "http://$LAB_SERVER4/blob" | sha256sum | cut -d' ' -f1)
  [ "$want" = "$got" ] || lab_fail "8 MiB download: sha256 mismatch"
done
wait "$dump" || true
synacks=$(grep -c "Flags \[S\.\]" "$LAB_DIR/synack.log" || true)
echo "SYN-ACKs after learning:"
grep -o "options \[[^]]*\]" "$LAB_DIR/synack.log" | sed 's/^/  /'
[ "$synacks" -ge 3 ] || lab_fail "captured $synacks SYN-ACKs, expected 3"
if grep "Flags \[S\.\]" -A1 "$LAB_DIR/synack.log" | grep -q "TS val"; then
  lab_fail "a SYN-ACK still offers timestamps the backend refused"
fi
if grep "Flags \[S\.\]" -A1 "$LAB_DIR/synack.log" | grep -q "sackOK"; then
  lab_fail "a SYN-ACK still offers SACK the backend refused"
fi
while read -r mss; do
  [ "$mss" -le 1360 ] || lab_fail "a SYN-ACK advertises MSS $mss above the backend's 1360"
done < <(grep -o "mss [0-9]*" "$LAB_DIR/synack.log" | awk '{print $2}')

# 3. Uploads too: the client's segments fit the backend's MSS.
dd if=/dev/urandom of="$LAB_DIR/up" bs=1M count=8 status=none
lab_sha256_sink 81 60
up=$(lab_c timeout 60 /usr/bin/python3 -c '
import socket
c = socket.create_connection(("'"$LAB_SERVER4"'", 81), timeout=50)
with open("'"$LAB_DIR/up"'", "rb") as f:
    c.sendall(f.read())
c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode())')
[ "$up" = "$(sha256sum "$LAB_DIR/up" | cut -d' ' -f1)" ] || lab_fail "8 MiB upload: sha256 mismatch"
narrowed=$(lab_counter synack_narrowed)
learned=$(lab_counter backend_learned)
echo "backend_learned=$learned synack_narrowed=$narrowed"
[ "$narrowed" -ge 3 ] || lab_fail "synack_narrowed=$narrowed, expected >= 3"

# 4. The learned record, as telemetry shows it (/moat/backends).
view=$(echo /moat/backends | dpdk-telemetry.py -f "moat-$LAB_NAME" 2>/dev/null |
  /usr/bin/python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["/moat/backends"]))')
echo "/moat/backends:"
echo "$view" | sed 's/^/  /'
echo "$view" | grep -q "backend=$LAB_SERVER4:80 mss=1360 ts=no sack=no " ||
  lab_fail "/moat/backends does not show the backend's MSS 1360, no timestamps, no SACK"
lab_moat_stop
echo "PASS: after one connection moat offers the backend's MSS 1360, no timestamps, no SACK"
