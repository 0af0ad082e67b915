# shellcheck shell=bash
# The global lab lock (/tmp/moat-lab.lock) for benchmarks that start
# hugepage-backed EAL processes or make namespaces and veths: one such run
# on the machine at a time, across every checkout.
#
#   source bench/lab_lock.sh
#   moat_lab_lock "$(basename "$0")"   # after building, before the lab
#
# Waits for the lock and holds it until the script exits, unless one of its
# ancestors already holds it (so `flock /tmp/moat-lab.lock bench/...` works
# as well and does not deadlock on itself).

MOAT_LAB_LOCK=${MOAT_LAB_LOCK:-/tmp/moat-lab.lock}

# True when a process in our ancestry holds a flock on $MOAT_LAB_LOCK
# (`flock FILE cmd`, or a script that called moat_lab_lock: it exports
# MOAT_LAB_LOCK_HELD, since the flock(1) that took it for it has exited).
moat_lab_lock_held() {
  [ "${MOAT_LAB_LOCK_HELD:-}" = "$MOAT_LAB_LOCK" ] && return 0
  [ -e "$MOAT_LAB_LOCK" ] || return 1
  local ino holders pid
  ino=$(stat -c %i "$MOAT_LAB_LOCK")
  # /proc/locks: "N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END"
  holders=$(awk -v ino="$ino" '$2 == "FLOCK" { n = split($6, a, ":"); if (a[n] == ino) print $5 }' /proc/locks)
  [ -n "$holders" ] || return 1
  pid=$$
  while [ -n "$pid" ] && [ "$pid" -gt 1 ]; do
    for h in $holders; do [ "$h" = "$pid" ] && return 0; done
    pid=$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d " ")
  done
  return 1
}

# moat_lab_lock NAME: takes the lock for the rest of the script (NAME is
# for the messages).
moat_lab_lock() {
  moat_lab_lock_held && return 0
  command -v flock >/dev/null || { echo "$1: flock is missing (util-linux)" >&2; exit 1; }
  exec {MOAT_LAB_LOCK_FD}>>"$MOAT_LAB_LOCK"
  if ! flock -n "$MOAT_LAB_LOCK_FD"; then
    echo "$1: waiting for the lab lock $MOAT_LAB_LOCK" >&2
    flock "$MOAT_LAB_LOCK_FD"
  fi
  export MOAT_LAB_LOCK_HELD=$MOAT_LAB_LOCK
}
