#!/usr/bin/env bash
# Lab test: the connections that find out a backend differs from the flags
# are repaired (issue 11 item 1, "flows negotiated before moat knew").
# The backend runs with net.ipv4.tcp_timestamps=0 and tcp_sack=0, the
# client with both on, and moat with --learn_backends=false, so every
# connection is one that finds out: the client negotiates timestamps and
# SACK with moat's cookie SYN-ACK, the backend refuses both. 1% of the
# segments reaching the client are dropped, so it has holes to SACK. Downloads over IPv4 and IPv6 and an upload must be sha256-exact,
# and the captures must show:
#   - on the client's side, every backend segment after the SYN-ACK
#     carries a timestamp (moat inserted it: RFC 7323 §3.2), none larger
#     than the 1500-byte MTU;
#   - on the backend's side, the backend sends none, and no client segment
#     carries a SACK option (RFC 2018 §2), while the client did send some.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init rp
trap 'kill $dumps 2>/dev/null || true; lab_down' EXIT
dumps=""
lab_up moat
lab_s sysctl -qw net.ipv4.tcp_timestamps=0 net.ipv4.tcp_sack=0
lab_c sysctl -qw net.ipv4.tcp_timestamps=1 net.ipv4.tcp_sack=1
# Loss on the client's ingress, after the capture point: a drop on the
# backend's egress would only make its stack send the segment again (a
# local drop is not a loss to TCP), with no hole for the client to SACK.
lab_c nft -f - <<'NFT'
table inet impair {
  chain in {
    type filter hook input priority 0;
    meta l4proto tcp numgen random mod 100 < 1 counter drop
  }
}
NFT
lab_nginx
dd if=/dev/urandom of="$LAB_DIR/www/blob" bs=1M count=8 status=none
chmod 644 "$LAB_DIR/www/blob"
lab_moat_start --learn_backends=false

# Headers only (-s 128): options are what the checks read.
# `ip netns exec` execs tcpdump, so $! is tcpdump itself (lab_c would put
# a subshell in between, which SIGINT would not stop).
ip netns exec "$LAB_C" tcpdump -i eth0 -nn -U -s 128 -w "$LAB_DIR/client.pcap" tcp \
  2>"$LAB_DIR/client.err" &
dumps="$!"
ip netns exec "$LAB_S" tcpdump -i eth0 -nn -U -s 128 -w "$LAB_DIR/server.pcap" tcp \
  2>"$LAB_DIR/server.err" &
dumps="$dumps $!"
lab_wait_for 10 "tcpdump listening (client)" grep -q "listening on" "$LAB_DIR/client.err"
lab_wait_for 10 "tcpdump listening (server)" grep -q "listening on" "$LAB_DIR/server.err"

want=$(sha256sum "$LAB_DIR/www/blob" | cut -d' ' -f1)
got=$(lab_c curl -s -m 60 "http://$LAB_SERVER4/blob" | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] || lab_fail "8 MiB download over IPv4: sha256 mismatch"
got=$(lab_c curl -s -g -m 60 "http://[$LAB_SERVER6]/blob" | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] || lab_fail "8 MiB download over IPv6: sha256 mismatch"
echo "8 MiB downloads over IPv4 and IPv6: sha256 ok"

dd if=/dev/urandom of="$LAB_DIR/up" bs=1M count=8 status=none
lab_sha256_sink 81 60
up=$(lab_c timeout 60 /usr/bin/python3 -c '
import socket
c = socket.create_connection(("'"$LAB_SERVER4"'", 81), timeout=50)
with open("'"$LAB_DIR/up"'", "rb") as f:
    c.sendfile(f)
c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode())')
[ "$up" = "$(sha256sum "$LAB_DIR/up" | cut -d' ' -f1)" ] || lab_fail "8 MiB upload: sha256 mismatch ($up)"
echo "8 MiB upload: sha256 ok"

