/*
 * luvws binding: internal declarations shared by the csrc/lua files.
 *
 * The binding turns core events into Lua callbacks and Lua tables. Every
 * Lua callback runs on luv's main thread through luv's callback pcall
 * (ctx->cb_pcall), on a loop tick after the call that started it.
 */
#ifndef LWS_H
#define LWS_H

#include <lauxlib.h>
#include <lua.h>
#include <luv.h>

#include "ws_conn.h"
#include "ws_http.h"
#include "wsuv.h"

#define LWS_VERSION "0.1.0"
#define LWS_STREAM_MT "luvws.stream"
#define LWS_LOOP_KEY "luvws.loop"

/* Error codes the binding passes around: 0, a WS_E_* code, or a libuv
 * error (negative errno, UV_EOF, ...). They do not overlap. */

/* Pushes the stable name of err (a WS_E_* or libuv code). */
void lws_push_errname(lua_State *L, int err);
/* Pushes "name: message". */
void lws_push_errmsg(lua_State *L, int err);

/* Per-loop binding state, shared (reference counted) by every stream so
 * that nothing dangles while luv tears the loop down at exit. */
typedef struct lws_loop {
  wsuv_loop *wl;      /* the transport's loop state */
  luv_ctx_t *ctx;     /* luv's context (main thread, cb_pcall) */
  lua_State *L;       /* luv's main thread */
  unsigned refs;      /* the registry userdata + every stream */
  int closing;        /* the Lua state is closing: call no Lua */
  void *rng;          /* wolfCrypt WC_RNG for keys and masks */
  int headers_new;    /* registry ref: luvws.headers.new */
  int headers_fields; /* registry ref: luvws.headers.FIELDS */
  int headers_mt;     /* registry ref: luvws.headers metatable */
  int luv_ref;        /* registry ref: the luv module */
  /* Whole single-frame messages seen while feeding one read to the core,
   * delivered straight from the read buffer to pending reads (no Lua
   * queue); what is left goes to the stream's queue before the read
   * buffer is reused. */
  struct lws_fast {
    const uint8_t *p; /* message bytes (in the read buffer) */
    size_t n;         /* length */
    int text;         /* text (else binary) */
  } fast[128];
  int nfast;          /* entries recorded */
  int ifast;          /* entries delivered */
  void *fast_owner;   /* the stream they belong to, or NULL */
  void *free_req;     /* spare completion records (a list) */
  unsigned nfree_req; /* how many */
  uint8_t *spare_msg; /* a message assembly buffer kept for the next
                         message that comes in pieces (no realloc or page
                         faults per large message) */
  size_t spare_cap;   /* its capacity */
} lws_loop;

/* The loop state for L's luv loop (created on first use). */
lws_loop *lws_loop_get(lua_State *L);
void lws_loop_release(lws_loop *lp);
/* The rng as the core wants it. */
ws_rng lws_loop_rng(lws_loop *lp);

/* Delivers a completion to cbref (a registry ref to a function or a
 * coroutine), consuming the ref and the nvals values on top of lp->L's
 * stack. A function gets (err-or-nil, values...) through cb_pcall. A
 * coroutine is resumed with the values (or true) on success, or with
 * nil, "name: message", "name", values... on failure. */
void lws_deliver(lws_loop *lp, int cbref, int err, int nvals);

/* The same, but when keep is set the reference is left in place (a
 * callback the stream keeps for its next operation). */
void lws_deliver_keep(lws_loop *lp, int cbref, int err, int nvals, int keep);

/* Takes the callback at index idx: a callable is referenced and its ref
 * returned; nil/none inside a yieldable coroutine gives a ref to that
 * coroutine and sets *yield; anything else raises. */
int lws_check_cb(lua_State *L, int idx, int *yield);

/* Pushes a new header table (luvws.headers) built from the fields of h. */
void lws_push_headers(lua_State *L, lws_loop *lp, const ws_header *f,
                      size_t n);

/* Opens the stream part of the module (metatable and functions) into the
 * table on top of the stack. */
void lws_open_stream(lua_State *L);

/* Frees the spare completion records of a loop (lws_stream.c). */
void lws_free_spares(lws_loop *lp);

/* Opens ws.tls (context, wrap) into the table on top of the stack. */
void lws_open_tls(lua_State *L);

struct wstls;
/* If the value at idx is a TLS layer (ws.tls.wrap), starts a session for
 * it (*out), pushes the luv handle under it and returns 1; else returns 0
 * and pushes nothing. Raises if the layer was used already. */
int lws_tls_unwrap(lua_State *L, int idx, struct wstls **out);

#endif
