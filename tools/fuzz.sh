#!/bin/sh
# Builds every libFuzzer target csrc/fuzz/fuzz_<name>.c against the core
# (clang, -fsanitize=fuzzer,address,undefined) and runs each for $1 seconds
# (default 60) from its seed corpus csrc/fuzz/corpus/<name>/ (and the
# dictionary csrc/fuzz/<name>.dict if there is one). New inputs go to
# build-fuzz/corpus/<name>/, never into the tree. Fails on any crash, leak
# or sanitizer report.
set -e
cd "$(dirname "$0")/.."
secs=${1:-60}
out=build-fuzz
mkdir -p $out
flags="-std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc/core"
status=0
for src in csrc/fuzz/fuzz_*.c; do
  [ -f "$src" ] || continue
  name=$(basename "$src" .c); name=${name#fuzz_}
  echo "== fuzz $name (${secs}s)"
  clang $flags -o $out/fuzz_$name "$src" csrc/core/*.c -lwolfssl -lz
  mkdir -p $out/corpus/$name
  dict=""; [ -f csrc/fuzz/$name.dict ] && dict="-dict=csrc/fuzz/$name.dict"
  seeds=""; [ -d csrc/fuzz/corpus/$name ] && seeds=csrc/fuzz/corpus/$name
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
       $out/fuzz_$name -max_total_time=$secs -print_final_stats=1 -artifact_prefix=$out/ $dict $out/corpus/$name $seeds >$out/$name.log 2>&1; then
    tail -n 40 $out/$name.log
    echo "fuzz $name: FAILED (artifacts in $out/)"
    status=1
  else
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' $out/$name.log | tr '\n' ' '; echo
    echo "fuzz $name: ok"
  fi
done
exit $status
