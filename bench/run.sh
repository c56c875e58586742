#!/bin/sh
# bench/run.sh: `make bench`. Builds the load generator and the raw echo
# server, runs bench/micro.sh if there is one, then runs the same scenarios
# against each echo server (raw libuv TCP echo, luvws, Node's ws,
# uWebSockets.js, Boost.Beast), server pinned to CPU 0 and load generator to CPU 1, and
# prints one table; the same over wss for luvws, Node's ws and uWS; then the
# game-server scenario (publish to 1,000 and 10,000 subscribers at 20 Hz) in
# a second table. See bench/README.md for what each row means.
#
#   BENCH_QUICK=1      smoke run: 1 s per scenario, one repetition
#   BENCH_DURATION=S   seconds per measured run (default 2)
#   BENCH_REPS=N       runs per scenario, the best one is kept (default 2, and
#                      one more while the kept one was disturbed by other load)
#   BENCH_SERVERS="raw luvws node-ws uws beast"   which columns to run
#   BENCH_LUVWS_SERVER=FILE   the luvws echo script (default examples/echo_server.lua)
#   BENCH_TLS=0        skip the wss rows
#   BENCH_TLS_CIPHERS=LIST   what the generator offers (default: ChaCha20-Poly1305 only)
#   BENCH_GAME=0       skip the game-server scenario
#   BENCH_ECHO=0       skip everything else (only the game-server scenario)
#   BENCH_GAME_CONNS="1000 10000"   its connection counts
#   BENCH_GAME_DURATION=S   its measured seconds (default 5; 2 with BENCH_QUICK)
# The Boost.Beast column needs Debian's libboost1.81-dev (header-only Beast).
set -u
cd "$(dirname "$0")/.."

B=build/bench
mkdir -p "$B"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  DUR=1 REPS=1 WARM=0.2
else
  DUR=${BENCH_DURATION:-2} REPS=${BENCH_REPS:-2} WARM=0.5
fi
SERVERS=${BENCH_SERVERS:-"raw luvws node-ws uws beast"}
SRV_CPU=0
GEN_CPU=1
IDLE_N=1000
LUVWS_SERVER=${BENCH_LUVWS_SERVER:-examples/echo_server.lua}
# how the luvws echo server finds the tree's modules
LUA_PATH_TREE='lua/?.lua;lua/?/init.lua;;'
LUA_CPATH_TREE='build/?.so;;'

say() { printf '%s\n' "$*"; }
note() { NOTES="${NOTES}  - $*
"; }
NOTES=""

# ---- build ----
CFLAGS_BENCH="-std=c11 -Wall -Wextra -Werror -O2"
# The generator's wss goes through OpenSSL when libssl-dev is there: with
# AES-NI/AVX2 assembly its side of TLS costs a fraction of a wolfSSL
# server's (Debian's wolfSSL has no assembly), so the wss rows measure the
# servers. Without it, wolfSSL (then the generator limits most wss rows).
GEN_TLS=wolfSSL
if [ -f /usr/include/openssl/ssl.h ] &&
  gcc $CFLAGS_BENCH -DLOADGEN_OPENSSL -o "$B/loadgen" bench/loadgen.c bench/loadgen_openssl.c -lssl -lcrypto -luv -lwolfssl 2>"$B/loadgen-build.log"; then
  GEN_TLS="OpenSSL $(openssl version 2>/dev/null | cut -d' ' -f2)"
else
  gcc $CFLAGS_BENCH -o "$B/loadgen" bench/loadgen.c -luv -lwolfssl || { say "bench: building loadgen failed"; exit 1; }
fi
gcc $CFLAGS_BENCH -o "$B/raw_echo" bench/raw_echo.c -luv || { say "bench: building raw_echo failed"; exit 1; }
# Beast takes ~20 s to compile: only when the source changed.
HAVE_BEAST=0
if [ -f /usr/include/boost/beast.hpp ] && command -v g++ >/dev/null 2>&1; then
  if [ ! -x "$B/beast_echo" ] || [ bench/beast_echo.cpp -nt "$B/beast_echo" ]; then
    say "bench: building beast_echo"
    g++ -std=c++17 -O2 -Wall -Wextra -Werror -o "$B/beast_echo" bench/beast_echo.cpp -pthread || rm -f "$B/beast_echo"
  fi
  [ -x "$B/beast_echo" ] && HAVE_BEAST=1
fi
BOOST_VER=$(sed -n 's/^#define BOOST_LIB_VERSION "\(.*\)"/\1/p' /usr/include/boost/version.hpp 2>/dev/null | tr _ .)

# 1,000 idle connections on each side, plus handshake churn; 10,000 in the
# game scenario.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  say "bench: warning: ulimit -n is $(ulimit -n); the idle scenario needs more than $IDLE_N"
fi

# ---- wss: a throw-away certificate (EC P-256: the fastest signature with
# Debian's wolfSSL), in a temporary directory removed on exit ----
TLS_DIR=""
TLS_ON=${BENCH_TLS:-1}
TLS_CIPHERS=${BENCH_TLS_CIPHERS:-}
if [ -z "$TLS_CIPHERS" ]; then
  case "$GEN_TLS" in
    OpenSSL*) TLS_CIPHERS=TLS_CHACHA20_POLY1305_SHA256 ;;
    *) TLS_CIPHERS=TLS13-CHACHA20-POLY1305-SHA256 ;;
  esac
