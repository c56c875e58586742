#!/bin/sh
# make demo: a luvws server and client talking on loopback.
cd "$(dirname "$0")/.."
export LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;"
out=$(mktemp)
lua5.4 examples/echo_server.lua 0 >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
for i in $(seq 1 50); do grep -q listening "$out" && break; sleep 0.1; done
cat "$out"
url=$(sed -n 's/.*listening on \(ws:[^ ]*\).*/\1/p' "$out")
[ -n "$url" ] || { echo "demo: the server did not start"; exit 1; }
echo "--- client (examples/client.lua $url)"
timeout 20 lua5.4 examples/client.lua "$url"
