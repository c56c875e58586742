/*
 * luvws binding: the module (luvws.core), error names, the per-loop state
 * and the way completions reach Lua.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <lhandle.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/random.h>

#include "lws.h"

/* ---------------------------------------------------------------- errors */

static const char *uv_name_or_null(int err) {
  switch (err) {
#define LWS__UVNAME(name, msg)                                             \
  case UV_##name: return #name;
    UV_ERRNO_MAP(LWS__UVNAME)
#undef LWS__UVNAME
  default: return NULL;
  }
}

void lws_push_errname(lua_State *L, int err) {
  const char *name = ws_err_name(err);
  if (!name) name = uv_name_or_null(err);
  if (name)
    lua_pushstring(L, name);
  else
    lua_pushfstring(L, "E%d", -err);
}

void lws_push_errmsg(lua_State *L, int err) {
  const char *msg = ws_strerror(err);
  lws_push_errname(L, err);
  if (!msg) msg = uv_name_or_null(err) ? uv_strerror(err) : "unknown error";
  lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), msg);
  lua_remove(L, -2);
}

static void add_ws_error(void *ud, int err) {
  lua_State *L = (lua_State *)ud;
  lua_pushstring(L, ws_strerror(err));
  lua_setfield(L, -2, ws_err_name(err));
}

