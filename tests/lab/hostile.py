#!/usr/bin/python3
# Sends malformed and hostile frames from the client namespace towards the
# protected service: each kind COUNT times. Used by hostile.sh, which
# checks that moat counted every one under its own reason and kept serving.
import random
import struct
import sys

from scapy.all import (Dot1Q, Ether, IP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       Raw, TCP, conf, sendp)

conf.verb = 0
server_mac, count = sys.argv[1], int(sys.argv[2])
S4, C4, S6, C6 = "198.18.0.2", "198.18.0.1", "2001:2::2", "2001:2::1"
E = Ether(dst=server_mac)


def tcp_raw(dataofs, options=b"", flags=0x02):
    # A TCP header built by hand, so lengths can be wrong on purpose.
    return struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, dataofs << 4, flags, 1024, 0, 0) + options


def ip_raw(payload, **kw):
    return IP(src=C4, dst=S4, proto=6, **kw) / Raw(payload)


frames = {
    "truncated_tcp": E / ip_raw(tcp_raw(5)[:10]),
    "ipv4_ihl_too_small": E / IP(src=C4, dst=S4, ihl=4) / TCP(dport=80),
    "ipv4_total_length_too_long": E / IP(src=C4, dst=S4, len=1000) / TCP(dport=80),
    "tcp_data_offset_too_small": E / ip_raw(tcp_raw(4)),
    "tcp_data_offset_beyond_packet": E / ip_raw(tcp_raw(15)),
    "tcp_option_length_too_small": E / ip_raw(tcp_raw(6, b"\x08\x01\x00\x00")),
    "tcp_option_past_header": E / ip_raw(tcp_raw(6, b"\x08\x0a\x00\x00")),
    "tcp_option_bad_length": E / ip_raw(tcp_raw(6, b"\x02\x03\x05\x00")),
    "too_many_vlans": E / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(src=C4, dst=S4) / TCP(dport=80),
    "ipv6_too_many_ext_headers": E / IPv6(src=C6, dst=S6) / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
        IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
        IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / TCP(dport=80),
    "drop_fragment": E / IP(src=C4, dst=S4, flags="MF") / TCP(dport=80, flags="S"),
    "drop_fragment6": E / IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(m=1) / TCP(dport=80, flags="S"),
    # An atomic fragment whose Fragment header names Destination Options,
    # which name TCP: the SYN must not slip through to the backend.
    "drop_fragment6_destopts": E / IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment() /
        IPv6ExtHdrDestOpt() / TCP(dport=80, flags="S"),
    # AH (RFC 4302) in front of a SYN: moat does not parse AH, so it drops it.
    "drop_ext_header": E / IP(src=C4, dst=S4, proto=51) /
        Raw(bytes([6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]) + bytes(TCP(dport=80, flags="S"))),
    "drop_bad_checksum": E / IP(src=C4, dst=S4) / TCP(dport=80, flags="S", chksum=0x1234),
    "drop_bad_flags": E / IP(src=C4, dst=S4) / TCP(dport=80, flags="SF"),
}
for name, f in frames.items():
    sendp([f] * count, iface="eth0")
# An ACK flood with guessed cookies from many sources: no state, no reply.
acks = [E / IP(src="198.18.%d.%d" % (random.randint(2, 255), random.randint(1, 254)), dst=S4) /
        TCP(sport=random.randint(1024, 65535), dport=80, flags="A",
            seq=random.getrandbits(32), ack=random.getrandbits(32)) for _ in range(count * 100)]
sendp(acks, iface="eth0")
print("sent %d kinds x %d, %d guessed-cookie ACKs" % (len(frames), count, len(acks)))
