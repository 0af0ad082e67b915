#!/usr/bin/python3
# Writes icmp_vectors.h: ICMP errors quoting TCP segments, the IP packets
# that may or may not hide a TCP segment, and ICMP checksums after a quoted
# seq changes, all built and checksummed by scapy, an implementation
# independent of moat's (lib/net/icmp.cc), with the answers a correct
# implementation must give.
#
# The header is checked in; building and running the tests never needs
# scapy. Regenerate (Debian's scapy lives under /usr/bin/python3, not the
# python3 that may come first on PATH) with:
#   /usr/bin/python3 tests/net/make_icmp_vectors.py          # rewrites the header
#   /usr/bin/python3 tests/net/make_icmp_vectors.py --stdout  # prints it
# The output is deterministic: same scapy, same bytes.
import ipaddress
import os
import sys

from scapy.all import (UDP, Dot1AD, Dot1Q, Ether, ICMP, ICMPv6DestUnreach, ICMPv6EchoReply,
                       ICMPv6EchoRequest, ICMPv6PacketTooBig, ICMPv6ParamProblem,
                       ICMPv6TimeExceeded, IP, IPerror, IPerror6, IPOption_NOP,
                       IPOption_Router_Alert, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                       MIP6MH_BRR, Raw, TCP, TCPerror, checksum, fragment)
from scapy.layers.ipsec import AH, ESP

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
# The quoted segment went from a backend (.2, port 80) to a client (.1); a
# router (.9) reports on it to the backend. RFC 792 / RFC 4443 §2.4: the
# error goes to the offending packet's source.
BACKEND4, CLIENT4, ROUTER4 = "198.18.0.2", "198.18.0.1", "198.18.0.9"
BACKEND6, CLIENT6, ROUTER6 = "2001:2::2", "2001:2::1", "2001:2::9"
SPORT, DPORT = 80, 40000
SEQ = 0x11223344


def E():
    return Ether(**MACS)


def outer4(**kw):
    return IP(src=ROUTER4, dst=BACKEND4, **kw)


def outer6(**kw):
    return IPv6(src=ROUTER6, dst=BACKEND6, **kw)


def segment4(seq=SEQ, payload=1400, ip_kw=None, tcp_kw=None):
    """The offending datagram as the backend sent it (a full-sized segment,
    as path MTU discovery reports on)."""
    return (IP(src=BACKEND4, dst=CLIENT4, flags="DF", **(ip_kw or {})) /
            TCP(sport=SPORT, dport=DPORT, seq=seq, ack=0x55667788, flags="PA", window=502,
                **(tcp_kw or {})) /
            Raw(bytes((i * 7 + 3) & 0xff for i in range(payload))))


def segment6(seq=SEQ, payload=1400, tcp_kw=None):
    return (IPv6(src=BACKEND6, dst=CLIENT6) /
            TCP(sport=SPORT, dport=DPORT, seq=seq, ack=0x55667788, flags="PA", window=502,
                **(tcp_kw or {})) /
            Raw(bytes((i * 7 + 3) & 0xff for i in range(payload))))


def ip_header_len(pkt):
    return len(bytes(pkt)) - len(bytes(pkt.payload))


def quote_of(inner, tcp_bytes=None):
    """The first bytes of `inner` an ICMP error carries: its IP header and
    `tcp_bytes` of what follows (None: the whole datagram)."""
    raw = bytes(inner)
    if tcp_bytes is None:
        return raw
    return raw[:ip_header_len(inner) + tcp_bytes]


# --- ParseIcmpTcpQuote ------------------------------------------------------

# (name, frame bytes, datagram end, expect ok)
QUOTES = []


def quote(name, pkt, ok, trailer=b""):
    raw = bytes(pkt)
    QUOTES.append((name, raw + trailer, len(raw), ok))


# ICMPv4 errors that must be understood (RFC 792; RFC 1191 for the MTU).
quote("v4_frag_needed_min",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quote_of(segment4(), 8)), True)
quote("v4_frag_needed_long_vlan",
      E() / Dot1Q(vlan=100) / outer4() / ICMP(type=3, code=4, nexthopmtu=1400) /
      Raw(quote_of(segment4(payload=500))), True)
quote("v4_port_unreach_qinq",
      E() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / outer4() / ICMP(type=3, code=3) /
      Raw(quote_of(segment4(), 32)), True)
