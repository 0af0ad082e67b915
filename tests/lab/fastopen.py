#!/usr/bin/python3
"""TCP Fast Open through moat (tests/lab/fastopen.sh).

  fastopen.py linux N OUT.json
      N HTTP requests from the client namespace's own kernel with
      MSG_FASTOPEN (net.ipv4.tcp_fastopen=1): the first has no cookie yet
      and asks for one, later ones carry the request in the SYN; records for
      each the send time, the response status and body
  fastopen.py scapy SERVER_MAC
      forged cookies by hand (the kernel must not answer: the caller drops
      its RSTs): a cookie request, then SYN + data with that cookie from
      the client address (acked), with a forged cookie (not acked), and with
      the genuine cookie from another address (not acked); one JSON line
  fastopen.py check CLIENT.pcap SERVER.pcap IN.json
      from the two captures: which SYNs carried data and a cookie, whether
      moat's SYN-ACK acknowledged it, and when each request reached the
      backend, relative to its send time; one JSON line
"""
import json
import random
import socket
import struct
import sys
import time

S4 = "198.18.0.2"
MSG_FASTOPEN = 0x20000000


def linux(n, out):
    res = []
    for i in range(n):
        req = b"GET /?tfo=%d HTTP/1.0\r\nHost: moat\r\n\r\n" % i
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Blocking for the connect: with a Python timeout the socket is
        # non-blocking and a first sendto without a cookie yet returns
        # EINPROGRESS. Receives time out through SO_RCVTIMEO.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
        t = time.time()
        r = {"i": i, "t_send": t}
        try:
            s.sendto(req, MSG_FASTOPEN, (S4, 80))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            r["status"] = head.split(b"\r\n")[0].decode(errors="replace")
            r["body"] = body.decode(errors="replace").strip()
        except OSError as e:
            r["error"] = str(e)
        finally:
            s.close()
        res.append(r)
        time.sleep(0.3)
    with open(out, "w") as f:
        json.dump(res, f)
    print(json.dumps([{k: v for k, v in r.items() if k != "t_send"} for r in res]))


def tfo_cookie(t):
    """The Fast Open option's cookie (b"" for a request), None without one."""
    for k, v in t.options:
        if k in ("TFO", 34):
            if isinstance(v, (bytes, str)):
                return v.encode() if isinstance(v, str) else v
            if isinstance(v, tuple):  # scapy decodes 8 bytes as "!II"
                return struct.pack("!%dI" % len(v), *v)
            return b""
    return None


def scapy_cases(mac):
    from scapy.all import AsyncSniffer, Ether, IP, TCP, conf, sendp
    conf.verb = 0
    seen = []
    sniffer = AsyncSniffer(iface="eth0", store=False, prn=seen.append,
                           filter="tcp and src host %s and src port 80" % S4)
    sniffer.start()
    time.sleep(0.5)
    base_opts = [("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]

    def syn(src, sport, cookie, data=b""):
        cisn = random.getrandbits(32)
        opts = base_opts + [("TFO", cookie)]
        sendp(Ether(dst=mac) / IP(src=src, dst=S4) /
              TCP(sport=sport, dport=80, flags="S", seq=cisn, window=64240, options=opts) / data,
              iface="eth0")
        for _ in range(30):
            time.sleep(0.1)
            for p in list(seen):
                t = p[TCP]
                if t.dport == sport and "S" in str(t.flags) and p[IP].dst == src:
                    return cisn, t
        return cisn, None

    out = {}
    cisn, sa = syn("198.18.0.1", 30020, b"")
    cookie = tfo_cookie(sa) if sa is not None else None
    out["cookie_len"] = len(cookie) if cookie else 0
    if not cookie:
        sniffer.stop()
        print(json.dumps(out))
        return
    data = b"GET /scapy HTTP/1.0\r\n\r\n"
    forged = bytes(b ^ 0x5a for b in cookie)
    for name, src, sport, c in (("genuine", "198.18.0.1", 30021, cookie),
                                ("forged", "198.18.0.1", 30022, forged),
                                ("other_address", "198.18.0.3", 30023, cookie)):
        cisn, sa = syn(src, sport, c, data)
        if sa is None:
            out[name] = "no SYN-ACK"
        else:
            acked = (sa.ack - cisn - 1) % 2**32
            out[name] = {"acked_data": acked, "new_cookie": tfo_cookie(sa) is not None}
    sniffer.stop()
    out["data_len"] = len(data)
    print(json.dumps(out))


def check(client_pcap, server_pcap, path):
    from scapy.all import IP, TCP, rdpcap
    with open(path) as f:
        reqs = json.load(f)
    cl = [p for p in rdpcap(client_pcap) if TCP in p]
    sv = [p for p in rdpcap(server_pcap) if TCP in p]
    res = []
    for r in reqs:
        marker = b"GET /?tfo=%d " % r["i"]
        row = {"i": r["i"]}
        # The client's SYN for this request: the first SYN sent after t_send.
        syn = next((p for p in cl if p[IP].src == "198.18.0.1" and str(p[TCP].flags) == "S"
                    and float(p.time) >= r["t_send"] - 0.01), None)
        if syn is not None:
            row["syn_data"] = len(bytes(syn[TCP].payload))
            row["syn_cookie"] = tfo_cookie(syn[TCP]) is not None and len(tfo_cookie(syn[TCP])) > 0
            sa = next((p for p in cl if p[IP].src == S4 and p[TCP].dport == syn[TCP].sport
                       and "S" in str(p[TCP].flags) and "A" in str(p[TCP].flags)), None)
            if sa is not None:
                row["synack_acks"] = (sa[TCP].ack - syn[TCP].seq - 1) % 2**32
                # When the request left the client, relative to moat's
                # SYN-ACK reaching it: before it (in the SYN, Fast Open)
                # saves the round trip a normal handshake waits for.
                sent = next((p for p in cl if p[IP].src == "198.18.0.1"
                             and p[TCP].sport == syn[TCP].sport
                             and bytes(p[TCP].payload).startswith(marker)), None)
                if sent is not None:
                    row["req_before_synack_ms"] = round((float(sa.time) - float(sent.time)) * 1000, 2)
        at_backend = [p for p in sv if p[IP].src == "198.18.0.1"
                      and bytes(p[TCP].payload).startswith(marker)]
        row["at_backend"] = len(at_backend)
        if at_backend:
            row["latency_ms"] = round((float(at_backend[0].time) - r["t_send"]) * 1000, 1)
        res.append(row)
    print(json.dumps(res))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "linux":
        linux(int(sys.argv[2]), sys.argv[3])
    elif mode == "scapy":
        scapy_cases(sys.argv[2])
    elif mode == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: fastopen.py linux|scapy|check ...")
