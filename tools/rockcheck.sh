#!/bin/sh
# Builds and installs the rock into a scratch tree with luarocks (Lua 5.4,
# no network: --deps-mode=none), then checks that require "luvws" works from
# that tree alone. Prints TAP.
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
echo "1..2"
if luarocks --lua-version=5.4 --tree="$tree" make --deps-mode=none luvws-scm-1.rockspec >"$tree.log" 2>&1; then
  echo "ok 1 - luarocks make installs luvws-scm-1.rockspec"
else
  echo "not ok 1 - luarocks make installs luvws-scm-1.rockspec"
  sed 's/^/# /' "$tree.log" | tail -n 30
fi
rm -f "$tree.log"
lp="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua"
cp="$tree/lib/lua/5.4/?.so"
if r=$(cd / && ROCKTREE="$tree" LUA_PATH="$lp;;" LUA_CPATH="$cp;;" lua5.4 -e '
    local ws = require "luvws"
    assert(package.searchpath("luvws.core", package.cpath):find(os.getenv("ROCKTREE"), 1, true), "core not from the tree")
    assert(type(ws.version) == "string" and ws.errors.closed and ws.condition("bad_sec_accept") == "handshake_failed")
    io.write(ws.version)' 2>&1); then
  echo "ok 2 - require \"luvws\" from the installed tree (version $r)"
else
  echo "not ok 2 - require \"luvws\" from the installed tree"
  echo "$r" | sed 's/^/# /'
fi
