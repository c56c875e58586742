#!/bin/sh
# Builds bench/micro.c with -O2 into build/bench/micro (with the core
# sources it needs) and runs it: memcpy, ws_mask and ws_utf8_feed in GB/s,
# each with its ratio to memcpy.
set -e
cd "$(dirname "$0")/.."
CC=${CC:-cc}
mkdir -p build/bench
$CC -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
  -Wmissing-prototypes -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 \
  -Icsrc/core -o build/bench/micro bench/micro.c csrc/core/ws_core.c \
  csrc/core/ws_utf8.c csrc/core/ws_errors.c
exec build/bench/micro
