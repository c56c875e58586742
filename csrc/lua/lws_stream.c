/*
 * luvws binding: the stream object (Beast's websocket::stream in Lua).
 *
 * A stream's C state lives as long as either owner does: the Lua userdata
 * or the luv handle (whose luv_handle_t extra field points at it). Lua
 * callbacks are only ever called from the top of a libuv callback (data
 * arrived, a write finished, a timer fired, a posted completion ran),
 * never from inside the call that started the operation and never from
 * inside the core.
 */
#include <stdlib.h>
#include <string.h>

#include <lhandle.h>

#include "lws.h"
#include "wsuv_tls.h"

/* A declined upgrade's body is read up to this size. */
#define LWS_BODY_MAX (1u << 20)
/* Control events kept for control_callback per read from the socket. */
#define LWS_MAX_CTL_EVENTS 64

enum { ST_NEW, ST_HEAD, ST_OPEN, ST_CLOSING, ST_DONE };
enum { HS_NONE, HS_CLIENT, HS_SERVER, HS_REQUEST, HS_RESPOND };
enum { RD_NONE, RD_READ, RD_SOME };
enum { TK_NONE, TK_HANDSHAKE, TK_IDLE, TK_CLOSE };
enum { REQ_DONE, REQ_UNIT };
/* What the stream's post node runs, in this order. */
enum { PEND_HS = 1, PEND_READ = 2, PEND_CLOSE = 4, PEND_END = 8 };

typedef struct lws_stream lws_stream;

/* Payloads up to this size are copied into the request instead of keeping
 * the Lua string referenced (cheaper than a registry reference). */
#define LWS_INLINE 64
/* What a queued message costs besides its bytes (its queue entry and
 * request record), counted against max_queued_bytes so that many small
 * messages to a peer that does not read cannot hold much more memory than
 * the limit says. */
#define LWS_UNIT_COST 256
/* Spare requests kept per loop. */
#define LWS_SPARE_REQS 256

/* A frame built once and queued on many streams (topics): reference
 * counted, freed when the last stream has written or dropped it. */
typedef struct lws_shared {
  unsigned refs;   /* streams still holding it, plus the builder */
  size_t len;      /* bytes in data */
  uint8_t data[];  /* the whole frame: header and payload */
} lws_shared;

static void shared_release(lws_shared *f) {
  if (f && --f->refs == 0) free(f);
}

/* A pending write, write_some, ping or pong, or a completion to post. */
typedef struct lws_req {
  wsuv_post post;  /* node in the loop's post queue */
  lws_stream *s;   /* the stream */
  int cb;          /* registry ref: the callback (function or coroutine) */
  int data;        /* registry ref keeping the written string alive */
  int err;         /* the result */
  uint8_t inline_data[LWS_INLINE]; /* a small payload's copy */
} lws_req;

static lws_req *req_new(lws_loop *lp) {
  lws_req *r = (lws_req *)lp->free_req;
  if (r) {
    lp->free_req = r->s;
    lp->nfree_req--;
  } else {
    r = malloc(sizeof(*r));
    if (!r) return NULL;
  }
  r->post.next = NULL;
  r->s = NULL;
  r->cb = r->data = LUA_NOREF;
  r->err = 0;
  return r;
}

/* The largest assembly buffer kept per loop between messages. */
#define LWS_SPARE_MSG_MAX (8u << 20)

void lws_free_spares(lws_loop *lp) {
  free(lp->spare_msg);
  lp->spare_msg = NULL;
  lp->spare_cap = 0;
  while (lp->free_req) {
    lws_req *r = (lws_req *)lp->free_req;
    lp->free_req = r->s;
    free(r);
  }
  lp->nfree_req = 0;
}

static void req_free(lws_loop *lp, lws_req *r) {
  if (lp->nfree_req < LWS_SPARE_REQS && !lp->closing) {
    r->s = (lws_stream *)lp->free_req;
    lp->free_req = r;
    lp->nfree_req++;
  } else {
    free(r);
  }
}

/* A control frame seen during one read from the socket. */
typedef struct lws_ctl {
  int opcode;                            /* WS_OP_PING, PONG or CLOSE */
  size_t len;                            /* payload length */
  uint8_t payload[WS_MAX_CONTROL_PAYLOAD]; /* payload (close: the reason) */
} lws_ctl;

struct lws_stream {
  wsuv_stream t;             /* the transport (first: container_of) */
  lws_loop *lp;              /* the loop state (one reference held) */
  ws_conn *conn;             /* the engine, once open */
  signed char role;          /* WS_ROLE_CLIENT / WS_ROLE_SERVER / -1 */
  unsigned char state;       /* ST_* */
  unsigned char hs_kind;     /* HS_* */
  unsigned char read_kind;   /* RD_* */
  signed char got_text;      /* type of the last message read; -1 none */
  unsigned char nctl;        /* control events to report */
  unsigned char peer_reason_len; /* length of peer_reason */
  unsigned char timer_kind;  /* TK_* */
  unsigned ud_alive : 1;     /* the Lua userdata exists */
  unsigned handle_alive : 1; /* the luv handle is not yet freed */
  unsigned handle_closing : 1; /* we asked luv to close the handle */
  unsigned req_ready : 1;    /* read_request left a parsed head in hbuf */
  unsigned m_active : 1;     /* a message is in progress */
  unsigned m_text : 1;       /* it is text */
  unsigned msg_done : 1;     /* the last read ended a message */
  unsigned paused : 1;       /* reading stopped for backpressure */
  unsigned in_recv : 1;      /* inside ws_conn_recv */
  unsigned io_started : 1;   /* reading (and TLS) has been started */
  unsigned clean : 1;        /* the close handshake completed */
  unsigned close_started : 1; /* close timer and teardown underway */
  unsigned posted : 1;       /* post is queued */
  unsigned auto_fragment : 1; /* option: split outgoing messages */
  unsigned binary : 1;       /* option: default message type */
  unsigned compress : 1;     /* option: compress by default */
  unsigned secure_prng : 1;  /* option: masks from the CSPRNG */
  unsigned keep_alive : 1;   /* option: idle pings */
  unsigned pend : 4;         /* completions to run (PEND_*) */
  unsigned read_cached : 1;  /* read_cb is read_fn (kept after the read) */
  int term_err;              /* why it ended (reads get it last) */
  int fail_err;              /* protocol error that failed it */
  int hs_err;                /* the head operation's result */
  /* Registry references (LUA_NOREF when unused). */
  int self_ref;              /* the userdata, while busy */
  int busy;                  /* Lua callbacks pending */
  int handle_ref;            /* the luv handle, until we ask luv to close
                                it (the userdata keeps it as well) */
  int hs_cb;                 /* callback of the head operation */
  int hs_res;                /* the client's res table */
  int hs_req;                /* the request table */
  int hs_decorator;          /* the per-call decorator */
  int read_cb;               /* callback of the pending read */
  int read_fn;               /* the last read callback function, kept: a
                                read loop passes the same one each time */
  int q_ref;                 /* table of unread messages */
  int control_cb;            /* control_callback */
  int end_cb;                /* _on_end hook */
  int close_cb;              /* callback of close() */
  int decorator;             /* decorator option */
  int subprotocols;          /* subprotocols option */
  /* Handshake. */
  char *hbuf;                /* head bytes read so far */
  size_t hlen;               /* bytes in hbuf */
  size_t hcap;               /* capacity of hbuf */
  size_t hprev;              /* hlen at the previous parse */
  size_t hhead;              /* length of the parsed head, 0 until then */
  char *subprotocol;         /* negotiated subprotocol, or NULL */
  ws_pmd_params pmd_neg;     /* negotiated permessage-deflate */
  char accept[WS_ACCEPT_LEN + 1]; /* the Sec-WebSocket-Accept expected */
  /* Reading. */
  size_t read_limit;         /* read_some's limit (0: any) */
  int q_head;                /* first unread (pairs: data, is_text) */
  int q_tail;                /* one past the last */
  size_t q_bytes;            /* bytes of unread messages */
  struct lws_msg *msg;       /* a message in progress (allocated) */
  lws_ctl *ctl;              /* control events to report */
  /* Closing. */
  unsigned peer_code;        /* the peer's close code (0: none) */
  char *peer_reason;         /* and reason (allocated when one arrives) */
  wsuv_post post;            /* runs the pending completions */
  /* Options. */
  uint64_t read_message_max; /* after inflation; 0 = no limit */
  uint32_t write_buffer_bytes; /* auto-fragment size */
  uint32_t max_header_bytes; /* HTTP head limit */
  size_t max_queued_bytes;   /* write queue bound */
  size_t max_unread_bytes;   /* unread messages bound */
  float t_handshake;         /* seconds; <= 0: none */
  float t_idle;              /* seconds; <= 0: none */
  float t_close;             /* seconds; <= 0: none */
  ws_pmd_config pmd;         /* permessage_deflate option */
  /* Timers. */
  wsuv_timer timer;          /* the one deadline */
  uint64_t last_rx;          /* loop time of the last bytes received */
  uint64_t ping_at;          /* loop time of the last idle ping; 0 none */
};

/* The part of a message not yet read, while it arrives in pieces
 * (allocated for such messages only). */
struct lws_msg {
  uint8_t *buf;              /* the bytes */
  size_t len;                /* bytes in buf */
  size_t cap;                /* capacity of buf */
  size_t off;                /* bytes already read (read_some) */
};

static const wsuv_callbacks stream_callbacks;

#define S_OF_T(t) ((lws_stream *)(t))

/* ---------------------------------------------------------------- helpers */

static lws_stream *check_stream(lua_State *L, int idx) {
  lws_stream **pp = (lws_stream **)luaL_checkudata(L, idx, LWS_STREAM_MT);
  if (!*pp) luaL_argerror(L, idx, "stream is freed");
  return *pp;
}

static lua_State *LS(lws_stream *s) {
  return s->lp->L;
}

