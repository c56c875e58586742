# luvws: build, test, demo. `make test` and `make demo` install what is
# missing first (tools/deps.sh).

LUA        ?= lua5.4
LUA_VERSION = 5.4
CC         ?= cc
PKG_CONFIG ?= pkg-config

LUA_INCDIR ?= $(shell $(PKG_CONFIG) --variable=includedir lua5.4 2>/dev/null || echo /usr/include)/lua5.4
LUV_INCDIR ?= $(LUA_INCDIR)/luv
DEP_CFLAGS  = -isystem $(LUA_INCDIR) -isystem $(LUV_INCDIR)
DEP_LIBS    = -luv -lwolfssl -lz

OPT        ?= -O2 -g
WARN        = -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
DEFS        = -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
CFLAGS     ?= $(OPT)
ALL_CFLAGS  = $(WARN) $(DEFS) $(CFLAGS) -fPIC -fvisibility=hidden -Icsrc/core -Icsrc/tls -Icsrc/uv -Icsrc/lua $(DEP_CFLAGS)
LDFLAGS    ?=

B          ?= build
CORE_SRC    = $(sort $(wildcard csrc/core/*.c))
TLS_SRC     = $(sort $(wildcard csrc/tls/*.c))
UV_SRC      = $(sort $(wildcard csrc/uv/*.c))
LUA_SRC     = $(sort $(wildcard csrc/lua/*.c))
TEST_SRC    = $(sort $(wildcard csrc/test/test_*.c))
FUZZ_SRC    = $(sort $(wildcard csrc/fuzz/fuzz_*.c))

CORE_OBJ    = $(CORE_SRC:%.c=$(B)/obj/%.o)
MOD_OBJ     = $(CORE_OBJ) $(TLS_SRC:%.c=$(B)/obj/%.o) $(UV_SRC:%.c=$(B)/obj/%.o) $(LUA_SRC:%.c=$(B)/obj/%.o)
TESTS       = $(TEST_SRC:csrc/test/%.c=$(B)/test/%)
MODULE      = $(B)/luvws/core.so

# Where `make install` (and luarocks) puts things.
INST_LIBDIR ?= /usr/local/lib/lua/$(LUA_VERSION)
INST_LUADIR ?= /usr/local/share/lua/$(LUA_VERSION)

.PHONY: all deps test check-c spec asan fuzz bench demo install clean format

all: $(MODULE)

$(B)/obj/%.o: %.c $(wildcard csrc/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(MOD_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LD $@"
	@$(CC) -shared $(LDFLAGS) -o $@ $(MOD_OBJ) $(DEP_LIBS) -ldl

$(B)/test/%: csrc/test/%.c $(CORE_OBJ) csrc/test/tap.h csrc/test/conn_harness.h
	@mkdir -p $(dir $@)
	@echo "  CC $@"
	@$(CC) $(ALL_CFLAGS) -Icsrc/test -o $@ $< $(CORE_OBJ) $(LDFLAGS) $(DEP_LIBS) -lm

tests: $(TESTS)

deps:
	@sh tools/deps.sh

# Everything: C tests under prove, every busted spec, the rockspec check.
# The last line is "N passed, N failed[, N skipped]".
test: deps
	@$(MAKE) --no-print-directory all tests
	@sh tools/run-tests.sh

check-c: all tests
	@prove -f $(TESTS)

spec: all
	@LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="$(B)/?.so;;" $(LUA) /usr/bin/busted spec

# C tests under AddressSanitizer and UBSan (with leak detection), then
# every busted spec against a module built the same way, run by a small
# instrumented Lua host (csrc/test/lua_host.c) so that only our process
# carries the sanitizers. Specs that measure memory (tagged #memory) are
# left to valgrind in make test.
ASAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan: deps
	@$(MAKE) --no-print-directory B=build-asan CC=clang OPT="$(ASAN_FLAGS)" \
	  LDFLAGS="-fsanitize=address,undefined" all tests
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 prove -f $(TEST_SRC:csrc/test/%.c=build-asan/test/%)
	@clang $(ASAN_FLAGS) -isystem $(LUA_INCDIR) -o build-asan/lua_host csrc/test/lua_host.c -llua5.4
	@echo "== busted specs under ASan and UBSan"
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LUA=build-asan/lua_host \
	  LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="build-asan/?.so;;" \
	  build-asan/lua_host /usr/bin/busted --exclude-tags=memory spec

FUZZ_TIME ?= 60
fuzz: deps
	@sh tools/fuzz.sh $(FUZZ_TIME)

bench: deps all
	@sh bench/run.sh

demo: deps all
	@sh tools/demo.sh

install: all
	mkdir -p $(INST_LIBDIR)/luvws $(INST_LUADIR)/luvws
	cp $(MODULE) $(INST_LIBDIR)/luvws/core.so
	cp lua/luvws/*.lua $(INST_LUADIR)/luvws/

format:
	clang-format -i csrc/*/*.c csrc/*/*.h

clean:
	rm -rf build build-asan build-fuzz