fi
cleanup_tls() { [ -n "$TLS_DIR" ] && rm -rf "$TLS_DIR"; TLS_DIR=""; }
trap cleanup_tls EXIT
if [ "$TLS_ON" = 1 ]; then
  if command -v openssl >/dev/null 2>&1 && TLS_DIR=$(mktemp -d) &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
      -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" >/dev/null 2>&1; then
    TLS_ARGS="--tls $TLS_DIR/cert.pem $TLS_DIR/key.pem"
  else
    cleanup_tls
    TLS_ON=0
    note "wss rows skipped: could not make a certificate with the openssl command"
  fi
fi

NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
  say "bench: warning: one CPU only; server and load generator share it"
  GEN_CPU=0
fi

# ---- micro-benchmarks (another script's business) ----
if [ -f bench/micro.sh ] && [ "${BENCH_ECHO:-1}" = 1 ]; then
  say "== micro-benchmarks (bench/micro.sh)"
  sh bench/micro.sh || note "bench/micro.sh exited with status $?"
  say ""
fi

# ---- Node peers ----
HAVE_NODE=0
if command -v node >/dev/null 2>&1; then
  HAVE_NODE=1
  if [ ! -d bench/node_modules ]; then
    say "bench: npm ci in bench/"
    (cd bench && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || note "npm ci in bench/ failed"
  fi
fi
WS_VER=$(node -p 'require("./bench/node_modules/ws/package.json").version' 2>/dev/null || echo "-")
UWS_VER=$(node -p 'require("./bench/node_modules/uwebsockets/package.json").version' 2>/dev/null || echo "-")
UWS_SRC=$(cat bench/node_modules/uwebsockets/source_commit 2>/dev/null | cut -c1-12)
UWS_ERR=""
if [ "$HAVE_NODE" = 1 ]; then
  UWS_ERR=$(cd bench && node -e 'require("uwebsockets")' 2>&1 | grep -m1 -i error)
else
  UWS_ERR="node is not installed"
fi

# ---- header ----
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
MEM=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
say "== luvws bench $(date -u '+%Y-%m-%d %H:%M UTC')"
say "machine: $CPU_MODEL, $NCPU CPUs, $MEM, Linux $(uname -r)"
say "pinning: server on CPU $SRV_CPU, load generator on CPU $GEN_CPU (taskset)"
say "versions: node $(node --version 2>/dev/null || echo -), ws $WS_VER, uWebSockets.js via npm uwebsockets $UWS_VER (source ${UWS_SRC:-?}), Boost.Beast ${BOOST_VER:--}, libuv $(pkg-config --modversion libuv 2>/dev/null || echo ?), wolfSSL $(pkg-config --modversion wolfssl 2>/dev/null || echo ?), $(lua5.4 -v 2>&1 | cut -d' ' -f1-2)"
LUVWS_VER=$(env "LUA_PATH=$LUA_PATH_TREE" "LUA_CPATH=$LUA_CPATH_TREE" lua5.4 -e 'io.write(require("luvws").version or "?")' 2>/dev/null || echo "-")
LOAD=$(cut -d' ' -f1 /proc/loadavg)
say "load average before the run: $LOAD$(awk -v l="$LOAD" 'BEGIN {if (l > 0.5) print " (something else is running: figures will be noisy)"}')"
say "luvws: $LUVWS_VER; each run ${DUR} s after ${WARM} s warm-up, best of ${REPS}"
[ "$TLS_ON" = 1 ] && say "wss: EC P-256 certificate; generator's TLS: $GEN_TLS, offering only $TLS_CIPHERS"
say ""

# ---- servers ----
RES="$B/results.txt"
: >"$RES"
put() { say "$1 $2 $3" >>"$RES"; }

SRV_PID=""
start_server() { # name port [extra arguments for the server]
  name=$1 port=$2
  shift 2
  log="$B/server-$name${1:+-tls}.log"
  case "$name" in
    raw) taskset -c $SRV_CPU "$B/raw_echo" "$port" >"$log" 2>&1 &
      ;;
    luvws) # env and taskset exec: $! is the Lua process itself
      env "LUA_PATH=$LUA_PATH_TREE" "LUA_CPATH=$LUA_CPATH_TREE" taskset -c $SRV_CPU lua5.4 "$LUVWS_SERVER" "$port" "$@" >"$log" 2>&1 &
      ;;
    node-ws) taskset -c $SRV_CPU node bench/node_ws_echo.js "$port" "$@" >"$log" 2>&1 &
      ;;
    uws) taskset -c $SRV_CPU node bench/uws_echo.js "$port" "$@" >"$log" 2>&1 &
      ;;
    beast) taskset -c $SRV_CPU "$B/beast_echo" "$port" >"$log" 2>&1 &
      ;;
    game-luvws)
      env "LUA_PATH=$LUA_PATH_TREE" "LUA_CPATH=$LUA_CPATH_TREE" taskset -c $SRV_CPU lua5.4 bench/game_luvws.lua "$port" >"$log" 2>&1 &
      ;;
    game-node-ws) taskset -c $SRV_CPU node bench/game_node_ws.js "$port" >"$log" 2>&1 &
      ;;
    game-uws) taskset -c $SRV_CPU node bench/game_uws.js "$port" >"$log" 2>&1 &
      ;;
  esac
  SRV_PID=$!
  if ! "$B/loadgen" --probe --port "$port" --timeout 15 >/dev/null 2>&1 || ! kill -0 "$SRV_PID" 2>/dev/null; then
    say "bench: $name did not start listening on port $port:"
    tail -5 "$log"
    stop_server
    return 1
  fi
  return 0
}

stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill "$SRV_PID" 2>/dev/null
  i=0
  while kill -0 "$SRV_PID" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$SRV_PID" 2>/dev/null
  wait "$SRV_PID" 2>/dev/null
  SRV_PID=""
}
trap '[ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null; stop_server; cleanup_tls; exit 130' INT TERM

CLK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SRV_PID/stat" 2>/dev/null || echo 0; }

# busy and total ticks of the server's CPU, from /proc/stat
# (user + nice + system + steal: interrupts and softirqs are left out, since
# the server's own network traffic lands there)
cpu0_ticks() { awk -v c="cpu$SRV_CPU" '$1 == c {print $2 + $3 + $4 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# measure loadgen-args...: runs gen; sets OUT, ST, SRV_PCT (server CPU % over
# the run) and OTHER_PCT (the most of either core, the server's or the
# generator's, that something else used: other processes, or the hypervisor's
# steal; high means the row was disturbed)
measure() {
  c0=$(cpu_ticks)
  k0=$(cpu0_ticks)
  t0=$(date +%s%N)
  OUT=$(gen "$@")
  ST=$?
  t1=$(date +%s%N)
  c1=$(cpu_ticks)
  k1=$(cpu0_ticks)
  SRV_PCT=$(((c1 - c0) * 100000000000 / (CLK * (t1 - t0 + 1))))
  g=$(field "$OUT" gen_cpu_other)
  OTHER_PCT=$(awk -v a="$k0" -v b="$k1" -v s="$SRV_PCT" -v g="${g:-0}" 'BEGIN {
    split(a, x, " "); split(b, y, " "); t = y[2] - x[2]
    o = t > 0 ? 100 * (y[1] - x[1]) / t - s : 0
    if (100 * g > o) o = 100 * g
    printf "%d", o < 0 ? 0 : o + 0.5 }')
}
pct() { awk -v v="$1" 'BEGIN {printf "%d", v * 100 + 0.5}'; }

field() { # "RESULT k=v ..." key
  printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

gen() { # loadgen arguments...: runs pinned, bounded in time; stdout = RESULT line
  timeout $((DUR * 2 + 40)) taskset -c $GEN_CPU "$B/loadgen" "$@" 2>"$B/loadgen.err"
}

# run_echo server key args...: best of REPS by msgs/s; stores key_mps, key_mbps, key_p50, key_p99
run_echo() {
  srv=$1 key=$2
  shift 2
  best="" bestv=-1 r=0 bestpct=0 bestoth=0
  while [ $r -lt "$REPS" ] || { [ "${bestoth:-0}" -gt 10 ] && [ $r -lt $((REPS + 1)) ]; }; do
    measure --port "$PORT" --duration "$DUR" --warmup "$WARM" --busy-poll $RAWFLAG "$@"
    if [ $ST -ne 0 ] || [ -z "$OUT" ]; then
      note "$srv $key: loadgen failed (status $ST): $(grep -m1 -v '^loadgen: TLS' "$B/loadgen.err")"
      put "$srv" "${key}_mps" ERR
      return
    fi
    v=$(field "$OUT" msgs_per_s)
    if [ "$v" -gt "$bestv" ]; then bestv=$v best=$OUT bestpct=$SRV_PCT bestoth=$OTHER_PCT; fi
    r=$((r + 1))
  done
  put "$srv" "${key}_srv" "$bestpct"
  put "$srv" "${key}_oth" "$bestoth"
  put "$srv" "${key}_gen" "$(pct "$(field "$best" gen_busy)")"
  put "$srv" "${key}_mps" "$(field "$best" msgs_per_s)"
  put "$srv" "${key}_mbps" "$(field "$best" mb_per_s)"
  put "$srv" "${key}_p50" "$(field "$best" p50_us)"
  put "$srv" "${key}_p99" "$(field "$best" p99_us)"
}

run_handshakes() { # server [key]: stores key_hs (key: f by default)
  srv=$1 key=${2:-f}
  bestv=-1 r=0 best="" bestoth=0
  while [ $r -lt "$REPS" ] || { [ "${bestoth:-0}" -gt 10 ] && [ $r -lt $((REPS + 1)) ]; }; do
    measure --port "$PORT" --handshakes --conns 50 --duration "$DUR" --warmup "$WARM" --busy-poll $RAWFLAG
    if [ $ST -ne 0 ] || [ -z "$OUT" ]; then
      note "$srv $key handshakes: loadgen failed (status $ST): $(grep -m1 -v '^loadgen: TLS' "$B/loadgen.err")"
      put "$srv" "${key}_hs" ERR
      return
    fi
    v=$(field "$OUT" hs_per_s)
    if [ "$v" -gt "$bestv" ]; then bestv=$v best=$OUT bestpct=$SRV_PCT bestoth=$OTHER_PCT; fi
    r=$((r + 1))
  done
  put "$srv" "${key}_hs" "$bestv"
  put "$srv" "${key}_srv" "$bestpct"
  put "$srv" "${key}_oth" "$bestoth"
  put "$srv" "${key}_gen" "$(pct "$(field "$best" gen_busy)")"
  late=$(field "$best" late_tcp_close)
  [ "${late:-0}" -gt 0 ] && note "$srv handshakes ($key): $late times the server had not closed TCP 1 s after its close frame (RFC 6455 7.1.1 wants the server to close first); the generator closed it"
}

# the TLS version, suite and group the generator reports, once per server
tls_seen() { # server
  c=$(sed -n 's/^loadgen: TLS //p' "$B/loadgen.err" | head -1)
  [ -n "$c" ] && ! grep -q "^$1 tls_cipher " "$RES" && put "$1" tls_cipher "$c"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SRV_PID/status" 2>/dev/null; }

# idle_hold N: starts a generator holding N connections; sets IDLE_PID; 0 once READY
IDLE_PID=""
idle_hold() {
  rm -f "$B/idle.out" # the redirection below happens in the child, later
  taskset -c $GEN_CPU "$B/loadgen" --port "$PORT" $RAWFLAG --idle "$1" --timeout 20 >"$B/idle.out" 2>"$B/loadgen.err" &
  IDLE_PID=$!
  i=0
  while [ $i -lt 400 ]; do
    grep -q READY "$B/idle.out" 2>/dev/null && return 0
    kill -0 "$IDLE_PID" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}
idle_release() {
  [ -n "$IDLE_PID" ] || return 0
  kill "$IDLE_PID" 2>/dev/null
  i=0
  while kill -0 "$IDLE_PID" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$IDLE_PID" 2>/dev/null
  wait "$IDLE_PID" 2>/dev/null
  IDLE_PID=""
}

run_idle() {
  srv=$1
  # warm-up: first connections pay for lazy initialisation, not per connection
  if ! idle_hold 20; then
    note "$srv idle: warm-up failed: $(head -1 "$B/loadgen.err")"
    idle_release
    put "$srv" g_rss ERR
    return
  fi
  idle_release
  sleep 0.5
  r0=$(rss_kb)
  if ! idle_hold $IDLE_N; then
    note "$srv idle: $IDLE_N connections failed: $(head -1 "$B/loadgen.err")"
    idle_release
    put "$srv" g_rss ERR
    return
  fi
  sleep 0.5
  r1=$(rss_kb)
  idle_release
  if [ -z "$r0" ] || [ -z "$r1" ]; then
    note "$srv idle: could not read VmRSS of pid $SRV_PID"
    put "$srv" g_rss ERR
    return
  fi
  put "$srv" g_rss $(((r1 - r0) * 1024 / IDLE_N))
  put "$srv" g_rss0 "$r0"
}

ECHO_SERVERS=$SERVERS
[ "${BENCH_ECHO:-1}" = 1 ] || ECHO_SERVERS=""
for srv in $ECHO_SERVERS; do
  case "$srv" in
    luvws)
      if [ ! -f "$LUVWS_SERVER" ]; then
        put "$srv" skip 1
        note "luvws: skipped, $LUVWS_SERVER does not exist yet"
        continue
      fi ;;
    node-ws)
      if [ "$HAVE_NODE" = 0 ] || [ "$WS_VER" = - ]; then
        put "$srv" skip 1
        note "node-ws: skipped, node or bench/node_modules/ws is missing"
        continue
      fi ;;
    uws)
      if [ -n "$UWS_ERR" ] || [ "$UWS_VER" = - ]; then
        put "$srv" skip 1
        note "uws: skipped: tried the npm package uwebsockets (a repackaging of uWebSockets.js's binaries; upstream installs from GitHub, not reachable here): ${UWS_ERR:-not installed}"
        continue
      fi ;;
    beast)
      if [ "$HAVE_BEAST" = 0 ]; then
        put "$srv" skip 1
        note "beast: skipped, Boost.Beast headers are missing (apt-get install libboost1.81-dev)"
        continue
      fi ;;
  esac
  PORT=$("$B/loadgen" --free-port)
  RAWFLAG=""
  [ "$srv" = raw ] && RAWFLAG=--raw
  say "== $srv (port $PORT)"
  start_server "$srv" "$PORT" || { put "$srv" skip 1; note "$srv: did not start (see $B/server-$srv.log)"; continue; }
  # (g) first, on a fresh process, before throughput runs grow its heap
  run_idle "$srv"
  run_echo "$srv" a --conns 1 --size 32 --inflight 1
  run_echo "$srv" b --conns 1 --size 32 --inflight 128
  run_echo "$srv" c --conns 100 --size 512 --inflight 8
  run_echo "$srv" d --conns 1 --size 64K --inflight 4
  run_echo "$srv" e --conns 1 --size 4M --inflight 2
  [ "$srv" != raw ] && run_handshakes "$srv"
  if ! kill -0 "$SRV_PID" 2>/dev/null; then note "$srv: the server died during the run (see $B/server-$srv.log)"; fi
  stop_server

  # ---- the same over wss: handshakes, 64 KiB, 4 MiB ----
  case "$srv" in luvws | node-ws | uws) ;; *) continue ;; esac
  [ "$TLS_ON" = 1 ] || continue
  PORT=$("$B/loadgen" --free-port)
  say "== $srv over TLS (port $PORT)"
  # shellcheck disable=SC2086 # TLS_ARGS: "--tls CERT KEY", no spaces inside
  start_server "$srv" "$PORT" $TLS_ARGS || { note "$srv: did not start with TLS (see $B/server-$srv-tls.log)"; continue; }
  RAWFLAG="--tls --ciphers $TLS_CIPHERS"
  run_handshakes "$srv" h
  tls_seen "$srv"
  run_echo "$srv" i --conns 1 --size 64K --inflight 4
  tls_seen "$srv"
  run_echo "$srv" j --conns 1 --size 4M --inflight 2
  tls_seen "$srv"
  if grep -q "^$srv j_mps ERR" "$RES"; then
    # uWS's SSLApp drops connections with several large messages in flight:
    # say what one in flight does, beside the ERR
    kill -0 "$SRV_PID" 2>/dev/null || { stop_server; start_server "$srv" "$PORT" $TLS_ARGS; }
    measure --port "$PORT" --duration "$DUR" --warmup "$WARM" --busy-poll $RAWFLAG --conns 1 --size 4M --inflight 1
    if [ $ST -eq 0 ] && [ -n "$OUT" ]; then
      note "$srv wss 4 MiB: with 1 in flight instead of 2: $(field "$OUT" mb_per_s) MB/s (server $SRV_PCT %, generator $(pct "$(field "$OUT" gen_busy)") %)"
    else
      note "$srv wss 4 MiB: with 1 in flight it failed too: $(grep -m1 -v '^loadgen: TLS' "$B/loadgen.err")"
    fi
  fi
  RAWFLAG=""
  if ! kill -0 "$SRV_PID" 2>/dev/null; then note "$srv: the TLS server died during the run (see $B/server-$srv-tls.log)"; fi
  stop_server
