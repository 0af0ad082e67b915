#!/usr/bin/python3
"""An attacker that completes handshakes: from N addresses in 198.18.8.0/21
(routed back to the client namespace, so it sees moat's SYN-ACKs), send a
SYN, read the cookie from the SYN-ACK, send the ACK. Each valid ACK costs
moat a flow. Prints one JSON line: SYN-ACKs seen, ACKs sent, and how many
of those got a RST back (refused: flow table full).

  exhaust.py SERVER_MAC N
"""
import json
import random
import sys
import time

from scapy.all import AsyncSniffer, Ether, IP, TCP, conf, sendp

conf.verb = 0
S4, IFACE = "198.18.0.2", "eth0"


def main():
    mac, n = sys.argv[1], int(sys.argv[2])
    conns = {}
    for i in range(n):
        src = "198.18.%d.%d" % (8 + (i >> 8) % 8, 1 + i % 254)
        conns[(src, 20000 + i)] = random.getrandbits(32)
    sniffer = AsyncSniffer(iface=IFACE, filter="tcp and src host %s and src port 80" % S4)
    sniffer.start()
    time.sleep(0.5)
    sendp([Ether(dst=mac) / IP(src=src, dst=S4) /
           TCP(sport=sport, dport=80, flags="S", seq=isn, window=64240, options=[("MSS", 1460)])
           for (src, sport), isn in conns.items()], iface=IFACE)
    time.sleep(1.0)
    cookies = {}
    for p in sniffer.stop():
        key = (p[IP].dst, p[TCP].dport)
        if p[TCP].flags == "SA" and key in conns:
            cookies[key] = p[TCP].seq
    sniffer = AsyncSniffer(iface=IFACE, filter="tcp and src host %s and src port 80" % S4)
    sniffer.start()
    time.sleep(0.5)
    sendp([Ether(dst=mac) / IP(src=src, dst=S4) /
           TCP(sport=sport, dport=80, flags="A", seq=(conns[(src, sport)] + 1) % 2**32,
               ack=(cookie + 1) % 2**32, window=502)
           for (src, sport), cookie in cookies.items()], iface=IFACE)
    time.sleep(1.5)
    reset = {(p[IP].dst, p[TCP].dport) for p in sniffer.stop() if p[TCP].flags & 0x04}
    print(json.dumps({"synacks": len(cookies), "acks": len(cookies),
                      "reset": len(reset & set(cookies))}))


if __name__ == "__main__":
    main()
