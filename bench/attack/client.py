#!/usr/bin/python3
"""The legitimate client of bench/attack/run.

Sequential HTTP/1.0 requests for a fixed time: connect (with a per-connect
timeout), GET /, read the response to EOF (the server closes, so the
TIME_WAIT state stays on the server), close. One connection at a time.

With --source-base A --sources N, connection k (counted from
--first-index) binds to source address A+(k mod N) and source port
port_lo+(k div N) mod (port_hi-port_lo+1): no 4-tuple repeats within
N*(port_hi-port_lo+1) connections, so no connection ever lands on state
left by an earlier one (the server's TIME_WAIT, a stateful middlebox's
conntrack entry). Many users behind their own addresses look like this;
one host hammering one server with kernel-chosen ports reuses 4-tuples
within seconds.

Prints one JSON object: attempts, successes (a "200" status line read in
time), failures by kind, elapsed seconds, successful connections per
second, and connect() latency p50/p99 in ms over the successful connects.
"""
import argparse
import errno
import ipaddress
import json
import socket
import sys
import time


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, int(round(p / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class BindError(Exception):
    pass


def one_request(host, port, timeout, request, source=None):
    """Returns (ok, connect_seconds or None, failure kind or None)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if source is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(source)
            except OSError as e:
                raise BindError(str(e))
        s.settimeout(timeout)
        t0 = time.monotonic()
        try:
            s.connect((host, port))
        except socket.timeout:
            return False, None, "connect_timeout"
        except ConnectionRefusedError:
            return False, None, "connect_refused"
        except OSError as e:
            return False, None, "connect_" + (errno.errorcode.get(e.errno, "error").lower())
        t_connect = time.monotonic() - t0
        # What is left of the per-connect budget (at least 0.5 s) for the
        # request itself: the response is small and local.
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
            return False, t_connect, "http_" + (errno.errorcode.get(e.errno, "error").lower())
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
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=1.0,
                    help="per-connect timeout, seconds")
    ap.add_argument("--max-attempts", type=int, default=1000000,
                    help="hard bound on the number of connections")
    ap.add_argument("--source-base", help="first source address (default: the kernel's choice)")
    ap.add_argument("--sources", type=int, default=1, help="number of source addresses from --source-base")
    ap.add_argument("--first-index", type=int, default=0, help="index of the first connection (see above)")
    ap.add_argument("--port-lo", type=int, default=10000)
    ap.add_argument("--port-hi", type=int, default=59999)
    args = ap.parse_args()
    base = ipaddress.ip_address(args.source_base) if args.source_base else None
    nports = args.port_hi - args.port_lo + 1
    if args.sources < 1 or nports < 1:
        ap.error("--sources and the port range must not be empty")

    request = ("GET / HTTP/1.0\r\nHost: %s\r\nUser-Agent: moat-bench-attack\r\n\r\n"
               % args.host).encode()
    attempts = successes = 0
    failures = {}
    latencies = []
    start = time.monotonic()
    end = start + args.seconds
    index = args.first_index
    bind_errors = 0
    while time.monotonic() < end and attempts < args.max_attempts:
        source = None
        if base is not None:
            k = index % (args.sources * nports)
            source = (str(base + k % args.sources), args.port_lo + k // args.sources)
        index += 1
        try:
            ok, t_connect, kind = one_request(args.host, args.port, args.timeout, request, source)
        except BindError:
            # That (address, port) is still held here; take the next one.
            bind_errors += 1
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
    p50 = percentile(latencies, 50)
    p99 = percentile(latencies, 99)
    json.dump({
        "attempts": attempts,
        "successes": successes,
        "success_pct": round(100.0 * successes / attempts, 2) if attempts else 0.0,
        "failures": failures,
        "elapsed_s": round(elapsed, 3),
        "conn_per_s": round(successes / elapsed, 1) if elapsed > 0 else 0.0,
        "connect_p50_ms": None if p50 is None else round(p50 * 1000, 3),
        "connect_p99_ms": None if p99 is None else round(p99 * 1000, 3),
        "bind_errors": bind_errors,
        "next_index": index,
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
