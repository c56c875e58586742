rockspec_format = "3.0"
package = "luvws"
version = "scm-1"
source = {
   url = "git+file:///dev/null",
}
description = {
   summary = "WebSocket (RFC 6455, RFC 7692) for Lua 5.4 on luv, with a C core and wss:// through wolfSSL",
   detailed = [[
luvws is a WebSocket client and server library for Lua 5.4. Its C core runs on
the libuv loop that luv runs; its low-level API mirrors Boost.Beast's
websocket::stream, its high-level API offers ws.connect(url) and ws.server{}.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4, < 5.5",
   "luv",
}
external_dependencies = {
   LIBUV = { header = "uv.h", library = "uv" },
   WOLFSSL = { header = "wolfssl/ssl.h", library = "wolfssl" },
   ZLIB = { header = "zlib.h", library = "z" },
   LUV = { header = "lua5.4/luv/luv.h" },
}
build = {
   type = "make",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      LUV_INCDIR = "$(LUV_INCDIR)/lua5.4/luv",
      LIBUV_INCDIR = "$(LIBUV_INCDIR)",
   },
   install_variables = {
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
   },
}