quote("v4_time_exceeded",
      E() / outer4() / ICMP(type=11, code=0) / Raw(quote_of(segment4(seq=0xffffffff), 8)), True)
quote("v4_time_exceeded_qinq_long",
      E() / Dot1AD(vlan=4000) / Dot1Q(vlan=1) / outer4() / ICMP(type=11, code=0) /
      Raw(quote_of(segment4(seq=0, payload=333))), True)
# Inner IHL 6 (Router Alert): the ports are 24 bytes in, not 20.
quote("v4_param_problem_inner_options_min",
      E() / outer4() / ICMP(type=12, code=0, ptr=20) /
      Raw(quote_of(segment4(ip_kw=dict(options=[IPOption_Router_Alert()])), 8)), True)
# Inner IHL 15, the most options IPv4 allows (40 bytes).
quote("v4_dest_unreach_inner_ihl15",
      E() / Dot1Q(vlan=7) / outer4() / ICMP(type=3, code=1) /
      Raw(quote_of(segment4(ip_kw=dict(options=[IPOption_NOP()] * 40)), 8)), True)
# Options on the outer header move the ICMP message, not the quote's shape.
quote("v4_outer_options",
      E() / outer4(options=[IPOption_Router_Alert()]) / ICMP(type=3, code=4, nexthopmtu=576) /
      Raw(quote_of(segment4(), 20)), True)
# A quote of a first fragment (MF, offset 0) still holds the ports.
quote("v4_quote_first_fragment",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) /
      Raw(quote_of(IP(src=BACKEND4, dst=CLIENT4, flags="MF") /
                   TCP(sport=SPORT, dport=DPORT, seq=SEQ, flags="A") / Raw(b"f" * 64), 8)), True)
# An FCS the NIC left on: not part of the message.
quote("v4_trailer",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quote_of(segment4(), 8)), True,
      trailer=b"\xde\xad\xbe\xef")

# ICMPv6 errors (RFC 4443 §3; RFC 8201 for Packet Too Big).
quote("v6_packet_too_big_min",
      E() / outer6() / ICMPv6PacketTooBig(mtu=1280) / Raw(quote_of(segment6(), 8)), True)
quote("v6_packet_too_big_long_vlan",
      E() / Dot1Q(vlan=200) / outer6() / ICMPv6PacketTooBig(mtu=1280) /
      Raw(quote_of(segment6(payload=1000))), True)
quote("v6_dest_unreach",
      E() / outer6() / ICMPv6DestUnreach(code=1) / Raw(quote_of(segment6(seq=0xffffffff), 20)),
      True)
quote("v6_time_exceeded_qinq",
      E() / Dot1AD(vlan=3) / Dot1Q(vlan=4) / outer6() / ICMPv6TimeExceeded(code=0) /
      Raw(quote_of(segment6(seq=0), 8)), True)
quote("v6_param_problem",
      E() / outer6() / ICMPv6ParamProblem(code=0, ptr=40) / Raw(quote_of(segment6(), 40)), True)
# Extension headers before the ICMPv6 header move the message.
quote("v6_ext_headers_before_icmp",
      E() / outer6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
      ICMPv6PacketTooBig(mtu=1300) / Raw(quote_of(segment6(), 8)), True)
quote("v6_trailer",
      E() / outer6() / ICMPv6PacketTooBig(mtu=1280) / Raw(quote_of(segment6(), 8)), True,
      trailer=b"\x00" * 6)

# Refused: not an error, or an error about something that is not a TCP
# segment moat can find.
quote("v4_echo_request", E() / outer4() / ICMP(type=8, id=1, seq=2) / Raw(b"x" * 48), False)
quote("v4_echo_reply", E() / outer4() / ICMP(type=0, id=1, seq=2) / Raw(quote_of(segment4(), 8)),
      False)
quote("v6_echo_request", E() / outer6() / ICMPv6EchoRequest(id=1, seq=2) / Raw(b"x" * 48), False)
quote("v6_echo_reply",
      E() / outer6() / ICMPv6EchoReply(id=1, seq=2) / Raw(quote_of(segment6(), 8)), False)