static void unref(lws_stream *s, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL && !s->lp->closing)
    luaL_unref(LS(s), LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* Keeps the userdata (at index 1 of L) alive while a callback is pending. */
static void hold(lua_State *L, lws_stream *s) {
  if (s->busy++ == 0) {
    lua_pushvalue(L, 1);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

static void unhold(lws_stream *s) {
  if (s->busy > 0 && --s->busy == 0) unref(s, &s->self_ref);
}

static void stream_free(lws_stream *s) {
  lws_loop *lp = s->lp;
  unref(s, &s->hs_cb);
  unref(s, &s->hs_res);
  unref(s, &s->hs_req);
  unref(s, &s->hs_decorator);
  if (!s->read_cached) unref(s, &s->read_cb);
  unref(s, &s->read_fn);
  unref(s, &s->q_ref);
  unref(s, &s->control_cb);
  unref(s, &s->end_cb);
  unref(s, &s->close_cb);
  unref(s, &s->decorator);
  unref(s, &s->subprotocols);
  unref(s, &s->handle_ref);
  unref(s, &s->self_ref);
  if (s->conn) ws_conn_free(s->conn);
  wsuv_stream_dispose(&s->t);
  free(s->hbuf);
  if (s->msg) free(s->msg->buf);
  free(s->msg);
  free(s->ctl);
  free(s->subprotocol);
  free(s->peer_reason);
  free(s);
  lws_loop_release(lp);
}

static void maybe_free(lws_stream *s) {
  if (!s->ud_alive && !s->handle_alive && !s->posted)
    stream_free(s);
}

/* Posts a one-off completion (err) to cbref. */
static void req_done_run(wsuv_post *p);

static void post_result(lws_stream *s, int cbref, int err) {
  lws_req *r = req_new(s->lp);
  if (!r) {
    /* Out of memory: drop the callback rather than call it inline. */
    unref(s, &cbref);
    unhold(s);
    return;
  }
  r->s = s;
  r->cb = cbref;
  r->data = LUA_NOREF;
  r->err = err;
  s->lp->refs++;
  wsuv_post_add(s->lp->wl, &r->post, req_done_run);
}

static void req_done_run(wsuv_post *p) {
  lws_req *r = (lws_req *)p;
  lws_stream *s = r->s;
  lws_loop *lp = s->lp;
  if (!lp->closing) {
    unref(s, &r->data);
    lws_deliver(lp, r->cb, r->err, 0);
    unhold(s);
  }
  req_free(lp, r);
  lws_loop_release(lp);
}

/* ------------------------------------------------------------- lifetime */

static void close_handle(lws_stream *s) {
  lua_State *L = LS(s);
  if (s->handle_closing || !s->handle_alive) return;
  s->handle_closing = 1;
  wsuv_read(&s->t, 0);
  wsuv_stream_dead(&s->t);
  if (!s->lp->closing && !uv_is_closing((uv_handle_t *)s->t.h)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->handle_ref);
    lua_getfield(L, -1, "close");
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
  /* luv frees the handle (and tells us through extra_gc) once its userdata
   * is collected: let go of it, whoever closed it. */
  unref(s, &s->handle_ref);
}

static void timer_fire(wsuv_timer *t);

static void timer_set(lws_stream *s, int kind, double secs) {
  if (secs <= 0) {
    if (s->timer_kind != TK_NONE) wsuv_timer_stop(s->lp->wl, &s->timer);
    s->timer_kind = TK_NONE;
    return;
  }
  s->timer_kind = kind;
  wsuv_timer_start(s->lp->wl, &s->timer, (uint64_t)(secs * 1000.0 + 0.5),
                   timer_fire);
}

static void timer_at(lws_stream *s, int kind, uint64_t due) {
  uint64_t now = wsuv_now(s->lp->wl);
  s->timer_kind = kind;
  wsuv_timer_start(s->lp->wl, &s->timer, due > now ? due - now : 0,
                   timer_fire);
}

static void stream_post_run(wsuv_post *p);
static void deliver_reads(lws_stream *s);

/* Schedules completions (PEND_* bits) for a later tick: one post node per
 * stream, whatever is pending runs together. */
static void post_pend(lws_stream *s, unsigned kind) {
  if (s->lp->closing) return;
  s->pend |= kind;
  if (s->posted) return;
  s->posted = 1;
  wsuv_post_add(s->lp->wl, &s->post, stream_post_run);
}

/* Schedules the head operation's callback with err. */
static void hs_finish(lws_stream *s, int err) {
  if (s->hs_cb == LUA_NOREF || (s->pend & PEND_HS)) return;
  s->hs_err = err;
  post_pend(s, PEND_HS);
}

/* Schedules close()'s callback; its result is decided when it runs. */
static void close_finish(lws_stream *s) {
  if (s->close_cb == LUA_NOREF) return;
  post_pend(s, PEND_CLOSE);
}

static void kick_read(lws_stream *s) {
  if (s->read_kind == RD_NONE) return;
  post_pend(s, PEND_READ);
}

/* Ends the stream: the handle is closed, every pending operation
 * completes, reads get what is queued and then err. */
static void teardown(lws_stream *s, int err) {
  if (s->state == ST_DONE) return;
  if (!s->term_err) s->term_err = err;
  s->state = ST_DONE;
  if (s->timer_kind != TK_NONE) wsuv_timer_stop(s->lp->wl, &s->timer);
  s->timer_kind = TK_NONE;
  close_handle(s);
  if (s->conn) {
    ws_conn_abort(s->conn);
    wsuv_attach(&s->t, NULL);
  }
  if (s->hs_kind != HS_NONE) hs_finish(s, s->hs_err ? s->hs_err : err);
  close_finish(s);
  if (s->end_cb != LUA_NOREF) post_pend(s, PEND_END);
  kick_read(s);
  free(s->hbuf);
  s->hbuf = NULL;
  s->hlen = s->hcap = s->hprev = s->hhead = 0;
}

/* luv frees the handle: the transport is gone. */
static void handle_gone(void *p) {
  lws_stream *s = (lws_stream *)p;
  s->handle_alive = 0;
  wsuv_stream_dead(&s->t);
  s->handle_closing = 1;
  if (s->lp->closing) {
    s->state = ST_DONE;
    if (s->conn) ws_conn_abort(s->conn);
  } else {
    /* Closed by us, or by someone else through luv: either way every
     * pending operation ends now. */
    teardown(s, WS_E_operation_aborted);
    deliver_reads(s);
  }
  if (s->conn) {
    ws_conn_free(s->conn);
    s->conn = NULL;
    wsuv_attach(&s->t, NULL);
  }
  maybe_free(s);
}

/* ------------------------------------------------------------ completions */

static void hs_run(lws_stream *s) {
  lua_State *L = LS(s);
  int cb = s->hs_cb, err = s->hs_err, nvals = 0;
  s->hs_cb = LUA_NOREF;
  if (s->hs_kind == HS_REQUEST) {
    if (s->hs_req != LUA_NOREF && !err)
      lua_rawgeti(L, LUA_REGISTRYINDEX, s->hs_req);
    else
      lua_pushnil(L);
    nvals = 1;
  } else if (s->hs_kind == HS_CLIENT && s->hs_res != LUA_NOREF) {
    /* The client's res table is filled in place; coroutines get it too. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->hs_res);
    nvals = 1;
  }
  s->hs_kind = HS_NONE;
  unref(s, &s->hs_decorator);
  /* The tables are on the stack now; the stream no longer needs them (an
   * accept of a read_request works from the bytes it kept). */
  unref(s, &s->hs_req);
  unref(s, &s->hs_res);
  lws_deliver(s->lp, cb, err, nvals);
  unhold(s);
}

static void close_run(lws_stream *s) {
  int cb = s->close_cb, err;
  if (cb == LUA_NOREF) return;
  s->close_cb = LUA_NOREF;
  err = s->clean ? 0 : (s->term_err ? s->term_err : WS_E_operation_aborted);
  if (err == WS_E_closed) err = 0;
  lws_deliver(s->lp, cb, err, 0);
  unhold(s);
}

/* The _on_end hook: fn(err, code, reason) once the stream has ended. */
static void end_run(lws_stream *s) {
  lua_State *L = LS(s);
  int cb = s->end_cb;
  if (cb == LUA_NOREF) return;
  s->end_cb = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, cb);
  luaL_unref(L, LUA_REGISTRYINDEX, cb);
  lws_push_errname(L, s->term_err ? s->term_err : WS_E_operation_aborted);
  lua_pushinteger(L, s->peer_code);
  lua_pushlstring(L, s->peer_reason ? s->peer_reason : "", s->peer_reason_len);
  s->lp->ctx->cb_pcall(L, 3, 0, 0);
}

static void stream_post_run(wsuv_post *p) {
  lws_stream *s = (lws_stream *)((char *)p - offsetof(lws_stream, post));
  unsigned k = s->pend;
  s->posted = 0;
  s->pend = 0;
  if (!s->lp->closing) {
    if (k & PEND_HS) hs_run(s);
    if (k & PEND_READ) deliver_reads(s);
    if (k & PEND_CLOSE) close_run(s);
    if (k & PEND_END) end_run(s);
  }
  maybe_free(s);
}

/* ------------------------------------------------------------- reading */

static void set_paused(lws_stream *s, int paused) {
  if (s->paused == paused) return;
  s->paused = paused;
  if (s->state == ST_OPEN || s->state == ST_CLOSING)
    wsuv_read(&s->t, !paused);
  if (!paused) s->last_rx = wsuv_now(s->lp->wl);
}

/* Appends a complete message (on top of L's stack) to the unread queue. */
static void queue_push(lws_stream *s, int is_text, size_t len) {
  lua_State *L = LS(s);
  if (s->q_ref == LUA_NOREF) {
    lua_newtable(L);
    s->q_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->q_ref);
  lua_insert(L, -2);
  lua_rawseti(L, -2, 2 * s->q_tail);
  lua_pushboolean(L, is_text);
  lua_rawseti(L, -2, 2 * s->q_tail + 1);
  lua_pop(L, 1);
  s->q_tail++;
  s->q_bytes += len;
  if (s->max_unread_bytes && s->q_bytes >= s->max_unread_bytes)
    set_paused(s, 1);
}

/* Pushes the head of the queue (data, is_text) and removes it, or pushes
 * at most limit bytes of it (limit > 0) and keeps the rest. Returns 1 if
 * the message ended. */
static int queue_take(lws_stream *s, size_t limit) {
  lua_State *L = LS(s);
  size_t len;
  const char *d;
  int is_text, done = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->q_ref);
  lua_rawgeti(L, -1, 2 * s->q_head);
  lua_rawgeti(L, -2, 2 * s->q_head + 1);
  is_text = lua_toboolean(L, -1);
  lua_pop(L, 1);
  d = lua_tolstring(L, -1, &len);
  if (limit > 0 && len > limit) {
    lua_pushlstring(L, d + limit, len - limit);
    lua_rawseti(L, -3, 2 * s->q_head);
    lua_pushlstring(L, d, limit);
    lua_remove(L, -2);
    s->q_bytes -= limit;
    done = 0;
  } else {
    lua_pushnil(L);
    lua_rawseti(L, -3, 2 * s->q_head);
    lua_pushnil(L);
    lua_rawseti(L, -3, 2 * s->q_head + 1);
    s->q_head++;
    s->q_bytes -= len;
    if (s->q_head == s->q_tail) s->q_head = s->q_tail = 0;
  }
  lua_remove(L, -2);
  lua_pushboolean(L, is_text);
  s->got_text = is_text;
  s->msg_done = done;
  if (s->paused && (!s->max_unread_bytes || s->q_bytes < s->max_unread_bytes))
    set_paused(s, 0);
  return done;
}

/* Moves the fast entries not yet delivered into the Lua queue (the read
 * buffer they point into is about to be reused). */
static void flush_fast(lws_stream *s) {
  lws_loop *lp = s->lp;
  if (lp->fast_owner != s) return;
  lp->fast_owner = NULL; /* queue_push below must not see them */
  while (lp->ifast < lp->nfast) {
    struct lws_fast *f = &lp->fast[lp->ifast++];
    lua_pushlstring(LS(s), (const char *)f->p, f->n);
    queue_push(s, f->text, f->n);
  }
  lp->nfast = lp->ifast = 0;
}

static int fast_ready(lws_stream *s) {
  return s->lp->fast_owner == s && s->lp->ifast < s->lp->nfast;
}

static int read_ready(lws_stream *s) {
  if (fast_ready(s)) return 1;
  if (s->q_head < s->q_tail) return 1;
  if (s->read_kind == RD_SOME && s->m_active && s->msg &&
      s->msg->len > s->msg->off)
    return 1;
  return s->state == ST_DONE || s->clean;
}

/* Completes pending reads while there is something to give them. */
static void deliver_reads(lws_stream *s) {
  lua_State *L = LS(s);
  while (s->read_kind != RD_NONE && read_ready(s) && !s->lp->closing) {
    int cb = s->read_cb, kind = s->read_kind, err = 0, nvals;
    int keep = s->read_cached;
    s->read_cached = 0;
    if (fast_ready(s) && kind == RD_SOME) flush_fast(s);
    s->read_cb = LUA_NOREF;
    s->read_kind = RD_NONE;
    if (fast_ready(s)) {
      struct lws_fast *f = &s->lp->fast[s->lp->ifast++];
      lua_pushlstring(L, (const char *)f->p, f->n);
      lua_pushboolean(L, f->text);
      s->got_text = f->text;
      s->msg_done = 1;
      nvals = 2;
    } else if (s->q_head < s->q_tail) {
      int done = queue_take(s, kind == RD_SOME ? s->read_limit : 0);
      nvals = 2;
      if (kind == RD_SOME) {
        lua_pushboolean(L, done);
        nvals = 3;
      }
    } else if (kind == RD_SOME && s->m_active && s->msg &&
               s->msg->len > s->msg->off) {
      struct lws_msg *m = s->msg;
      size_t n = m->len - m->off;
      if (s->read_limit && n > s->read_limit) n = s->read_limit;
      lua_pushlstring(L, (const char *)m->buf + m->off, n);
      m->off += n;
      if (m->off == m->len) m->len = m->off = 0;
      lua_pushboolean(L, s->m_text);
      lua_pushboolean(L, 0);
      s->got_text = s->m_text;
      s->msg_done = 0;
      nvals = 3;
    } else {
      err = s->term_err ? s->term_err : WS_E_operation_aborted;
      nvals = 0;
    }
    lws_deliver_keep(s->lp, cb, err, nvals, keep);
    /* The kept reference lives only across the callback: if it did not
     * read again, let go (the function may hold the stream, and a kept
     * reference would then keep an abandoned stream alive). */
    if (keep && s->read_kind == RD_NONE) unref(s, &s->read_fn);
    unhold(s);
  }
}

/* Core callback: message data. */
static int on_msg_data(void *user, const uint8_t *data, size_t len,
                       unsigned flags) {
  lws_stream *s = (lws_stream *)user;
  lua_State *L = LS(s);
  struct lws_msg *m;
  if (flags & WS_DATA_FIRST) {
    s->m_active = 1;
    s->m_text = (flags & WS_DATA_TEXT) != 0;
    if (s->msg) s->msg->len = s->msg->off = 0;
    if ((flags & WS_DATA_FIN)) {
      lws_loop *lp = s->lp;
      s->m_active = 0;
      /* The whole message in one piece: when a read can take it and no
       * older message waits, remember where it is; it goes to Lua in one
       * copy after the core returns. */
      if ((flags & WS_DATA_INPLACE) && s->read_kind == RD_READ &&
          s->q_head == s->q_tail &&
          (lp->fast_owner == NULL || lp->fast_owner == s) &&
          lp->nfast < (int)(sizeof(lp->fast) / sizeof(lp->fast[0]))) {
        struct lws_fast *f = &lp->fast[lp->nfast++];
        lp->fast_owner = s;
        f->p = data;
        f->n = len;
        f->text = s->m_text;
        return 0;
      }
      flush_fast(s);
      lua_pushlstring(L, (const char *)data, len);
      queue_push(s, s->m_text, len);
      return 0;
    }
  }
  flush_fast(s);
  /* A message in pieces: its unread part is kept in s->msg, made for it and
   * freed when it ends (an idle connection holds no message buffer). */
  if (!s->msg) {
    s->msg = calloc(1, sizeof(*s->msg));
    if (!s->msg) return WS_E_no_memory;
    if (s->lp->spare_msg) {
      s->msg->buf = s->lp->spare_msg;
      s->msg->cap = s->lp->spare_cap;
      s->lp->spare_msg = NULL;
      s->lp->spare_cap = 0;
    }
  }
  m = s->msg;
  if (len > 0) {
    if (m->len + len > m->cap) {
      size_t cap = m->cap ? m->cap : 4096;
      uint8_t *b;
      while (cap < m->len + len) cap *= 2;
      b = realloc(m->buf, cap);
      if (!b) return WS_E_no_memory;
      m->buf = b;
      m->cap = cap;
    }
    memcpy(m->buf + m->len, data, len);
    m->len += len;
  }
  if (flags & WS_DATA_FIN) {
    lua_pushlstring(L, m->buf ? (const char *)m->buf + m->off : "",
                    m->len - m->off);
    queue_push(s, s->m_text, m->len - m->off);
    s->m_active = 0;
    /* Keep the buffer for the loop's next message in pieces. */
    if (m->cap <= LWS_SPARE_MSG_MAX && m->cap > s->lp->spare_cap) {
      free(s->lp->spare_msg);
      s->lp->spare_msg = m->buf;
      s->lp->spare_cap = m->cap;
    } else {
      free(m->buf);
    }
    free(m);
    s->msg = NULL;
  }
  return 0;
}

/* Core callback: a control frame arrived. */
static int on_msg_control(void *user, int opcode, const uint8_t *payload,
                          size_t len) {
  lws_stream *s = (lws_stream *)user;
  lws_ctl *c;
  if (opcode == WS_OP_CLOSE) {
    const char *reason;
    size_t rlen;
    s->peer_code = ws_conn_peer_close(s->conn, &reason, &rlen);
    if (rlen > WS_MAX_CLOSE_REASON) rlen = WS_MAX_CLOSE_REASON;
    free(s->peer_reason);
    s->peer_reason = NULL;
    s->peer_reason_len = 0;
    if (rlen && (s->peer_reason = malloc(rlen)) != NULL) {
      memcpy(s->peer_reason, reason, rlen);
      s->peer_reason_len = rlen;
    }
    payload = (const uint8_t *)reason;
    len = rlen;
  }
  if (s->control_cb == LUA_NOREF || s->nctl >= LWS_MAX_CTL_EVENTS) return 0;
  if (!s->ctl) {
    s->ctl = malloc(LWS_MAX_CTL_EVENTS * sizeof(*s->ctl));
    if (!s->ctl) return 0;
  }
  c = &s->ctl[s->nctl++];
  c->opcode = opcode;
  c->len = len > WS_MAX_CONTROL_PAYLOAD ? WS_MAX_CONTROL_PAYLOAD : len;
  if (c->len) memcpy(c->payload, payload, c->len);
  return 0;
}

static void on_unit_sent(void *user, void *token, int status);

static const ws_conn_callbacks conn_callbacks = {on_msg_data, on_msg_control,
                                                 on_unit_sent};

static void dispatch_control(lws_stream *s) {
  lua_State *L = LS(s);
  int i, n = s->nctl;
  s->nctl = 0;
  for (i = 0; i < n && s->control_cb != LUA_NOREF && !s->lp->closing; i++) {
    lws_ctl *c = &s->ctl[i];
    const char *kind = c->opcode == WS_OP_PING   ? "ping"
                       : c->opcode == WS_OP_PONG ? "pong"
                                                 : "close";
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->control_cb);
    lua_pushstring(L, kind);
    lua_pushlstring(L, (const char *)c->payload, c->len);
    s->lp->ctx->cb_pcall(L, 2, 0, 0);
  }
}

/* ------------------------------------------------------------- closing */

static void start_close_timer(lws_stream *s) {
  if (s->close_started) return;
  s->close_started = 1;
  timer_set(s, TK_CLOSE, s->t_close);
  if (s->t_close <= 0) s->timer_kind = TK_NONE;
}

/* Moves the close handshake along after any event. */
static void close_progress(lws_stream *s) {
  unsigned st;
  if (s->state != ST_CLOSING || !s->conn) return;
  st = ws_conn_state(s->conn);
  if (!(st & WS_ST_CLOSE_WRITTEN)) {
    wsuv_want_drain(&s->t);
    return;
  }
  if (st & WS_ST_FAILED) {
    teardown(s, s->fail_err ? s->fail_err : ws_conn_error(s->conn));
    return;
  }
  if (st & WS_ST_CLOSE_RECEIVED) {
    /* The close handshake is complete: reads and close() learn it now,
     * while the transport winds down (bounded by the close timeout). */
    if (!s->clean) {
      s->clean = 1;
      if (!s->term_err) s->term_err = WS_E_closed;
      close_finish(s);
      kick_read(s);
    }
    if (s->t.ended) {
      teardown(s, WS_E_closed);
      return;
    }
    /* The server half-closes first; the client waits for it. */
    if (s->role == WS_ROLE_SERVER) wsuv_shutdown(&s->t);
  }
}

static void enter_closing(lws_stream *s) {
  if (s->state != ST_OPEN) return;
  s->state = ST_CLOSING;
  start_close_timer(s);
  /* Unread data no longer matters for backpressure: read to the end. */
  if (s->paused) {
    s->paused = 0;
    wsuv_read(&s->t, 1);
  }
}

/* ------------------------------------------------------- transport events */

static void handle_head(lws_stream *s);

static void on_t_data(wsuv_stream *t, uint8_t *data, size_t len) {
  lws_stream *s = S_OF_T(t);
  size_t before;
  int r;
  s->last_rx = wsuv_now(s->lp->wl);
  if (s->state == ST_HEAD) {
    /* Keep every byte: what follows a head is frame data (or a body).
     * The parser stops a head at max_header_bytes, and a declined body is
     * cut at LWS_BODY_MAX. */
    if (s->hhead && s->hlen - s->hhead >= LWS_BODY_MAX) return;
    if (s->hlen + len > s->hcap) {
      size_t cap = s->hcap ? s->hcap : 1024;
      char *b;
      while (cap < s->hlen + len) cap *= 2;
      b = realloc(s->hbuf, cap);
      if (!b) {
        s->hs_err = WS_E_no_memory;
        teardown(s, WS_E_no_memory);
        return;
      }
      s->hbuf = b;
      s->hcap = cap;
    }
    memcpy(s->hbuf + s->hlen, data, len);
    s->hlen += len;
    handle_head(s);
    return;
  }
  if ((s->state != ST_OPEN && s->state != ST_CLOSING) || !s->conn) return;
  before = wsuv_pending(&s->t);
  s->in_recv = 1;
  r = ws_conn_recv(s->conn, data, len);
  s->in_recv = 0;
  /* Messages first (they came before anything the control callback or a
   * failure might do), straight from the read buffer. */
  deliver_reads(s);
  flush_fast(s);
  if (s->nctl) dispatch_control(s);
  if (s->state == ST_DONE || !s->conn) {
    deliver_reads(s);
    return;
  }
  if (r < 0) {
    if (r == WS_E_no_memory && !(ws_conn_state(s->conn) & WS_ST_FAILED)) {
      teardown(s, r);
      deliver_reads(s);
      return;
    }
    s->fail_err = r;
    if (s->state == ST_OPEN) enter_closing(s);
  } else if (ws_conn_state(s->conn) & WS_ST_CLOSE_RECEIVED) {
    enter_closing(s);
  }
  if (s->state == ST_OPEN)
    wsuv_flush_later(&s->t); /* pongs, with what the read callbacks write */
  else
    wsuv_flush(&s->t);
  if (s->state != ST_DONE && s->max_queued_bytes) {
    /* Automatic replies (pongs) may add up to 64 KiB past the larger of
     * the limit and what the application had queued: a peer that floods
     * pings and does not read the pongs is cut off there. */
    size_t now = wsuv_pending(&s->t);
    size_t base = before > s->max_queued_bytes ? before : s->max_queued_bytes;
    if (now > before && now > base + 65536) teardown(s, WS_E_queue_full);
  }
  close_progress(s);
  deliver_reads(s);
}

static void on_t_end(wsuv_stream *t, int err) {
  lws_stream *s = S_OF_T(t);
  if (s->state == ST_HEAD) {
    if (err == UV_EOF && s->hs_kind == HS_CLIENT && s->hhead) {
      /* A declined response whose body ends at EOF. */
      handle_head(s);
      if (s->state == ST_DONE) return;
    }
    s->hs_err = err;
    teardown(s, err);
    return;
  }
  if (s->state == ST_CLOSING && s->conn) {
    unsigned st = ws_conn_state(s->conn);
    if ((st & WS_ST_CLOSE_RECEIVED) && (st & WS_ST_CLOSE_WRITTEN)) {
      s->clean = 1;
      teardown(s, WS_E_closed);
      deliver_reads(s);
      return;
    }
    if (s->fail_err) err = s->fail_err;
  }
  teardown(s, err);
  deliver_reads(s);
}

static void on_t_drain(wsuv_stream *t, int err) {
  lws_stream *s = S_OF_T(t);
  if (err < 0) {
    if (s->state == ST_HEAD && !s->hs_err) s->hs_err = err;
    teardown(s, s->fail_err ? s->fail_err : err);
    deliver_reads(s);
    return;
  }
  if (s->state == ST_HEAD && (s->hs_kind == HS_RESPOND || s->hs_err)) {
    /* An HTTP answer (or a refusal) is out: the connection ends. */
    teardown(s, s->hs_err);
    return;
  }
  close_progress(s);
  deliver_reads(s);
}

static void on_t_tls_done(wsuv_stream *t, int err) {
  lws_stream *s = S_OF_T(t);
  if (!err) return; /* the HTTP head goes out (or is read) next */
  if (s->state == ST_HEAD && !s->hs_err) s->hs_err = err;
  teardown(s, err);
  deliver_reads(s);
}

static const wsuv_callbacks stream_callbacks = {on_t_data, on_t_end,
                                                on_t_drain, on_t_tls_done};

static void timer_fire(wsuv_timer *tm) {
  lws_stream *s = (lws_stream *)((char *)tm - offsetof(lws_stream, timer));
  int kind = s->timer_kind;
  uint64_t now = wsuv_now(s->lp->wl);
  s->timer_kind = TK_NONE;
  if (kind == TK_HANDSHAKE) {
    if (s->state == ST_HEAD) {
      s->hs_err = WS_E_timeout;
      teardown(s, WS_E_timeout);
    }
  } else if (kind == TK_CLOSE) {
    teardown(s, s->clean ? WS_E_closed : WS_E_timeout);
    deliver_reads(s);
  } else if (kind == TK_IDLE && s->state == ST_OPEN) {
    uint64_t idle = (uint64_t)(s->t_idle * 1000.0 + 0.5);
    uint64_t quiet;
    if (s->paused) s->last_rx = now; /* our own backpressure is not idle */
    quiet = now - s->last_rx;
    if (s->keep_alive) {
      if (s->ping_at && s->last_rx >= s->ping_at) s->ping_at = 0;
      if (quiet >= idle) {
        teardown(s, WS_E_timeout);
        deliver_reads(s);
        return;
      }
      if (quiet >= idle / 2 && !s->ping_at) {
        if (ws_conn_ping(s->conn, NULL, 0, NULL) == 0) {
          s->ping_at = now;
          wsuv_flush(&s->t);
        }
      }
      timer_at(s, TK_IDLE, s->last_rx + (s->ping_at ? idle : idle / 2));
    } else {
      if (quiet >= idle) {
        teardown(s, WS_E_timeout);
        deliver_reads(s);
        return;
      }
      timer_at(s, TK_IDLE, s->last_rx + idle);
    }
  }
}

/* ------------------------------------------------------------ writing */

static void on_unit_sent(void *user, void *token, int status) {
  lws_stream *s = (lws_stream *)user;
  lws_req *r = (lws_req *)token;
  if (!r) return;
  if ((uintptr_t)token & 1) {
    /* A published frame (its token is the shared frame, tagged): nobody
     * to call back. */
    (void)s;
    shared_release((lws_shared *)((uintptr_t)token & ~(uintptr_t)1));
    return;
  }
  r->err = status;
  r->s->lp->refs++;
  wsuv_post_add(r->s->lp->wl, &r->post, req_done_run);
}

/* ---------------------------------------------------------------- open */

static int open_conn(lws_stream *s, int role) {
  ws_conn_config cfg;
  ws_conn_config_default(&cfg, role);
  cfg.read_message_max = s->read_message_max;
  cfg.write_buffer_bytes = s->write_buffer_bytes;
  cfg.auto_fragment = s->auto_fragment;
  cfg.secure_prng = s->secure_prng;
  cfg.rng = lws_loop_rng(s->lp);
  s->conn = ws_conn_new(&cfg, &conn_callbacks, s);
  if (!s->conn) return WS_E_no_memory;
  if (s->pmd_neg.active) {
    int r = ws_conn_set_pmd(s->conn, &s->pmd_neg, &s->pmd);
    if (r < 0) return r;
  }
  wsuv_attach(&s->t, s->conn);
  return 0;
}

/* The handshake succeeded: frames from now on. Bytes after the head are
 * the first frame data. */
static void go_open(lws_stream *s) {
  size_t extra = s->hlen - s->hhead;
  uint8_t *rest = NULL;
  s->state = ST_OPEN;
  if (extra) {
    rest = malloc(extra);
    if (rest) memcpy(rest, s->hbuf + s->hhead, extra);
  }
  free(s->hbuf);
  s->hbuf = NULL;
  s->hlen = s->hcap = s->hprev = s->hhead = 0;
  s->last_rx = wsuv_now(s->lp->wl);
  timer_set(s, TK_NONE, 0);
  if (s->t_idle > 0) {
    double first = s->keep_alive ? s->t_idle / 2 : s->t_idle;
    timer_set(s, TK_IDLE, first);
  }
  hs_finish(s, 0);
  wsuv_read(&s->t, 1);
  if (rest) {
    on_t_data(&s->t, rest, extra);
    free(rest);
  }
}

/* ------------------------------------------------------- the HTTP heads */

/* Reads a header table (luvws.headers or a plain name -> value(s) table)
 * at idx into f (up to max fields; strings stay on L's stack frame owned by
 * the table). Returns the count, or -1 if a field cannot be written
 * safely or there are too many. */
static int headers_from_lua(lua_State *L, lws_loop *lp, int idx, ws_header *f,
                            int max) {
  int n = 0;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) return lua_isnoneornil(L, idx) ? 0 : -1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->headers_fields);
  if (lua_rawget(L, idx) == LUA_TTABLE) {
    lua_Integer i, len = (lua_Integer)lua_rawlen(L, -1);
    for (i = 1; i + 1 <= len; i += 2) {
      if (n >= max) return -1;
      lua_rawgeti(L, -1, i);
      lua_rawgeti(L, -2, i + 1);
      if (!lua_isstring(L, -2) || !lua_isstring(L, -1)) {
        lua_pop(L, 2);
        return -1;
      }
      f[n].name.p = lua_tolstring(L, -2, &f[n].name.n);
      f[n].value.p = lua_tolstring(L, -1, &f[n].value.n);
      lua_pop(L, 2); /* the strings stay alive in the fields table */
      if (!ws_http_field_valid(f[n].name, f[n].value)) return -1;
      n++;
    }
    lua_pop(L, 1);
    return n;
  }
  lua_pop(L, 1);
  /* A plain table: name = value or name = {values}. */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return -1;
    }
    if (lua_istable(L, -1)) {
      lua_Integer i, len = (lua_Integer)lua_rawlen(L, -1);
      for (i = 1; i <= len; i++) {
        if (n >= max) {
          lua_pop(L, 2);
          return -1;
        }
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) != LUA_TSTRING) {
          lua_pop(L, 3);
          return -1;
        }
        f[n].name.p = lua_tolstring(L, -3, &f[n].name.n);
        f[n].value.p = lua_tolstring(L, -1, &f[n].value.n);
        lua_pop(L, 1);
        if (!ws_http_field_valid(f[n].name, f[n].value)) {
          lua_pop(L, 2);
          return -1;
        }
        n++;
      }
    } else if (lua_type(L, -1) == LUA_TSTRING) {
      if (n >= max) {
        lua_pop(L, 2);
        return -1;
      }
      f[n].name.p = lua_tolstring(L, -2, &f[n].name.n);
      f[n].value.p = lua_tolstring(L, -1, &f[n].value.n);
      if (!ws_http_field_valid(f[n].name, f[n].value)) {
        lua_pop(L, 2);
        return -1;
      }
      n++;
    } else {
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  return n;
}

