#!/usr/bin/env bash
# The flood generator of bench/attack/run (bench/attack/synflood.cc) does
# what the benchmark's fairness rests on, in a bridge lab:
#  - its count is what left the namespace: the client's nft output counter
#    agrees with the "sent" it reports, and its SIGUSR1 marks are
#    monotonic and below the final count;
#  - it paces: it never goes above the requested rate, and what it missed
#    is what it says it was behind schedule (so a row on a busy machine
#    shows up as a shortfall, never as a burst);
#  - every SYN is a TCP SYN to the port asked for, from a source outside
#    --exclude and outside the lab's 198.18.0.0/15.
# Checks are on counts, not on the machine keeping up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
GEN=${LAB_SYNFLOOD:-$LAB_ROOT/build/bench/attack/moat_synflood}
if [ ! -x "$GEN" ]; then
  echo "SKIP: $GEN is not built (benchmarks disabled)"
  exit 77
fi
lab_init lg
trap lab_down EXIT
lab_up bridge
lab_c nft -f - <<EOF
table ip gen {
  counter syn {}
  counter bad_src {}
  counter not_syn {}
  chain out {
    type filter hook output priority filter; policy accept;
    ip daddr $LAB_SERVER4 tcp dport 9 tcp flags & (syn|ack|rst|fin) == syn counter name syn
    ip daddr $LAB_SERVER4 ip saddr { 198.18.0.0/15, 203.0.113.0/24, 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/3 } counter name bad_src
    ip daddr $LAB_SERVER4 tcp dport != 9 counter name not_syn
    ip daddr $LAB_SERVER4 tcp flags & (syn|ack|rst|fin) != syn counter name not_syn
  }
}
EOF
packets() { lab_c nft list counter ip gen "$1" | awk '/packets/ { print $2; exit }'; }

RATE=5000
# ip netns exec execs the generator: $! is its pid.
ip netns exec "$LAB_C" "$GEN" --dst "$LAB_SERVER4" --port 9 --rate $RATE --seconds 2 \
  --exclude 203.0.113.0/24 >"$LAB_DIR/gen.out" 2>"$LAB_DIR/gen.err" &
gen=$!
# Two marks while it runs; SIGUSR1 before its handler is installed would
# kill it, so first wait until it sends.
sending() { [ "$(packets syn)" -gt 0 ]; }
lab_wait_for 5 "the generator to send" sending
marked() { [ "$(grep -c '"mark"' "$LAB_DIR/gen.out")" -ge "$1" ]; }
kill -USR1 $gen
lab_wait_for 5 "the generator's first mark" marked 1
kill -USR1 $gen
lab_wait_for 5 "the generator's second mark" marked 2
wait $gen || lab_fail "the generator exited with $? ($(cat "$LAB_DIR/gen.err"))"
cat "$LAB_DIR/gen.out"
/usr/bin/python3 - "$LAB_DIR/gen.out" "$RATE" "$(packets syn)" "$(packets bad_src)" "$(packets not_syn)" <<'PY' || lab_fail "the generator's count or pacing is off (above)"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
rate, syn, bad, other = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
marks = [l["mark"] for l in lines if "mark" in l]
end = [l for l in lines if "sent" in l][-1]
sent, elapsed, behind = end["sent"], end["elapsed_s"], end["behind_s"]
problems = []
if syn != sent:
    problems.append("nft counted %d SYNs, the generator says %d" % (syn, sent))
if bad or other:
    problems.append("%d SYNs from excluded sources, %d not a SYN to port 9" % (bad, other))
if marks != sorted(marks) or any(m > sent for m in marks):
    problems.append("marks %s not monotonic below %d" % (marks, sent))
# Never above the rate (one batch of 32 of slack), and the shortfall is
# what it reports as time behind schedule (within 10 %, plus a batch).
if sent > rate * elapsed + 32:
    problems.append("sent %d in %.3f s: above %d/s" % (sent, elapsed, rate))
expect = rate * (elapsed - behind)
if abs(sent - expect) > 0.1 * expect + 64:
    problems.append("sent %d, expected %.0f from %.3f s of which %.3f s behind" % (sent, expect, elapsed, behind))
for p in problems:
    print("problem: " + p)
sys.exit(1 if problems else 0)
PY
echo "PASS: $(packets syn) SYNs counted by nft = the generator's count, paced at $RATE/s or reported behind, sources outside the excluded nets"
