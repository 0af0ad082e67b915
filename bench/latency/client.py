#!/usr/bin/python3
"""Sequential TCP connections for bench/latency/run.

One connection at a time, for --seconds or --max-attempts, whichever comes
first:
  --mode connect  connect(), then close at once: the handshake alone. A SYN
                  proxy's advantage shows here (it answers the SYN itself).
  --mode http     connect(), HTTP/1.0 GET, read to EOF (the server closes),
                  close: the whole exchange, backend handshake included.
Connection k (from --first-index) binds source address base + k mod N and
port port_lo + k div N, so no 4-tuple repeats within a run and no
connection meets state an earlier one left (TIME_WAIT, a flow in moat).

Prints one JSON object: attempts, successes, failures by kind, elapsed
seconds, successful connections per second, connect() latency p50/p99 in
ms over the successes, and next_index (where a following run continues).
"""
import argparse
import errno
import ipaddress
import json
import socket
import sys
import time


def percentile(sorted_values, p):
    """Nearest-rank percentile of a sorted list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, int(round(p / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def one(host, port, timeout, request, source):
    """Returns (ok, connect seconds or None, failure kind or None); raises
    OSError from bind() when that source is still in use here."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(source)
        s.settimeout(timeout)
        t0 = time.perf_counter()
        try:
            s.connect((host, port))
        except socket.timeout:
            return False, None, "connect_timeout"
        except OSError as e:
            return False, None, "connect_" + errno.errorcode.get(e.errno, "error").lower()
        t_connect = time.perf_counter() - t0
        if request is None:
            return True, t_connect, None
        s.settimeout(max(0.5, timeout - t_connect))
        try:
            s.sendall(request)
            data = b""
            while len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            return False, t_connect, "http_timeout"
        except OSError as e:
            return False, t_connect, "http_" + errno.errorcode.get(e.errno, "error").lower()
        status = data.split(b"\r\n", 1)[0].split()
        if len(status) >= 2 and status[1] == b"200":
            return True, t_connect, None
        return False, t_connect, "http_bad_response"
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--mode", choices=("connect", "http"), default="http")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max-attempts", type=int, default=200000)
    ap.add_argument("--timeout", type=float, default=1.0, help="per connection, seconds")
    ap.add_argument("--source-base", required=True, help="first source address")
    ap.add_argument("--sources", type=int, default=1)
    ap.add_argument("--first-index", type=int, default=0)
    ap.add_argument("--port-lo", type=int, default=10000)
    ap.add_argument("--port-hi", type=int, default=59999)
    args = ap.parse_args()
    nports = args.port_hi - args.port_lo + 1
    if args.sources < 1 or nports < 1 or args.seconds <= 0 or args.max_attempts < 1:
        ap.error("--sources, the port range, --seconds and --max-attempts must be positive")
    base = ipaddress.ip_address(args.source_base)
    request = None
    if args.mode == "http":
        request = ("GET / HTTP/1.0\r\nHost: %s\r\nUser-Agent: moat-bench-latency\r\n\r\n"
                   % args.host).encode()

    attempts = successes = bind_errors = 0
    failures = {}
    latencies = []
    index = args.first_index
    start = time.monotonic()
    end = start + args.seconds
    while time.monotonic() < end and attempts < args.max_attempts:
        k = index % (args.sources * nports)
        source = (str(base + k % args.sources), args.port_lo + k // args.sources)
        index += 1
        try:
            ok, t_connect, kind = one(args.host, args.port, args.timeout, request, source)
        except OSError:
            bind_errors += 1  # still held here (TIME_WAIT): take the next one
            if bind_errors > 10000:
                break
            continue
        attempts += 1
        if ok:
            successes += 1
            latencies.append(t_connect)
        else:
            failures[kind] = failures.get(kind, 0) + 1
    elapsed = time.monotonic() - start
    latencies.sort()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    json.dump({
        "mode": args.mode,
        "attempts": attempts,
        "successes": successes,
        "failures": failures,
        "bind_errors": bind_errors,
        "elapsed_s": round(elapsed, 3),
        "conn_per_s": round(successes / elapsed, 1) if elapsed > 0 else 0.0,
        "connect_p50_ms": None if p50 is None else round(p50 * 1000, 4),
        "connect_p99_ms": None if p99 is None else round(p99 * 1000, 4),
        "next_index": index,
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
