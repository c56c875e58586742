#!/bin/bash
# Self-check of the interop peers, for humans (not part of the test suite):
# each client talks to the other library's server (python client <-> node
# server, node client <-> python server) over ws and wss, with compression
# on and off, fragments, 16 MiB messages, pings, close codes and reasons,
# subprotocols, a 403 decline, max size, client certificates.
# Throwaway certificates are made in a temporary folder under /tmp and removed.
#   usage: spec/peers/selfcheck.sh [-v]      (-v: print every log)
set -u
cd "$(dirname "$0")" || exit 2
PY=/usr/bin/python3
VERBOSE=0; [ "${1:-}" = -v ] && VERBOSE=1
[ -d node_modules/ws ] || { echo "selfcheck: run 'npm ci' in spec/peers first"; exit 2; }

T=$(mktemp -d /tmp/luvws-peers.XXXXXX)
SRV_PID=""
cleanup() {
  if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT

# --- throwaway CA, localhost server certificate, client certificate -------
(
  cd "$T" || exit 1
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj "/CN=luvws selfcheck CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  for who in server client; do
    openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj "/CN=$who"
  done
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  for who in server client; do
    openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -out $who.pem -days 2 -extfile $who.ext
  done
) >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log"; echo "selfcheck: openssl failed"; exit 2; }
CA=$T/ca.pem; CERT=$T/server.pem; KEY=$T/server.key

# sha256 of the i % 251 pattern, as the peers log it
pattern_sha() { $PY -c "import hashlib,sys;n=int(sys.argv[1]);print(hashlib.sha256((bytes(range(251))*(n//251+1))[:n]).hexdigest())" "$1"; }
SHA16M=$(pattern_sha 16777216)
SHA1000=$(pattern_sha 1000)

start_server() { # py|node args...
  local kind=$1; shift
  : >"$T/server.log"
  case $kind in
    py) $PY py_server.py --port 0 --lifetime 120 "$@" >"$T/server.log" 2>"$T/server.err" & ;;
    node) node node_server.js --port 0 --lifetime 120 "$@" >"$T/server.log" 2>"$T/server.err" & ;;
  esac
  SRV_PID=$!
  PORT=""
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^{"event":"listening","port":\([0-9]*\)}$/\1/p' "$T/server.log")
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  return 1
}

stop_server() {
  kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; SRV_PID=""
}

# has FILE REGEX: the log has a line matching REGEX (waits up to 3 s for it)
has() {
  for _ in $(seq 60); do grep -Eq -- "$2" "$1" && return 0; sleep 0.05; done
  return 1
}

pass=0; fail=0
# scenario NAME CLIENT SERVER "SERVER ARGS" "CLIENT ARGS" SCRIPT_JSON RC CHECK...
# CLIENT ARGS may use @URL@ (replaced with the scheme://127.0.0.1:port/path).
# CHECK is "c:REGEX" (client log) or "s:REGEX" (server log) or "!c:REGEX" (absent).
scenario() {
  local name=$1 client=$2 server=$3 sargs=$4 cargs=$5 script=$6 want_rc=$7; shift 7
  local label="$client client -> $server server: $name"
  printf '%s\n' "$script" >"$T/script.json"
  # shellcheck disable=SC2086
  if ! start_server "$server" $sargs; then
    echo "FAIL  $label (server did not start)"; cat "$T/server.err"; fail=$((fail + 1)); stop_server; return
  fi
  local scheme=ws; case " $sargs " in *" --tls "*) scheme=wss ;; esac
  local host=127.0.0.1; case " $cargs " in *" --ca "*) host=localhost ;; esac
  cargs=${cargs//@URL@/$scheme://$host:$PORT/peer/path?q=1}
  local rc cmd
  case $client in
    py) cmd="$PY py_client.py" ;;
    node) cmd="node node_client.js" ;;
  esac
  # shellcheck disable=SC2086 # word splitting of the argument strings is wanted
  $cmd --lifetime 60 $cargs --script "$T/script.json" >"$T/client.log" 2>"$T/client.err"
  rc=$?
  local bad=""
  [ "$rc" = "$want_rc" ] || bad="$bad
      client exit $rc, wanted $want_rc"
  local c file re
  for c in "$@"; do
    case $c in
      c:*) file=$T/client.log; re=${c#c:} ;;
      s:*) file=$T/server.log; re=${c#s:} ;;
      '!c:'*) grep -Eq -- "${c#!c:}" "$T/client.log" && bad="$bad
      client log has $c"; continue ;;
    esac
    has "$file" "$re" || bad="$bad
      missing ${c%%:*}: $re"
  done
  stop_server
  if [ -z "$bad" ]; then
    echo "PASS  $label"; pass=$((pass + 1))
  else
    echo "FAIL  $label$bad"; fail=$((fail + 1))
  fi
  if [ -n "$bad" ] || [ $VERBOSE = 1 ]; then
    sed 's/^/      server| /' "$T/server.log" "$T/server.err" | cut -c1-300
    sed 's/^/      client| /' "$T/client.log" "$T/client.err" | cut -c1-300
  fi
}

