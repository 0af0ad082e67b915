#!/usr/bin/python3
# Writes scapy_vectors.h: Ethernet frames built and checksummed by scapy, an
# implementation independent of moat's, plus the field values a correct
# parser must read back from them.
#
# The header is checked in; building and running the tests never needs
# scapy. Regenerate (Debian's scapy lives under /usr/bin/python3, not the
# python3 that may come first on PATH) with:
#   /usr/bin/python3 tests/net/make_scapy_vectors.py          # rewrites the header
#   /usr/bin/python3 tests/net/make_scapy_vectors.py --stdout  # prints it
# The output is deterministic: same scapy, same bytes.
import os
import sys

from scapy.all import (ARP, UDP, Dot1AD, Dot1Q, Ether, IP, IPOption_Router_Alert, IPv6,
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, Raw, TCP, fragment)

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = dict(src="198.18.0.1", dst="198.18.0.2")
V6 = dict(src="2001:2::1", dst="2001:2::2")
# What Linux puts in a SYN.
LINUX_SYN = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123456789, 0)), ("NOP", None),
             ("WScale", 7)]


def E():
    return Ether(**MACS)


def with_zero_tcp_checksum(pkt):
    """Rewrites the first two payload bytes so the TCP checksum comes out as
    0x0000 (a one's-complement sum of 0xFFFF): the RFC 1624 §3 corner where
    an incremental update must not produce 0xFFFF instead. The payload's
    first word sits at an even TCP offset, so adding the old checksum to it
    brings the sum to exactly 0xFFFF."""
    raw = bytes(pkt)
    c = Ether(raw)[TCP].chksum
    load = bytearray(bytes(pkt[Raw].load))
    assert load[0] == 0 and load[1] == 0
    load[0:2] = c.to_bytes(2, "big")
    pkt[Raw].load = bytes(load)
    del pkt[TCP].chksum
    out = Ether(bytes(pkt))
    assert out[TCP].chksum == 0, hex(out[TCP].chksum)
    return out


def with_zero_ip_checksum(pkt):
    """Picks the IPv4 identification so the header checksum is 0x0000."""
    pkt[IP].id = 0
    del pkt[IP].chksum
    c = Ether(bytes(pkt))[IP].chksum
    pkt[IP].id = c
    del pkt[IP].chksum
    out = Ether(bytes(pkt))
    assert out[IP].chksum == 0, hex(out[IP].chksum)
    return out


def tcp(**kw):
    return TCP(**kw)


# (name, packet, extra trailing bytes after the datagram, expected option
# values as a dict of TcpOptions fields, or None for "not a parsed TCP frame")
VECTORS = []


def add(name, pkt, trailer=b"", opts=None):
    VECTORS.append((name, pkt, trailer, opts or {}))


add("v4_syn_linux",
    E() / IP(**V4, flags="DF", ttl=64) /
    tcp(sport=40000, dport=80, seq=0xfffffff0, flags="S", window=64240, options=LINUX_SYN),
    opts=dict(mss=1460, sack_permitted=True, ts=(123456789, 0), wscale=7))
add("v4_data_odd",
    E() / IP(**V4) /
    tcp(sport=40000, dport=80, seq=1, ack=0x80000000, flags="PA", window=502,
        options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]) /
    Raw(b"GET / HTTP/1.1\r\n\r"),
    opts=dict(ts=(1, 2)))
add("v4_ip_options",
    E() / IP(**V4, options=[IPOption_Router_Alert()]) /
    tcp(sport=1234, dport=80, seq=7, ack=9, flags="A", window=1000) / Raw(b"abc"))
add("v4_vlan_sack2",
    E() / Dot1Q(vlan=100, prio=3) / IP(**V4) /
    tcp(sport=5555, dport=443, seq=42, ack=43, flags="A", window=29200,
        options=[("NOP", None), ("NOP", None), ("SAck", (1000, 2000, 3000, 4000))]),
    opts=dict(sack_blocks=2))
add("v4_qinq",
    E() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(**V4) /
    tcp(sport=6000, dport=80, seq=0x7fffffff, flags="S", window=1024, options=[("MSS", 1400)]),
    opts=dict(mss=1400))
# A bare ACK padded to the 60-byte Ethernet minimum, as a NIC delivers it.
add("v4_padded",
    E() / IP(**V4) / tcp(sport=1, dport=80, seq=5, ack=6, flags="A", window=8),
    trailer=b"\x00" * 6)
add("v4_sack4_odd",
    E() / IP(**V4, tos=0xb8, ttl=3) /
    tcp(sport=80, dport=50000, seq=0xffffffff, ack=0xfffffffe, flags="A", window=0,
        options=[("NOP", None), ("NOP", None),
                 ("SAck", (0xfffffff0, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70))]) /
    Raw(b"z"),
    opts=dict(sack_blocks=4))
