#!/bin/sh
# make demo: first the Beast-shaped API (examples/echo_server.lua and
# examples/client.lua: handshake_ex with a decorator, text and binary,
# close with a code and reason); then the chat server
# (examples/chat_server.lua) on a free port and a scripted conversation
# between two users (examples/chat_client.lua --demo); prints what each
# side saw and how to try it in a browser. Stops by itself within seconds.
cd "$(dirname "$0")/.."
export LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;"
LUA=${LUA:-lua5.4}

# 1. The low-level API: an echo server and a client on loopback.
elog=$(mktemp)
timeout 20 $LUA examples/echo_server.lua 0 >"$elog" 2>&1 &
epid=$!
i=0
until grep -q 'listening on' "$elog"; do
  i=$((i + 1))
  if [ $i -gt 50 ] || ! kill -0 "$epid" 2>/dev/null; then
    echo "demo: the echo server did not start:"
    cat "$elog"
    kill "$epid" 2>/dev/null
    rm -f "$elog"
    exit 1
  fi
  sleep 0.1
done
eurl=$(sed -n 's/.*listening on \(ws:[^ ]*\).*/\1/p' "$elog")
echo "== $(cat "$elog")"
echo "== examples/client.lua $eurl (handshake_ex with a decorator, then text, binary and a close):"
cout=$(mktemp)
timeout 10 $LUA examples/client.lua "$eurl" >"$cout" 2>&1
estatus=$?
sed 's/^/  /' "$cout"
rm -f "$cout"
kill "$epid" 2>/dev/null
wait "$epid" 2>/dev/null
rm -f "$elog"
[ $estatus -eq 0 ] || exit $estatus
echo

log=$(mktemp)
# The server never outlives the demo: `timeout` bounds it even if this
# script is killed before its trap runs.
timeout 30 $LUA examples/chat_server.lua 0 >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

i=0
until grep -q '^chat server:' "$log"; do
  i=$((i + 1))
  if [ $i -gt 50 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "demo: the chat server did not start:"
    cat "$log"
    exit 1
  fi
  sleep 0.1
done
url=$(sed -n 's/^chat server: .*(WebSocket \(ws:[^)]*\)).*/\1/p' "$log")
http=$(sed -n 's/^chat server: open \(http:[^ ]*\) .*/\1/p' "$log")

echo "== chat server on $http (WebSocket $url)"
echo "== alice and bob (examples/chat_client.lua $url --demo), what each one receives:"
timeout 10 $LUA examples/chat_client.lua "$url" --demo
status=$?

kill "$pid" 2>/dev/null   # SIGTERM: a graceful shutdown
wait "$pid" 2>/dev/null
echo "== what the server logged:"
sed -n '2,$p' "$log" | sed 's/^/  /'

cat <<EOF
== try it in a browser:
  LUA_PATH="$LUA_PATH" LUA_CPATH="$LUA_CPATH" $LUA examples/chat_server.lua 8080
  then open http://127.0.0.1:8080/ (in two tabs, to talk to yourself)
== more examples: examples/game_server.lua with examples/game_bot.lua, examples/wss_echo.lua
EOF
exit $status