BASIC='[
 {"send":"text","data":"hello é"},{"expect":"message"},
 {"send":"binary","hex":"00ff10"},{"expect":"message"},
 {"send":"fragments","parts":["ab","cd","ef"]},{"expect":"message"},
 {"send":"text","data":"cmd:fragments:3:abcdefgh"},{"expect":"message"},
 {"send":"text","data":"cmd:big:1000"},{"expect":"message"},
 {"send":"text","data":"cmd:headers"},{"expect":"message"},
 {"send":"text","data":"cmd:ping:srvping"},{"sleep":0.3},
 {"ping":"cliping"},
 {"close":4001,"reason":"bye: now"}]'
BASIC_CHECKS=(
  'c:^\{"event":"open","subprotocol":null,"extensions":null,"status":101\}$'
  'c:"type":"text","length":8,.*"text":"hello é"'
  'c:"type":"binary","length":3,'
  'c:"type":"text","length":6,.*"text":"abcdef"'
  'c:"type":"text","length":8,.*"text":"abcdefgh"'
  "c:\"type\":\"binary\",\"length\":1000,\"sha256\":\"$SHA1000\""
  'c:x-a\\":\\"1, 2\\"'
  'c:"event":"ping","payload":"srvping"'
  'c:"event":"pong","payload":"cliping"'
  'c:^\{"event":"close","code":4001,"reason":"bye: now"\}$'
  's:^\{"event":"connection","path":"/peer/path\?q=1","subprotocol":null,"extensions":null\}$'
  's:"type":"text","length":6,.*"text":"abcdef"'
  's:"event":"pong","payload":"srvping"'
  's:"event":"ping","payload":"cliping"'
  's:^\{"event":"close","code":4001,"reason":"bye: now"\}$'
)

BIG='[
 {"send":"text","data":"compress me compress me compress me"},{"expect":"message"},
 {"send":"binary","size":16777216},{"expect":"message"},
 {"send":"text","data":"cmd:big:16777216"},{"expect":"message"},
 {"send":"text","data":"cmd:fragments:4:fragmented and compressed"},{"expect":"message"},
 {"close":1000,"reason":""}]'
BIG_CHECKS=(
  'c:"event":"open",.*"extensions":"permessage-deflate'
  's:"event":"connection",.*"extensions":"permessage-deflate'
  "c:\"type\":\"binary\",\"length\":16777216,\"sha256\":\"$SHA16M\""
  "s:\"type\":\"binary\",\"length\":16777216,\"sha256\":\"$SHA16M\""
  'c:"text":"fragmented and compressed"'
  'c:^\{"event":"close","code":1000,"reason":""\}$'
  's:^\{"event":"close","code":1000,"reason":""\}$'
)

SERVER_CLOSE='[{"send":"text","data":"cmd:close:4002:server: bye"},{"wait_close":true}]'
SERVER_CLOSE_CHECKS=(
  'c:^\{"event":"close","code":4002,"reason":"server: bye"\}$'
  's:^\{"event":"close","code":4002,"reason":"server: bye"\}$'
)

SUBPROTO='[{"send":"text","data":"x"},{"expect":"message"}]'

