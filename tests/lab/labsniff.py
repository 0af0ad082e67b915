"""A scapy sniffer for the lab's helpers that waits on conditions, not on
assumed timings: start() returns once the capture socket is open, and
wait_for() polls a predicate over what was captured until it holds or a
deadline passes (a loaded machine only makes it slower, never wrong)."""
import threading
import time

from scapy.all import AsyncSniffer


class Sniffer:
    def __init__(self, iface, bpf):
        self._started = threading.Event()
        self._lock = threading.Lock()
        self.packets = []
        self._sniffer = AsyncSniffer(iface=iface, filter=bpf, store=False, prn=self._add,
                                     started_callback=self._started.set)

    def _add(self, p):
        with self._lock:
            self.packets.append(p)

    def start(self, timeout=10.0):
        self._sniffer.start()
        if not self._started.wait(timeout):
            raise RuntimeError("sniffer did not start within %.0f s" % timeout)
        return self

    def snapshot(self):
        with self._lock:
            return list(self.packets)

    def wait_for(self, predicate, timeout):
        """True as soon as predicate(packets) holds, False at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.snapshot()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def stop(self):
        try:
            self._sniffer.stop()
        except Exception:  # already stopped by an error in the capture thread
            pass
        return self.snapshot()
