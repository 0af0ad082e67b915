#!/usr/bin/env bash
# The command line: --help lists EAL's options and moat's flags; each bad
# input is one line naming the problem and a non-zero exit, with nothing
# left running; --check validates a configuration without EAL; SIGTERM
# stops moat cleanly (exit 0, final stats); port counters are readable with
# dpdk-proc-info and moat's with telemetry.
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
grep -q -- "--metrics_listen" "$LAB_DIR/help" || lab_fail "--help does not list --metrics_listen"
grep -q -- "--check " "$LAB_DIR/help" || lab_fail "--help does not list --check"
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
  idle_timeout_s=0 half_closed_timeout_s=0 key_rotation_s=60 client_port=70000 \
  syn_cache_entries=4194305 syn_flood_rate=39 fastopen_max_pending=0 \
  synack_rate=1000001 synack_prefix_v4=33 synack_prefix_v6=129 mtu=1279 mtu=9001; do
  expect_error "--$bad" "--$bad" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 "--$bad"
done
# --mss must fit --mtu (mtu - 40): refused before EAL starts.
expect_error "--mss above what --mtu carries" "^moat: error: --mss=8960 does not fit --mtu=1500: a 1500-byte MTU carries an MSS of at most 1460" \
  -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --mss=8960
! grep -q "EAL" "$LAB_DIR/out" || lab_fail "--mss above --mtu: EAL started before the error"
expect_error "--mss=1461 at --mtu=1500" "--mss=1461 does not fit --mtu=1500" \
  -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --mss=1461
# The ports must carry --mtu: net_af_packet needs ring frames and a kernel
# interface MTU that hold it (the lab's veths are at 1500).
expect_error "--mtu=9000 with net_af_packet's default ring" "--mtu=9000: client port 0 \(net_af_packet0, net_af_packet\): its ring frames \(framesz=2048\).*add framesz=9088,blocksz=290816" \
  -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --mtu=9000 --mss=8960
expect_error "--mtu=9000 on a 1500-byte interface" "--mtu=9000: client port 0 \(net_af_packet0, net_af_packet\): its kernel interface $LAB_CIF has MTU 1500.*ip link set dev $LAB_CIF mtu 9000" \
  -l 0,1 --no-pci --vdev="net_af_packet0,iface=$LAB_CIF,framesz=9088,blocksz=290816" \
  --vdev="net_af_packet1,iface=$LAB_SIF,framesz=9088,blocksz=290816" --file-prefix=moat-$LAB_NAME -- \
  --protect=198.18.0.2:80 --mtu=9000 --mss=8960
expect_error "short secret file" "secret" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --cookie_secret_file=/dev/null

# --metrics_listen: numeric IPv4:PORT or [IPv6]:PORT, refused by name before
# EAL starts; an address already taken too.
for bad in localhost:9101 127.0.0.1 127.0.0.1:0 127.0.0.1:65536 ::1:9101 '[::1]' '[::1]:x' 1.2.3.4.5:80; do
  expect_error "--metrics_listen=$bad" "^moat: error: --metrics_listen=[^ ]*: .*127\.0\.0\.1:9101" \
    -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 "--metrics_listen=$bad"