for pair in py:node node:py; do
  cl=${pair%:*}; sv=${pair#*:}
  scenario "ws basics (echo, fragments, headers, pings, close 4001)" "$cl" "$sv" "" \
    "--url @URL@ --header X-A:1 --header X-A:2" "$BASIC" 0 "${BASIC_CHECKS[@]}"
  scenario "wss --ca, deflate on, 16 MiB both ways" "$cl" "$sv" "--tls $CERT $KEY --compress on" \
    "--url @URL@ --ca $CA --compress on" "$BIG" 0 "${BIG_CHECKS[@]}"
  scenario "ws, deflate on (server) off (client): no extension" "$cl" "$sv" "--compress on" \
    "--url @URL@ --compress off" "$SUBPROTO" 0 \
    'c:"event":"open",.*"extensions":null' 's:"event":"connection",.*"extensions":null'
  scenario "server-initiated close 4002" "$cl" "$sv" "" "--url @URL@" "$SERVER_CLOSE" 0 "${SERVER_CLOSE_CHECKS[@]}"
  scenario "subprotocol picked" "$cl" "$sv" "--subprotocols chat,superchat" \
    "--url @URL@ --subprotocols nope,chat" "$SUBPROTO" 0 \
    'c:"event":"open","subprotocol":"chat"' 's:"event":"connection",.*"subprotocol":"chat"'
  if [ "$cl" = py ]; then
    scenario "subprotocol: no overlap (python client accepts none)" "$cl" "$sv" "--subprotocols chat" \
      "--url @URL@ --subprotocols nope" "$SUBPROTO" 0 \
      'c:"event":"open","subprotocol":null' 's:"event":"connection",.*"subprotocol":null'
  else
    scenario "subprotocol: no overlap (node client fails the connection)" "$cl" "$sv" "--subprotocols chat" \
      "--url @URL@ --subprotocols nope" "$SUBPROTO" 1 \
      'c:"event":"error","message":"Server sent no subprotocol"' 's:"event":"connection",.*"subprotocol":null'
  fi
  scenario "decline 403" "$cl" "$sv" "--decline 403:forbidden" "--url @URL@" "$SUBPROTO" 1 \
    'c:^\{"event":"rejected","status":403,"body":"forbidden","headers":\{.*"x-declined":"yes"' '!c:"event":"open"'
  scenario "max size 1000 -> 1009" "$cl" "$sv" "--max-size 1000" "--url @URL@" \
    '[{"send":"binary","size":2000},{"wait_close":true}]' 0 'c:"event":"close","code":1009'
  scenario "wss --insecure" "$cl" "$sv" "--tls $CERT $KEY" "--url @URL@ --insecure" "$SUBPROTO" 0 'c:"type":"text","length":1'
  scenario "wss untrusted CA fails" "$cl" "$sv" "--tls $CERT $KEY" "--url @URL@" "$SUBPROTO" 1 '!c:"event":"open"'
  scenario "wss client certificate" "$cl" "$sv" "--tls $CERT $KEY --client-ca $CA" \
    "--url @URL@ --ca $CA --cert $T/client.pem $T/client.key" "$SUBPROTO" 0 'c:"type":"text","length":1'
  scenario "wss client certificate missing" "$cl" "$sv" "--tls $CERT $KEY --client-ca $CA" \
    "--url @URL@ --ca $CA" "$SUBPROTO" 1 '!c:"type":"text"'
done

# Lifetime and SIGTERM: both servers exit by themselves.
for sv in py node; do
  start_server "$sv" --lifetime 1 || true
  sleep 2.5
  if kill -0 "$SRV_PID" 2>/dev/null; then
    echo "FAIL  $sv server: --lifetime 1 did not exit"; fail=$((fail + 1)); stop_server
  else
    wait "$SRV_PID"; rc=$?; SRV_PID=""
    if [ $rc = 0 ] && grep -q '"event":"exit","reason":"lifetime"' "$T/server.log"; then
      echo "PASS  $sv server: --lifetime exits 0"; pass=$((pass + 1))
    else echo "FAIL  $sv server: --lifetime exit $rc"; fail=$((fail + 1)); fi
  fi
done

echo "$pass passed, $fail failed"
[ $fail = 0 ]
