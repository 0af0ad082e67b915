#!/usr/bin/python3
"""An attacker that completes handshakes: from N addresses in 198.18.8.0/21
(routed back to the client namespace, so it sees moat's SYN-ACKs), send a
SYN, read the cookie from the SYN-ACK, send the ACK. Each valid ACK costs
moat a flow. Prints one JSON line: SYN-ACKs seen, ACKs sent, and how many
of those got a RST back (refused: flow table full).

  exhaust.py SERVER_MAC N [EXPECT_RESETS]

Waits (each phase 10 s at most) until all N SYN-ACKs, and then
EXPECT_RESETS RSTs (default 0: none awaited), have arrived.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from labsniff import Sniffer  # noqa: E402
from scapy.all import Ether, IP, TCP, conf, sendp  # noqa: E402

conf.verb = 0
S4, IFACE = "198.18.0.2", "eth0"


def main():
    mac, n = sys.argv[1], int(sys.argv[2])
    expect_resets = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    bpf = "tcp and src host %s and src port 80" % S4
    conns = {}
    for i in range(n):
        src = "198.18.%d.%d" % (8 + (i >> 8) % 8, 1 + i % 254)
        conns[(src, 20000 + i)] = random.getrandbits(32)

    def synacks(pkts):
        return {(p[IP].dst, p[TCP].dport): p[TCP].seq for p in pkts
                if p[TCP].flags == "SA" and (p[IP].dst, p[TCP].dport) in conns}

    sniffer = Sniffer(IFACE, bpf).start()
    sendp([Ether(dst=mac) / IP(src=src, dst=S4) /
           TCP(sport=sport, dport=80, flags="S", seq=isn, window=64240, options=[("MSS", 1460)])
           for (src, sport), isn in conns.items()], iface=IFACE)
    sniffer.wait_for(lambda pkts: len(synacks(pkts)) >= n, 10)
    cookies = synacks(sniffer.stop())

    def resets(pkts):
        return {(p[IP].dst, p[TCP].dport) for p in pkts if p[TCP].flags & 0x04} & set(cookies)

    sniffer = Sniffer(IFACE, bpf).start()
    sendp([Ether(dst=mac) / IP(src=src, dst=S4) /
           TCP(sport=sport, dport=80, flags="A", seq=(conns[(src, sport)] + 1) % 2**32,
               ack=(cookie + 1) % 2**32, window=502)
           for (src, sport), cookie in cookies.items()], iface=IFACE)
    sniffer.wait_for(lambda pkts: len(resets(pkts)) >= expect_resets, 10)
    reset = resets(sniffer.stop())
    print(json.dumps({"synacks": len(cookies), "acks": len(cookies),
                      "reset": len(reset)}))


if __name__ == "__main__":
    main()
