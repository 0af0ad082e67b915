#!/usr/bin/env bash
# Lab test: reload without dropping flows. Two long sha256-checked
# downloads through moat (curl --limit-rate, bounded by -m) survive four
# reloads, alternately by SIGHUP and by the telemetry command /moat/reload:
#  1. a protected port is added (8080): new connections to it are answered
#     by moat (synack_sent rises); download B starts on it;
#  2. a broken flagfile: nothing changes, moat stays up, reload_failed = 1;
#  3. a flag that cannot change at run time (--flow_capacity): refused the
#     same way, reload_failed = 2;
#  4. port 8080 removed again while download B runs on it: B keeps being
#     spliced to the end (a retired service's flow), and new connections
#     to 8080 are bridged unchanged (bridged rises, no SYN-ACK from moat).
# Download A runs on port 80 throughout. Every wait is on a condition
# (counters through telemetry), never a fixed sleep.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init lo
trap lab_down EXIT
SIZE_MB=${SIZE_MB:-128}
RATE=${RATE:-8M}  # bytes/s per download: 128 MiB lasts ~16 s

wait_for() {
  local what=$1 secs=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || lab_fail "$what: not within ${secs}s"
    sleep 0.1
  done
}
c() { lab_counter "$1"; }
at_least() { [ "$(c "$1")" -ge "$2" ]; }
alive() { kill -0 "$LAB_MOAT_PID" 2>/dev/null || lab_fail "moat exited"; }
# telemetry_reload: /moat/reload; prints its JSON answer.
telemetry_reload() { echo /moat/reload | dpdk-telemetry.py -f "moat-$LAB_NAME" 2>/dev/null; }
flags() {  # the flagfile: --protect, then any extra lines
  printf '%s\n' "--protect=$1" "${@:2}" >"$LAB_DIR/moat.flags"
}

lab_up moat
lab_nginx
mkdir -p "$LAB_DIR/www"
head -c "$((SIZE_MB << 20))" /dev/urandom >"$LAB_DIR/www/big.bin"
want=$(sha256sum "$LAB_DIR/www/big.bin" | cut -d' ' -f1)
# A second backend service on 8080, the port the reloads add and remove.
lab_s /usr/bin/python3 -m http.server 8080 --bind "$LAB_SERVER4" --directory "$LAB_DIR/www" \
  >"$LAB_DIR/http8080.log" 2>&1 &
listening_8080() { lab_s ss -Htln "sport = :8080" | grep -q .; }
wait_for "backend on :8080" 10 listening_8080

flags "$LAB_SERVER4:80"
lab_moat_start --flagfile="$LAB_DIR/moat.flags"
[ "$(c config_generation)" = 1 ] || lab_fail "config_generation is not 1 at start"

# download NAME PORT: a rate-limited, bounded download in the background.
download() {
  lab_c curl -s -m 120 --limit-rate "$RATE" -o "$LAB_DIR/$1.out" -w '%{http_code}\n' \
    "http://$LAB_SERVER4:$2/big.bin" >"$LAB_DIR/$1.code" 2>&1 &
  eval "PID_$1=\$!"
}
download A 80
wait_for "download A under way" 10 test -s "$LAB_DIR/A.out"

# One new connection to port 8080; prints what moat counted for it.
probe() {
  local s0 b0 code
  s0=$(c synack_sent) b0=$(c bridged)
  code=$(lab_curl "http://$LAB_SERVER4:8080/")
  echo "$code $(($(c synack_sent) - s0)) $(($(c bridged) - b0))"
}

# --- 1. add port 8080 (SIGHUP) ---
read -r code synacks _ < <(probe)
{ [ "$code" = 200 ] && [ "$synacks" = 0 ]; } || lab_fail "before: 8080 answered $code with $synacks SYN-ACKs from moat"
flags "$LAB_SERVER4:80,$LAB_SERVER4:8080"
kill -HUP "$LAB_MOAT_PID"
wait_for "reload 1 (add :8080) applied" 10 at_least config_generation_applied 2
[ "$(c reload_ok)" = 1 ] || lab_fail "reload_ok=$(c reload_ok) after reload 1"
grep -q "reload: generation 2 applied by every worker: --protect=$LAB_SERVER4:80,$LAB_SERVER4:8080" \
  "$LAB_DIR/moat.log" || lab_fail "reload 1 not logged: $(grep reload "$LAB_DIR/moat.log")"