# RFC 4443 §2.1: 128 and up are informational, whatever follows.
quote("v6_informational_128_quoting_tcp",
      E() / outer6() / ICMPv6EchoRequest(id=1, seq=2) / Raw(quote_of(segment6(), 8)), False)
# Redirect (5) and Source Quench (4, RFC 6633) quote a datagram too, but
# neither is an error moat translates.
quote("v4_redirect",
      E() / outer4() / ICMP(type=5, code=1, gw="198.18.0.254") / Raw(quote_of(segment4(), 8)),
      False)
quote("v4_source_quench", E() / outer4() / ICMP(type=4) / Raw(quote_of(segment4(), 8)), False)
quote("v4_quote_udp",
      E() / outer4() / ICMP(type=3, code=3) /
      Raw(quote_of(IP(src=BACKEND4, dst=CLIENT4) / UDP(sport=53, dport=40000) / Raw(b"q" * 30),
                   8)), False)
quote("v6_quote_udp",
      E() / outer6() / ICMPv6DestUnreach(code=4) /
      Raw(quote_of(IPv6(src=BACKEND6, dst=CLIENT6) / UDP(sport=53, dport=40000) /
                   Raw(b"q" * 30), 8)), False)
# RFC 791: only the first fragment carries the TCP header.
quote("v4_quote_later_fragment",
      E() / outer4() / ICMP(type=11, code=1) /
      Raw(quote_of(IP(src=BACKEND4, dst=CLIENT4, frag=185, proto=6) / Raw(b"\x01" * 64), 8)),
      False)
quote("v4_quote_cut_7",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quote_of(segment4(), 7)), False)
quote("v6_quote_cut_7",
      E() / outer6() / ICMPv6PacketTooBig(mtu=1280) / Raw(quote_of(segment6(), 7)), False)
# 28 bytes, the RFC 792 minimum for IHL 5, but this header has IHL 6: only
# 4 bytes of TCP (no seq).
quote("v4_quote_options_cut",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) /
      Raw(bytes(segment4(ip_kw=dict(options=[IPOption_Router_Alert()])))[:28]), False)
quote("v4_quote_cut_in_ip_header",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) / Raw(bytes(segment4())[:16]), False)
quote("v4_quote_ihl_4",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) /
      Raw(quote_of(segment4(ip_kw=dict(ihl=4)), 12)[:32]), False)
# The bytes that would complete the quote sit after the datagram (padding
# or an FCS): the message ends at the IP length.
quote("v4_quote_cut_with_trailer",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quote_of(segment4(), 4)), False,
      trailer=bytes(segment4())[24:32])
quote("v6_quote_cut_with_trailer",
      E() / outer6() / ICMPv6PacketTooBig(mtu=1280) / Raw(quote_of(segment6(), 4)), False,
      trailer=bytes(segment6())[44:52])
quote("v4_icmp_too_short", E() / outer4(proto=1) / Raw(b"\x03\x04\x00\x00\x00\x00\x05"), False)
# Family mismatches: the ICMP version must match the IP it rides in, and
# the quote must be of the same family as the error.
quote("v4_icmp_in_ipv6",
      E() / outer6(nh=1) / ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quote_of(segment4(), 8)),
      False)
v6_in_v4 = ICMPv6PacketTooBig(mtu=1280, cksum=0) / Raw(quote_of(segment6(), 8))
v6_in_v4.cksum = checksum(bytes(v6_in_v4))  # no pseudo-header in IPv4; any value will do
quote("v6_icmp_in_ipv4", E() / outer4(proto=58) / v6_in_v4, False)
quote("v4_error_quoting_ipv6",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quote_of(segment6(), 8)), False)
quote("v6_error_quoting_ipv4",
      E() / outer6() / ICMPv6PacketTooBig(mtu=1280) / Raw(quote_of(segment4(), 8)), False)
# A 20-byte header that says version 6 in an IPv4 quote.
quote("v4_quote_version_6",
      E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) /
      Raw(quote_of(segment4(ip_kw=dict(version=6)), 8)), False)
# A 40-byte header naming TCP that says version 4 in an IPv6 quote.
quote("v6_quote_version_4",
      E() / outer6() / ICMPv6PacketTooBig(mtu=1280) /
      Raw(bytes(IPv6(src=BACKEND6, dst=CLIENT6, version=4) /
                TCP(sport=SPORT, dport=DPORT, seq=SEQ, flags="A"))[:48]), False)
