#!/bin/sh
# Runs every C test (TAP, under prove), every busted spec (TAP) and the
# rockspec install check, then prints "N passed, N failed[, N skipped]".
cd "$(dirname "$0")/.."
B=${B:-build}
LUA=${LUA:-lua5.4}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== C tests (prove)"
prove -v -f $B/test/test_* >"$out/c.tap" 2>&1
grep -E '^(not )?ok |^#|Result|Files=|^build' "$out/c.tap" | grep -vE '^ok ' | tail -n 40
grep -cE '^ok ' "$out/c.tap" | sed 's/^/C tests passed: /'

echo "== busted specs (lua5.4)"
LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="$B/?.so;;" \
  $LUA /usr/bin/busted -o TAP spec >"$out/spec.tap" 2>&1
grep -E '^not ok|^#' "$out/spec.tap" | head -n 60
grep -cE '^ok ' "$out/spec.tap" | sed 's/^/specs passed: /'

echo "== rockspec (luarocks make into a scratch tree)"
sh tools/rockcheck.sh >"$out/rock.tap" 2>&1
cat "$out/rock.tap" | grep -E '^(not )?ok|^#'

cat "$out/c.tap" "$out/spec.tap" "$out/rock.tap" | awk '
  /^ok / { if ($0 ~ /# *[Ss][Kk][Ii][Pp]/) s++; else p++ }
  /^not ok / { if ($0 ~ /# *[Tt][Oo][Dd][Oo]/) s++; else f++ }
  /^Bail out!/ { f++ }
  END {
    line = sprintf("%d passed, %d failed", p, f)
    if (s > 0) line = line sprintf(", %d skipped", s)
    print line
    exit (f > 0 || p == 0) ? 1 : 0
  }'