static const ws_header *find_field(const ws_header *f, int n,
                                   const char *name) {
  int i;
  for (i = 0; i < n; i++)
    if (ws_str_ieq(f[i].name, name)) return &f[i];
  return NULL;
}

static int count_field(const ws_header *f, int n, const char *name) {
  int i, c = 0;
  for (i = 0; i < n; i++)
    if (ws_str_ieq(f[i].name, name)) c++;
  return c;
}

static ws_str str_of(lua_State *L, int idx) {
  ws_str s;
  s.p = lua_tolstring(L, idx, &s.n);
  if (!s.p) {
    s.p = "";
    s.n = 0;
  }
  return s;
}

/* Writes a head (and body) built from the table at idx (a request when
 * is_req) to the transport. Returns 0, or WS_E_bad_decorator when a field
 * cannot be written, or UV_ENOMEM. */
static int write_head_table(lws_stream *s, lua_State *L, int idx, int is_req,
                            int add_length) {
  ws_header f[WS_HTTP_MAX_FIELDS + 2];
  int n, top = lua_gettop(L), r = 0, version = 11, status = 0;
  size_t need;
  char *buf;
  ws_str a, b, body = {"", 0};
  char lenbuf[32];
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "headers");
  n = headers_from_lua(L, s->lp, -1, f, WS_HTTP_MAX_FIELDS);
  if (n < 0) {
    lua_settop(L, top);
    return WS_E_bad_decorator;
  }
  lua_getfield(L, idx, "version");
  if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "1.0") == 0)
    version = 10;
  if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == 10) version = 10;
  lua_getfield(L, idx, "body");
  if (lua_type(L, -1) == LUA_TSTRING) body = str_of(L, -1);
  if (add_length && !find_field(f, n, "Content-Length") &&
      !find_field(f, n, "Transfer-Encoding")) {
    snprintf(lenbuf, sizeof(lenbuf), "%zu", body.n);
    f[n].name.p = "Content-Length";
    f[n].name.n = 14;
    f[n].value.p = lenbuf;
    f[n].value.n = strlen(lenbuf);
    n++;
  }
  if (is_req) {
    lua_getfield(L, idx, "method");
    a = str_of(L, -1);
    lua_getfield(L, idx, "target");
    b = str_of(L, -1);
    need = ws_http_write_request(NULL, 0, a, b, version, f, (size_t)n);
  } else {
    lua_getfield(L, idx, "status");
    status = (int)lua_tointeger(L, -1);
    if (status < 100 || status > 999) {
      lua_settop(L, top);
      return WS_E_bad_decorator;
    }
    lua_getfield(L, idx, "reason");
    if (lua_type(L, -1) == LUA_TSTRING) {
      a = str_of(L, -1);
    } else {
      a.p = ws_http_reason(status);
      a.n = strlen(a.p);
    }
    need = ws_http_write_response(NULL, 0, status, a, version, f, (size_t)n);
  }
  buf = malloc(need + body.n);
  if (!buf) {
    lua_settop(L, top);
    return UV_ENOMEM;
  }
  if (is_req)
    ws_http_write_request(buf, need, a, b, version, f, (size_t)n);
  else
    ws_http_write_response(buf, need, status, a, version, f, (size_t)n);
  if (body.n) memcpy(buf + need, body.p, body.n);
  r = wsuv_write_raw(&s->t, buf, need + body.n);
  free(buf);
  lua_settop(L, top);
  return r;
}