# WScale 15 is over RFC 7323's limit: the parser must clamp it to 14.
add("v4_wscale15_tfo_unknown",
    E() / IP(**V4) /
    tcp(sport=40004, dport=80, seq=1000, flags="S", window=65535,
        options=[("MSS", 536), ("WScale", 15), ("TFO", b"\x11" * 8), (99, b"\xaa\xbb")]),
    opts=dict(mss=536, wscale=14, fastopen=8, unknown=1))
add("v4_big_odd",
    E() / IP(**V4) /
    tcp(sport=443, dport=40005, seq=0x80000000, ack=0x7fffffff, flags="PA", window=4096) /
    Raw(bytes((i * 37 + 11) & 0xff for i in range(1401))))
add("v4_zero_checksums",
    with_zero_ip_checksum(with_zero_tcp_checksum(
        E() / IP(**V4) /
        tcp(sport=40006, dport=80, seq=0x01020304, ack=0x05060708, flags="PA", window=77) /
        Raw(b"\x00\x00hello, moat"))))
add("v6_syn_linux",
    E() / IPv6(**V6) /
    tcp(sport=40001, dport=80, seq=0x12345678, flags="S", window=64800, options=LINUX_SYN),
    opts=dict(mss=1460, sack_permitted=True, ts=(123456789, 0), wscale=7))
add("v6_ext_chain_odd",
    E() / IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() /
    tcp(sport=40002, dport=80, seq=99, ack=100, flags="PA", window=5) / Raw(b"odd payload!!"))
add("v6_ts_sack3",
    E() / IPv6(**V6, tc=0x28, hlim=1) /
    tcp(sport=80, dport=40003, seq=1, ack=2, flags="A", window=65535,
        options=[("NOP", None), ("NOP", None), ("Timestamp", (0xfffffffe, 0xffffffff)),
                 ("NOP", None), ("NOP", None), ("SAck", (1, 2, 3, 4, 5, 6))]),
    opts=dict(ts=(0xfffffffe, 0xffffffff), sack_blocks=3))
add("v6_vlan_odd",
    E() / Dot1Q(vlan=4094) / IPv6(**V6) /
    tcp(sport=22, dport=40007, seq=3, ack=4, flags="FA", window=300) / Raw(b"!"))
# Four bytes after the datagram (an FCS left on by the NIC): not payload.
add("v6_trailer",
    E() / IPv6(**V6) / tcp(sport=9, dport=80, seq=10, ack=11, flags="R", window=0) / Raw(b"xyz"),
    trailer=b"\xde\xad\xbe\xef")
add("v6_zero_checksum",
    with_zero_tcp_checksum(
        E() / IPv6(**V6) /
        tcp(sport=40008, dport=443, seq=0xdeadbeef, ack=1, flags="A", window=1) /
        Raw(b"\x00\x00abcde")))

# Frames that parse without a TCP header: fragments, other protocols, ARP.
big = E() / IP(**V4, id=4242) / tcp(sport=40009, dport=80, flags="PA") / Raw(b"F" * 60)
frags = fragment(big, fragsize=32)
add("v4_first_fragment", frags[0])
add("v4_later_fragment", frags[1])
add("v6_fragment_header",
    E() / IPv6(**V6) / IPv6ExtHdrFragment(id=7, offset=0, m=1) /
    tcp(sport=40010, dport=80, flags="S") / Raw(b"x" * 8))
add("v4_udp", E() / IP(**V4) / UDP(sport=53, dport=5353) / Raw(b"dns?"))
add("arp", E() / ARP(psrc="198.18.0.1", pdst="198.18.0.2"), trailer=b"\x00" * 18)


def header_len(layer):
    return len(bytes(layer)) - len(bytes(layer.payload))


def describe(name, pkt, trailer, opts):
    raw = bytes(pkt) + trailer
    p = Ether(raw)
    d = dict(name=name, frame=raw, l3="kOther", vlans=0, vlan_tci=[0, 0], l3_offset=14,
             l3_end=0, l4_proto=0, is_fragment=False, is_tcp=False, l4_offset=0,
             tcp_header_len=0, payload_len=0, ip_checksum=0, tcp_checksum=0, sport=0,
             dport=0, seq=0, ack=0, flags=0, window=0)
    q = p.payload
    while isinstance(q, (Dot1Q, Dot1AD)):
        d["vlan_tci"][d["vlans"]] = (q.prio << 13) | (q.id << 12) | q.vlan
        d["vlans"] += 1
        d["l3_offset"] += 4
        q = q.payload
    l4 = None
    if isinstance(q, IP):
        d["l3"] = "kIpv4"
        d["l3_end"] = d["l3_offset"] + q.len
        d["ip_checksum"] = q.chksum
        d["l4_proto"] = q.proto
        d["is_fragment"] = bool(q.flags.MF) or q.frag != 0
        d["l4_offset"] = d["l3_offset"] + q.ihl * 4
        l4 = q.payload
    elif isinstance(q, IPv6):
        d["l3"] = "kIpv6"
        d["l3_end"] = d["l3_offset"] + 40 + q.plen
        off = d["l3_offset"] + 40
        nh = q.nh
        h = q.payload
        while isinstance(h, (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting,
                             IPv6ExtHdrFragment)):
            if isinstance(h, IPv6ExtHdrFragment):
                d["is_fragment"] = True
            off += header_len(h)
            nh = h.nh
            h = h.payload
        d["l4_proto"] = nh
        d["l4_offset"] = off
        l4 = h
    if isinstance(l4, TCP) and not d["is_fragment"]:
        d["is_tcp"] = True
        d["tcp_header_len"] = l4.dataofs * 4
        d["payload_len"] = d["l3_end"] - d["l4_offset"] - l4.dataofs * 4
        for f in ("sport", "dport", "seq", "ack", "window"):
            d[f] = getattr(l4, f)
        d["flags"] = int(l4.flags)
        d["tcp_checksum"] = l4.chksum
    d["opts"] = opts
    return d