/* ws.errors: every name luvws can report (its own and libuv's) -> message. */
static void push_errors(lua_State *L) {
  lua_newtable(L);
#define LWS__UVMSG(name, msg)                                              \
  lua_pushstring(L, uv_strerror(UV_##name));                               \
  lua_setfield(L, -2, #name);
  UV_ERRNO_MAP(LWS__UVMSG)
#undef LWS__UVMSG
  ws_err_foreach(add_ws_error, L);
}

/* ws.condition(name) -> "handshake_failed" | "protocol_violation" | nil */
static int l_condition(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int e;
  for (e = WS__ERROR_BASE + 1; e < WS__ERROR_END; e++) {
    if (strcmp(ws_err_name(e), name) == 0) {
      const char *c = ws_condition_name(ws_err_condition(e));
      if (!c) break;
      lua_pushstring(L, c);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

/* ------------------------------------------------------------- loop state */

static int rng_fill(void *ud, uint8_t *out, size_t len) {
  return wc_RNG_GenerateBlock((WC_RNG *)ud, out, (word32)len) == 0 ? 0 : -1;
}

ws_rng lws_loop_rng(lws_loop *lp) {
  ws_rng r;
  r.ud = lp->rng;
  r.fill = rng_fill;
  return r;
}

void lws_loop_release(lws_loop *lp) {
  if (--lp->refs > 0) return;
  lws_free_spares(lp);
  if (lp->rng) {
    wc_FreeRng((WC_RNG *)lp->rng);
    free(lp->rng);
  }
  free(lp);
}

static int loop_gc(lua_State *L) {
  lws_loop **pp = (lws_loop **)lua_touserdata(L, 1);
  lws_loop *lp = *pp;
  if (!lp) return 0;
  *pp = NULL;
  lp->closing = 1;
  if (lp->wl) wsuv_loop_shutdown(lp->wl);
  lp->wl = NULL;
  lws_loop_release(lp);
  return 0;
}

/* Calls luv's uv.<fn>() and returns the handle it made (left on the
 * stack). */
static void *new_luv_handle(lua_State *L, int luv_idx, const char *fn) {
  lua_getfield(L, luv_idx, fn);
  lua_call(L, 0, 1);
  return *(void **)lua_touserdata(L, -1);
}

lws_loop *lws_loop_get(lua_State *L) {
  lws_loop **pp, *lp;
  luv_ctx_t *ctx;
  int top = lua_gettop(L), luv_idx;
  uv_idle_t *idle;
  uv_timer_t *timer;
  uv_check_t *check;

  if (lua_getfield(L, LUA_REGISTRYINDEX, LWS_LOOP_KEY) == LUA_TUSERDATA) {
    lp = *(lws_loop **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (lp) return lp;
    luaL_error(L, "luvws: the loop state is gone (the Lua state is closing)");
  }
  lua_pop(L, 1);

  lua_getfield(L, LUA_REGISTRYINDEX, "luv_context");
  ctx = (luv_ctx_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!ctx || !ctx->loop) luaL_error(L, "luvws: luv is not loaded");

  lp = calloc(1, sizeof(*lp));
  if (!lp) luaL_error(L, "luvws: out of memory");
  lp->ctx = ctx;
  lp->L = ctx->L;
  lp->refs = 1;
  lp->rng = malloc(sizeof(WC_RNG));
  if (!lp->rng || wc_InitRng((WC_RNG *)lp->rng) != 0) {
    free(lp->rng);
    free(lp);
    luaL_error(L, "luvws: cannot seed wolfCrypt's random number generator");
  }

  /* The userdata that owns lp; its __gc runs before luv's loop teardown
   * (finalizers run in reverse order of creation). */
  pp = (lws_loop **)lua_newuserdatauv(L, sizeof(*pp), 1);
  *pp = lp;
  lua_newtable(L);
  lua_pushcfunction(L, loop_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);

  /* Two luv handles: the idle that drains posts and the timer heap's
   * timer. They stay referenced from the userdata's user value. */
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "luv");
  luv_idx = lua_gettop(L);
  lua_newtable(L);
  idle = (uv_idle_t *)new_luv_handle(L, luv_idx, "new_idle");
  lua_rawseti(L, -2, 1);
  timer = (uv_timer_t *)new_luv_handle(L, luv_idx, "new_timer");
  lua_rawseti(L, -2, 2);
  uv_unref((uv_handle_t *)timer);
  check = (uv_check_t *)new_luv_handle(L, luv_idx, "new_check");
  lua_rawseti(L, -2, 3);
  uv_unref((uv_handle_t *)check);
  lua_setiuservalue(L, luv_idx - 2, 1);
  lua_pushvalue(L, luv_idx);
  lp->luv_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lp->wl = wsuv_loop_new(ctx->loop, idle, timer, check);
  if (!lp->wl) luaL_error(L, "luvws: out of memory");

  /* The header-table class, from the Lua module. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luvws.headers");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lp->headers_new = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "FIELDS");
  lp->headers_fields = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "metatable");
  lp->headers_mt = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);

  lua_pushvalue(L, top + 1);
  lua_setfield(L, LUA_REGISTRYINDEX, LWS_LOOP_KEY);
  lua_settop(L, top);
  return lp;
}

void lws_push_headers(lua_State *L, lws_loop *lp, const ws_header *f,
                      size_t n) {
  size_t i;
  lua_createtable(L, 0, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->headers_fields);
  lua_createtable(L, (int)(2 * n), 0);
  for (i = 0; i < n; i++) {
    lua_pushlstring(L, f[i].name.p, f[i].name.n);
    lua_rawseti(L, -2, (lua_Integer)(2 * i + 1));
    lua_pushlstring(L, f[i].value.p, f[i].value.n);
    lua_rawseti(L, -2, (lua_Integer)(2 * i + 2));
  }
  lua_rawset(L, -3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->headers_mt);
  lua_setmetatable(L, -2);
}

/* ------------------------------------------------------------- callbacks */

int lws_check_cb(lua_State *L, int idx, int *yield) {
  *yield = 0;
  if (lua_isfunction(L, idx) ||
      (luaL_getmetafield(L, idx, "__call") != LUA_TNIL &&
       (lua_pop(L, 1), 1))) {
    lua_pushvalue(L, idx);
    return luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (lua_isnoneornil(L, idx)) {
    if (lua_isyieldable(L)) {
      *yield = 1;
      lua_pushthread(L);
      return luaL_ref(L, LUA_REGISTRYINDEX);
    }
    luaL_argerror(L, idx,
                  "a callback is required outside a coroutine (or call "
                  "this from a coroutine to wait for the result)");
  }
  luaL_typeerror(L, idx, "function");
  return LUA_NOREF;
}

/* Raises its argument: used to hand a coroutine's error to cb_pcall, so
 * that luv's error policy applies to it. */
static int rethrow(lua_State *L) {
  return lua_error(L);
}

void lws_deliver(lws_loop *lp, int cbref, int err, int nvals) {
  lws_deliver_keep(lp, cbref, err, nvals, 0);
}

void lws_deliver_keep(lws_loop *lp, int cbref, int err, int nvals, int keep) {
  lua_State *L = lp->L;
  if (lp->closing || cbref == LUA_NOREF || cbref == LUA_REFNIL) {
    lua_pop(L, nvals);
    if (cbref != LUA_NOREF && !lp->closing && !keep)
      luaL_unref(L, LUA_REGISTRYINDEX, cbref);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, cbref);
  if (!keep) luaL_unref(L, LUA_REGISTRYINDEX, cbref);
  if (lua_type(L, -1) == LUA_TTHREAD) {
    lua_State *co = lua_tothread(L, -1);
    int nres = 0, status, nargs;
    lua_pop(L, 1);
    if (lua_status(co) != LUA_YIELD) {
      lua_pop(L, nvals); /* the coroutine was resumed elsewhere or died */
      return;
    }
    if (err) {
      lua_pushnil(co);
      lws_push_errmsg(co, err);
      lws_push_errname(co, err);
      lua_xmove(L, co, nvals);
      nargs = 3 + nvals;
    } else if (nvals == 0) {
      lua_pushboolean(co, 1);
      nargs = 1;
    } else {
      lua_xmove(L, co, nvals);
      nargs = nvals;
    }
    status = lua_resume(co, L, nargs, &nres);
    if (status == LUA_OK || status == LUA_YIELD) {
      lua_pop(co, nres);
      return;
    }
    /* The coroutine raised: report it like an error in a luv callback. */
    lua_pushcfunction(L, rethrow);
    luaL_traceback(L, co, lua_tostring(co, -1), 0);
    lua_pop(co, 1);
    lp->ctx->cb_pcall(L, 1, 0, 0);
    return;
  }
  /* [vals, fn] -> [fn, err, vals] */
  lua_insert(L, -(nvals + 1));
  if (err)
    lws_push_errname(L, err);
  else
    lua_pushnil(L);
  lua_insert(L, -(nvals + 1));
  lp->ctx->cb_pcall(L, nvals + 1, 0, 0);
}

/* ---------------------------------------------------------------- loading */

/* Fails loading if luv runs its own copy of libuv: the luv module's
 * uv_version must be the one this module is linked with. */
static void check_one_libuv(lua_State *L, int luv_idx) {
  Dl_info info;
  lua_CFunction f;
  void *lib, *theirs;
  lua_getfield(L, luv_idx, "version");
  f = lua_tocfunction(L, -1);
  lua_pop(L, 1);
  if (!f || !dladdr((void *)f, &info) || !info.dli_fname) return;
  lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (!lib) return;
  theirs = dlsym(lib, "uv_version");
  dlclose(lib);
  if (theirs != (void *)uv_version)
    luaL_error(L,
               "luvws: luv (%s) runs its own bundled copy of libuv, so luvws "
               "cannot share its loop; install a luv built against the "
               "system libuv (Debian's lua-luv, or LuaRocks' luv built with "
               "WITH_SHARED_LIBUV=ON)",
               info.dli_fname);
}

/* Writes to a reset peer must give EPIPE, not kill the process: ignore
 * SIGPIPE unless the host installed a handler (as Node does). */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
      !(sa.sa_flags & SA_SIGINFO)) {
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

__attribute__((visibility("default"))) int luaopen_luvws_core(lua_State *L);

int luaopen_luvws_core(lua_State *L) {
  int luv_idx;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luv");
  lua_call(L, 1, 1);
  luv_idx = lua_gettop(L);
  check_one_libuv(L, luv_idx);
  ignore_sigpipe();

  lua_newtable(L);
  lua_pushliteral(L, LWS_VERSION);
  lua_setfield(L, -2, "version");
  push_errors(L);
  lua_setfield(L, -2, "errors");
  lua_pushcfunction(L, l_condition);
  lua_setfield(L, -2, "condition");
  lws_open_stream(L);
  lws_open_tls(L);
  return 1;
}
