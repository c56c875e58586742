/*
 * luvws binding: ws.tls.context{...} and ws.tls.wrap(handle, context,
 * {servername = ...}). A wrapped handle is a layer that ws.stream takes
 * like a handle; the TLS handshake runs as the first step of handshake /
 * accept, inside the handshake timeout.
 */
#include <stdlib.h>
#include <string.h>

#include "lws.h"
#include "wstls.h"

#define LWS_TLS_CTX_MT "luvws.tls_context"
#define LWS_TLS_LAYER_MT "luvws.tls_layer"

typedef struct lws_tls_ctx {
  wstls_ctx *ctx; /* one reference */
  int server;     /* a server context */
  int verify;     /* a client context that verifies the server */
} lws_tls_ctx;

/* A wrapped handle: uservalue 1 = the luv handle, 2 = the context. */
typedef struct lws_tls_layer {
  char *servername; /* client: the host for SNI and verification */
  int used;         /* a stream took it */
} lws_tls_layer;

static lws_tls_ctx *check_ctx(lua_State *L, int idx) {
  lws_tls_ctx *c = (lws_tls_ctx *)luaL_checkudata(L, idx, LWS_TLS_CTX_MT);
  if (!c->ctx) luaL_argerror(L, idx, "TLS context is freed");
  return c;
}

static int ctx_gc(lua_State *L) {
  lws_tls_ctx *c = (lws_tls_ctx *)luaL_checkudata(L, 1, LWS_TLS_CTX_MT);
  wstls_ctx_unref(c->ctx);
  c->ctx = NULL;
  return 0;
}

static int ctx_tostring(lua_State *L) {
  lws_tls_ctx *c = (lws_tls_ctx *)luaL_checkudata(L, 1, LWS_TLS_CTX_MT);
  lua_pushfstring(L, "luvws.tls_context: %p (%s)", (void *)c,
                  c->server ? "server" : "client");
  return 1;
}

/* A string option that may also be a list (joined with sep). */
static const char *opt_list(lua_State *L, int t, const char *k,
                            const char *sep) {
  int ty = lua_getfield(L, t, k);
  if (ty == LUA_TNIL) return NULL;
  if (ty == LUA_TSTRING) return lua_tostring(L, -1);
  if (ty == LUA_TTABLE) {
    luaL_Buffer b;
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
    int list = lua_gettop(L);
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, list, i);
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "tls option %s: a list of strings expected", k);
      if (i > 1) luaL_addstring(&b, sep);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_replace(L, list);
    return lua_tostring(L, list);
  }
  luaL_error(L, "tls option %s: a string or a list expected", k);
  return NULL;
}

static const char *opt_str(lua_State *L, int t, const char *k) {
  int ty = lua_getfield(L, t, k);
  if (ty == LUA_TNIL) return NULL;
  if (ty != LUA_TSTRING) luaL_error(L, "tls option %s: a string expected", k);
  return lua_tostring(L, -1);
}

static int opt_version(lua_State *L, int t, const char *k) {
  int ty = lua_getfield(L, t, k), v = 0;
  if (ty == LUA_TNIL) v = 0;
  else if (ty == LUA_TSTRING && strcmp(lua_tostring(L, -1), "1.2") == 0) v = 12;
  else if (ty == LUA_TSTRING && strcmp(lua_tostring(L, -1), "1.3") == 0) v = 13;
  else if (ty == LUA_TNUMBER && (lua_tonumber(L, -1) == 1.2 || lua_tonumber(L, -1) == 12)) v = 12;
  else if (ty == LUA_TNUMBER && (lua_tonumber(L, -1) == 1.3 || lua_tonumber(L, -1) == 13)) v = 13;
  else luaL_error(L, "tls option %s: \"1.2\" or \"1.3\" expected", k);
  lua_pop(L, 1);
  return v;
}

/* ws.tls.context{role, cert, key, ca, verify, alpn, min_version,
 * max_version, ciphers, sni} -> context | nil, "name: message", "name" */