read -r code synacks _ < <(probe)
{ [ "$code" = 200 ] && [ "$synacks" -ge 1 ]; } || lab_fail "after adding 8080: answered $code, moat sent $synacks SYN-ACKs"
echo "reload 1 (SIGHUP, add :8080): generation 2; new connections to 8080 answered by moat"
download B 8080
wait_for "download B under way" 10 test -s "$LAB_DIR/B.out"

# --- 2. a broken file (telemetry) ---
flags "$LAB_SERVER4:80,$LAB_SERVER4:8080,bogus"
answer=$(telemetry_reload)
echo "$answer" | grep -q '"result": "failed"' || lab_fail "/moat/reload of a broken file: $answer"
alive
{ [ "$(c reload_failed)" = 1 ] && [ "$(c config_generation)" = 2 ]; } ||
  lab_fail "broken file: reload_failed=$(c reload_failed) generation=$(c config_generation)"
grep -q "reload failed, running configuration unchanged: --protect: 'bogus'" "$LAB_DIR/moat.log" ||
  lab_fail "broken file not logged in one line: $(grep reload "$LAB_DIR/moat.log")"
read -r code synacks _ < <(probe)
{ [ "$code" = 200 ] && [ "$synacks" -ge 1 ]; } || lab_fail "after the broken file: 8080 answered $code, $synacks SYN-ACKs"
echo "reload 2 (/moat/reload, broken file): refused, reload_failed=1, 8080 still protected"

# --- 3. a flag that cannot change at run time (SIGHUP) ---
flags "$LAB_SERVER4:80" "--flow_capacity=1000"
kill -HUP "$LAB_MOAT_PID"
wait_for "reload 3 refused" 10 at_least reload_failed 2
alive
[ "$(c config_generation)" = 2 ] || lab_fail "a refused reload changed the generation"
grep -q "reload failed, running configuration unchanged: --flow_capacity cannot change at run time" \
  "$LAB_DIR/moat.log" || lab_fail "refused flag not logged: $(grep reload "$LAB_DIR/moat.log")"
read -r code synacks _ < <(probe)
{ [ "$code" = 200 ] && [ "$synacks" -ge 1 ]; } || lab_fail "after the refused reload: 8080 answered $code, $synacks SYN-ACKs"
echo "reload 3 (SIGHUP, --flow_capacity changed): refused, reload_failed=2, nothing changed"

# --- 4. remove port 8080 while download B runs on it (telemetry) ---
kill -0 "$PID_B" 2>/dev/null || lab_fail "download B finished before reload 4: raise SIZE_MB"
flags "$LAB_SERVER4:80"
answer=$(telemetry_reload)
echo "$answer" | grep -q '"result": "ok"' || lab_fail "/moat/reload: $answer"
{ [ "$(c config_generation_applied)" = 3 ] && [ "$(c reload_ok)" = 2 ]; } ||
  lab_fail "reload 4: generation $(c config_generation_applied), reload_ok $(c reload_ok)"
[ "$(c services_retired)" = 1 ] || lab_fail "services_retired=$(c services_retired), expected 1"
read -r code synacks bridged < <(probe)
{ [ "$code" = 200 ] && [ "$synacks" = 0 ] && [ "$bridged" -ge 4 ]; } ||
  lab_fail "after removing 8080: answered $code, $synacks SYN-ACKs from moat, $bridged bridged"
echo "reload 4 (/moat/reload, remove :8080): generation 3; new connections to 8080 bridged ($bridged frames), no SYN-ACK from moat"
{ kill -0 "$PID_A" 2>/dev/null && kill -0 "$PID_B" 2>/dev/null; } ||
  lab_fail "a download ended before the last reload: raise SIZE_MB"

# --- both downloads complete, byte for byte ---
wait "$PID_A" || lab_fail "download A (port 80) failed: curl $?"
wait "$PID_B" || lab_fail "download B (port 8080, removed mid-flight) failed: curl $?"
for d in A B; do
  [ "$(cat "$LAB_DIR/$d.code")" = 200 ] || lab_fail "download $d: HTTP $(cat "$LAB_DIR/$d.code")"
  got=$(sha256sum "$LAB_DIR/$d.out" | cut -d' ' -f1)
  [ "$got" = "$want" ] || lab_fail "download $d: sha256 $got, expected $want"
done
{ [ "$(c client_rst_sent)" = 0 ] && [ "$(c server_rst_sent)" = 0 ]; } ||
  lab_fail "moat reset flows: client_rst_sent=$(c client_rst_sent) server_rst_sent=$(c server_rst_sent)"
lab_moat_stop
echo "PASS: two ${SIZE_MB} MiB downloads (sha256 ok) survived 4 reloads (2 applied, 2 refused); the one on the removed port to its end"
