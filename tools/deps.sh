#!/bin/sh
# Installs what luvws needs to build and test, on Debian 12.
# As root it runs apt-get (and npm for the test peers); otherwise it prints
# the exact command to run and stops.
set -e
cd "$(dirname "$0")/.."

pkgs="lua5.4 liblua5.4-dev libuv1-dev lua-luv lua-luv-dev libwolfssl-dev zlib1g-dev
lua-busted luarocks clang libclang-rt-14-dev openssl python3-websockets nodejs
chromium pkg-config make gcc valgrind libssl-dev"

missing=""
for p in $pkgs; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    # nodejs may come from elsewhere than Debian (NodeSource); a working node is enough.
    if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
      continue
    fi
    missing="$missing $p"
  fi
done

if [ -n "$missing" ]; then
  cmd="apt-get install -y --no-install-recommends$missing"
  if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    if ! $cmd >/tmp/luvws-apt.log 2>&1; then
      apt-get update -q >/tmp/luvws-apt.log 2>&1 || true
      $cmd >>/tmp/luvws-apt.log 2>&1 || { tail -20 /tmp/luvws-apt.log; echo "deps: apt-get failed (log: /tmp/luvws-apt.log)"; exit 1; }
    fi
  else
    echo "deps: missing packages. Run as root:"
    echo "  sudo $cmd"
    exit 1
  fi
fi

# npm test peers (Node's ws, ...), pinned by spec/peers/package-lock.json.
if [ -f spec/peers/package.json ] && [ ! -d spec/peers/node_modules ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "deps: npm is missing; install Node.js and npm, then run: npm ci --prefix spec/peers"
    exit 1
  fi
  echo "deps: npm ci in spec/peers"
  (cd spec/peers && npm ci --no-audit --no-fund --loglevel=error) || { echo "deps: npm ci failed"; exit 1; }
fi
exit 0
