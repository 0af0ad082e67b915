#!/usr/bin/python3
"""Frames moat cannot parse, or parses but does not protect, for the
transparent.sh lab test.

  transparent.py send SERVER_MAC OUT.json   (in the client namespace)
  transparent.py check IN.json CAPTURE.pcap (anywhere)

"send" builds each case twice where it can: towards something moat does
not protect (another port or host; must arrive byte for byte) and towards
the protected service (must not arrive). Every frame carries a unique
marker in its payload so the capture on the far side can be matched. It
records the exact bytes sent in OUT.json. "check" finds every frame of the
capture by marker, compares bytes, prints one JSON line, and exits
non-zero on any difference.
"""
import json
import sys

from scapy.all import (ARP, IP, TCP, Dot1Q, Ether, IPv6, IPv6ExtHdrDestOpt, Raw, conf,
                       rdpcap, sendp)

conf.verb = 0
C4, S4, O4 = "198.18.0.1", "198.18.0.2", "198.18.0.3"
C6, S6, O6 = "2001:2::1", "2001:2::2", "2001:2::3"
UNPROTECTED_PORT = 9  # --protect covers 80-81, 2222 and 5201


def marker(name):
    return ("moat-transparent:%s:" % name).encode().ljust(64, b".")


def cases(server_mac):
    E = Ether(dst=server_mac)
    out = []

    def add(name, frame, passes):
        out.append((name, bytes(frame), passes))

    for dport, passes in ((UNPROTECTED_PORT, True), (80, False)):
        tag = "other" if passes else "protected"
        add("three_vlans_" + tag,
            E / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(src=C4, dst=S4) /
            TCP(sport=40001, dport=dport, flags="S") / Raw(marker("three_vlans_" + tag)), passes)
        # moat cannot reach this TCP header, so only the address decides:
        # another host passes, the service's address does not.
        ext = IPv6(src=C6, dst=O6 if passes else S6)
        for _ in range(9):
            ext = ext / IPv6ExtHdrDestOpt()
        add("nine_ext_headers_" + tag,
            E / ext / TCP(sport=40002, dport=dport, flags="S") /
            Raw(marker("nine_ext_headers_" + tag)), passes)
        add("bad_tcp_option_" + tag,
            E / IP(src=C4, dst=S4) /
            TCP(sport=40003, dport=dport, flags="S", options=[(2, b"\x05")]) /
            Raw(marker("bad_tcp_option_" + tag)), passes)
    # Well-formed but unusual: IP options, towards the service host's
    # unprotected port; and a second frame with two VLAN tags.
    add("ip_options_other",
        E / IP(src=C4, dst=S4, options=b"\x01\x01\x01\x00") /
        TCP(sport=40004, dport=UNPROTECTED_PORT, flags="S") / Raw(marker("ip_options_other")),
        True)
    add("two_vlans_other",
        E / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src=C4, dst=S4) /
        TCP(sport=40005, dport=UNPROTECTED_PORT, flags="S") / Raw(marker("two_vlans_other")),
        True)
    # An IPv4 total length beyond the frame, towards another host.
    bad_len = IP(src=C4, dst=O4, len=1400) / TCP(sport=40006, dport=80, flags="S") / Raw(
        marker("bad_ip_length_other"))
    add("bad_ip_length_other", E / Raw(bytes(bad_len)), True)
    # An EtherType moat knows nothing of, and ARP behind three VLAN tags.
    add("unknown_ethertype_other", Ether(dst=server_mac, type=0x88b5) /
        Raw(marker("unknown_ethertype_other")), True)
    add("three_vlans_arp_other",
        E / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / ARP(psrc=C4, pdst=O4) /
        Raw(marker("three_vlans_arp_other")), True)
    return out


def send(server_mac, path):
    made = cases(server_mac)
    with open(path, "w") as f:
        json.dump([{"name": n, "hex": b.hex(), "passes": p} for n, b, p in made], f)
    for _, b, _ in made:
        # The bytes of the JSON file, not a rebuilt packet: raw L2 socket.
        sendp(Raw(b), iface="eth0")


def check(path, pcap):
    sent = json.load(open(path))
    got = {}
    for p in rdpcap(pcap):
        raw = bytes(p)
        for s in sent:
            if marker(s["name"]) in raw:
                got.setdefault(s["name"], []).append(raw)
    bad = []
    for s in sent:
        frames = got.get(s["name"], [])
        want = bytes.fromhex(s["hex"])
        if s["passes"]:
            if not frames:
                bad.append("%s: did not arrive" % s["name"])
            elif any(f != want for f in frames):
                bad.append("%s: changed on the way: sent %s got %s" %
                           (s["name"], want.hex(), frames[0].hex()))
        elif frames:
            bad.append("%s: reached the far side" % s["name"])
    print(json.dumps({"passed": sorted(n for n in got if any(s["name"] == n and s["passes"]
                                                              for s in sent)),
                      "problems": bad}))
    return not bad


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3])
    else:
        sys.exit(0 if check(sys.argv[2], sys.argv[3]) else 1)
