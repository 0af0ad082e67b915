#!/usr/bin/env bash
# Lab test 4: a server-speaks-first protocol (an SMTP-like banner) while the
# backend side drops a third of the SYNs. The clients send nothing after
# their ACK, so only moat's own backend-SYN retransmission can get their
# connections through: every client must still receive the banner.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lb
trap lab_down EXIT
lab_up moat
CLIENTS=30

lab_s /usr/bin/python3 -c '
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("'"$LAB_SERVER4"'", 2222)); s.listen(128); s.settimeout(60)
def serve(c):
    c.sendall(b"220 moat-lab banner\r\n")
    c.settimeout(30)
    try:
        while c.recv(100): pass
    except OSError: pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
' &
lab_wait_listen s tcp 2222
# Drop one in three SYNs arriving at the backend.
lab_s nft -f - <<'NFT'
table inet lossy {
  chain in {
    type filter hook input priority 0;
    tcp dport 2222 tcp flags & (syn | ack) == syn numgen random mod 3 == 0 counter drop
  }
}
NFT
lab_moat_start --backend_syn_rto_ms=200 --backend_syn_retries=6

got=$(lab_c /usr/bin/python3 -c '
import socket, threading
ok = []
def one():
    try:
        c = socket.create_connection(("'"$LAB_SERVER4"'", 2222), timeout=20)
        c.settimeout(20)
        if c.recv(100).startswith(b"220 "): ok.append(1)
        c.close()
    except OSError: pass
ts = [threading.Thread(target=one) for _ in range('$CLIENTS')]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(ok))')
dropped=$(lab_s nft list table inet lossy | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
retx=$(lab_counter backend_syn_retransmit)
echo "banner received by $got/$CLIENTS silent clients; backend dropped $dropped SYNs; moat retransmitted $retx"
[ "$got" -eq $CLIENTS ] || lab_fail "only $got/$CLIENTS clients got the banner"
[ "$dropped" -gt 0 ] && [ "$retx" -gt 0 ] || lab_fail "no SYN was dropped or retransmitted: the test proved nothing"
lab_moat_stop
echo "PASS"
