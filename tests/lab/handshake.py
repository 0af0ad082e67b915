#!/usr/bin/python3
"""Split TCP handshakes for the fleet and rotation tests, with scapy in the
client namespace (whose kernel must not answer: the caller drops its RSTs).

  handshake.py syn SERVER_MAC OUT.json N BASE_PORT
      sends N SYNs (Linux-like options) from ports BASE_PORT.., records each
      SYN-ACK's ISN (the cookie) and TSval in OUT.json
  handshake.py ack SERVER_MAC IN.json [WAIT_S]
      completes each recorded handshake, whichever moat now sits in the
      path: the third ACK carries "GET / HTTP/1.0"; prints one JSON line
      {"sent": N, "answered": K} where K counts connections whose backend
      answered with an HTTP status line

Each waits until every answer it expects has arrived, at most 10 s (ack:
WAIT_S, for a caller that expects no answers and watches for 2 s).
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from labsniff import Sniffer  # noqa: E402
from scapy.all import Ether, IP, TCP, conf, sendp  # noqa: E402

conf.verb = 0
C4, S4, IFACE = "198.18.0.1", "198.18.0.2", "eth0"


def syn(mac, out, n, base):
    sniffer = Sniffer(IFACE, "tcp and src host %s and src port 80" % S4).start()
    conns = {}
    frames = []
    for i in range(n):
        sport = base + i
        cisn = random.getrandbits(32)
        tsval = random.getrandbits(31)
        conns[sport] = {"sport": sport, "cisn": cisn, "tsval": tsval}
        frames.append(Ether(dst=mac) / IP(src=C4, dst=S4) /
                      TCP(sport=sport, dport=80, flags="S", seq=cisn, window=64240,
                          options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (tsval, 0)),
                                   ("NOP", None), ("WScale", 7)]))
    sendp(frames, iface=IFACE)

    def synacks(pkts):
        return [p for p in pkts if p[TCP].dport in conns and p[TCP].flags == "SA"
                and p[TCP].ack == (conns[p[TCP].dport]["cisn"] + 1) % 2**32]

    sniffer.wait_for(lambda pkts: len({p[TCP].dport for p in synacks(pkts)}) >= n, 10)
    for p in synacks(sniffer.stop()):
        t = p[TCP]
        c = conns[t.dport]
        c["cookie"] = t.seq
        c["moat_tsval"] = dict((k, v) for k, v in t.options if k == "Timestamp").get(
            "Timestamp", (0, 0))[0]
    answered = [c for c in conns.values() if "cookie" in c]
    with open(out, "w") as f:
        json.dump(answered, f)
    print(json.dumps({"sent": n, "synacks": len(answered)}))


def ack(mac, path, wait_s):
    with open(path) as f:
        conns = json.load(f)
    sniffer = Sniffer(IFACE, "tcp and src host %s and src port 80" % S4).start()
    req = b"GET / HTTP/1.0\r\nHost: moat\r\n\r\n"
    frames = []
    for c in conns:
        frames.append(Ether(dst=mac) / IP(src=C4, dst=S4) /
                      TCP(sport=c["sport"], dport=80, flags="PA", seq=(c["cisn"] + 1) % 2**32,
                          ack=(c["cookie"] + 1) % 2**32, window=502,
                          options=[("NOP", None), ("NOP", None),
                                   ("Timestamp", (c["tsval"] + 10, c["moat_tsval"]))]) / req)
    sendp(frames, iface=IFACE)
    ports = {c["sport"] for c in conns}

    def answered(pkts):
        ok = set()
        for p in pkts:
            if p[TCP].dport not in ports:
                continue  # an earlier batch's backend retransmitting its answer
            payload = bytes(p[TCP].payload)
            if payload.startswith(b"HTTP/1.1 ") or payload.startswith(b"HTTP/1.0 "):
                ok.add(p[TCP].dport)
        return ok

    sniffer.wait_for(lambda pkts: len(answered(pkts)) >= len(conns), wait_s)
    ok = answered(sniffer.stop())
    print(json.dumps({"sent": len(conns), "answered": len(ok)}))


if __name__ == "__main__":
    mode, mac = sys.argv[1], sys.argv[2]
    if mode == "syn":
        syn(mac, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "ack":
        ack(mac, sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 10.0)
    else:
        sys.exit("usage: handshake.py syn|ack SERVER_MAC ...")
