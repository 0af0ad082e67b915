#!/usr/bin/python3
# One side of the close.sh scenarios: close_peer.py ROLE SCENARIO. Prints
# "ok ..." on success, exits non-zero with a reason otherwise.
import hashlib
import os
import socket
import struct
import sys
import time

C4, S4, PORT = "198.18.0.1", "198.18.0.2", 81
role, scenario = sys.argv[1], sys.argv[2]


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((S4, PORT))
    s.listen(4)
    s.settimeout(20)
    c, _ = s.accept()
    c.settimeout(20)
    return c


def recv_all(c):
    data = b""
    while True:
        d = c.recv(65536)
        if not d:
            return data
        data += d


if scenario == "halfclose":
    # The client sends a request and half-closes; the server reads to EOF,
    # then answers on the still-open half.
    if role == "server":
        c = listener()
        req = recv_all(c)
        c.sendall(hashlib.sha256(req).digest() + b"z" * 50000)
        c.close()
        print("ok server read %d bytes to EOF" % len(req))
    else:
        req = os.urandom(100000)
        c = socket.create_connection((S4, PORT), timeout=20)
        c.sendall(req)
        c.shutdown(socket.SHUT_WR)
        resp = recv_all(c)
        if resp[:32] != hashlib.sha256(req).digest() or len(resp) != 32 + 50000:
            sys.exit("half-close: bad response (%d bytes)" % len(resp))
        print("ok client got the answer after its FIN")

elif scenario == "simclose":
    # Both ends send FIN at (nearly) the same moment.
    if role == "server":
        c = listener()
        c.recv(1)
        c.shutdown(socket.SHUT_WR)
        if recv_all(c) != b"":
            sys.exit("simclose: server expected EOF")
        c.close()
        print("ok server")
    else:
        c = socket.create_connection((S4, PORT), timeout=20)
        c.send(b"x")
        c.shutdown(socket.SHUT_WR)
        if recv_all(c) != b"":
            sys.exit("simclose: client expected EOF")
        c.close()
        print("ok client")

elif scenario == "reset":
    # The client aborts mid-transfer (SO_LINGER 0: RST); the server's sends
    # must fail with a reset instead of hanging.
    if role == "server":
        c = listener()
        try:
            for _ in range(2000):
                c.sendall(b"y" * 16384)
                time.sleep(0.001)
        except (ConnectionResetError, BrokenPipeError) as e:
            print("ok server saw %s" % type(e).__name__)
            sys.exit(0)
        sys.exit("reset: the server never saw the client's RST")
    else:
        c = socket.create_connection((S4, PORT), timeout=20)
        got = 0
        while got < 200000:
            got += len(c.recv(65536))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        print("ok client reset after %d bytes" % got)

elif scenario == "simopen":
    # Both ends connect() to each other on the same 4-tuple. The client's
    # own SYN is held back by nft (close.sh), so the backend's SYN crosses
    # moat first and the client answers it from SYN-SENT (RFC 9293 3.5).
    # close.sh starts the server once the client is in SYN-SENT.
    if role == "server":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((S4, PORT))
        s.settimeout(20)
        s.connect((C4, 40001))
        s.sendall(b"from-server")
        d = s.recv(100)
        if d != b"from-client":
            sys.exit("simopen: server got %r" % d)
        s.close()
        print("ok server")
    else:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((C4, 40001))
        s.settimeout(20)
        s.connect((S4, PORT))
        s.sendall(b"from-client")
        d = s.recv(100)
        if d != b"from-server":
            sys.exit("simopen: client got %r" % d)
        s.close()
        print("ok client")