/* Calls the decorator option, then the per-call decorator, on the table at
 * idx. Returns 0 or WS_E_bad_decorator (one raised). */
static int run_decorators(lws_stream *s, lua_State *L, int idx) {
  int refs[2], i;
  idx = lua_absindex(L, idx);
  refs[0] = s->decorator;
  refs[1] = s->hs_decorator;
  for (i = 0; i < 2; i++) {
    if (refs[i] == LUA_NOREF || refs[i] == LUA_REFNIL) continue;
    lua_rawgeti(L, LUA_REGISTRYINDEX, refs[i]);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      lua_pop(L, 1);
      return WS_E_bad_decorator;
    }
  }
  return 0;
}

/* Sets t[key] = the field's value (joined when repeated), from a head. */
static const char *const upgrade_fields[] = {
    "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
    NULL};

/* Fills a res/req table at idx from a parsed head. */
static void fill_head_table(lws_stream *s, lua_State *L, int idx,
                            const ws_http_head *h, int is_req) {
  idx = lua_absindex(L, idx);
  if (is_req) {
    lua_pushlstring(L, h->method.p, h->method.n);
    lua_setfield(L, idx, "method");
    lua_pushlstring(L, h->target.p, h->target.n);
    lua_setfield(L, idx, "target");
  } else {
    lua_pushinteger(L, h->status);
    lua_setfield(L, idx, "status");
    lua_pushlstring(L, h->reason.p, h->reason.n);
    lua_setfield(L, idx, "reason");
  }
  lua_pushstring(L, h->version == 10 ? "1.0" : "1.1");
  lua_setfield(L, idx, "version");
  lws_push_headers(L, s->lp, h->headers, h->num_headers);
  lua_setfield(L, idx, "headers");
}

/* --------------------------------------------------------- client side */

/* Decodes a chunked body in place; returns its length, or -1 if it is not
 * complete yet, or -2 if it is malformed. */
static long dechunk(char *p, size_t n) {
  size_t in = 0, out = 0;
  for (;;) {
    size_t size = 0, start = in;
    while (in < n && p[in] != '\r' && p[in] != ';') {
      char c = p[in];
      int v = (c >= '0' && c <= '9')   ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                       : -1;
      if (v < 0 || size > (LWS_BODY_MAX << 4)) return -2;
      size = size * 16 + (size_t)v;
      in++;
    }
    if (in == start && in < n) return -2;
    while (in < n && p[in] != '\n') in++;
    if (in >= n) return -1;
    in++;
    if (size == 0) {
      /* Trailers end with an empty line. */
      for (;;) {
        size_t ls = in;
        while (in < n && p[in] != '\n') in++;
        if (in >= n) return -1;
        in++;
        if (in - ls <= 2) return (long)out;
      }
    }
    if (n - in < size + 2) return -1;
    memmove(p + out, p + in, size);
    out += size;
    in += size + 2;
  }
}

static void client_response(lws_stream *s, ws_http_head *h, size_t headlen) {
  lua_State *L = LS(s);
  int top = lua_gettop(L), err;
  ws_str offered[32], chosen = {NULL, 0};
  size_t noffered = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->hs_res);
  fill_head_table(s, L, -1, h, 0);
  if (h->status != 101) {
    /* Declined: the body comes too (Content-Length, chunked, or EOF). */
    const ws_header *cl = ws_http_find(h, "Content-Length");
    size_t have = s->hlen - headlen;
    long blen = -1;
    if (ws_http_has_token(h, "Transfer-Encoding", "chunked")) {
      char *copy = malloc(have + 1);
      if (copy) {
        memcpy(copy, s->hbuf + headlen, have);
        blen = dechunk(copy, have);
        if (blen >= 0) lua_pushlstring(L, copy, (size_t)blen);
        free(copy);
      }
      if (blen == -1 && !s->t.ended && have < LWS_BODY_MAX) {
        lua_settop(L, top);
        return; /* wait for more */
      }
      if (blen < 0) lua_pushliteral(L, "");
    } else if (cl) {
      size_t want = 0, i;
      for (i = 0; i < cl->value.n && cl->value.p[i] >= '0' &&
                  cl->value.p[i] <= '9' && want <= LWS_BODY_MAX;
           i++)
        want = want * 10 + (size_t)(cl->value.p[i] - '0');
      if (want > LWS_BODY_MAX) want = LWS_BODY_MAX;
      if (have < want && !s->t.ended) {
        lua_settop(L, top);
        return;
      }
      lua_pushlstring(L, s->hbuf + headlen, have < want ? have : want);
    } else {
      if (!s->t.ended && have < LWS_BODY_MAX) {
        lua_settop(L, top);
        return; /* the body ends when the server closes */
      }
      lua_pushlstring(L, s->hbuf + headlen, have);
    }
    lua_setfield(L, -2, "body");
    lua_settop(L, top);
    s->hs_err = WS_E_upgrade_declined;
    teardown(s, WS_E_upgrade_declined);
    return;
  }
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "body");
  lua_settop(L, top);
  /* What was offered is what the request carried (decorators included). */
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->hs_req);
  lua_getfield(L, -1, "headers");
  lua_getfield(L, -1, "Sec-WebSocket-Protocol");
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *p = lua_tostring(L, -1), *end = p + lua_rawlen(L, -1);
    ws_str e;
    while (noffered < 32 && ws_http_next_element(&p, end, &e))
      offered[noffered++] = e;
  }
  err = ws_client_check_response(h, s->accept, offered, noffered, &chosen);
  if (!err) {
    if (chosen.n) {
      s->subprotocol = malloc(chosen.n + 1);
      if (s->subprotocol) {
        memcpy(s->subprotocol, chosen.p, chosen.n);
        s->subprotocol[chosen.n] = 0;
      }
    }
    err = ws_pmd_client_accept(s->pmd.client_enable ? &s->pmd : NULL, h,
                               &s->pmd_neg);
  }
  lua_settop(L, top);
  if (!err) {
    s->hhead = headlen;
    err = open_conn(s, WS_ROLE_CLIENT);
  }
  if (err) {
    s->hs_err = err;
    teardown(s, err);
    return;
  }
  go_open(s);
}

/* --------------------------------------------------------- server side */

static void server_request(lws_stream *s, ws_http_head *h, size_t headlen);

static void handle_head(lws_stream *s) {
  ws_header fields[WS_HTTP_MAX_FIELDS];
  ws_http_head h;
  int r;
  memset(&h, 0, sizeof(h));
  h.headers = fields;
  h.num_headers = WS_HTTP_MAX_FIELDS;
  /* Once the head is known (a body follows), parse it from the start. */
  size_t prev = s->hhead ? 0 : s->hprev;
  if (s->hs_kind == HS_CLIENT)
    r = ws_http_parse_response(s->hbuf, s->hlen, prev, s->max_header_bytes,
                               &h);
  else
    r = ws_http_parse_request(s->hbuf, s->hlen, prev, s->max_header_bytes,
                              &h);
  s->hprev = s->hlen;
  if (r == 0) return;
  if (r < 0) {
    s->hs_err = r;
    if (s->hs_kind == HS_CLIENT) {
      teardown(s, r);
    } else {
      /* A server answers a malformed request before closing. */
      lua_State *L = LS(s);
      lua_createtable(L, 0, 5);
      lua_pushinteger(L, r == WS_E_header_too_large ? 431 : 400);
      lua_setfield(L, -2, "status");
      lws_push_headers(L, s->lp, NULL, 0);
      lua_setfield(L, -2, "headers");
      lua_pushstring(L, ws_strerror(r));
      lua_setfield(L, -2, "body");
      lua_getfield(L, -1, "headers");
      lua_getfield(L, -1, "set");
      lua_insert(L, -2);
      lua_pushliteral(L, "Connection");
      lua_pushliteral(L, "close");
      lua_call(L, 3, 0);
      s->hs_kind = HS_SERVER;
      wsuv_read(&s->t, 0);
      if (write_head_table(s, L, -1, 0, 1) == 0) {
        lua_pop(L, 1);
        wsuv_want_drain(&s->t);
        wsuv_flush(&s->t);
      } else {
        lua_pop(L, 1);
        teardown(s, r);
      }
    }
    return;
  }
  if (s->hs_kind == HS_CLIENT) {
    s->hhead = (size_t)r;
    client_response(s, &h, (size_t)r);
  } else {
    server_request(s, &h, (size_t)r);
  }
}

/* Picks the subprotocol (the option: a preference list, or a chooser). The
 * choice is pushed (or nil). Returns 0, bad_decorator or bad_subprotocol. */