# The header comment of icmp.h: the quote must be an IPv6 header naming TCP
# directly; a quoted extension header is not walked.
quote("v6_quote_with_ext_header",
      E() / outer6() / ICMPv6PacketTooBig(mtu=1280) /
      Raw(bytes(IPv6(src=BACKEND6, dst=CLIENT6) / IPv6ExtHdrHopByHop() /
                TCP(sport=SPORT, dport=DPORT, seq=SEQ, flags="A"))[:56]), False)
# An error that is itself a fragment: moat does not reassemble.
for i, frag in enumerate(fragment(E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) /
                                  Raw(quote_of(segment4(payload=100))), fragsize=64)[:2]):
    quote("v4_icmp_fragment_%d" % i, frag, False)
quote("v6_icmp_fragment",
      E() / outer6() / IPv6ExtHdrFragment(id=9, offset=0, m=1) / ICMPv6PacketTooBig(mtu=1280) /
      Raw(quote_of(segment6(), 8)), False)


def addr_bytes(a):
    return ipaddress.ip_address(a).packed


def describe_quote(name, raw, l3_end, ok):
    d = dict(name=name, frame=raw, ok=ok, type=0, addr_len=0, src=b"", dst=b"", sport=0,
             dport=0, seq_offset=0, seq=0)
    if not ok:
        return d
    p = Ether(raw)
    inner = p[IPerror6] if IPerror6 in p else p[IPerror]
    t = p[TCPerror]
    icmp = inner.underlayer
    d["type"] = icmp.type
    d["addr_len"] = 16 if isinstance(inner, IPerror6) else 4
    d["src"], d["dst"] = addr_bytes(inner.src), addr_bytes(inner.dst)
    d["sport"], d["dport"], d["seq"] = t.sport, t.dport, t.seq
    # Scapy keeps each dissected layer's bytes: the quoted TCP header starts
    # where its bytes start, counted back from the end of the datagram.
    d["seq_offset"] = l3_end - len(t.original) + 4
    assert raw[d["seq_offset"]:d["seq_offset"] + 4] == t.seq.to_bytes(4, "big"), name
    return d


# --- RewriteIcmpQuotedSeq ---------------------------------------------------

# Frame builders taking the quoted seq: the inner TCP checksum is pinned to
# the original segment's, since moat leaves the quoted TCP checksum alone
# (icmp.h); everything else is identical, and scapy computes the ICMP
# checksum (ICMPv6: with its pseudo-header, RFC 4443 §2.3).
def pinned4(seq, payload, ip_kw=None):
    c = IP(bytes(segment4(payload=payload, ip_kw=ip_kw)))[TCP].chksum
    return segment4(seq=seq, payload=payload, ip_kw=ip_kw, tcp_kw=dict(chksum=c))


def pinned6(seq, payload):
    c = IPv6(bytes(segment6(payload=payload)))[TCP].chksum
    return segment6(seq=seq, payload=payload, tcp_kw=dict(chksum=c))


REWRITE_BASES = [
    ("v4_frag_needed_min",
     lambda s: E() / outer4() / ICMP(type=3, code=4, nexthopmtu=1280) /
     Raw(quote_of(pinned4(s, 1400), 8))),
    # An odd-length message: the last byte is summed padded with zero.
    ("v4_long_odd_vlan",
     lambda s: E() / Dot1Q(vlan=100) / outer4() / ICMP(type=3, code=4, nexthopmtu=1400) /
     Raw(quote_of(pinned4(s, 201)))),
    ("v4_time_exceeded_inner_options_qinq",
     lambda s: E() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / outer4() / ICMP(type=11) /
     Raw(quote_of(pinned4(s, 1400, ip_kw=dict(options=[IPOption_Router_Alert()])), 8))),
    ("v6_packet_too_big_min",
     lambda s: E() / outer6() / ICMPv6PacketTooBig(mtu=1280) / Raw(quote_of(pinned6(s, 1400), 8))),
    ("v6_packet_too_big_long_odd_vlan",
     lambda s: E() / Dot1Q(vlan=200) / outer6() / ICMPv6PacketTooBig(mtu=1280) /
     Raw(quote_of(pinned6(s, 255)))),
    ("v6_dest_unreach_ext_qinq",
     lambda s: E() / Dot1AD(vlan=3) / Dot1Q(vlan=4) / outer6() / IPv6ExtHdrHopByHop() /
     ICMPv6DestUnreach(code=4) / Raw(quote_of(pinned6(s, 1400), 20))),
]


