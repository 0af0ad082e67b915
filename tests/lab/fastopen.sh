#!/usr/bin/env bash
# Lab test: TCP Fast Open through moat (--fastopen, RFC 7413) with the
# client namespace's own Linux stack (net.ipv4.tcp_fastopen=1, Python
# MSG_FASTOPEN) and nginx behind moat (no Fast Open on the backend).
#  - the first connection asks for a cookie; later ones carry the request
#    in the SYN, moat's SYN-ACK acknowledges it, the response is right and
#    nginx logs each request exactly once;
#  - with 100 ms of delay on the client's link, the request reaches the
#    backend one round trip earlier than without Fast Open (captures);
#  - a forged cookie and a genuine cookie from another address fall back to
#    the normal handshake (scapy; their data is not acknowledged).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init ltf
trap lab_down EXIT
N=${N:-5}
DELAY_MS=100

lab_up moat
lab_nginx 511
lab_c sysctl -qw net.ipv4.tcp_fastopen=1
lab_c sysctl -qw net.ipv4.ip_local_port_range="40000 60999"
lab_c nft -f - <<'NFT'
table inet norst {
  chain out {
    type filter hook output priority 0;
    tcp sport 30000-30999 tcp flags rst drop
  }
}
NFT
# One-way delay on the client's egress, where the kernel has netem: a
# round trip the client pays before a normal handshake lets it send the
# request. Without it the saving is checked from the client's capture
# (the request leaves in the SYN, before moat's SYN-ACK arrives).
lab_c tc qdisc add dev eth0 root netem delay ${DELAY_MS}ms 2>/dev/null || {
  echo "no netem in this kernel: round trip checked from the captures only"
  DELAY_MS=0
}
mac=$(ip -n "$LAB_S" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.argv[1]).get('$1'))" "$2"; }
lab_moat_start --fastopen

ip netns exec "$LAB_C" tcpdump -i eth0 -U -n -w "$LAB_DIR/client.pcap" "tcp port 80" 2>"$LAB_DIR/tcpdump.c" &
tdc=$!
ip netns exec "$LAB_S" tcpdump -i eth0 -U -n -w "$LAB_DIR/server.pcap" "tcp port 80" 2>"$LAB_DIR/tcpdump.s" &
tds=$!
for _ in $(seq 1 50); do
  grep -q "listening on" "$LAB_DIR/tcpdump.c" && grep -q "listening on" "$LAB_DIR/tcpdump.s" && break
  sleep 0.1
done
out=$(timeout 60 ip netns exec "$LAB_C" /usr/bin/python3 "$here/fastopen.py" linux "$N" "$LAB_DIR/linux.json")
echo "linux client: $out"
sleep 0.5
kill -INT $tdc $tds 2>/dev/null || true
wait $tdc $tds 2>/dev/null || true
res=$(/usr/bin/python3 "$here/fastopen.py" check "$LAB_DIR/client.pcap" "$LAB_DIR/server.pcap" "$LAB_DIR/linux.json")
echo "captures: $res"
lab_c ip tcp_metrics show "$LAB_SERVER4" || true

/usr/bin/python3 - "$out" "$res" "$LAB_DIR/nginx/access.log" "$N" "$DELAY_MS" <<'PY' || lab_fail "Fast Open through moat"
import json, sys
out, res = json.loads(sys.argv[1]), json.loads(sys.argv[2])
log = open(sys.argv[3]).read()
n, delay = int(sys.argv[4]), float(sys.argv[5])
fail = []
for r in out:
    if not r.get("status", "").endswith("200 OK") or r.get("body") != "hello from the backend":
        fail.append("request %d: %s" % (r["i"], r))
for r in res:
    if r["at_backend"] != 1:
        fail.append("request %d reached the backend %d times" % (r["i"], r["at_backend"]))
    if log.count("GET /?tfo=%d " % r["i"]) != 1:
        fail.append("nginx logged request %d %d times" % (r["i"], log.count("GET /?tfo=%d " % r["i"])))
first, later = res[0], res[1:]
if first.get("syn_data", 0) != 0:
    fail.append("the first connection had no cookie yet, but its SYN carried data")
for r in later:
    if not (r.get("syn_data", 0) > 0 and r.get("syn_cookie")):
        fail.append("request %d: SYN without cookie and data: %s" % (r["i"], r))
    elif r.get("synack_acks") != r["syn_data"]:
        fail.append("request %d: moat's SYN-ACK acked %s of %s bytes" % (r["i"], r.get("synack_acks"), r["syn_data"]))
# One round trip saved: a normal handshake's request leaves the client
# after moat's SYN-ACK arrives; a Fast Open one leaves in the SYN, before.
if first.get("req_before_synack_ms", 0) >= 0:
    fail.append("the first request left before the SYN-ACK arrived: %s" % first)
for r in later:
    if not r.get("req_before_synack_ms", -1) > 0:
        fail.append("request %d did not leave before moat's SYN-ACK: %s" % (r["i"], r))
# With a delay on the client's link: the normal handshake's request reaches
# the backend after ~2 x delay, Fast Open's after ~1 x delay.
saved = first.get("latency_ms", 0) - max(r.get("latency_ms", 0) for r in later)
print("first request reached the backend %.1f ms after it was sent, Fast Open ones after %s ms: "
      "%.1f ms saved (client link delay %.0f ms)"
      % (first.get("latency_ms", -1), [r.get("latency_ms") for r in later], saved, delay))
if delay > 0 and saved < 0.7 * delay:
    fail.append("only %.0f ms saved (want ~%.0f)" % (saved, delay))
if fail:
    print("\n".join(fail), file=sys.stderr)
    sys.exit(1)
PY
[ "$(lab_counter fastopen_accepted)" -ge $((N - 1)) ] || lab_fail "fastopen_accepted below $((N - 1))"
[ "$(lab_counter fastopen_cookie_sent)" -ge 1 ] || lab_fail "no fastopen_cookie_sent"

# Bad cookies, by hand.
sc=$(timeout 60 ip netns exec "$LAB_C" /usr/bin/python3 "$here/fastopen.py" scapy "$mac")
echo "scapy: $sc"
/usr/bin/python3 - "$sc" <<'PY' || lab_fail "bad Fast Open cookies were not refused"
import json, sys
r = json.loads(sys.argv[1])
ok = (r.get("cookie_len") == 8 and
      r["genuine"]["acked_data"] == r["data_len"] and
      r["forged"]["acked_data"] == 0 and r["forged"]["new_cookie"] and
      r["other_address"]["acked_data"] == 0 and r["other_address"]["new_cookie"])
sys.exit(0 if ok else 1)
PY
[ "$(lab_counter fastopen_invalid)" -ge 2 ] || lab_fail "fastopen_invalid below 2"
lab_moat_stop
echo "PASS: Fast Open through moat: $((N - 1)) requests in the SYN, each delivered once; forged and other-address cookies refused"