static int choose_subprotocol(lws_stream *s, lua_State *L,
                              const ws_http_head *h) {
  int top = lua_gettop(L), i, n = 0, ok = 0;
  size_t k;
  lua_newtable(L); /* the client's offer, in order */
  for (k = 0; k < h->num_headers; k++) {
    if (ws_str_ieq(h->headers[k].name, "Sec-WebSocket-Protocol")) {
      const char *p = h->headers[k].value.p;
      const char *end = p + h->headers[k].value.n;
      ws_str e;
      while (ws_http_next_element(&p, end, &e)) {
        lua_pushlstring(L, e.p, e.n);
        lua_rawseti(L, top + 1, ++n);
      }
    }
  }
  if (s->subprotocols == LUA_NOREF || n == 0) {
    lua_settop(L, top);
    lua_pushnil(L);
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->subprotocols);
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, top + 1);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      lua_settop(L, top);
      lua_pushnil(L);
      return WS_E_bad_decorator;
    }
    if (lua_isnil(L, -1)) {
      lua_replace(L, top + 1);
      lua_settop(L, top + 1);
      return 0;
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
      for (i = 1; i <= n && !ok; i++) {
        lua_rawgeti(L, top + 1, i);
        ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
      }
    }
    if (!ok) {
      lua_settop(L, top);
      lua_pushnil(L);
      return WS_E_bad_subprotocol;
    }
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 0;
  }
  /* A preference list: the first we support that the client offered. */
  {
    lua_Integer j, m = (lua_Integer)lua_rawlen(L, -1);
    for (j = 1; j <= m; j++) {
      lua_rawgeti(L, top + 2, j);
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, top + 1, i);
        if (lua_rawequal(L, -1, -2)) {
          lua_pop(L, 1);
          lua_replace(L, top + 1);
          lua_settop(L, top + 1);
          return 0;
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  lua_pushnil(L);
  return 0;
}

static void set_field(lua_State *L, int hdr_idx, const char *name,
                      const char *value) {
  hdr_idx = lua_absindex(L, hdr_idx);
  lua_getfield(L, hdr_idx, "set");
  lua_pushvalue(L, hdr_idx);
  lua_pushstring(L, name);
  if (value)
    lua_pushstring(L, value);
  else
    lua_pushnil(L);
  lua_call(L, 3, 0);
}

/* Answers a request: the response table is at idx. 101 opens the stream;
 * anything else is written and the connection closes. */
static void server_answer(lws_stream *s, lua_State *L, int idx, int err) {
  int status;
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "status");
  status = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, idx, "headers");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lws_push_headers(L, s->lp, NULL, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, idx, "headers");
  }
  if (status != 101) {
    if (!err) err = WS_E_upgrade_declined;
    if (lua_getfield(L, -1, "has") == LUA_TFUNCTION) {
      lua_pop(L, 1);
      set_field(L, -1, "Connection", "close");
      set_field(L, -1, "Upgrade", NULL);
      set_field(L, -1, "Sec-WebSocket-Accept", NULL);
      set_field(L, -1, "Sec-WebSocket-Protocol", NULL);
      set_field(L, -1, "Sec-WebSocket-Extensions", NULL);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  s->hs_err = err;
  if (write_head_table(s, L, idx, 0, status != 101) != 0) {
    teardown(s, err ? err : WS_E_bad_decorator);
    return;
  }
  if (status != 101) {
    wsuv_read(&s->t, 0);
    wsuv_want_drain(&s->t);
    wsuv_flush(&s->t);
    return;
  }
  if (open_conn(s, WS_ROLE_SERVER) != 0) {
    teardown(s, WS_E_no_memory);
    return;
  }
  wsuv_flush(&s->t);
  go_open(s);
}

/* Answers a request without building Lua tables: when no decorator and no
 * subprotocol chooser needs to see it (the common case, and the fast one).
 * Returns 0 if it answered, 1 if the Lua path must. */
static int server_respond_fast(lws_stream *s, const ws_http_head *h) {
  ws_header f[6];
  size_t n = 0, need;
  int err, status;
  char pmd_resp[256], lenbuf[24], *buf;
  const char *body = "";
  size_t body_len = 0, pmd_len = 0;
  if (s->decorator != LUA_NOREF || s->hs_decorator != LUA_NOREF ||
      s->subprotocols != LUA_NOREF)
    return 1;
#define LWS_FIELD(a, b)                                                    \
  do {                                                                     \
    f[n].name.p = (a);                                                     \
    f[n].name.n = strlen(a);                                               \
    f[n].value.p = (b);                                                    \
    f[n].value.n = strlen(b);                                              \
    n++;                                                                   \
  } while (0)
  err = ws_server_check_request(h);
  if (err) {
    status = ws_server_error_status(err);
    body = ws_strerror(err);
    body_len = strlen(body);
    if (status == 426) LWS_FIELD("Sec-WebSocket-Version", "13");
    LWS_FIELD("Server", "luvws/" LWS_VERSION);
    LWS_FIELD("Content-Type", "text/plain");
    snprintf(lenbuf, sizeof(lenbuf), "%zu", body_len);
    LWS_FIELD("Content-Length", lenbuf);
    LWS_FIELD("Connection", "close");
  } else {
    const ws_header *key = ws_http_find(h, "Sec-WebSocket-Key");
    status = 101;
    ws_accept_compute(key->value.p, key->value.n, s->accept);
    LWS_FIELD("Upgrade", "websocket");
    LWS_FIELD("Connection", "Upgrade");
    LWS_FIELD("Sec-WebSocket-Accept", s->accept);
    if (s->pmd.server_enable) {
      ws_pmd_server_negotiate(&s->pmd, h, &s->pmd_neg, pmd_resp,
                              sizeof(pmd_resp), &pmd_len);
      if (s->pmd_neg.active && pmd_len < sizeof(pmd_resp))
        LWS_FIELD("Sec-WebSocket-Extensions", pmd_resp);
      else
        s->pmd_neg.active = 0;
    }
    LWS_FIELD("Server", "luvws/" LWS_VERSION);
  }
#undef LWS_FIELD
  {
    ws_str reason;
    reason.p = ws_http_reason(status);
    reason.n = strlen(reason.p);
    need = ws_http_write_response(NULL, 0, status, reason,
                                  h->version == 10 ? 10 : 11, f, n);
    buf = malloc(need + body_len);
    if (!buf) {
      teardown(s, WS_E_no_memory);
      return 0;
    }
    ws_http_write_response(buf, need, status, reason,
                           h->version == 10 ? 10 : 11, f, n);
  }
  memcpy(buf + need, body, body_len);
  s->hs_err = err;
  if (wsuv_write_raw(&s->t, buf, need + body_len) != 0) {
    free(buf);
    teardown(s, WS_E_no_memory);
    return 0;
  }
  free(buf);
  if (err) {
    wsuv_read(&s->t, 0);
    wsuv_want_drain(&s->t);
    wsuv_flush(&s->t);
    return 0;
  }
  if (open_conn(s, WS_ROLE_SERVER) != 0) {
    teardown(s, WS_E_no_memory);
    return 0;
  }
  wsuv_flush(&s->t);
  go_open(s);
  return 0;
}

/* Builds the response table for a request and answers it. */
static void server_respond_to(lws_stream *s, const ws_http_head *h) {
  lua_State *L = LS(s);
  int top = lua_gettop(L), err, hdr, status = 101;
  char pmd_resp[256];
  size_t pmd_len = 0;
  if (server_respond_fast(s, h) == 0) return;
  err = ws_server_check_request(h);
  lua_createtable(L, 0, 5); /* res: top + 1 */
  lws_push_headers(L, s->lp, NULL, 0);
  hdr = lua_gettop(L);
  if (err) {
    status = ws_server_error_status(err);
    if (status == 426) set_field(L, hdr, "Sec-WebSocket-Version", "13");
    lua_pushstring(L, ws_strerror(err));
    lua_setfield(L, top + 1, "body");
  } else {
    const ws_header *key = ws_http_find(h, "Sec-WebSocket-Key");
    ws_accept_compute(key->value.p, key->value.n, s->accept);
    set_field(L, hdr, "Upgrade", "websocket");
    set_field(L, hdr, "Connection", "Upgrade");
    set_field(L, hdr, "Sec-WebSocket-Accept", s->accept);
    err = choose_subprotocol(s, L, h);
    if (!err && lua_type(L, -1) == LUA_TSTRING) {
      set_field(L, hdr, "Sec-WebSocket-Protocol", lua_tostring(L, -1));
      free(s->subprotocol);
      s->subprotocol = strdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    if (!err && s->pmd.server_enable) {
      ws_pmd_server_negotiate(&s->pmd, h, &s->pmd_neg, pmd_resp,
                              sizeof(pmd_resp), &pmd_len);
      if (s->pmd_neg.active && pmd_len < sizeof(pmd_resp))
        set_field(L, hdr, "Sec-WebSocket-Extensions", pmd_resp);
      else
        s->pmd_neg.active = 0;
    }
    if (err) {
      status = 400;
      lua_pushstring(L, ws_strerror(err));
      lua_setfield(L, top + 1, "body");
      set_field(L, hdr, "Upgrade", NULL);
      set_field(L, hdr, "Connection", NULL);
      set_field(L, hdr, "Sec-WebSocket-Accept", NULL);
    }
  }
  lua_pushinteger(L, status);
  lua_setfield(L, top + 1, "status");
  lua_pushstring(L, ws_http_reason(status));
  lua_setfield(L, top + 1, "reason");
  lua_pushstring(L, h->version == 10 ? "1.0" : "1.1");
  lua_setfield(L, top + 1, "version");
  lua_setfield(L, top + 1, "headers");
  if (run_decorators(s, L, top + 1) != 0) {
    if (!err) {
      /* A decorator that raises fails the accept; the client gets a 500. */
      err = WS_E_bad_decorator;
      lua_settop(L, top);
      lua_createtable(L, 0, 4);
      lua_pushinteger(L, 500);
      lua_setfield(L, -2, "status");
      lws_push_headers(L, s->lp, NULL, 0);
      lua_setfield(L, -2, "headers");
      lua_pushliteral(L, "");
      lua_setfield(L, -2, "body");
    }
  }
  /* A decorator must not break a 101 it leaves standing. */
  if (!err) {
    lua_getfield(L, top + 1, "status");
    if (lua_tointeger(L, -1) == 101) {
      ws_header f[WS_HTTP_MAX_FIELDS];
      ws_http_head check;
      const ws_header *acc;
      int nf;
      lua_getfield(L, top + 1, "headers");
      nf = headers_from_lua(L, s->lp, -1, f, WS_HTTP_MAX_FIELDS);
      memset(&check, 0, sizeof(check));
      check.headers = f;
      check.num_headers = nf < 0 ? 0 : (size_t)nf;
      acc = ws_http_find(&check, "Sec-WebSocket-Accept");
      if (nf < 0 || !acc || acc->value.n != WS_ACCEPT_LEN ||
          memcmp(acc->value.p, s->accept, WS_ACCEPT_LEN) != 0 ||
          ws_http_count(&check, "Sec-WebSocket-Accept") != 1 ||
          !ws_http_has_token(&check, "Upgrade", "websocket") ||
          !ws_http_has_token(&check, "Connection", "upgrade"))
        err = WS_E_bad_decorator;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (err) {
      lua_pushinteger(L, 500);
      lua_setfield(L, top + 1, "status");
      lua_pushnil(L);
      lua_setfield(L, top + 1, "reason");
    }
  }
  lua_getfield(L, top + 1, "headers");
  if (lua_getfield(L, -1, "has") == LUA_TFUNCTION) {
    lua_pop(L, 1);
    lua_getfield(L, -1, "has");
    lua_pushvalue(L, -2);
    lua_pushliteral(L, "Server");
    lua_call(L, 2, 1);
    if (!lua_toboolean(L, -1)) set_field(L, -2, "Server", "luvws/" LWS_VERSION);
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  server_answer(s, L, top + 1, err);
  lua_settop(L, top);
}

static void server_request(lws_stream *s, ws_http_head *h, size_t headlen) {
  lua_State *L = LS(s);
  s->hhead = headlen;
  if (s->hs_kind == HS_REQUEST) {
    /* read_request: hand the request to Lua, keep the bytes. */
    lua_createtable(L, 0, 4);
    fill_head_table(s, L, -1, h, 1);
    s->hs_req = luaL_ref(L, LUA_REGISTRYINDEX);
    s->req_ready = 1;
    s->state = ST_NEW;
    wsuv_read(&s->t, 0);
    timer_set(s, TK_NONE, 0);
    hs_finish(s, 0);
    return;
  }
  wsuv_read(&s->t, 0);
  server_respond_to(s, h);
}

/* ------------------------------------------------------------ options */

static double opt_seconds(lua_State *L, int idx, const char *what) {
  if (lua_isnoneornil(L, idx) || (lua_isboolean(L, idx) && !lua_toboolean(L, idx)))
    return 0;
  if (!lua_isnumber(L, idx) || lua_tonumber(L, idx) < 0)
    luaL_error(L, "timeout.%s must be a number of seconds >= 0, or false",
               what);
  return lua_tonumber(L, idx);
}

static lua_Integer opt_int(lua_State *L, int idx, const char *name,
                           lua_Integer min) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, idx, &isnum);
  if (!isnum || v < min)
    luaL_error(L, "option %s must be an integer >= %d", name, (int)min);
  return v;
}

static int opt_int_field(lua_State *L, int t, const char *k, int def,
                         int min, int max) {
  int v = def;
  if (lua_getfield(L, t, k) != LUA_TNIL) {
    int isnum;
    lua_Integer x = lua_tointegerx(L, -1, &isnum);
    if (!isnum || x < min || x > max)
      luaL_error(L, "permessage_deflate.%s must be an integer in %d..%d", k,
                 min, max);
    v = (int)x;
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool_field(lua_State *L, int t, const char *k, int def) {
  int v = def;
  if (lua_getfield(L, t, k) != LUA_TNIL) {
    if (!lua_isboolean(L, -1))
      luaL_error(L, "permessage_deflate.%s must be a boolean", k);
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static void set_ref(lws_stream *s, lua_State *L, int *ref, int idx) {
  unref(s, ref);
  if (!lua_isnil(L, idx)) {
    lua_pushvalue(L, idx);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

/* Sets option name from the value at idx; raises on a bad name or value. */
static void set_option(lua_State *L, lws_stream *s, const char *name,
                       int idx) {
  idx = lua_absindex(L, idx);
  if (strcmp(name, "read_message_max") == 0) {
    s->read_message_max = (uint64_t)opt_int(L, idx, name, 0);
  } else if (strcmp(name, "write_buffer_bytes") == 0) {
    s->write_buffer_bytes = (size_t)opt_int(L, idx, name, 8);
  } else if (strcmp(name, "auto_fragment") == 0) {
    luaL_argexpected(L, lua_isboolean(L, idx), idx, "boolean");
    s->auto_fragment = lua_toboolean(L, idx);
  } else if (strcmp(name, "binary") == 0) {
    luaL_argexpected(L, lua_isboolean(L, idx), idx, "boolean");
    s->binary = lua_toboolean(L, idx);
  } else if (strcmp(name, "compress") == 0) {
    luaL_argexpected(L, lua_isboolean(L, idx), idx, "boolean");
    s->compress = lua_toboolean(L, idx);
  } else if (strcmp(name, "secure_prng") == 0) {
    luaL_argexpected(L, lua_isboolean(L, idx), idx, "boolean");
    s->secure_prng = lua_toboolean(L, idx);
  } else if (strcmp(name, "max_header_bytes") == 0) {
    s->max_header_bytes = (size_t)opt_int(L, idx, name, 256);
  } else if (strcmp(name, "max_queued_bytes") == 0) {
    s->max_queued_bytes = (size_t)opt_int(L, idx, name, 1);
  } else if (strcmp(name, "max_unread_bytes") == 0) {
    s->max_unread_bytes = (size_t)opt_int(L, idx, name, 1);
  } else if (strcmp(name, "timeout") == 0) {
    luaL_argexpected(L, lua_istable(L, idx), idx, "table");
    lua_getfield(L, idx, "handshake");
    s->t_handshake = opt_seconds(L, -1, "handshake");
    lua_getfield(L, idx, "idle");
    s->t_idle = opt_seconds(L, -1, "idle");
    lua_getfield(L, idx, "keep_alive_pings");
    s->keep_alive = lua_toboolean(L, -1);
    lua_getfield(L, idx, "close");
    s->t_close = lua_isnil(L, -1) ? 5 : opt_seconds(L, -1, "close");
    lua_pop(L, 4);
  } else if (strcmp(name, "decorator") == 0) {
    luaL_argexpected(L, lua_isnil(L, idx) || lua_isfunction(L, idx), idx,
                     "function or nil");
    set_ref(s, L, &s->decorator, idx);
  } else if (strcmp(name, "subprotocols") == 0) {
    luaL_argexpected(L,
                     lua_isnil(L, idx) || lua_istable(L, idx) ||
                         lua_isfunction(L, idx),
                     idx, "list, function or nil");
    set_ref(s, L, &s->subprotocols, idx);
  } else if (strcmp(name, "permessage_deflate") == 0) {
    ws_pmd_config *p = &s->pmd;
    luaL_argexpected(L, lua_istable(L, idx), idx, "table");
    p->server_enable = opt_bool_field(L, idx, "server_enable", 0);
    p->client_enable = opt_bool_field(L, idx, "client_enable", 0);
    p->server_max_window_bits =
        opt_int_field(L, idx, "server_max_window_bits", 15, 9, 15);
    p->client_max_window_bits =
        opt_int_field(L, idx, "client_max_window_bits", 15, 9, 15);
    p->server_no_context_takeover =
        opt_bool_field(L, idx, "server_no_context_takeover", 0);
    p->client_no_context_takeover =
        opt_bool_field(L, idx, "client_no_context_takeover", 0);
    p->comp_level = opt_int_field(L, idx, "comp_level", 8, 0, 9);
    p->mem_level = opt_int_field(L, idx, "mem_level", 4, 1, 9);
    p->msg_size_threshold =
        (size_t)opt_int_field(L, idx, "msg_size_threshold", 0, 0, 1 << 30);
  } else {
    luaL_error(L, "unknown option '%s'", name);
  }
  if (s->conn && (strcmp(name, "read_message_max") == 0 ||
                  strcmp(name, "write_buffer_bytes") == 0 ||
                  strcmp(name, "auto_fragment") == 0 ||
                  strcmp(name, "secure_prng") == 0)) {
    ws_conn_config cfg;
    ws_conn_config_default(&cfg, s->role);
    cfg.read_message_max = s->read_message_max;
    cfg.write_buffer_bytes = s->write_buffer_bytes;
    cfg.auto_fragment = s->auto_fragment;
    cfg.secure_prng = s->secure_prng;
    cfg.rng = lws_loop_rng(s->lp);
    ws_conn_reconfigure(s->conn, &cfg);
  }
}

static void push_timeout(lua_State *L, lws_stream *s) {
  lua_createtable(L, 0, 4);
  if (s->t_handshake > 0) lua_pushnumber(L, s->t_handshake);
  else lua_pushboolean(L, 0);
  lua_setfield(L, -2, "handshake");
  if (s->t_idle > 0) lua_pushnumber(L, s->t_idle);
  else lua_pushboolean(L, 0);
  lua_setfield(L, -2, "idle");
  lua_pushboolean(L, s->keep_alive);
  lua_setfield(L, -2, "keep_alive_pings");
  if (s->t_close > 0) lua_pushnumber(L, s->t_close);
  else lua_pushboolean(L, 0);
  lua_setfield(L, -2, "close");
}

static void push_pmd_config(lua_State *L, const ws_pmd_config *p) {
  lua_createtable(L, 0, 9);
  lua_pushboolean(L, p->server_enable);
  lua_setfield(L, -2, "server_enable");
  lua_pushboolean(L, p->client_enable);
  lua_setfield(L, -2, "client_enable");
  lua_pushinteger(L, p->server_max_window_bits);
  lua_setfield(L, -2, "server_max_window_bits");
  lua_pushinteger(L, p->client_max_window_bits);
  lua_setfield(L, -2, "client_max_window_bits");
  lua_pushboolean(L, p->server_no_context_takeover);
  lua_setfield(L, -2, "server_no_context_takeover");
  lua_pushboolean(L, p->client_no_context_takeover);
  lua_setfield(L, -2, "client_no_context_takeover");
  lua_pushinteger(L, p->comp_level);
  lua_setfield(L, -2, "comp_level");
  lua_pushinteger(L, p->mem_level);
  lua_setfield(L, -2, "mem_level");
  lua_pushinteger(L, (lua_Integer)p->msg_size_threshold);
  lua_setfield(L, -2, "msg_size_threshold");
}

static int l_get_option(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  const char *name = luaL_checkstring(L, 2);
  if (strcmp(name, "read_message_max") == 0)
    lua_pushinteger(L, (lua_Integer)s->read_message_max);
  else if (strcmp(name, "write_buffer_bytes") == 0)
    lua_pushinteger(L, (lua_Integer)s->write_buffer_bytes);
  else if (strcmp(name, "auto_fragment") == 0)
    lua_pushboolean(L, s->auto_fragment);
  else if (strcmp(name, "binary") == 0)
    lua_pushboolean(L, s->binary);
  else if (strcmp(name, "compress") == 0)
    lua_pushboolean(L, s->compress);
  else if (strcmp(name, "secure_prng") == 0)
    lua_pushboolean(L, s->secure_prng);
  else if (strcmp(name, "max_header_bytes") == 0)
    lua_pushinteger(L, (lua_Integer)s->max_header_bytes);
  else if (strcmp(name, "max_queued_bytes") == 0)
    lua_pushinteger(L, (lua_Integer)s->max_queued_bytes);
  else if (strcmp(name, "max_unread_bytes") == 0)
    lua_pushinteger(L, (lua_Integer)s->max_unread_bytes);
  else if (strcmp(name, "timeout") == 0)
    push_timeout(L, s);
  else if (strcmp(name, "decorator") == 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->decorator);
  else if (strcmp(name, "subprotocols") == 0)
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->subprotocols);
  else if (strcmp(name, "permessage_deflate") == 0)
    push_pmd_config(L, &s->pmd);
  else
    return luaL_error(L, "unknown option '%s'", name);
  if (lua_type(L, -1) == LUA_TNONE) lua_pushnil(L);
  return 1;
}

static int l_set_option(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  if (lua_istable(L, 2) && lua_isnone(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        return luaL_error(L, "option names must be strings");
      set_option(L, s, lua_tostring(L, -2), -1);
      lua_pop(L, 1);
    }
    return 0;
  }
  luaL_checkany(L, 3);
  set_option(L, s, luaL_checkstring(L, 2), 3);
  return 0;
}

/* ---------------------------------------------------------- constructor */

/* A finalizer that tells stream finalizers the Lua state is closing.
 *
 * At lua_close, finalizers run in the reverse order of creation, so a
 * sentinel made after the newest stream runs before every stream's __gc.
 * Each new stream replaces the registered sentinel; a replaced one is
 * collected in a normal cycle and does nothing. Closing a luv handle
 * during lua_close crashes luv 1.44 (its loop teardown then meets a
 * handle whose close callback never ran), so streams finalized after the
 * sentinel leave their handles to luv's own teardown. */
#define LWS_SENTINEL_KEY "luvws.sentinel"

static int sentinel_gc(lua_State *L) {
  lws_loop **pp = (lws_loop **)lua_touserdata(L, 1);
  int current;
  if (!*pp) return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, LWS_SENTINEL_KEY);
  current = lua_rawequal(L, -1, 1);
  lua_pop(L, 1);
  if (current) (*pp)->closing = 1;
  lws_loop_release(*pp);
  *pp = NULL;
  return 0;
}

static void renew_sentinel(lua_State *L, lws_loop *lp) {
  lws_loop **pp = (lws_loop **)lua_newuserdatauv(L, sizeof(*pp), 0);
  *pp = lp;
  lp->refs++;
  if (luaL_newmetatable(L, "luvws.sentinel_mt")) {
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, LWS_SENTINEL_KEY);
}

static int l_stream_gc(lua_State *L);

/* ws.stream(handle [, options]) */
static int l_stream(lua_State *L) {
  uv_stream_t *h;
  luv_handle_t *data;
  lws_stream *s, **pp;
  lws_loop *lp;
  struct wstls *session = NULL;
  int hidx = 1;
  lua_settop(L, 2); /* handle or layer, options */
  if (lws_tls_unwrap(L, 1, &session)) hidx = 3;
  if (!luaL_testudata(L, hidx, "uv_tcp") && !luaL_testudata(L, hidx, "uv_pipe")) {
    wstls_free(session);
    return luaL_typeerror(L, 1, "luv TCP or pipe handle, or TLS layer");
  }
  h = *(uv_stream_t **)lua_touserdata(L, hidx);
  data = h ? (luv_handle_t *)h->data : NULL;
  if (!h || uv_is_closing((uv_handle_t *)h) || !uv_is_readable(h) ||
      !uv_is_writable(h) || !data || data->extra) {
    wstls_free(session);
    if (!h || uv_is_closing((uv_handle_t *)h))
      return luaL_argerror(L, 1, "handle is closed");
    if (!uv_is_readable(h) || !uv_is_writable(h))
      return luaL_argerror(L, 1, "handle is not connected");
    return luaL_argerror(L, 1, "handle already belongs to a stream");
  }
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2)) {
    wstls_free(session);
    luaL_checktype(L, 2, LUA_TTABLE);
  }
  lp = lws_loop_get(L);
  if (data->ctx->loop != wsuv_loop_uv(lp->wl))
    return luaL_argerror(L, 1, "handle is on another loop");

  pp = (lws_stream **)lua_newuserdatauv(L, sizeof(*pp), 2);
  *pp = NULL;
  luaL_setmetatable(L, LWS_STREAM_MT);
  s = calloc(1, sizeof(*s));
  if (!s) return luaL_error(L, "luvws: out of memory");
  s->lp = lp;
  lp->refs++;
  s->role = -1;
  s->state = ST_NEW;
  s->ud_alive = 1;
  s->handle_alive = 1;
  s->self_ref = s->handle_ref = LUA_NOREF;
  s->hs_cb = s->hs_res = s->hs_req = s->hs_decorator = LUA_NOREF;
  s->read_cb = s->q_ref = s->control_cb = s->close_cb = LUA_NOREF;
  s->read_fn = LUA_NOREF;
  s->end_cb = LUA_NOREF;
  s->decorator = s->subprotocols = LUA_NOREF;
  s->got_text = -1;
  s->read_message_max = 16u << 20;
  s->write_buffer_bytes = 4096;
  s->auto_fragment = 1;
  s->compress = 1;
  s->secure_prng = 1;
  s->max_header_bytes = WS_HTTP_MAX_HEAD_BYTES;
  s->max_queued_bytes = 16u << 20;
  s->max_unread_bytes = 1u << 20;
  s->t_close = 5;
  ws_pmd_config_default(&s->pmd);
  wsuv_stream_init(&s->t, lp->wl, h, &stream_callbacks);
  *pp = s;
  data->extra = s;
  data->extra_gc = handle_gone;
  if (session && wsuv_tls_attach(&s->t, session) != 0) {
    wstls_free(session);
    return luaL_error(L, "luvws: out of memory");
  }
  lua_pushvalue(L, hidx);
  s->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Fields the application sets on the stream live in user value 1; the
   * next layer in user value 2. */
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 2);
  if (lua_istable(L, 2)) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        return luaL_error(L, "option names must be strings");
      set_option(L, s, lua_tostring(L, -2), -1);
      lua_pop(L, 1);
    }
  }
  renew_sentinel(L, lp);
  return 1;
}

/* Starts reading, and for a TLS stream the TLS handshake (the first step
 * of handshake / accept). Returns 0 or a libuv error. */
static int start_io(lws_stream *s) {
  if (s->t.tls && !s->io_started) {
    s->io_started = 1;
    wsuv_tls_start(&s->t);
    return 0;
  }
  s->io_started = 1;
  return wsuv_read(&s->t, 1);
}

/* start_io for a head operation: a failure ends the operation with it. */
static void start_head_io(lws_stream *s) {
  int r = start_io(s);
  if (r < 0) {
    s->hs_err = r;
    teardown(s, r);
  }
}

/* Notices a handle that someone closed through luv behind our back: the
 * stream is over for every operation. */
static void sync_handle(lws_stream *s) {
  if (!s->handle_closing && s->handle_alive &&
      uv_is_closing((uv_handle_t *)s->t.h)) {
    teardown(s, WS_E_operation_aborted); /* close_handle sees it closing */
    deliver_reads(s);
  }
}

/* ------------------------------------------------------ head operations */

/* Claims the head slot for a new operation; on failure the callback gets
 * the error later and this returns 0. */
static int start_head_op(lua_State *L, lws_stream *s, int kind, int cb) {
  int err = 0;
  sync_handle(s);
  if (s->state == ST_DONE || s->handle_closing || !s->handle_alive ||
      uv_is_closing((uv_handle_t *)s->t.h))
    err = WS_E_operation_aborted;
  else if (s->state != ST_NEW || s->hs_kind != HS_NONE)
    err = WS_E_operation_in_progress;
  else if (kind != HS_SERVER && kind != HS_RESPOND && s->req_ready)
    err = WS_E_operation_in_progress;
  hold(L, s);
  if (err) {
    post_result(s, cb, err);
    return 0;
  }
  s->hs_kind = kind;
  s->hs_cb = cb;
  s->hs_err = 0;
  return 1;
}

static int finish_call(lua_State *L, int yield) {
  if (yield) return lua_yield(L, 0);
  return 0;
}

/* ws.handshake_ex(stream, res, host, target, decorator, cb) and
 * ws.handshake(stream, [res,] host, target, cb) */
static int do_handshake(lua_State *L, int ex) {
  lws_stream *s = check_stream(L, 1);
  int idx = 2, res_idx = 0, host_idx, target_idx, dec_idx = 0, cb, yield;
  int top, err = 0, i;
  char key[WS_KEY_LEN + 1], offer[256];
  if (ex || lua_istable(L, 2)) {
    if (!lua_isnil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    res_idx = lua_isnil(L, 2) ? 0 : 2;
    idx = 3;
  }
  host_idx = idx++;
  target_idx = idx++;
  luaL_checkstring(L, host_idx);
  luaL_checkstring(L, target_idx);
  if (ex) {
    dec_idx = idx++;
    if (!lua_isnil(L, dec_idx)) luaL_checktype(L, dec_idx, LUA_TFUNCTION);
  }
  cb = lws_check_cb(L, idx, &yield);
  if (!start_head_op(L, s, HS_CLIENT, cb)) return finish_call(L, yield);
  s->role = WS_ROLE_CLIENT;
  s->state = ST_HEAD;
  top = lua_gettop(L);
  if (res_idx) {
    lua_pushvalue(L, res_idx);
  } else {
    lua_newtable(L);
  }
  s->hs_res = luaL_ref(L, LUA_REGISTRYINDEX);
  if (dec_idx && !lua_isnil(L, dec_idx)) {
    lua_pushvalue(L, dec_idx);
    s->hs_decorator = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  /* The request table. */
  {
    ws_rng rng = lws_loop_rng(s->lp);
    if (ws_key_generate(&rng, key) != 0) err = WS_E_no_memory;
  }
  lua_createtable(L, 0, 4); /* top + 1 */
  lua_pushliteral(L, "GET");
  lua_setfield(L, top + 1, "method");
  lua_pushvalue(L, target_idx);
  lua_setfield(L, top + 1, "target");
  lua_pushliteral(L, "1.1");
  lua_setfield(L, top + 1, "version");
  lws_push_headers(L, s->lp, NULL, 0); /* top + 2 */
  set_field(L, top + 2, "Host", lua_tostring(L, host_idx));
  set_field(L, top + 2, "Upgrade", "websocket");
  set_field(L, top + 2, "Connection", "Upgrade");
  set_field(L, top + 2, "Sec-WebSocket-Key", key);
  set_field(L, top + 2, "Sec-WebSocket-Version", "13");
  if (s->subprotocols != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->subprotocols);
    if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0) {
      luaL_Buffer b;
      lua_Integer j, n = (lua_Integer)lua_rawlen(L, -1);
      luaL_buffinit(L, &b);
      for (j = 1; j <= n; j++) {
        lua_rawgeti(L, top + 3, j);
        if (j > 1) luaL_addstring(&b, ", ");
        luaL_addvalue(&b);
      }
      luaL_pushresult(&b);
      set_field(L, top + 2, "Sec-WebSocket-Protocol", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (s->pmd.client_enable &&
      ws_pmd_offer(&s->pmd, offer, sizeof(offer)) < sizeof(offer) &&
      offer[0])
    set_field(L, top + 2, "Sec-WebSocket-Extensions", offer);
  lua_setfield(L, top + 1, "headers");
  lua_pushvalue(L, top + 1);
  s->hs_req = luaL_ref(L, LUA_REGISTRYINDEX);
  ws_accept_compute(key, WS_KEY_LEN, s->accept);

  if (!err) err = run_decorators(s, L, top + 1);
  if (!err) {
    /* The decorators may not touch the upgrade fields. */
    const char *want[4];
    want[0] = "websocket";
    want[1] = "Upgrade";
    want[2] = key;
    want[3] = "13";
    lua_getfield(L, top + 1, "method");
    if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "GET"))
      err = WS_E_bad_decorator;
    lua_pop(L, 1);
    lua_getfield(L, top + 1, "headers");
    if (!lua_istable(L, -1)) err = WS_E_bad_decorator;
    for (i = 0; !err && upgrade_fields[i]; i++) {
      ws_header f[WS_HTTP_MAX_FIELDS];
      int n = headers_from_lua(L, s->lp, -1, f, WS_HTTP_MAX_FIELDS);
      const ws_header *one;
      if (n < 0) {
        err = WS_E_bad_decorator;
        break;
      }
      one = find_field(f, n, upgrade_fields[i]);
      if (!one || count_field(f, n, upgrade_fields[i]) != 1 ||
          one->value.n != strlen(want[i]) ||
          memcmp(one->value.p, want[i], one->value.n) != 0)
        err = WS_E_bad_decorator;
    }
    lua_pop(L, 1);
  }
  if (!err) err = write_head_table(s, L, top + 1, 1, 0);
  lua_settop(L, top);
  if (err) {
    s->hs_err = err;
    teardown(s, err);
    return finish_call(L, yield);
  }
  timer_set(s, TK_HANDSHAKE, s->t_handshake);
  wsuv_flush(&s->t);
  if (s->state == ST_HEAD) start_head_io(s);
  return finish_call(L, yield);
}

static int l_handshake(lua_State *L) {
  return do_handshake(L, 0);
}

static int l_handshake_ex(lua_State *L) {
  return do_handshake(L, 1);
}

/* ws.accept(stream, [input,] cb), ws.accept_ex(stream, [input,]
 * decorator, cb). input: bytes already read, or a request table. */
static int do_accept(lua_State *L, int ex) {
  lws_stream *s = check_stream(L, 1);
  int idx = 2, input_idx = 0, dec_idx = 0, cb, yield, top;
  if (lua_type(L, 2) == LUA_TSTRING || lua_type(L, 2) == LUA_TTABLE)
    input_idx = idx++;
  if (ex) {
    dec_idx = idx++;
    if (!lua_isnil(L, dec_idx)) luaL_checktype(L, dec_idx, LUA_TFUNCTION);
  }
  cb = lws_check_cb(L, idx, &yield);
  if (!start_head_op(L, s, HS_SERVER, cb)) return finish_call(L, yield);
  s->role = WS_ROLE_SERVER;
  s->state = ST_HEAD;
  if (dec_idx && !lua_isnil(L, dec_idx)) {
    lua_pushvalue(L, dec_idx);
    s->hs_decorator = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  timer_set(s, TK_HANDSHAKE, s->t_handshake);
  top = lua_gettop(L);
  if (input_idx && lua_type(L, input_idx) == LUA_TTABLE) {
    ws_header f[WS_HTTP_MAX_FIELDS];
    ws_http_head h;
    int n;
    memset(&h, 0, sizeof(h));
    lua_getfield(L, input_idx, "headers");
    n = headers_from_lua(L, s->lp, -1, f, WS_HTTP_MAX_FIELDS);
    lua_getfield(L, input_idx, "method");
    h.method = str_of(L, -1);
    lua_getfield(L, input_idx, "target");
    h.target = str_of(L, -1);
    lua_getfield(L, input_idx, "version");
    h.version = (lua_type(L, -1) == LUA_TSTRING &&
                 strcmp(lua_tostring(L, -1), "1.0") == 0)
                    ? 10
                    : 11;
    if (lua_type(L, -1) == LUA_TNUMBER) h.version = (int)lua_tointeger(L, -1);
    h.headers = f;
    h.num_headers = n < 0 ? 0 : (size_t)n;
    if (!s->req_ready) s->hhead = s->hlen = 0;
    s->req_ready = 0;
    if (n < 0) {
      s->hs_err = WS_E_bad_http_head;
      teardown(s, WS_E_bad_http_head);
    } else {
      server_respond_to(s, &h);
    }
    lua_settop(L, top);
    return finish_call(L, yield);
  }
  if (input_idx) {
    size_t n;
    const char *p = lua_tolstring(L, input_idx, &n);
    if (n) {
      uint8_t *copy = malloc(n);
      if (!copy) {
        s->hs_err = WS_E_no_memory;
        teardown(s, WS_E_no_memory);
        return finish_call(L, yield);
      }
      memcpy(copy, p, n);
      on_t_data(&s->t, copy, n);
      free(copy);
    }
  } else if (s->req_ready) {
    /* read_request already read the head: accept it. */
    s->req_ready = 0;
    s->hprev = 0;
    handle_head(s);
    return finish_call(L, yield);
  }
  if (s->state == ST_HEAD && s->hhead == 0) start_head_io(s);
  return finish_call(L, yield);
}

static int l_accept(lua_State *L) {
  return do_accept(L, 0);
}

static int l_accept_ex(lua_State *L) {
  return do_accept(L, 1);
}

/* ws.read_request(stream, cb(err, req)): reads one HTTP request head so
 * an HTTP server can route it; then accept(stream, req, cb) upgrades it or
 * respond(stream, res, cb) answers it. */
static int l_read_request(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  int yield, cb = lws_check_cb(L, 2, &yield);
  if (!start_head_op(L, s, HS_REQUEST, cb)) return finish_call(L, yield);
  s->state = ST_HEAD;
  unref(s, &s->hs_req);
  timer_set(s, TK_HANDSHAKE, s->t_handshake);
  start_head_io(s);
  return finish_call(L, yield);
}

/* ws.respond(stream, res, cb): writes an HTTP response (status, reason,
 * headers, body) and closes the connection. */
static int l_respond(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  int yield, cb, err;
  luaL_checktype(L, 2, LUA_TTABLE);
  cb = lws_check_cb(L, 3, &yield);
  if (!start_head_op(L, s, HS_RESPOND, cb)) return finish_call(L, yield);
  s->state = ST_HEAD;
  s->req_ready = 0;
  lua_getfield(L, 2, "headers");
  if (lua_isnil(L, -1)) {
    lws_push_headers(L, s->lp, NULL, 0);
    lua_setfield(L, 2, "headers");
  }
  lua_pop(L, 1);
  err = write_head_table(s, L, 2, 0, 1);
  if (err) {
    s->hs_err = err;
    teardown(s, err);
    return finish_call(L, yield);
  }
  wsuv_want_drain(&s->t);
  wsuv_flush(&s->t);
  return finish_call(L, yield);
}

/* ------------------------------------------------------------ messages */

static int start_read(lua_State *L, int kind, size_t limit, int cbidx) {
  lws_stream *s = check_stream(L, 1);
  int yield = 0, cb, cached = 0;
  sync_handle(s);
  if (lua_isfunction(L, cbidx) && s->read_kind == RD_NONE &&
      s->state != ST_NEW && s->state != ST_HEAD) {
    /* Keep the callback's reference for the next read: a read loop
     * passes the same function every time. */
    int same = 0;
    if (s->read_fn != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, s->read_fn);
      same = lua_rawequal(L, -1, cbidx);
      lua_pop(L, 1);
    }
    if (!same) {
      unref(s, &s->read_fn);
      lua_pushvalue(L, cbidx);
      s->read_fn = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    cb = s->read_fn;
    cached = 1;
  } else {
    cb = lws_check_cb(L, cbidx, &yield);
  }
  hold(L, s);
  if (s->read_kind != RD_NONE) {
    post_result(s, cb, WS_E_operation_in_progress);
    return finish_call(L, yield);
  }
  if (s->state == ST_NEW || s->state == ST_HEAD) {
    post_result(s, cb, WS_E_operation_aborted);
    return finish_call(L, yield);
  }
  s->read_kind = kind;
  s->read_cb = cb;
  s->read_cached = cached;
  s->read_limit = limit;
  if (read_ready(s)) kick_read(s);
  return finish_call(L, yield);
}

static int l_read(lua_State *L) {
  return start_read(L, RD_READ, 0, 2);
}

static int l_read_some(lua_State *L) {
  lua_Integer limit = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, limit >= 0, 2, "limit must be >= 0");
  return start_read(L, RD_SOME, (size_t)limit, 3);
}

/* What the write queue holds, for max_queued_bytes: its bytes and a cost
 * per queued message. */
static size_t queued_cost(lws_stream *s) {
  size_t n = wsuv_pending(&s->t);
  if (s->conn) n += ws_conn_out_units(s->conn) * LWS_UNIT_COST;
  return n;
}

static int queue_unit(lua_State *L, lws_stream *s, int cb, int data_idx,
                      int kind_op, unsigned flags, int is_ctl) {
  lws_req *r;
  int err = 0;
  size_t len = 0;
  const char *p = data_idx ? lua_tolstring(L, data_idx, &len) : NULL;
  sync_handle(s);
  if (s->state != ST_OPEN || !s->conn)
    err = s->state == ST_NEW || s->state == ST_HEAD ? WS_E_operation_aborted
                                                    : WS_E_operation_aborted;
  else if (!is_ctl && s->max_queued_bytes &&
           queued_cost(s) >= s->max_queued_bytes)
    err = WS_E_queue_full;
  if (err) {
    post_result(s, cb, err);
    return 0;
  }
  r = req_new(s->lp);
  if (!r) {
    post_result(s, cb, WS_E_no_memory);
    return 0;
  }
  r->s = s;
  r->cb = cb;
  if (data_idx && len) {
    if (len <= LWS_INLINE) {
      memcpy(r->inline_data, p, len);
      p = (const char *)r->inline_data;
    } else {
      lua_pushvalue(L, data_idx);
      r->data = luaL_ref(L, LUA_REGISTRYINDEX);
    }
  }
  if (kind_op == WS_OP_PING)
    err = ws_conn_ping(s->conn, (const uint8_t *)p, len, r);
  else if (kind_op == WS_OP_PONG)
    err = ws_conn_pong(s->conn, (const uint8_t *)p, len, r);
  else
    err = ws_conn_send(s->conn, kind_op, (const uint8_t *)p, len, flags, r);
  if (err) {
    r->err = err;
    s->lp->refs++;
    wsuv_post_add(s->lp->wl, &r->post, req_done_run);
    return 0;
  }
  wsuv_flush_later(&s->t);
  return 0;
}

/* ws.write(stream, data [, how], cb): how is "text", "binary" or
 * {kind = ..., compress = ...}. */
static int l_write(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  int cbidx = 3, op = s->binary ? WS_OP_BINARY : WS_OP_TEXT, yield, cb;
  unsigned flags = WS_SEND_FIN | (s->compress ? WS_SEND_COMPRESS : 0);
  luaL_checktype(L, 2, LUA_TSTRING);
  if (lua_type(L, 3) == LUA_TSTRING) {
    size_t hl;
    const char *how = lua_tolstring(L, 3, &hl);
    if (hl == 4 && memcmp(how, "text", 4) == 0)
      op = WS_OP_TEXT;
    else if (hl == 6 && memcmp(how, "binary", 6) == 0)
      op = WS_OP_BINARY;
    else
      return luaL_argerror(L, 3, "expected \"text\" or \"binary\"");
    cbidx = 4;
  } else if (lua_type(L, 3) == LUA_TTABLE) {
    if (lua_getfield(L, 3, "kind") == LUA_TSTRING) {
      const char *how = lua_tostring(L, -1);
      if (strcmp(how, "text") == 0)
        op = WS_OP_TEXT;
      else if (strcmp(how, "binary") == 0)
        op = WS_OP_BINARY;
      else
        return luaL_argerror(L, 3, "kind must be \"text\" or \"binary\"");
    }
    if (lua_getfield(L, 3, "compress") != LUA_TNIL)
      flags = WS_SEND_FIN | (lua_toboolean(L, -1) ? WS_SEND_COMPRESS : 0);
    lua_pop(L, 2);
    cbidx = 4;
  }
  cb = lws_check_cb(L, cbidx, &yield);
  hold(L, s);
  queue_unit(L, s, cb, 2, op, flags, 0);
  return finish_call(L, yield);
}

/* ws.write_some(stream, fin, data, cb) */
static int l_write_some(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  int yield, cb;
  unsigned flags = s->compress ? WS_SEND_COMPRESS : 0;
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  luaL_checktype(L, 3, LUA_TSTRING);
  if (lua_toboolean(L, 2)) flags |= WS_SEND_FIN;
  cb = lws_check_cb(L, 4, &yield);
  hold(L, s);
  queue_unit(L, s, cb, 3, s->binary ? WS_OP_BINARY : WS_OP_TEXT, flags, 0);
  return finish_call(L, yield);
}

static int do_control(lua_State *L, int op) {
  lws_stream *s = check_stream(L, 1);
  int yield, cb, data_idx = 2, cbidx = 3;
  size_t len = 0;
  if (lua_isfunction(L, 2) && lua_isnone(L, 3)) {
    data_idx = 0;
    cbidx = 2;
  } else if (lua_isnoneornil(L, 2)) {
    data_idx = 0;
  } else {
    luaL_checklstring(L, 2, &len);
    luaL_argcheck(L, len <= WS_MAX_CONTROL_PAYLOAD, 2,
                  "a control payload is at most 125 bytes");
  }
  cb = lws_check_cb(L, cbidx, &yield);
  hold(L, s);
  queue_unit(L, s, cb, data_idx, op, 0, 1);
  return finish_call(L, yield);
}

static int l_ping(lua_State *L) {
  return do_control(L, WS_OP_PING);
}

static int l_pong(lua_State *L) {
  return do_control(L, WS_OP_PONG);
}

/* ws.close(stream, [code, [reason,]] cb): sends a close frame, waits for
 * the peer's (up to timeout.close), then tears the transport down. */
static int l_close(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  int idx = 2, yield, cb, err = 0;
  lua_Integer code = 1000;
  size_t rlen = 0;
  const char *reason = NULL;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    code = luaL_checkinteger(L, idx++);
    luaL_argcheck(L, code == 0 || ws_close_code_valid((unsigned)code), 2,
                  "close code not valid on the wire (1000-1003, 1007-1014, "
                  "3000-4999, or 0 for none)");
  } else if (lua_isnil(L, idx) && !lua_isnone(L, idx + 1)) {
    idx++;
  }
  if (lua_type(L, idx) == LUA_TSTRING) {
    reason = lua_tolstring(L, idx++, &rlen);
    luaL_argcheck(L, rlen <= WS_MAX_CLOSE_REASON, idx - 1,
                  "a close reason is at most 123 bytes");
    luaL_argcheck(L, code != 0, idx - 1, "a reason needs a code");
    luaL_argcheck(L, ws_utf8_valid((const uint8_t *)reason, rlen), idx - 1,
                  "a close reason must be UTF-8");
  } else if (lua_isnil(L, idx) && !lua_isnone(L, idx + 1)) {
    idx++;
  }
  cb = lws_check_cb(L, idx, &yield);
  hold(L, s);
  sync_handle(s);
  if (s->close_cb != LUA_NOREF) {
    post_result(s, cb, WS_E_operation_in_progress);
    return finish_call(L, yield);
  }
  if (s->clean || s->state == ST_DONE) {
    /* Already closed (cleanly or not): nothing left to close. */
    post_result(s, cb, WS_E_operation_aborted);
    return finish_call(L, yield);
  }
  if (s->state != ST_OPEN && s->state != ST_CLOSING) {
    /* Never opened (or still in its handshake): there is no close
     * handshake to run; the stream is closed now. */
    teardown(s, WS_E_operation_aborted);
    post_result(s, cb, WS_E_operation_aborted);
    return finish_call(L, yield);
  }
  if (ws_conn_state(s->conn) & WS_ST_CLOSE_SENT) {
    /* The close handshake is already underway: wait for its end. */
    s->close_cb = cb;
    return finish_call(L, yield);
  }
  err = ws_conn_close(s->conn, (unsigned)code, reason, rlen, NULL);
  if (err) {
    post_result(s, cb, err);
    return finish_call(L, yield);
  }
  s->close_cb = cb;
  enter_closing(s);
  wsuv_flush(&s->t);
  close_progress(s);
  return finish_call(L, yield);
}

/* ------------------------------------------------------- shared frames */

/* ws._frame(data, is_text [, rsv1]) -> a whole unmasked frame (header and
 * payload) as one string: built once, sent to many (topics). */
static int l_frame(lua_State *L) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  int is_text = lua_toboolean(L, 2), rsv1 = lua_toboolean(L, 3);
  uint8_t hdr[WS_MAX_FRAME_HEADER];
  size_t n = ws_frame_server_message(hdr, is_text ? WS_OP_TEXT : WS_OP_BINARY,
                                     rsv1, len);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, n + len);
  memcpy(p, hdr, n);
  memcpy(p + n, data, len);
  luaL_pushresultsize(&b, n + len);
  return 1;
}