done
read -r taken < <(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout 60 /usr/bin/python3 -c "
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', $taken)); s.listen(1); print('ready', flush=True); time.sleep(60)" >"$LAB_DIR/holder" &
holder=$!
for _ in $(seq 1 50); do grep -q ready "$LAB_DIR/holder" && break; sleep 0.1; done
expect_error "metrics port in use" "--metrics_listen=127.0.0.1:$taken: cannot bind: Address already in use" \
  -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --protect=198.18.0.2:80 --metrics_listen=127.0.0.1:$taken
kill $holder 2>/dev/null || true
wait $holder 2>/dev/null || true

# --check (like nginx -t): the whole configuration validated without EAL
# arguments, EAL or ports: "configuration OK" and exit 0, or the error.
expect_check_ok() {  # expect_check_ok NAME ARGS...
  local name=$1 rc=0
  shift
  "$M" "$@" >"$LAB_DIR/out" 2>&1 || rc=$?
  [ $rc -eq 0 ] || { cat "$LAB_DIR/out" >&2; lab_fail "$name: exit status $rc"; }
  [ "$(cat "$LAB_DIR/out")" = "moat: configuration OK" ] || { cat "$LAB_DIR/out" >&2; lab_fail "$name: not just 'configuration OK'"; }
  echo "$name: configuration OK"
}
cfg=$LAB_DIR/check.flags
printf -- '--protect=198.18.0.2:80,[2001:2::2]:80\n--metrics_listen=[::1]:9101\n--flow_capacity=1024\n' >"$cfg"
ls /dev/hugepages >"$LAB_DIR/huge.before" 2>/dev/null || true
expect_check_ok "--check --flagfile" --check --flagfile="$cfg"
expect_check_ok "--check --flagfile=config/lab.flags" --check --flagfile="$LAB_ROOT/config/lab.flags"
expect_check_ok "--check --flagfile=config/moat.flags" --check --flagfile="$LAB_ROOT/config/moat.flags"
expect_check_ok "--check after EAL options" -l 0,1 -- --check --flagfile="$cfg"
head -c 32 /dev/urandom >"$LAB_DIR/secret" && chmod 600 "$LAB_DIR/secret"
expect_check_ok "--check with a secret file" --check --flagfile="$cfg" --cookie_secret_file="$LAB_DIR/secret"
ls /dev/hugepages >"$LAB_DIR/huge.after" 2>/dev/null || true
cmp -s "$LAB_DIR/huge.before" "$LAB_DIR/huge.after" || lab_fail "--check touched hugepages"
expect_error "--check without --protect" "--protect is required" --check --flow_capacity=1024
expect_error "--check bad --protect" "--protect" --check --protect=198.18.0.300:80
expect_error "--check bad range in flagfile" "--mss=100" --check --flagfile="$cfg" --mss=100
expect_error "--check --mss above --mtu" "--mss=8960 does not fit --mtu=1500" --check --flagfile="$cfg" --mss=8960
expect_check_ok "--check jumbo" --check --flagfile="$cfg" --mtu=9000 --mss=8960
expect_error "--check --deny with a port" "--deny: '198.18.7.0/24:80' has a port" --check --flagfile="$cfg" --deny=198.18.7.0/24:80
expect_error "--check bad --allow" "--allow: bad prefix length '/40'" --check --flagfile="$cfg" --allow=198.18.7.0/40
printf -- '--protect=198.18.0.2:80\n--no_such_flag=1\n' >"$LAB_DIR/bad.flags"
# gflags alone would skip an unknown name inside a flagfile silently.
expect_error "--check unknown flag in flagfile" "bad.flags line 2: unknown flag '--no_such_flag'" --check --flagfile="$LAB_DIR/bad.flags"
expect_error "unknown flag in flagfile" "bad.flags line 2: unknown flag '--no_such_flag'" -l 0,1 "${vdevs[@]}" --file-prefix=moat-$LAB_NAME -- --flagfile="$LAB_DIR/bad.flags"
expect_error "--check missing flagfile" "--flagfile=$LAB_DIR/none.flags: No such file" --check --flagfile="$LAB_DIR/none.flags"
expect_error "--check same port twice" "both 1" --check --flagfile="$cfg" --client_port=1
expect_error "--check bad --metrics_listen" "--metrics_listen=localhost:1" --check --flagfile="$cfg" --metrics_listen=localhost:1
chmod 644 "$LAB_DIR/secret"
expect_error "--check secret readable by others" "secret" --check --flagfile="$cfg" --cookie_secret_file="$LAB_DIR/secret"
expect_error "--check secret missing" "secret" --check --flagfile="$cfg" --cookie_secret_file="$LAB_DIR/no-secret"

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