done
say ""

# ---- table ----
if [ -n "$ECHO_SERVERS" ]; then
# Columns: every server, then luvws's figure over each peer's.
awk -v servers="raw luvws node-ws uws beast" -v peers="raw uws node-ws beast" '
function fmt(v, kind) {
  if (v == "") return "-"
  if (v == "ERR" || v == "skip") return v
  if (kind == "us") return sprintf("%.1f", v)
  if (kind == "mb") return sprintf("%.0f", v)
  return sprintf("%d", v)
}
function get(srv, key) {
  if (skip[srv]) return "skip"
  if (srv == "raw" && key == "f_hs") return ""
  return val[srv "," key]
}
function ratio(a, b) {
  if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) return "-"
  return sprintf("%.2f", a / b)
}
{ val[$1 "," $2] = $3; if ($2 == "skip") skip[$1] = 1 }
END {
  n = split(servers, S, " ")
  np = split(peers, P, " ")
  # the wss handshake row is often generator-bound: what each costs the server
  for (i = 1; i <= n; i++) {
    h = val[S[i] ",h_hs"]; c = val[S[i] ",h_srv"]
    if (h ~ /^[0-9]+$/ && h > 0 && c ~ /^[0-9]+$/) val[S[i] ",h_cpu"] = c * 10000 / h
  }
  nr = 0
  R[++nr] = "a_p50|us|(a) 1 conn, 32 B, 1 in flight: p50 us *"
  R[++nr] = "a_p99|us|(a) 1 conn, 32 B, 1 in flight: p99 us *"
  R[++nr] = "a_mps|n|(a) 1 conn, 32 B, 1 in flight: msgs/s"
  R[++nr] = "b_mps|n|(b) 1 conn, 32 B, 128 in flight: msgs/s"
  R[++nr] = "c_mps|n|(c) 100 conns, 512 B, 8 in flight: msgs/s"
  R[++nr] = "d_mbps|mb|(d) 1 conn, 64 KiB, 4 in flight: MB/s"
  R[++nr] = "e_mbps|mb|(e) 1 conn, 4 MiB, 2 in flight: MB/s"
  R[++nr] = "f_hs|n|(f) handshakes/s, 50 connectors"
  R[++nr] = "g_rss|n|(g) RSS per idle conn, bytes *"
  R[++nr] = "h_hs|n|(h) wss handshakes/s, 50 connectors"
  R[++nr] = "h_cpu|n|(h) wss: server CPU us per handshake *"
  R[++nr] = "i_mbps|mb|(i) wss 1 conn, 64 KiB, 4 in flight: MB/s"
  R[++nr] = "j_mbps|mb|(j) wss 1 conn, 4 MiB, 2 in flight: MB/s"
  printf "%-44s", "scenario"
  for (i = 1; i <= n; i++) printf " %9s", S[i]
  for (i = 1; i <= np; i++) printf " %13s", "luvws/" P[i]
  printf "\n"
  for (r = 1; r <= nr; r++) {
    split(R[r], f, "|")
    printf "%-44s", f[3]
    for (i = 1; i <= n; i++) printf " %9s", fmt(get(S[i], f[1]), f[2])
    for (i = 1; i <= np; i++) printf " %13s", ratio(get("luvws", f[1]), get(P[i], f[1]))
    printf "\n"
  }
  print "* lower is better: a ratio below 1 favours luvws; elsewhere above 1 does."
  print ""
  print "CPU in the kept runs: server % of its core / generator busy % / other: % of a core used by others."
  print "Generator near 100 with the server well under: the generator limits the row. Other above ~10:"
  print "something else ran on the server core, the figure is disturbed (see bench/README.md)."
  nu = split("a b c d e f h i j", U, " ")
  split("(a) 32 B, 1 in flight|(b) 32 B, 128 in flight|(c) 100 conns x 512 B|(d) 64 KiB|(e) 4 MiB|(f) handshakes|(h) wss handshakes|(i) wss 64 KiB|(j) wss 4 MiB", L, "|")
  printf "%-44s", ""
  for (i = 1; i <= n; i++) printf " %11s", S[i]
  printf "\n"
  for (r = 1; r <= nu; r++) {
    printf "%-44s", L[r]
    for (i = 1; i <= n; i++) {
      sv = get(S[i], U[r] "_srv"); gv = get(S[i], U[r] "_gen"); ov = get(S[i], U[r] "_oth")
      if (ov + 0 > 10) disturbed++
      printf " %11s", (sv ~ /^[0-9]+$/ && gv ~ /^[0-9]+$/) ? sv "/" gv "/" ov : "-"
    }
    printf "\n"
  }
  if (disturbed) printf "%d kept runs had more than 10 %% other load on a core: run again on a quiet machine.\n", disturbed
  line = ""
  for (i = 1; i <= n; i++) if (val[S[i] ",tls_cipher"] != "") line = line (line == "" ? "" : ", ") S[i] " " val[S[i] ",tls_cipher"]
  if (line != "") print "wss, negotiated (version/suite/key exchange): " line
}' "$RES" | tee "$B/table.txt"
fi