/* ws._send_frame(stream, frame) -> true | nil, name: queues a frame built
 * by ws._frame on a server stream, without copying and without a callback
 * (the frame string is kept alive until it is written). Fails at once with
 * queue_full when buffered_amount already reached max_queued_bytes. */
static int l_send_frame(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  size_t len;
  const char *frame = luaL_checklstring(L, 2, &len);
  lws_req *r;
  int err = 0;
  sync_handle(s);
  if (s->state != ST_OPEN || !s->conn)
    err = WS_E_operation_aborted;
  else if (s->max_queued_bytes && queued_cost(s) >= s->max_queued_bytes)
    err = WS_E_queue_full;
  if (!err) {
    r = req_new(s->lp);
    if (!r) {
      err = WS_E_no_memory;
    } else {
      r->s = s;
      lua_pushvalue(L, 2);
      r->data = luaL_ref(L, LUA_REGISTRYINDEX);
      err = ws_conn_send_prebuilt(s->conn, (const uint8_t *)frame, len, NULL,
                                  0, r);
      if (err) {
        unref(s, &r->data);
        req_free(s->lp, r);
      } else {
        hold(L, s); /* released when the frame is written or dropped */
        wsuv_flush_later(&s->t);
      }
    }
  }
  if (err) {
    lua_pushnil(L);
    lws_push_errname(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static lws_shared *shared_frame(int is_text, int rsv1, const uint8_t *p,
                                size_t n) {
  uint8_t hdr[WS_MAX_FRAME_HEADER];
  size_t h = ws_frame_server_message(hdr, is_text ? WS_OP_TEXT : WS_OP_BINARY,
                                     rsv1, n);
  lws_shared *f = malloc(sizeof(*f) + h + n);
  if (!f) return NULL;
  f->refs = 1;
  f->len = h + n;
  memcpy(f->data, hdr, h);
  if (n) memcpy(f->data + h, p, n);
  return f;
}

/* ws._publish(set, data, is_text [, except]) -> n, slow: queues one message
 * on every open server stream that is a key of set (but except), without a
 * callback. The plain frame is built once; for streams that negotiated
 * permessage-deflate (and compress it, above msg_size_threshold) a
 * compressed frame is built once per window size, from a fresh context,
 * so every peer can inflate it. Streams whose queue already holds
 * max_queued_bytes are skipped and listed in slow (nil if none). */
static int l_publish(lua_State *L) {
  size_t len;
  const uint8_t *data;
  int is_text, n = 0, nslow = 0;
  lws_shared *plain = NULL, *packed[16];
  int packed_failed[16];
  luaL_checktype(L, 1, LUA_TTABLE);
  data = (const uint8_t *)luaL_checklstring(L, 2, &len);
  is_text = lua_toboolean(L, 3);
  lua_settop(L, 4);
  memset(packed, 0, sizeof(packed));
  memset(packed_failed, 0, sizeof(packed_failed));
  lua_pushnil(L); /* slow list (made on the first slow stream): index 5 */
  luaL_getmetatable(L, LWS_STREAM_MT); /* index 6 */
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lws_stream *s = NULL;
    lws_shared *f = NULL;
    lua_pop(L, 1);
    if (lua_getmetatable(L, -1)) {
      if (lua_rawequal(L, -1, 6)) s = *(lws_stream **)lua_touserdata(L, -2);
      lua_pop(L, 1);
    }
    if (!s || lua_rawequal(L, -1, 4)) continue;
    if (s->state != ST_OPEN || !s->conn || s->role != WS_ROLE_SERVER)
      continue;
    if (s->max_queued_bytes && queued_cost(s) >= s->max_queued_bytes) {
      if (lua_isnil(L, 5)) {
        lua_newtable(L);
        lua_replace(L, 5);
      }
      lua_pushvalue(L, -1);
      lua_rawseti(L, 5, ++nslow);
      continue;
    }
    if (s->pmd_neg.active && s->compress && len >= s->pmd.msg_size_threshold) {
      int bits = s->pmd_neg.server_max_window_bits;
      if (bits < 8 || bits > 15) bits = 15;
      if (!packed[bits] && !packed_failed[bits]) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        if (ws_pmd_compress_message(NULL, bits, s->pmd.comp_level,
                                    s->pmd.mem_level, data, len, &out,
                                    &out_len) == 0) {
          packed[bits] = shared_frame(is_text, 1, out, out_len);
          free(out);
        }
        if (!packed[bits]) packed_failed[bits] = 1;
      }
      f = packed[bits];
    }
    if (!f) {
      if (!plain) plain = shared_frame(is_text, 0, data, len);
      f = plain;
    }
    if (!f) break; /* out of memory */
    /* An idle stream takes the frame straight to the socket: no queue
     * entry, no completion. */
    if (!s->t.tls && !s->t.dirty &&
        ws_conn_prebuilt_direct(s->conn, f->data, f->len)) {
      int r = wsuv_write_now(&s->t, f->data, f->len);
      if (r == 0) {
        n++;
        continue;
      }
      if (r < 0) {
        teardown(s, r);
        continue;
      }
    }
    f->refs++;
    /* The token is the shared frame, tagged in its low bit (malloc'd
     * memory is aligned), so a publish costs no request record. */
    if (ws_conn_send_prebuilt(s->conn, NULL, 0, f->data, f->len,
                              (void *)((uintptr_t)f | 1)) != 0) {
      f->refs--;
      continue;
    }
    /* Out now: the first recipients need not wait for the last to be
     * queued (the frame is one write per stream either way). */
    wsuv_flush(&s->t);
    n++;
  }
  shared_release(plain);
  {
    int i;
    for (i = 0; i < 16; i++) shared_release(packed[i]);
  }
  lua_pushinteger(L, n);
  lua_pushvalue(L, 5);
  return 2;
}

/* ws._on_end(stream, fn): fn(err, code, reason) once, on a later tick,
 * when the stream has ended ("closed" for a clean close handshake); for
 * bookkeeping (servers, reconnection) without taking the read slot. A
 * stream that already ended calls it at once (on a later tick). */
static int l_on_end(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  set_ref(s, L, &s->end_cb, 2);
  sync_handle(s);
  if (s->state == ST_DONE)
    post_pend(s, PEND_END);
  return 0;
}

/* ws._abort(stream): ends the stream now, whatever its state (no close
 * handshake): the handle is closed, every pending operation completes
 * with operation_aborted. For servers shutting down. */
static int l_abort(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  sync_handle(s);
  if (s->state != ST_DONE) {
    teardown(s, WS_E_operation_aborted);
    deliver_reads(s);
  }
  return 0;
}

/* ----------------------------------------------------------- observers */

static int l_control_callback(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  set_ref(s, L, &s->control_cb, 2);
  return 0;
}

static int l_is_open(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  lua_pushboolean(L, s->state == ST_OPEN && s->conn &&
                         ws_conn_state(s->conn) == 0);
  return 1;
}

static int l_got_text(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  lua_pushboolean(L, s->got_text == 1);
  return 1;
}

static int l_got_binary(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  lua_pushboolean(L, s->got_text == 0);
  return 1;
}

static int l_is_message_done(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  lua_pushboolean(L, s->msg_done);
  return 1;
}

/* reason() -> code, text: the peer's close (0, "" if none). */
static int l_reason(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  lua_pushinteger(L, s->peer_code);
  lua_pushlstring(L, s->peer_reason ? s->peer_reason : "", s->peer_reason_len);
  return 2;
}

static int l_buffered_amount(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  lua_pushinteger(L, (lua_Integer)(s->state == ST_DONE ? 0 : wsuv_pending(&s->t)));
  return 1;
}

static int l_next_layer(lua_State *L) {
  check_stream(L, 1);
  lua_getiuservalue(L, 1, 2);
  return 1;
}

static int l_peername(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  struct sockaddr_storage ss;
  int len = sizeof(ss), r;
  char ip[64];
  if (!s->handle_alive || s->handle_closing || s->t.h->type != UV_TCP) {
    lua_pushnil(L);
    lua_pushliteral(L, "EBADF: the stream is closed or not TCP");
    lua_pushliteral(L, "EBADF");
    return 3;
  }
  r = uv_tcp_getpeername((uv_tcp_t *)s->t.h, (struct sockaddr *)&ss, &len);
  if (r < 0) {
    lua_pushnil(L);
    lws_push_errmsg(L, r);
    lws_push_errname(L, r);
    return 3;
  }
  lua_createtable(L, 0, 3);
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
    lua_pushinteger(L, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    lua_pushliteral(L, "inet6");
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
    lua_pushinteger(L, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    lua_pushliteral(L, "inet");
  }
  lua_setfield(L, -3, "family");
  lua_setfield(L, -2, "port");
  lua_pushstring(L, ip);
  lua_setfield(L, -2, "ip");
  return 1;
}

/* get_status() -> {subprotocol = ..., permessage_deflate = {...} | false} */
static int l_get_status(lua_State *L) {
  lws_stream *s = check_stream(L, 1);
  lua_createtable(L, 0, 3);
  if (s->subprotocol) {
    lua_pushstring(L, s->subprotocol);
    lua_setfield(L, -2, "subprotocol");
  }
  if (s->pmd_neg.active) {
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, s->pmd_neg.server_max_window_bits);
    lua_setfield(L, -2, "server_max_window_bits");
    lua_pushinteger(L, s->pmd_neg.client_max_window_bits);
    lua_setfield(L, -2, "client_max_window_bits");
    lua_pushboolean(L, s->pmd_neg.server_no_context_takeover);
    lua_setfield(L, -2, "server_no_context_takeover");
    lua_pushboolean(L, s->pmd_neg.client_no_context_takeover);
    lua_setfield(L, -2, "client_no_context_takeover");
  } else {
    lua_pushboolean(L, 0);
  }
  lua_setfield(L, -2, "permessage_deflate");
  if (s->t.tls) {
    struct wstls *ts = wsuv_tls_session(&s->t);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, wstls_version(ts));
    lua_setfield(L, -2, "version");
    if (wstls_cipher(ts)) {
      lua_pushstring(L, wstls_cipher(ts));
      lua_setfield(L, -2, "cipher");
    }
    if (wstls_alpn(ts)) {
      lua_pushstring(L, wstls_alpn(ts));
      lua_setfield(L, -2, "alpn");
    }
    if (wstls_servername(ts)) {
      lua_pushstring(L, wstls_servername(ts));
      lua_setfield(L, -2, "servername");
    }
    lua_setfield(L, -2, "tls");
  }
  {
    static const char *const states[] = {"new", "handshake", "open",
                                         "closing", "closed"};
    lua_pushstring(L, states[s->state]);
    lua_setfield(L, -2, "state");
  }
  if (s->term_err) {
    lws_push_errname(L, s->term_err);
    lua_setfield(L, -2, "error");
  }
  lua_pushstring(L, s->role == WS_ROLE_CLIENT   ? "client"
                    : s->role == WS_ROLE_SERVER ? "server"
                                                : "none");
  lua_setfield(L, -2, "role");
  return 1;
}