def icmp_checksum(raw):
    p = Ether(raw)
    return p[ICMPv6PacketTooBig].cksum if ICMPv6PacketTooBig in p else (
        p[ICMPv6DestUnreach].cksum if ICMPv6DestUnreach in p else p[ICMP].chksum)


def zero_checksum_seq(build):
    """A quoted seq that makes scapy's ICMP checksum 0x0000: with seq 0 the
    rest of the message sums to ~c0, so a seq whose high word is c0 brings
    the one's-complement sum to 0xFFFF (RFC 1624 §3's corner)."""
    c0 = icmp_checksum(bytes(build(0)))
    seq = c0 << 16
    assert icmp_checksum(bytes(build(seq))) == 0
    return seq


# (name, before, after, new seq)
REWRITES = []
for base, build in REWRITE_BASES:
    z = zero_checksum_seq(build)
    pairs = [(SEQ, 0), (SEQ, 0xffffffff), (0, 0xffffffff), (0xffffffff, 0),
             (0x0000ffff, 0xffff0000), (SEQ, 0x80000000), (SEQ, z), (z, SEQ), (z, z ^ 1)]
    for old, new in pairs:
        before, after = bytes(build(old)), bytes(build(new))
        assert len(before) == len(after)
        diff = [i for i in range(len(before)) if before[i] != after[i]]
        assert len(diff) <= 6, (base, diff)  # the seq and the ICMP checksum only
        REWRITES.append(("%s_%08x_to_%08x" % (base, old, new), before, after, new))


# --- MayHideTcp -------------------------------------------------------------

def tcp_bytes(v6=False, **kw):
    """A TCP header as raw bytes, for behind headers scapy cannot stack
    TCP on."""
    seg = (IPv6(src=CLIENT6, dst=BACKEND6) if v6 else IP(src=CLIENT4, dst=BACKEND4)) / \
        TCP(sport=DPORT, dport=SPORT, seq=SEQ, flags="S", **kw)
    return bytes(seg)[40 if v6 else 20:]


def generic_ext(nh, body=6):
    """An extension header shaped like RFC 8200 §4's (next header, length
    in 8-octet units beyond the first), naming `nh`."""
    return bytes([nh, 0]) + b"\x00" * body


def c4(**kw):
    return IP(src=CLIENT4, dst=BACKEND4, **kw)


def c6(**kw):
    return IPv6(src=CLIENT6, dst=BACKEND6, **kw)


def syn(**kw):
    return TCP(sport=DPORT, dport=SPORT, seq=SEQ, flags="S", **kw)


# (name, frame, MayHideTcp's answer)
HIDES = []


def hide(name, pkt, may_hide):
    HIDES.append((name, bytes(pkt), may_hide))


big4 = E() / c4(id=77) / syn() / Raw(b"F" * 64)
f4 = fragment(big4, fragsize=32)
hide("v4_tcp_first_fragment", f4[0], True)
hide("v4_tcp_later_fragment", f4[1], True)
hide("v4_tcp_last_fragment", f4[-1], True)
hide("v4_ah_tcp",
     E() / c4() / AH(nh=6, payloadlen=4, spi=0x100, seq=1, icv=b"\x00" * 12) / syn(), True)
hide("v4_ah_udp_still_hides",  # moat does not walk AH: whatever follows may be TCP
     E() / c4() / AH(nh=17, payloadlen=4, spi=0x100, seq=1, icv=b"\x00" * 12) /
     UDP(sport=1, dport=2), True)
hide("v6_ah_tcp",
     E() / c6() / AH(nh=6, payloadlen=4, spi=0x100, seq=1, icv=b"\x00" * 12) / syn(), True)
hide("v6_hbh_ah_tcp",
     E() / c6() / IPv6ExtHdrHopByHop() / AH(nh=6, payloadlen=4, spi=0x100, seq=1,
                                             icv=b"\x00" * 12) / syn(), True)
hide("v6_fragment_tcp_first",
     E() / c6() / IPv6ExtHdrFragment(id=5, offset=0, m=1) / syn() / Raw(b"x" * 8), True)