def c_bytes(b, indent):
    rows = []
    for i in range(0, len(b), 12):
        rows.append(indent + ", ".join("0x%02x" % x for x in b[i:i + 12]) + ",")
    return "\n".join(rows)


def render(vectors):
    out = [
        "// Generated by tests/net/make_scapy_vectors.py with scapy - do not edit.",
        "// Regenerate: /usr/bin/python3 tests/net/make_scapy_vectors.py",
        "// clang-format off",
        "#pragma once",
        "",
        "#include <cstdint>",
        "#include <vector>",
        "",
        "#include \"moat/net/packet.h\"",
        "",
        "namespace moat::testing {",
        "",
        "// What scapy says about one frame. Offsets are from the frame start.",
        "struct ScapyVector {",
        "  const char* name;",
        "  std::vector<uint8_t> frame;",
        "  net::L3 l3;",
        "  int vlans;",
        "  uint16_t vlan_tci[2];",
        "  uint16_t l3_offset, l3_end;",
        "  uint8_t l4_proto;",
        "  bool is_fragment;",
        "  bool is_tcp;  // the rest is meaningful only when true",
        "  uint16_t l4_offset, tcp_header_len, payload_len;",
        "  uint16_t ip_checksum;  // 0 unless IPv4",
        "  uint16_t tcp_checksum;",
        "  uint16_t sport, dport;",
        "  uint32_t seq, ack;",
        "  uint8_t flags;",
        "  uint16_t window;",
        "  // TCP options, as written (wscale already clamped to 14); -1 = absent.",
        "  int mss, wscale;",
        "  bool sack_permitted, has_timestamps;",
        "  uint32_t tsval, tsecr;",
        "  int sack_blocks, fastopen_cookie_len, unknown_options;",
        "};",
        "",
        "inline const std::vector<ScapyVector>& ScapyVectors() {",
        "  static const std::vector<ScapyVector> v = {",
    ]
    for name, pkt, trailer, opts in vectors:
        d = describe(name, pkt, trailer, opts)
        o = d["opts"]
        ts = o.get("ts")
        out.append("      {\"%s\"," % d["name"])
        out.append("       {")
        out.append(c_bytes(d["frame"], "           "))
        out.append("       },")
        out.append("       net::L3::%s, %d, {0x%04x, 0x%04x}, %d, %d, %d, %s, %s, %d, %d, %d," % (
            d["l3"], d["vlans"], d["vlan_tci"][0], d["vlan_tci"][1], d["l3_offset"], d["l3_end"],
            d["l4_proto"], str(d["is_fragment"]).lower(), str(d["is_tcp"]).lower(),
            d["l4_offset"], d["tcp_header_len"], d["payload_len"]))
        out.append("       0x%04x, 0x%04x, %d, %d, 0x%08xu, 0x%08xu, 0x%02x, %d," % (
            d["ip_checksum"], d["tcp_checksum"], d["sport"], d["dport"], d["seq"], d["ack"],
            d["flags"], d["window"]))
        out.append("       %d, %d, %s, %s, 0x%08xu, 0x%08xu, %d, %d, %d}," % (
            o.get("mss", -1), o.get("wscale", -1), str(o.get("sack_permitted", False)).lower(),
            str(ts is not None).lower(), ts[0] if ts else 0, ts[1] if ts else 0,
            o.get("sack_blocks", 0), o.get("fastopen", -1), o.get("unknown", 0)))
    out += ["  };", "  return v;", "}", "", "}  // namespace moat::testing",
            "// clang-format on", ""]
    return "\n".join(out)


def main():
    text = render(VECTORS)
    if "--stdout" in sys.argv[1:]:
        sys.stdout.write(text)
        return
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scapy_vectors.h")
    with open(path, "w") as f:
        f.write(text)
    print("wrote %s (%d vectors)" % (path, len(VECTORS)))


if __name__ == "__main__":
    main()
