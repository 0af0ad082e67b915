#!/usr/bin/python3
"""Blind in-window RSTs against an idle keep-alive connection (RFC 5961 §3).

  blindrst.py SERVER_MAC DIR

Opens one HTTP/1.1 keep-alive connection to the backend through moat and
makes one request while sniffing its own segments, so it knows the numbers
the backend expects. Then, as an off-path attacker who guessed the window
would, it sends two RSTs with the client's address and port whose sequence
numbers are inside the backend's window but not the exact next one, 100 ms
apart (Linux answers only the first with a challenge ACK: one per socket
per 500 ms). It writes DIR/injected and waits (bounded) for DIR/go, then
uses the same connection again: the request must reach the backend and the
answer must come back. Prints one JSON line; exits non-zero on failure.
"""
import json
import os
import socket
import sys
import time

from scapy.all import IP, TCP, AsyncSniffer, Ether, conf, sendp

conf.verb = 0
server_mac, workdir = sys.argv[1], sys.argv[2]
C4, S4 = "198.18.0.1", "198.18.0.2"
REQ = b"GET / HTTP/1.1\r\nHost: moat\r\n\r\n"


def request(s):
    s.sendall(REQ)
    data = b""
    while not data.rstrip().endswith(b"backend"):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed by peer")
        data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise ConnectionError("bad answer %r" % data[:40])


sniffer = AsyncSniffer(iface="eth0", filter="tcp port 80", store=True)
sniffer.start()
time.sleep(0.5)  # the capture socket is open before the first segment
s = socket.create_connection((S4, 80), timeout=10)
sport = s.getsockname()[1]
request(s)
time.sleep(0.3)  # the last ACKs of the exchange are captured
pkts = sniffer.stop()
mine = [p for p in pkts if TCP in p and p[TCP].sport == sport and p[IP].src == C4]
if not mine:
    print(json.dumps({"ok": False, "why": "captured none of the connection"}))
    sys.exit(1)
last = mine[-1]
client_next = last[TCP].seq + len(last[TCP].payload)
server_next = last[TCP].ack
# Inside the backend's receive window (tens of KiB), not its exact RCV.NXT.
rst = (Ether(dst=server_mac) / IP(src=C4, dst=S4) /
       TCP(sport=sport, dport=80, flags="R", seq=(client_next + 1000) % 2**32))
sendp(rst, iface="eth0")
time.sleep(0.1)
sendp(rst, iface="eth0")
open(os.path.join(workdir, "injected"), "w").write(
    json.dumps({"sport": sport, "client_next": client_next, "server_next": server_next}))

deadline = time.time() + 60
while not os.path.exists(os.path.join(workdir, "go")):
    if time.time() > deadline:
        print(json.dumps({"ok": False, "why": "never told to go on"}))
        sys.exit(1)
    time.sleep(0.1)
try:
    request(s)
    request(s)
except (OSError, ConnectionError) as e:
    print(json.dumps({"ok": False, "why": "connection broken after the RSTs: %s" % e}))
    sys.exit(1)
print(json.dumps({"ok": True, "sport": sport}))
