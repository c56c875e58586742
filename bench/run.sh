#!/bin/sh
# bench/run.sh: `make bench`. Builds the load generator and the raw echo
# server, runs bench/micro.sh if there is one, then runs the same scenarios
# against each echo server (raw libuv TCP echo, luvws, Node's ws,
# uWebSockets.js, Boost.Beast), server pinned to CPU 0 and load generator to CPU 1, and
# prints one table. See bench/README.md for what each row means.
#
#   BENCH_QUICK=1      smoke run: 1 s per scenario, one repetition
#   BENCH_DURATION=S   seconds per measured run (default 2)
#   BENCH_REPS=N       runs per scenario, the best one is kept (default 2, and
#                      one more while the kept one was disturbed by other load)
#   BENCH_SERVERS="raw luvws node-ws uws beast"   which columns to run
#   BENCH_LUVWS_SERVER=FILE   the luvws echo script (default examples/echo_server.lua)
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
gcc $CFLAGS_BENCH -o "$B/loadgen" bench/loadgen.c -luv -lwolfssl || { say "bench: building loadgen failed"; exit 1; }
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

# 1,000 idle connections on each side, plus handshake churn.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  say "bench: warning: ulimit -n is $(ulimit -n); the idle scenario needs more than $IDLE_N"
fi

NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
  say "bench: warning: one CPU only; server and load generator share it"
  GEN_CPU=0
fi

# ---- micro-benchmarks (another script's business) ----
if [ -f bench/micro.sh ]; then
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
say ""

# ---- servers ----
RES="$B/results.txt"
: >"$RES"
put() { say "$1 $2 $3" >>"$RES"; }

SRV_PID=""
start_server() { # name port
  log="$B/server-$1.log"
  case "$1" in
    raw) taskset -c $SRV_CPU "$B/raw_echo" "$2" >"$log" 2>&1 &
      ;;
    luvws) # env and taskset exec: $! is the Lua process itself
      env "LUA_PATH=$LUA_PATH_TREE" "LUA_CPATH=$LUA_CPATH_TREE" taskset -c $SRV_CPU lua5.4 "$LUVWS_SERVER" "$2" >"$log" 2>&1 &
      ;;
    node-ws) taskset -c $SRV_CPU node bench/node_ws_echo.js "$2" >"$log" 2>&1 &
      ;;
    uws) taskset -c $SRV_CPU node bench/uws_echo.js "$2" >"$log" 2>&1 &
      ;;
    beast) taskset -c $SRV_CPU "$B/beast_echo" "$2" >"$log" 2>&1 &
      ;;
  esac
  SRV_PID=$!
  if ! "$B/loadgen" --probe --port "$2" --timeout 15 >/dev/null 2>&1 || ! kill -0 "$SRV_PID" 2>/dev/null; then
    say "bench: $1 did not start listening on port $2:"
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
trap '[ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null; stop_server; exit 130' INT TERM

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
      note "$srv $key: loadgen failed (status $ST): $(head -1 "$B/loadgen.err")"
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

run_handshakes() {
  srv=$1
  bestv=-1 r=0 best="" bestoth=0
  while [ $r -lt "$REPS" ] || { [ "${bestoth:-0}" -gt 10 ] && [ $r -lt $((REPS + 1)) ]; }; do
    measure --port "$PORT" --handshakes --conns 50 --duration "$DUR" --warmup "$WARM" --busy-poll
    if [ $ST -ne 0 ] || [ -z "$OUT" ]; then
      note "$srv handshakes: loadgen failed (status $ST): $(head -1 "$B/loadgen.err")"
      put "$srv" f_hs ERR
      return
    fi
    v=$(field "$OUT" hs_per_s)
    if [ "$v" -gt "$bestv" ]; then bestv=$v best=$OUT bestpct=$SRV_PCT bestoth=$OTHER_PCT; fi
    r=$((r + 1))
  done
  put "$srv" f_hs "$bestv"
  put "$srv" f_srv "$bestpct"
  put "$srv" f_oth "$bestoth"
  put "$srv" f_gen "$(pct "$(field "$best" gen_busy)")"
  late=$(field "$best" late_tcp_close)
  [ "${late:-0}" -gt 0 ] && note "$srv handshakes: $late times the server had not closed TCP 1 s after its close frame (RFC 6455 7.1.1 wants the server to close first); the generator closed it"
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

for srv in $SERVERS; do
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
done
say ""

# ---- table ----
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
  split("a b c d e f", U, " ")
  split("(a) 32 B, 1 in flight|(b) 32 B, 128 in flight|(c) 100 conns x 512 B|(d) 64 KiB|(e) 4 MiB|(f) handshakes", L, "|")
  printf "%-44s", ""
  for (i = 1; i <= n; i++) printf " %11s", S[i]
  printf "\n"
  for (r = 1; r <= 6; r++) {
    printf "%-44s", L[r]
    for (i = 1; i <= n; i++) {
      sv = get(S[i], U[r] "_srv"); gv = get(S[i], U[r] "_gen"); ov = get(S[i], U[r] "_oth")
      if (ov + 0 > 10) disturbed++
      printf " %11s", (sv ~ /^[0-9]+$/ && gv ~ /^[0-9]+$/) ? sv "/" gv "/" ov : "-"
    }
    printf "\n"
  }
  if (disturbed) printf "%d kept runs had more than 10 %% other load on a core: run again on a quiet machine.\n", disturbed
}' "$RES" | tee "$B/table.txt"

if [ -n "$NOTES" ]; then
  say ""
  say "notes:"
  printf '%s' "$NOTES"
fi
exit 0
