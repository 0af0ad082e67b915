#!/usr/bin/python3
"""The SYN cache seen from the wire (tests/lab/syncache.sh), with scapy in
the client namespace (whose kernel must not answer: the caller drops its
RSTs) and a capture from the server namespace.

  syncache.py exact SERVER_MAC SPORT OUT.json
      an odd client: SYN with MSS 1337, window scale 3, SACK, no
      timestamps, ECE+CWR; waits 0.5 s after moat's SYN-ACK, then sends the
      third ACK carrying "GET /"; records the SYN-ACK's flags and options,
      the time of the third ACK and whether the backend answered
  syncache.py retransmit SERVER_MAC SPORT
      a SYN that is never completed: prints the times (s after the SYN) of
      the SYN-ACKs moat sends for it within 4 s
  syncache.py check PCAP IN.json
      in the server-side capture: the backend SYN of that connection must
      carry exactly MSS 1337, WS 3, SACK-permitted, no timestamps, ECE+CWR,
      and come after the client's third ACK; prints one JSON line
"""
import json
import random
import sys
import time

from scapy.all import AsyncSniffer, Ether, IP, TCP, conf, rdpcap, sendp

conf.verb = 0
C4, S4, IFACE = "198.18.0.1", "198.18.0.2", "eth0"
ODD_OPTIONS = [("MSS", 1337), ("NOP", None), ("WScale", 3), ("SAckOK", b""), ("NOP", None),
               ("NOP", None)]


def opt_dict(t):
    return dict((k, v) for k, v in t.options)


def flags_str(t):
    return str(t.flags)


def exact(mac, sport, out):
    cisn = random.getrandbits(32)
    seen = []  # filled as packets arrive (AsyncSniffer.results only after stop())
    sniffer = AsyncSniffer(iface=IFACE, store=False, prn=seen.append,
                           filter="tcp and src host %s and src port 80 and dst port %d" % (S4, sport))
    sniffer.start()
    time.sleep(0.5)
    sendp(Ether(dst=mac) / IP(src=C4, dst=S4) /
          TCP(sport=sport, dport=80, flags="SEC", seq=cisn, window=64240, options=ODD_OPTIONS),
          iface=IFACE)
    synack = None
    for _ in range(30):
        time.sleep(0.1)
        for p in list(seen):
            t = p[TCP]
            if "S" in flags_str(t) and "A" in flags_str(t) and t.ack == (cisn + 1) % 2**32:
                synack = t
                break
        if synack is not None:
            break
    result = {"sport": sport, "cisn": cisn}
    if synack is None:
        sniffer.stop()
        result["error"] = "no SYN-ACK"
        print(json.dumps(result))
        with open(out, "w") as f:
            json.dump(result, f)
        return
    o = opt_dict(synack)
    result.update({"synack_flags": flags_str(synack), "synack_mss": o.get("MSS"),
                   "synack_wscale": o.get("WScale"), "synack_sack": "SAckOK" in o,
                   "synack_ts": "Timestamp" in o})
    # Half a second with nothing but the SYN-ACK: the backend must not have
    # seen a SYN yet (checked in the capture against t_ack).
    time.sleep(0.5)
    req = b"GET / HTTP/1.0\r\nHost: moat\r\n\r\n"
    result["t_ack"] = time.time()
    sendp(Ether(dst=mac) / IP(src=C4, dst=S4) /
          TCP(sport=sport, dport=80, flags="PA", seq=(cisn + 1) % 2**32,
              ack=(synack.seq + 1) % 2**32, window=502) / req, iface=IFACE)
    answered = False
    for _ in range(30):
        time.sleep(0.1)
        for p in list(seen):
            payload = bytes(p[TCP].payload)
            if payload.startswith(b"HTTP/1.1 200") or payload.startswith(b"HTTP/1.0 200"):
                answered = True
        if answered:
            break
    sniffer.stop()
    result["answered"] = answered
    with open(out, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


def retransmit(mac, sport):
    cisn = random.getrandbits(32)
    sniffer = AsyncSniffer(iface=IFACE,
                           filter="tcp and src host %s and src port 80 and dst port %d" % (S4, sport))
    sniffer.start()
    time.sleep(0.5)
    t0 = time.time()
    sendp(Ether(dst=mac) / IP(src=C4, dst=S4) /
          TCP(sport=sport, dport=80, flags="S", seq=cisn, window=64240,
              options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]), iface=IFACE)
    time.sleep(4.0)
    got = sniffer.stop()
    times = [round(float(p.time) - t0, 2) for p in got
             if "S" in flags_str(p[TCP]) and p[TCP].ack == (cisn + 1) % 2**32]
    isns = sorted({p[TCP].seq for p in got if "S" in flags_str(p[TCP])})
    print(json.dumps({"synacks": times, "isns": len(isns)}))


def check(pcap, path):
    with open(path) as f:
        c = json.load(f)
    res = {"sport": c["sport"]}
    syns = [p for p in rdpcap(pcap)
            if TCP in p and p[IP].src == C4 and p[TCP].sport == c["sport"]
            and flags_str(p[TCP]).startswith("S") and "A" not in flags_str(p[TCP])]
    if not syns:
        res["error"] = "no backend SYN in the capture"
        print(json.dumps(res))
        return
    s = syns[0]
    o = opt_dict(s[TCP])
    res.update({"backend_syns": len(syns), "flags": flags_str(s[TCP]), "mss": o.get("MSS"),
                "wscale": o.get("WScale"), "sack": "SAckOK" in o, "ts": "Timestamp" in o,
                "seq_ok": s[TCP].seq == c["cisn"],
                "after_ack_s": round(float(s.time) - c.get("t_ack", 0), 3)})
    res["exact"] = (res["mss"] == 1337 and res["wscale"] == 3 and res["sack"] and
                    not res["ts"] and set(res["flags"]) == set("SEC") and res["seq_ok"] and
                    res["after_ack_s"] >= 0)
    print(json.dumps(res))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "exact":
        exact(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif mode == "retransmit":
        retransmit(sys.argv[2], int(sys.argv[3]))
    elif mode == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: syncache.py exact|retransmit|check ...")
