#!/usr/bin/env bash
# Lab test 3: bulk transfer both ways through moat under loss and
# reordering: a 64 MiB download (nginx) and a 32 MiB upload arrive intact
# (sha256), and iperf3 completes in both directions. Loss and reordering
# make the peers use SACK and timestamps, which moat translates.
# This kernel has no sch_netem: loss is an nft random drop, reordering is a
# random few percent of segments steered into a slow HTB class so they
# arrive behind later ones (docs/dpdk-notes.md); there is no added delay.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lk
trap lab_down EXIT
lab_up moat
lab_nginx
dd if=/dev/urandom of="$LAB_DIR/www/big" bs=1M count=64 status=none
dd if=/dev/urandom of="$LAB_DIR/up" bs=1M count=32 status=none
chmod 644 "$LAB_DIR/www/big"

impair() {  # impair NS: 1% loss and ~3% reordering on egress of eth0
  local ns=$1
  ip netns exec "$ns" tc qdisc add dev eth0 root handle 1: htb default 10 r2q 1000
  ip netns exec "$ns" tc class add dev eth0 parent 1: classid 1:10 htb rate 10gbit quantum 60000
  ip netns exec "$ns" tc class add dev eth0 parent 1: classid 1:20 htb rate 50mbit ceil 50mbit quantum 6000
  ip netns exec "$ns" nft -f - <<'NFT'
table inet impair {
  chain out {
    type filter hook output priority 0;
    meta l4proto tcp numgen random mod 100 < 1 counter drop
    meta l4proto tcp numgen random mod 100 < 3 meta priority set 1:20 counter
  }
}
NFT
}
impair "$LAB_C"
impair "$LAB_S"
lab_moat_start

want=$(sha256sum "$LAB_DIR/www/big" | cut -d' ' -f1)
got=$(lab_c curl -s -m 120 "http://$LAB_SERVER4/big" | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] || lab_fail "64 MiB download: sha256 mismatch"
echo "64 MiB download: sha256 ok"

lab_sha256_sink 81 120
up=$(lab_c timeout 120 /usr/bin/python3 -c '
import socket
c = socket.create_connection(("'"$LAB_SERVER4"'", 81), timeout=100)
with open("'"$LAB_DIR/up"'", "rb") as f:
    c.sendfile(f)
c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode())')
[ "$up" = "$(sha256sum "$LAB_DIR/up" | cut -d' ' -f1)" ] || lab_fail "32 MiB upload: sha256 mismatch ($up)"
echo "32 MiB upload: sha256 ok"

# iperf3 -D returns before the daemon listens; -1 makes it exit after one
# test, and the next one can bind only once it has.
lab_s iperf3 -s -B "$LAB_SERVER4" -1 -D
lab_wait_listen s tcp 5201
lab_c timeout 60 iperf3 -c "$LAB_SERVER4" -t 3 -J >"$LAB_DIR/iperf-up.json" || lab_fail "iperf3 client->server failed"
iperf_gone() { ! lab_listening s tcp 5201; }
lab_wait_for 10 "the first iperf3 server to exit" iperf_gone
lab_s iperf3 -s -B "$LAB_SERVER4" -1 -D
lab_wait_listen s tcp 5201
lab_c timeout 60 iperf3 -c "$LAB_SERVER4" -t 3 -R -J >"$LAB_DIR/iperf-down.json" || lab_fail "iperf3 server->client failed"
rates=$(/usr/bin/python3 -c '
import json
for f in ("up", "down"):
    d = json.load(open("'"$LAB_DIR"'/iperf-%s.json" % f))
    e = d["end"]["sum_received"]
    print("%s %.0f Mbit/s %d retransmits" % (f, e["bits_per_second"] / 1e6, d["end"]["sum_sent"].get("retransmits", 0)))')
echo "iperf3: $rates"
drops=$(lab_c nft list table inet impair | sed -n 's/.*counter packets \([0-9]*\) .*drop.*/\1/p')
[ "${drops:-0}" -gt 0 ] || lab_fail "the impairment dropped nothing"
lab_moat_stop
echo "PASS: bulk both ways intact under loss and reordering (client-side drops: $drops)"