/* ---------------------------------------------------------- metamethods */

/* __gc and __close: closes an abandoned stream (1001 going away for an
 * open one, in the background) and lets go of the Lua side. Safe twice. */
static void abandon(lws_stream *s, unsigned code) {
  if (s->state == ST_OPEN && s->conn && !(ws_conn_state(s->conn) & WS_ST_CLOSE_SENT)) {
    if (ws_conn_close(s->conn, code, NULL, 0, NULL) == 0) {
      enter_closing(s);
      wsuv_flush(&s->t);
      close_progress(s);
      return;
    }
  }
  if (s->state != ST_OPEN && s->state != ST_CLOSING) teardown(s, WS_E_operation_aborted);
}

static int l_stream_gc(lua_State *L) {
  lws_stream **pp = (lws_stream **)luaL_checkudata(L, 1, LWS_STREAM_MT);
  lws_stream *s = *pp;
  if (!s) return 0;
  *pp = NULL;
  s->ud_alive = 0;
  if (!s->lp->closing) abandon(s, 1001);
  else close_handle(s);
  unref(s, &s->self_ref);
  maybe_free(s);
  return 0;
}

static int l_stream_close_meta(lua_State *L) {
  lws_stream **pp = (lws_stream **)luaL_checkudata(L, 1, LWS_STREAM_MT);
  if (*pp) abandon(*pp, 1000);
  return 0;
}

