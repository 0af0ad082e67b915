#!/usr/bin/python3
"""Path MTU discovery across moat: opens a keep-alive HTTP connection to the
backend, notes the backend's next sequence number as the client sees it,
then sends the backend what a router on the client side would send when
the path shrinks: ICMP Fragmentation Needed (MTU 1280) quoting the
backend's segment, with the client-side (moat) sequence number.

  pmtu.py SERVER_MAC      prints {"port": P, "quoted_seq": S}
"""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from labsniff import Sniffer  # noqa: E402
from scapy.all import Ether, ICMP, IP, TCP, conf, sendp  # noqa: E402

conf.verb = 0
C4, S4, ROUTER = "198.18.0.1", "198.18.0.2", "198.18.0.254"
mac = sys.argv[1]

s = socket.create_connection((S4, 80), timeout=5)
port = s.getsockname()[1]
sniffer = Sniffer("eth0", "tcp and src host %s and src port 80 and dst port %d" % (S4, port)).start()
s.sendall(b"GET / HTTP/1.1\r\nHost: moat\r\n\r\n")
data = b""
while not data.rstrip().endswith(b"backend"):
    data += s.recv(4096)
# The capture has the whole response once its payload adds up to what the
# socket read (the tap may lag behind the socket on a busy machine).
if not sniffer.wait_for(lambda pkts: sum(len(p[TCP].payload) for p in pkts) >= len(data), 10):
    sys.exit("pmtu.py: the capture missed the backend's response")
segs = sniffer.stop()
nxt = max((p[TCP].seq + len(p[TCP].payload)) % 2**32 for p in segs)
quote = IP(src=S4, dst=C4, flags="DF") / TCP(sport=80, dport=port, flags="A", seq=nxt,
                                            ack=1, window=500)
sendp(Ether(dst=mac) / IP(src=ROUTER, dst=S4) / ICMP(type=3, code=4, nexthopmtu=1280) /
      bytes(quote)[:28], iface="eth0")
print(json.dumps({"port": port, "quoted_seq": nxt}))
s.close()