hide("v6_fragment_tcp_later",
     E() / c6() / IPv6ExtHdrFragment(nh=6, id=5, offset=3, m=0) / Raw(b"x" * 16), True)
hide("v6_fragment_atomic_tcp",
     E() / c6() / IPv6ExtHdrFragment(id=5, offset=0, m=0) / syn(), True)
# RFC 8200 §4.5: after a Fragment header the fragmentable part may start
# with Destination Options; the parser stops at the Fragment header.
hide("v6_fragment_destopts_tcp",
     E() / c6() / IPv6ExtHdrFragment(id=5, offset=0, m=1) / IPv6ExtHdrDestOpt() / syn() /
     Raw(b"x" * 8), True)
hide("v6_fragment_routing",
     E() / c6() / IPv6ExtHdrFragment(id=5, offset=0, m=1) / IPv6ExtHdrRouting() / syn(), True)
# Behind a Fragment header even hop-by-hop (0) or a second Fragment header
# (44) is not walked: what follows is unknown.
hide("v6_fragment_naming_hbh",
     E() / c6() / IPv6ExtHdrFragment(nh=0, id=5, offset=1, m=1) / Raw(b"x" * 16), True)
hide("v6_fragment_naming_fragment",
     E() / c6() / IPv6ExtHdrFragment(nh=44, id=5, offset=0, m=1) /
     IPv6ExtHdrFragment(id=6, offset=0, m=0) / syn(), True)
hide("v6_mobility", E() / c6() / MIP6MH_BRR(), True)
hide("v6_mobility_then_tcp", E() / c6(nh=135) / Raw(generic_ext(6) + tcp_bytes(True)), True)
hide("v6_hip", E() / c6(nh=139) / Raw(generic_ext(59, 38)), True)
hide("v6_shim6", E() / c6(nh=140) / Raw(generic_ext(6) + tcp_bytes(True)), True)
hide("v6_experimental_253", E() / c6(nh=253) / Raw(generic_ext(6) + tcp_bytes(True)), True)
hide("v6_experimental_254", E() / c6(nh=254) / Raw(generic_ext(6) + tcp_bytes(True)), True)
hide("v6_destopts_shim6",
     E() / c6() / IPv6ExtHdrDestOpt(nh=140) / Raw(generic_ext(6) + tcp_bytes(True)), True)
# Headers the parser walks over: what is behind is plain TCP (is_tcp), and
# TCP itself "may hide" TCP.
hide("v6_hbh_tcp", E() / c6() / IPv6ExtHdrHopByHop() / syn(), True)
hide("v6_hbh_routing_destopts_tcp",
     E() / c6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / syn(), True)
hide("v4_plain_tcp", E() / c4() / syn(), True)
hide("v6_plain_tcp", E() / c6() / syn(), True)
# Cannot reach a backend as TCP.
hide("v4_esp", E() / c4() / ESP(spi=0x100, seq=1, data=b"\x00" * 32), False)
hide("v6_esp", E() / c6() / ESP(spi=0x100, seq=1, data=b"\x00" * 32), False)
hide("v6_hbh_esp", E() / c6() / IPv6ExtHdrHopByHop() / ESP(spi=1, seq=1, data=b"\x00" * 8),
     False)
hide("v4_udp", E() / c4() / UDP(sport=53, dport=5353) / Raw(b"dns?"), False)
hide("v6_udp", E() / c6() / UDP(sport=53, dport=5353) / Raw(b"dns?"), False)
hide("v6_destopts_udp", E() / c6() / IPv6ExtHdrDestOpt() / UDP(sport=53, dport=5353), False)
hide("v4_icmp", E() / c4() / ICMP(type=8) / Raw(b"ping"), False)
hide("v6_icmp", E() / c6() / ICMPv6EchoRequest() / Raw(b"ping"), False)
hide("v4_udp_fragment", fragment(E() / c4(id=78) / UDP(sport=1, dport=2) / Raw(b"u" * 64),
                                 fragsize=32)[1], False)
# The Fragment header names the fragmentable part's first header, the same
# in every fragment (RFC 8200 §4.5): a UDP fragment is UDP.
hide("v6_fragment_udp",
     E() / c6() / IPv6ExtHdrFragment(nh=17, id=6, offset=2, m=1) / Raw(b"u" * 16), False)
