#!/bin/sh
# run_fuzzer.sh FUZZER SECONDS WORKDIR SEED_DIR...: a bounded libFuzzer run.
# New inputs go to WORKDIR (not the checked-in corpus); a crash leaves
# WORKDIR/crash-* and fails the test: copy it to tests/fuzz/regressions/<target>/.
set -e
fuzzer=$1 secs=$2 work=$3
shift 3
mkdir -p "$work"
exec "$fuzzer" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
  -rss_limit_mb=2048 -artifact_prefix="$work/" "$work" "$@"
