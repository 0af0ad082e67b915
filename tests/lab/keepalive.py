#!/usr/bin/python3
"""One HTTP/1.1 keep-alive connection that sends a request every INTERVAL
seconds for SECONDS seconds (bounded), to show an established flow keeps
working through an attack. Prints one JSON line {"ok": n, "failed": m}; the
connection is never reopened, so any failure is a failure of that flow.

  keepalive.py HOST SECONDS INTERVAL
"""
import json
import socket
import sys
import time

host, seconds, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ok = failed = 0
s = socket.create_connection((host, 80), timeout=5)
end = time.time() + seconds
while time.time() < end and failed == 0:
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: moat\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"backend"):
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed by peer")
            data += chunk
        ok += data.startswith(b"HTTP/1.1 200")
    except (OSError, ConnectionError):
        failed += 1
    time.sleep(interval)
print(json.dumps({"ok": ok, "failed": failed}))