hide("v6_no_next_header", E() / c6(nh=59), False)
# Extension header numbers mean nothing in IPv4 (RFC 8200 §4 is IPv6's).
hide("v4_proto_43", E() / c4(proto=43) / Raw(generic_ext(6) + tcp_bytes()), False)
hide("v4_proto_0", E() / c4(proto=0) / Raw(generic_ext(6) + tcp_bytes()), False)
hide("v4_proto_44", E() / c4(proto=44) / Raw(generic_ext(6) + tcp_bytes()), False)
hide("v4_proto_60", E() / c4(proto=60) / Raw(generic_ext(6) + tcp_bytes()), False)
hide("v4_proto_135", E() / c4(proto=135) / Raw(generic_ext(6) + tcp_bytes()), False)
# Tunnels are bridged: a backend that decapsulates them is a deployment
# moat does not protect (documented in MayHideTcp's contract: the named
# headers only).
hide("v4_ipip_tcp", E() / c4() / IP(src=CLIENT4, dst=BACKEND4) / syn(), False)
hide("v6_ipv6_in_ipv6_tcp", E() / c6() / IPv6(src=CLIENT6, dst=BACKEND6) / syn(), False)


def describe_hide(name, raw, may_hide):
    """What ParseFrame must report, from scapy's dissection: IPv6 walks
    hop-by-hop, routing and destination options and stops after a Fragment
    header (packet.h); IPv4 is a fragment when MF or the offset is set."""
    p = Ether(raw)
    q = p.payload
    while isinstance(q, (Dot1Q, Dot1AD)):
        q = q.payload
    d = dict(name=name, frame=raw, may_hide=may_hide, is_fragment=False, is_tcp=False)
    if isinstance(q, IP):
        d["l3"] = "kIpv4"
        d["l4_proto"] = q.proto
        d["is_fragment"] = bool(q.flags.MF) or q.frag != 0
        l4 = q.payload
    else:
        assert isinstance(q, IPv6), name
        d["l3"] = "kIpv6"
        nh = q.nh
        h = q.payload
        while isinstance(h, (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting,
                             IPv6ExtHdrFragment)):
            nh = h.nh
            if isinstance(h, IPv6ExtHdrFragment):
                d["is_fragment"] = True
                break
            h = h.payload
        d["l4_proto"] = nh
        l4 = h.payload if isinstance(h, IPv6ExtHdrFragment) else h
    d["is_tcp"] = d["l4_proto"] == 6 and not d["is_fragment"]
    if d["is_tcp"]:
        assert isinstance(l4, TCP), name
    return d


# --- Output -----------------------------------------------------------------
#
# Frames are string literals in constexpr tables, not brace lists of bytes
# in std::vectors: the brace lists made this header take minutes to compile
# under AddressSanitizer (one huge static initializer).

def c_frame(b, out):
    """A frame as a string literal of \\xNN escapes (16 bytes a line) and
    its length."""
    for i in range(0, len(b), 16):
        out.append("       \"" + "".join("\\x%02x" % x for x in b[i:i + 16]) + "\"")
    out[-1] += ","
    out.append("       %d," % len(b))


def c_addr(b):
    return "{" + ", ".join("0x%02x" % x for x in b) + "}"


