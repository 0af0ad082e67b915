#!/usr/bin/env bash
# The command line: --help lists EAL's options and moat's flags; each bad
# input is one line naming the problem and a non-zero exit, with nothing
# left running; SIGTERM stops moat cleanly (exit 0, final stats); port
# counters are readable with dpdk-proc-info and moat's with telemetry.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init lx
trap lab_down EXIT
lab_up moat
M=$LAB_MOAT
vdevs=(--no-pci --vdev="net_af_packet0,iface=$LAB_CIF" --vdev="net_af_packet1,iface=$LAB_SIF")

# expect_error NAME PATTERN ARGS...: non-zero exit, a "moat: error:" line
# matching PATTERN, and no moat process left behind.
expect_error() {
  local name=$1 pattern=$2 rc=0
  shift 2
  "$M" "$@" >"$LAB_DIR/out" 2>&1 || rc=$?
  [ $rc -ne 0 ] || lab_fail "$name: exit status 0"
  local line
  line=$(grep -E "^moat: error:|^ERROR: " "$LAB_DIR/out" || true)
  [ "$(echo "$line" | grep -c .)" -eq 1 ] || { cat "$LAB_DIR/out" >&2; lab_fail "$name: expected one error line"; }
  echo "$line" | grep -qE -- "$pattern" || lab_fail "$name: '$line' does not match '$pattern'"
  pgrep -f "file-prefix=moat-$LAB_NAME" >/dev/null && lab_fail "$name: a moat process is still running"
  echo "$name: $line"
}

"$M" --help >"$LAB_DIR/help" 2>&1 || true
grep -q -- "--protect" "$LAB_DIR/help" || lab_fail "--help does not list --protect"
grep -q -- "--vdev" "$LAB_DIR/help" || lab_fail "--help does not list EAL's --vdev"
echo "--help: EAL options and moat flags"

expect_error "no --protect" "--protect is required" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME --
expect_error "bad --protect" "--protect" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.300:80
expect_error "bad --mss" "--mss=100" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --mss=100
expect_error "unknown flag" "unknown command line flag" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --no_such_flag=1
expect_error "stray argument" "unexpected argument" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 extra
expect_error "unknown port" "--server_port=7: no such port" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --server_port=7
expect_error "same port twice" "both 0" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --server_port=0
expect_error "no worker lcore" "no worker lcore" -l 0 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80
expect_error "too many queues" "--queues=2" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --queues=2
expect_error "queues beyond the port" "supports at most 1 RX" --lcores="0@0,(1,2)@1" "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --queues=2
# A device that fails to probe leaves no port behind it: named by flag.
expect_error "port that cannot start" "no such port" -l 0,1 --no-pci --vdev=net_af_packet0,iface=no-such-if0 --vdev="net_af_packet1,iface=$LAB_SIF" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80
# Every numeric flag has a range; one value past it is refused by name.
for bad in wscale=15 stats_period=86401 queues=129 rx_desc=16 tx_desc=16 \
  pool_mbufs=99999999 burst=0 tx_drain_us=0 idle_sleep_us=100001 flow_capacity=0 \
  held_slots=0 backend_syn_rto_ms=5 backend_syn_retries=11 time_wait_ms=240001 \
  idle_timeout_s=0 half_closed_timeout_s=0 key_rotation_s=60 client_port=70000; do
  expect_error "--$bad" "--$bad" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 "--$bad"
done
expect_error "short secret file" "secret" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --cookie_secret_file=/dev/null

# A clean run: telemetry, proc-info, then SIGTERM -> exit 0 + final stats.
lab_moat_start --stats_period=1
echo "/moat/info" | dpdk-telemetry.py -f "moat-$LAB_NAME" 2>/dev/null | grep -q '"workers": 1' || lab_fail "/moat/info did not answer"
timeout 20 dpdk-proc-info --file-prefix="moat-$LAB_NAME" --no-pci -- --stats >"$LAB_DIR/procinfo" 2>&1 || true
grep -q "RX-packets" "$LAB_DIR/procinfo" || { cat "$LAB_DIR/procinfo" >&2; lab_fail "dpdk-proc-info showed no port stats"; }
echo "telemetry /moat/info and dpdk-proc-info --stats: ok"
stats_table() { grep -q "moat stats" "$LAB_DIR/moat.log"; }
lab_wait_for 10 "a stats table from --stats_period=1" stats_table
kill -TERM "$LAB_MOAT_PID"
rc=0
wait "$LAB_MOAT_PID" || rc=$?
LAB_MOAT_PID=""
[ $rc -eq 0 ] || lab_fail "SIGTERM: exit status $rc"
grep -q "moat final stats" "$LAB_DIR/moat.log" || lab_fail "SIGTERM: no final stats"
echo "PASS: SIGTERM -> exit 0 with final stats"