# ---- the game-server scenario ----
# N connections subscribed to one topic; the server publishes a 64-byte
# binary message to all of them 20 times a second, the first 8 bytes its
# send time (CLOCK_MONOTONIC ns). The generator counts what arrives and the
# delivery latency (bench/game_*.{lua,js}, loadgen --subscribe).
GAME_ON=${BENCH_GAME:-1}
GAME_CONNS=${BENCH_GAME_CONNS:-"1000 10000"}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  GDUR=${BENCH_GAME_DURATION:-2} GWARM=0.5
else
  GDUR=${BENCH_GAME_DURATION:-5} GWARM=1
fi
GRES="$B/game-results.txt"
: >"$GRES"
gput() { say "$1 $2 $3" >>"$GRES"; }

run_game() { # server conns
  srv=$1 n=$2
  PORT=$("$B/loadgen" --free-port)
  if ! start_server "game-$srv" "$PORT"; then
    gput "$srv" "${n}_mps" ERR
    note "game $srv: did not start (see $B/server-game-$srv.log)"
    return
  fi
  rm -f "$B/game.out"
  # no --busy-poll: latencies here are milliseconds, and the generator's own
  # CPU time (gen_cpu) then tells whether it could keep up
  taskset -c $GEN_CPU "$B/loadgen" --port "$PORT" --subscribe "$n" --duration "$GDUR" --warmup "$GWARM" \
    --timeout 10 >"$B/game.out" 2>"$B/loadgen.err" &
  IDLE_PID=$!
  # once all are connected: the server's CPU from there to the end, and its
  # RSS in the middle of the measured window
  while ! grep -q READY "$B/game.out" 2>/dev/null && kill -0 "$IDLE_PID" 2>/dev/null; do sleep 0.05; done
  c0=$(cpu_ticks) k0=$(cpu0_ticks) t0=$(date +%s%N)
  rss1=""
  if grep -q READY "$B/game.out" 2>/dev/null; then
    sleep "$(awk -v w="$GWARM" -v d="$GDUR" 'BEGIN {print w + d / 2}')"
    rss1=$(rss_kb)
  fi
  wait "$IDLE_PID"
  st=$?
  IDLE_PID=""
  c1=$(cpu_ticks) k1=$(cpu0_ticks) t1=$(date +%s%N)
  out=$(grep '^RESULT' "$B/game.out")
  if [ $st -ne 0 ]; then
    note "game $srv $n: loadgen status $st: $(grep -m1 . "$B/loadgen.err")"
  fi
  if [ -z "$out" ]; then
    gput "$srv" "${n}_mps" ERR
  else
    spct=$(((c1 - c0) * 100000000000 / (CLK * (t1 - t0 + 1))))
    oth=$(awk -v a="$k0" -v b="$k1" -v s="$spct" -v g="$(field "$out" gen_cpu_other)" 'BEGIN {
      split(a, x, " "); split(b, y, " "); t = y[2] - x[2]
      o = t > 0 ? 100 * (y[1] - x[1]) / t - s : 0
      if (100 * g > o) o = 100 * g
      printf "%d", o < 0 ? 0 : o + 0.5 }')
    gput "$srv" "${n}_mps" "$(field "$out" msgs_per_s)"
    gput "$srv" "${n}_tps" "$(field "$out" ticks_per_s)"
    gput "$srv" "${n}_pct" "$(field "$out" delivered_pct)"
    gput "$srv" "${n}_p50" "$(field "$out" p50_us)"
    gput "$srv" "${n}_p99" "$(field "$out" p99_us)"
    gput "$srv" "${n}_rss" "${rss1:-}"
    gput "$srv" "${n}_srv" "$spct"
    gput "$srv" "${n}_gen" "$(pct "$(field "$out" gen_cpu)")"
    gput "$srv" "${n}_oth" "$oth"
    gput "$srv" "${n}_setup" "$(sed -n 's/^READY .*setup_s=//p' "$B/game.out")"
  fi
  if ! kill -0 "$SRV_PID" 2>/dev/null; then note "game $srv $n: the server died (see $B/server-game-$srv.log)"; fi
  stop_server
}