def render():
    out = [
        "// Generated by tests/net/make_icmp_vectors.py with scapy - do not edit.",
        "// Regenerate: /usr/bin/python3 tests/net/make_icmp_vectors.py",
        "// clang-format off",
        "#pragma once",
        "",
        "#include <cstddef>",
        "#include <cstdint>",
        "#include <span>",
        "#include <vector>",
        "",
        "#include \"moat/net/packet.h\"",
        "",
        "namespace moat::testing {",
        "",
        "// A copy of a frame's bytes, sized exactly (so ASan sees an overread).",
        "inline std::vector<uint8_t> IcmpVectorFrame(const char* bytes, size_t len) {",
        "  const auto* p = reinterpret_cast<const uint8_t*>(bytes);",
        "  return std::vector<uint8_t>(p, p + len);",
        "}",
        "",
        "// An ICMP error (or not) and what ParseIcmpTcpQuote must say about it.",
        "// Offsets are from the frame start.",
        "struct IcmpQuoteVector {",
        "  const char* name;",
        "  const char* frame_bytes;",
        "  size_t frame_len;",
        "  bool ok;  // the rest is meaningful only when true",
        "  uint8_t type;",
        "  uint8_t addr_len;",
        "  uint8_t src_addr[16], dst_addr[16];  // the quoted segment's",
        "  uint16_t src_port, dst_port;",
        "  uint16_t seq_offset;",
        "  uint32_t seq;",
        "  std::vector<uint8_t> frame() const { return IcmpVectorFrame(frame_bytes, frame_len); }",
        "};",
        "",
        "// The same ICMP error with two quoted seqs; scapy computed both ICMP",
        "// checksums.",
        "struct IcmpRewriteVector {",
        "  const char* name;",
        "  const char* before_bytes;",
        "  size_t before_len;",
        "  const char* after_bytes;",
        "  size_t after_len;",
        "  uint32_t new_seq;",
        "  std::vector<uint8_t> before() const { return IcmpVectorFrame(before_bytes, before_len); }",
        "  std::vector<uint8_t> after() const { return IcmpVectorFrame(after_bytes, after_len); }",
        "};",
        "",
        "// An IP packet and what ParseFrame and MayHideTcp must say about it.",
        "struct MayHideTcpVector {",
        "  const char* name;",
        "  const char* frame_bytes;",
        "  size_t frame_len;",
        "  net::L3 l3;",
        "  uint8_t l4_proto;",
        "  bool is_fragment, is_tcp;",
        "  bool may_hide_tcp;",
        "  std::vector<uint8_t> frame() const { return IcmpVectorFrame(frame_bytes, frame_len); }",
        "};",
        "",
        "inline constexpr IcmpQuoteVector kIcmpQuoteVectors[] = {",
    ]
    for name, raw, l3_end, ok in QUOTES:
        d = describe_quote(name, raw, l3_end, ok)
        out.append("      {\"%s\"," % name)
        c_frame(raw, out)
        out.append("       %s, %d, %d," % (str(ok).lower(), d["type"], d["addr_len"]))
        out.append("       %s," % c_addr(d["src"]))
        out.append("       %s," % c_addr(d["dst"]))
        out.append("       %d, %d, %d, 0x%08xu}," % (d["sport"], d["dport"], d["seq_offset"],
                                                     d["seq"]))
    out += ["};", "", "inline constexpr IcmpRewriteVector kIcmpRewriteVectors[] = {"]
    for name, before, after, new in REWRITES:
        out.append("      {\"%s\"," % name)
        c_frame(before, out)
        c_frame(after, out)
        out.append("       0x%08xu}," % new)
    out += ["};", "", "inline constexpr MayHideTcpVector kMayHideTcpVectors[] = {"]
    for name, raw, may_hide in HIDES:
        d = describe_hide(name, raw, may_hide)
        out.append("      {\"%s\"," % name)
        c_frame(raw, out)
        out.append("       net::L3::%s, %d, %s, %s, %s}," % (
            d["l3"], d["l4_proto"], str(d["is_fragment"]).lower(), str(d["is_tcp"]).lower(),
            str(may_hide).lower()))
    out += [
        "};",
        "",
        "inline std::span<const IcmpQuoteVector> IcmpQuoteVectors() { return kIcmpQuoteVectors; }",
        "inline std::span<const IcmpRewriteVector> IcmpRewriteVectors() {",
        "  return kIcmpRewriteVectors;",
        "}",
        "inline std::span<const MayHideTcpVector> MayHideTcpVectors() { return kMayHideTcpVectors; }",
        "",
        "}  // namespace moat::testing",
        "// clang-format on",
        "",
    ]
    return "\n".join(out)


def main():
    names = [q[0] for q in QUOTES] + [r[0] for r in REWRITES] + [h[0] for h in HIDES]
    assert len(names) == len(set(names)), "duplicate vector names"
    text = render()
    if "--stdout" in sys.argv[1:]:
        sys.stdout.write(text)
        return
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "icmp_vectors.h")
    with open(path, "w") as f:
        f.write(text)
    print("wrote %s (%d quote, %d rewrite, %d may-hide-tcp vectors)" % (
        path, len(QUOTES), len(REWRITES), len(HIDES)))


if __name__ == "__main__":
    main()