# Stop the captures (SIGTERM: tcpdump flushes and exits; background jobs
# ignore SIGINT) and reap them once they are gone or zombies.
for p in $dumps; do kill -TERM "$p" 2>/dev/null || true; done
stopped() {
  local p st
  for p in $dumps; do
    st=$(awk '/^State:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    [ -z "$st" ] || [ "$st" = Z ] || return 1
  done
}
lab_wait_for 10 "tcpdump to exit" stopped
for p in $dumps; do wait "$p" 2>/dev/null || true; done
dumps=""

/usr/bin/python3 - "$LAB_DIR/client.pcap" "$LAB_DIR/server.pcap" <<'PY' || lab_fail "capture check failed"
import sys
from scapy.all import IP, IPv6, TCP, rdpcap

SERVER = {"198.18.0.2", "2001:2::2"}

def segments(path):
    for p in rdpcap(path):
        if TCP not in p:
            continue
        ip = p[IP] if IP in p else p[IPv6] if IPv6 in p else None
        if ip is None:
            continue
        length = ip.len if IP in p else ip.plen + 40
        names = [o[0] for o in p[TCP].options]
        yield ip.src in SERVER, p[TCP].flags, names, length

ok = True
def check(cond, what):
    global ok
    print(("  ok: " if cond else "  FAIL: ") + what)
    ok &= bool(cond)

# Client side: every backend segment but SYN-ACKs (moat's cookie ones
# carry timestamps anyway) and RSTs carries a timestamp.
s2c = [s for s in segments(sys.argv[1]) if s[0] and not (s[1] & 0x04)]
with_ts = sum(1 for s in s2c if "Timestamp" in s[2])
client_sacks = sum(1 for s in segments(sys.argv[1]) if not s[0] and "SAck" in s[2])
biggest = max((s[3] for s in s2c), default=0)
print("client side: %d server->client segments, %d with a timestamp, largest %d bytes; "
      "%d client segments with SACK blocks" % (len(s2c), with_ts, biggest, client_sacks))
check(len(s2c) > 1000, "the transfers were captured")
check(with_ts == len(s2c), "every server->client segment reaches the client with a timestamp")
check(biggest <= 1500, "none is larger than the 1500-byte MTU")
check(client_sacks > 0, "the client sent SACK blocks (loss made holes)")

# Backend side: the backend sends no timestamps, and receives no SACK.
seen = list(segments(sys.argv[2]))
backend_ts = sum(1 for s in seen if s[0] and "Timestamp" in s[2])
sack_in = sum(1 for s in seen if not s[0] and "SAck" in s[2])
print("server side: %d segments, %d backend segments with a timestamp, %d client segments "
      "with SACK blocks" % (len(seen), backend_ts, sack_in))
check(backend_ts == 0, "the backend really sends no timestamps")
check(sack_in == 0, "no client segment reaches the backend with SACK blocks")
sys.exit(0 if ok else 1)
PY

inserted=$(lab_counter ts_inserted)
stripped=$(lab_counter sack_stripped)
no_room=$(lab_counter ts_insert_no_room)
oversize=$(lab_counter ts_insert_oversize)
mismatch=$(lab_counter backend_ts_mismatch)
echo "ts_inserted=$inserted sack_stripped=$stripped ts_insert_no_room=$no_room" \
  "ts_insert_oversize=$oversize backend_ts_mismatch=$mismatch"
[ "$inserted" -gt 1000 ] || lab_fail "ts_inserted=$inserted"
[ "$stripped" -gt 0 ] || lab_fail "sack_stripped=$stripped"
# The backend SYN's MSS left room: no segment had to go without.
[ "$oversize" -eq 0 ] || lab_fail "ts_insert_oversize=$oversize: a segment went on without a timestamp"
[ "$no_room" -eq 0 ] || lab_fail "ts_insert_no_room=$no_room"
[ "$mismatch" -ge 3 ] || lab_fail "backend_ts_mismatch=$mismatch, expected one per connection"
lab_moat_stop
echo "PASS: a backend without timestamps and SACK behind a client with both: repaired both ways"