static int l_context(lua_State *L) {
  wstls_ctx_config cfg;
  wstls_ctx *ctx = NULL;
  lws_tls_ctx *c;
  char err[512];
  const char *role;
  int top;
  luaL_checktype(L, 1, LUA_TTABLE);
  top = lua_gettop(L);
  wstls_ctx_config_init(&cfg);
  role = opt_str(L, 1, "role");
  if (!role || strcmp(role, "client") == 0)
    cfg.server = 0;
  else if (strcmp(role, "server") == 0)
    cfg.server = 1;
  else
    return luaL_error(L, "tls option role: \"client\" or \"server\" expected");
  cfg.cert = opt_str(L, 1, "cert");
  cfg.key = opt_str(L, 1, "key");
  cfg.ca = opt_str(L, 1, "ca");
  switch (lua_getfield(L, 1, "verify")) {
  case LUA_TNIL: cfg.verify = -1; break;
  case LUA_TBOOLEAN: cfg.verify = lua_toboolean(L, -1); break;
  case LUA_TSTRING:
    if (cfg.server && strcmp(lua_tostring(L, -1), "optional") == 0) {
      cfg.verify = 2;
      break;
    }
    /* fall through */
  default:
    return luaL_error(L, "tls option verify: true, false%s expected",
                      cfg.server ? " or \"optional\"" : "");
  }
  cfg.alpn = opt_list(L, 1, "alpn", ",");
  cfg.ciphers = opt_list(L, 1, "ciphers", ":");
  cfg.min_version = opt_version(L, 1, "min_version");
  cfg.max_version = opt_version(L, 1, "max_version");
  if (wstls_ctx_new(&cfg, &ctx, err, sizeof(err)) != 0) {
    const char *name = strstr(err, "No such file") ? "ENOENT" : "EINVAL";
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", name, err);
    lua_pushstring(L, name);
    return 3;
  }
  c = (lws_tls_ctx *)lua_newuserdatauv(L, sizeof(*c), 1);
  c->ctx = ctx;
  c->server = cfg.server;
  c->verify = !cfg.server && cfg.verify != 0;
  luaL_setmetatable(L, LWS_TLS_CTX_MT);
  /* sni = {["host.name"] = server context, ...} */
  if (lua_getfield(L, 1, "sni") == LUA_TTABLE) {
    int sni = lua_gettop(L);
    if (!cfg.server)
      return luaL_error(L, "tls option sni: only a server context has it");
    lua_pushnil(L);
    while (lua_next(L, sni)) {
      lws_tls_ctx *other;
      if (lua_type(L, -2) != LUA_TSTRING)
        return luaL_error(L, "tls option sni: host name keys expected");
      other = (lws_tls_ctx *)luaL_testudata(L, -1, LWS_TLS_CTX_MT);
      if (!other || !other->ctx || !other->server)
        return luaL_error(L, "tls option sni: server contexts expected");
      if (wstls_ctx_add_sni(ctx, lua_tostring(L, -2), other->ctx) != 0)
        return luaL_error(L, "tls option sni: cannot add %s",
                          lua_tostring(L, -2));
      lua_pop(L, 1);
    }
    /* Keep the other contexts alive with this one. */
    lua_pushvalue(L, sni);
    lua_setiuservalue(L, -3, 1);
  }
  lua_pop(L, 1);
  return 1;
}

static int layer_gc(lua_State *L) {
  lws_tls_layer *y = (lws_tls_layer *)luaL_checkudata(L, 1, LWS_TLS_LAYER_MT);
  free(y->servername);
  y->servername = NULL;
  return 0;
}

/* ws.tls.wrap(handle, context [, {servername = ...}]) -> layer */
static int l_wrap(lua_State *L) {
  lws_tls_layer *y;
  lws_tls_ctx *c;
  const char *servername = NULL;
  if (!luaL_testudata(L, 1, "uv_tcp") && !luaL_testudata(L, 1, "uv_pipe"))
    return luaL_typeerror(L, 1, "luv TCP or pipe handle");
  c = check_ctx(L, 2);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    servername = opt_str(L, 3, "servername");
  }
  /* A verifying client with no name to check would accept any certificate
   * the CA signed, for any host: refuse rather than do that quietly. */
  if (c->verify && (!servername || !*servername))
    return luaL_argerror(L, 3,
                         "servername is required to verify the server's "
                         "certificate (or make the context with verify = "
                         "false)");
  y = (lws_tls_layer *)lua_newuserdatauv(L, sizeof(*y), 2);
  memset(y, 0, sizeof(*y));
  luaL_setmetatable(L, LWS_TLS_LAYER_MT);
  if (servername && !c->server) {
    y->servername = strdup(servername);
    if (!y->servername) return luaL_error(L, "luvws: out of memory");
  }
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
  return 1;
}

/* layer:handle() -> the luv handle underneath */
static int layer_handle(lua_State *L) {
  luaL_checkudata(L, 1, LWS_TLS_LAYER_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int layer_index(lua_State *L) {
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "handle") == 0) {
    lua_pushcfunction(L, layer_handle);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

int lws_tls_unwrap(lua_State *L, int idx, wstls **out) {
  lws_tls_layer *y = (lws_tls_layer *)luaL_testudata(L, idx, LWS_TLS_LAYER_MT);
  lws_tls_ctx *c;
  *out = NULL;
  if (!y) return 0;
  if (y->used) luaL_argerror(L, idx, "TLS layer already belongs to a stream");
  lua_getiuservalue(L, idx, 2);
  c = (lws_tls_ctx *)luaL_testudata(L, -1, LWS_TLS_CTX_MT);
  if (!c || !c->ctx) luaL_argerror(L, idx, "TLS context is freed");
  lua_pop(L, 1);
  *out = wstls_new(c->ctx, y->servername);
  if (!*out) luaL_error(L, "luvws: out of memory");
  y->used = 1;
  lua_getiuservalue(L, idx, 1);
  return 1;
}

void lws_open_tls(lua_State *L) {
  static const luaL_Reg fns[] = {{"context", l_context}, {"wrap", l_wrap},
                                 {NULL, NULL}};
  luaL_newmetatable(L, LWS_TLS_CTX_MT);
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, ctx_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newmetatable(L, LWS_TLS_LAYER_MT);
  lua_pushcfunction(L, layer_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, layer_index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "tls");
}