GAME_SERVERS=""
if [ "$GAME_ON" = 1 ]; then
  for srv in luvws node-ws uws; do
    case " $SERVERS " in *" $srv "*) ;; *) continue ;; esac
    grep -q "^$srv skip 1" "$RES" && continue
    case "$srv" in
      node-ws) [ "$HAVE_NODE" = 1 ] && [ "$WS_VER" != - ] || continue ;;
      uws) [ -z "$UWS_ERR" ] && [ "$UWS_VER" != - ] || continue ;;
    esac
    GAME_SERVERS="$GAME_SERVERS $srv"
  done
fi
if [ -n "$GAME_SERVERS" ]; then
  say "== game-server scenario:$GAME_SERVERS; ${GAME_CONNS} connections; ${GDUR} s after ${GWARM} s warm-up"
  for n in $GAME_CONNS; do
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((n + 100)) ]; then
      note "game $n: skipped, ulimit -n is $(ulimit -n) (the server and the generator each need $n and a few)"
      continue
    fi
    for srv in $GAME_SERVERS; do
      run_game "$srv" "$n"
      # disturbed by other load (above 10 % of a core): once more
      o=$(sed -n "s/^$srv ${n}_oth //p" "$GRES")
      if [ "${o:-0}" -gt 10 ]; then
        sed -i "/^$srv ${n}_/d" "$GRES"
        run_game "$srv" "$n"
      fi
    done
  done
  say ""
  awk -v servers="${GAME_SERVERS# }" -v conns="$GAME_CONNS" '
  function fmt(v, kind) {
    if (v == "") return "-"
    if (v == "ERR") return v
    if (kind == "ms") return sprintf("%.2f", v / 1000)
    if (kind == "mb") return sprintf("%.1f", v / 1024)
    if (kind == "f1") return sprintf("%.1f", v)
    if (kind == "f2") return sprintf("%.2f", v)
    return sprintf("%d", v)
  }
  function ratio(a, b) {
    if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) return "-"
    return sprintf("%.2f", a / b)
  }
  { val[$1 "," $2] = $3 }
  END {
    n = split(servers, S, " ")
    nc = split(conns, C, " ")
    np = 0
    for (i = n; i >= 1; i--) if (S[i] != "luvws") P[++np] = S[i] # uws first, as above
    nr = split("mps|n|delivered msgs/s;tps|f2|ticks/s sent (20 wanted);pct|f2|% of each tick delivered;p50|ms|latency p50, ms *;p99|ms|latency p99, ms *;rss|mb|server RSS, MiB *;srv|n|server CPU, % of its core *;setup|f1|setup of all connections, s", R, ";")
    printf "%-46s", "game server: 64 B to all at 20 Hz"
    for (i = 1; i <= n; i++) printf " %9s", S[i]
    for (i = 1; i <= np; i++) printf " %13s", "luvws/" P[i]
    printf "\n"
    for (c = 1; c <= nc; c++) {
      for (r = 1; r <= nr; r++) {
        split(R[r], f, "|")
        printf "%-46s", sprintf("%6d conns: %s", C[c], f[3])
        for (i = 1; i <= n; i++) printf " %9s", fmt(val[S[i] "," C[c] "_" f[1]], f[2])
        for (i = 1; i <= np; i++) printf " %13s", (f[1] == "setup" || f[1] == "tps") ? "" : ratio(val["luvws," C[c] "_" f[1]], val[P[i] "," C[c] "_" f[1]])
        printf "\n"
      }
    }
    print "* lower is better. RSS: VmRSS with every client connected, in the measured window."
    printf "%-46s", "generator CPU % / other load %"
    for (i = 1; i <= n; i++) printf " %9s", ""
    printf "\n"
    for (c = 1; c <= nc; c++) {
      printf "%-46s", sprintf("%6d conns", C[c])
      for (i = 1; i <= n; i++) {
        g = val[S[i] "," C[c] "_gen"]; o = val[S[i] "," C[c] "_oth"]
        if (o + 0 > 10) disturbed++
        printf " %9s", g != "" ? g "/" o : "-"
      }
      printf "\n"
    }
    if (disturbed) printf "%d runs had more than 10 %% other load on a core: run again on a quiet machine.\n", disturbed
  }' "$GRES" | tee "$B/game-table.txt"
fi

if [ -n "$NOTES" ]; then
  say ""
  say "notes:"
  printf '%s' "$NOTES"
fi
exit 0