static int l_stream_tostring(lua_State *L) {
  lws_stream **pp = (lws_stream **)luaL_checkudata(L, 1, LWS_STREAM_MT);
  static const char *const names[] = {"new", "handshake", "open", "closing",
                                      "closed"};
  if (!*pp)
    lua_pushfstring(L, "luvws.stream: %p (freed)", (void *)pp);
  else
    lua_pushfstring(L, "luvws.stream: %p (%s)", (void *)*pp,
                    names[(*pp)->state]);
  return 1;
}

static const luaL_Reg stream_methods[] = {
    {"handshake", l_handshake},
    {"handshake_ex", l_handshake_ex},
    {"accept", l_accept},
    {"accept_ex", l_accept_ex},
    {"read_request", l_read_request},
    {"respond", l_respond},
    {"read", l_read},
    {"read_some", l_read_some},
    {"write", l_write},
    {"write_some", l_write_some},
    {"ping", l_ping},
    {"pong", l_pong},
    {"close", l_close},
    {"control_callback", l_control_callback},
    {"is_open", l_is_open},
    {"got_text", l_got_text},
    {"got_binary", l_got_binary},
    {"is_message_done", l_is_message_done},
    {"reason", l_reason},
    {"buffered_amount", l_buffered_amount},
    {"next_layer", l_next_layer},
    {"peername", l_peername},
    {"get_status", l_get_status},
    {"set_option", l_set_option},
    {"get_option", l_get_option},
    {NULL, NULL}};

/* Application fields: stream.player = p. Methods win over fields. */
static int l_stream_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  luaL_checkudata(L, 1, LWS_STREAM_MT);
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int l_stream_newindex(lua_State *L) {
  luaL_checkudata(L, 1, LWS_STREAM_MT);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
    return luaL_error(L, "cannot replace the stream method '%s'",
                      lua_tostring(L, 2));
  lua_pop(L, 1);
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

void lws_open_stream(lua_State *L) {
  int mod = lua_gettop(L);
  luaL_newmetatable(L, LWS_STREAM_MT);
  luaL_newlib(L, stream_methods);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_stream_index, 1);
  lua_setfield(L, -3, "__index");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_stream_newindex, 1);
  lua_setfield(L, -3, "__newindex");
  /* The same functions, as ws.op(stream, ...). */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, mod);
  }
  lua_setfield(L, -2, "methods");
  lua_pushcfunction(L, l_stream_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_stream_close_meta);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_stream_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_stream);
  lua_setfield(L, mod, "stream");
  lua_pushcfunction(L, l_frame);
  lua_setfield(L, mod, "_frame");
  lua_pushcfunction(L, l_send_frame);
  lua_setfield(L, mod, "_send_frame");
  lua_pushcfunction(L, l_on_end);
  lua_setfield(L, mod, "_on_end");
  lua_pushcfunction(L, l_abort);
  lua_setfield(L, mod, "_abort");
  lua_pushcfunction(L, l_publish);
  lua_setfield(L, mod, "_publish");
}
