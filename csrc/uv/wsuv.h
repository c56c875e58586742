/*
 * luvws transport: moves bytes between a luv stream handle (TCP or pipe)
 * and the core, on the libuv loop that luv runs. It knows libuv and the
 * core, not Lua.
 *
 *  - One wsuv_loop per libuv loop: a post queue (callbacks that must run on
 *    a later loop tick, drained by one idle handle), a timer heap (one
 *    uv_timer_t for every stream's deadline), and a shared read buffer, so
 *    an idle connection holds no read buffer.
 *  - One wsuv_stream per connection: reads (paused and resumed for
 *    backpressure), writes (uv_try_write first, then one uv_write at a time
 *    for what the kernel did not take; the bytes come from a raw queue for
 *    HTTP heads and then from the core's output queue, without copying),
 *    half-close, and an optional TLS filter in between.
 *
 * The uv handles are luv's: handle->data is luv's luv_handle_t and the
 * transport keeps its state in its extra field. Closing the handle is left
 * to the caller (through luv), so luv's bookkeeping stays right.
 */
#ifndef WSUV_H
#define WSUV_H

#include <uv.h>

#include "ws_conn.h"

typedef struct wsuv_loop wsuv_loop;
typedef struct wsuv_stream wsuv_stream;
typedef struct wsuv_tls wsuv_tls;

/* ------------------------------------------------------------ post queue */

typedef struct wsuv_post wsuv_post;
typedef void (*wsuv_post_fn)(wsuv_post *p);

/* A node to embed in whatever must run later. */
struct wsuv_post {
  wsuv_post *next;  /* next node in the queue */
  wsuv_post_fn fn;  /* what to run */
};

/* ----------------------------------------------------------------- timers */

typedef struct wsuv_timer wsuv_timer;
typedef void (*wsuv_timer_fn)(wsuv_timer *t);

struct wsuv_timer {
  uint64_t due;     /* loop time (ms) at which it fires */
  size_t slot;      /* 1 + index in the loop's heap; 0 when not armed */
  wsuv_timer_fn fn; /* what to run */
};

/* ----------------------------------------------------------------- loop */

/* Creates the state for one loop. idle, timer and check are handles
 * already initialised on that loop (by luv); the transport starts and stops
 * them and keeps itself in their luv extra field. Returns NULL if out of
 * memory. */
wsuv_loop *wsuv_loop_new(uv_loop_t *loop, uv_idle_t *idle, uv_timer_t *timer,
                         uv_check_t *check);

/* The loop state is reference counted: the creator holds one reference and
 * every stream another, because libuv may still call back into a stream
 * while luv closes the loop's handles at exit. */
void wsuv_loop_release(wsuv_loop *l);

/* Stops using the idle and timer handles (the loop is being torn down) and
 * drops the creator's reference. Queued posts run once more, at once: their
 * owners must only free memory (the caller tells them the loop is going). */
void wsuv_loop_shutdown(wsuv_loop *l);

uv_loop_t *wsuv_loop_uv(const wsuv_loop *l);

/* Runs p->fn(p) on a later loop tick (never inside this call). */
void wsuv_post_add(wsuv_loop *l, wsuv_post *p, wsuv_post_fn fn);

/* Arms t to fire after ms milliseconds (re-arms if armed). */
void wsuv_timer_start(wsuv_loop *l, wsuv_timer *t, uint64_t ms,
                      wsuv_timer_fn fn);
void wsuv_timer_stop(wsuv_loop *l, wsuv_timer *t);

/* The loop's time in ms (uv_now). */
uint64_t wsuv_now(const wsuv_loop *l);

/* ---------------------------------------------------------------- stream */

typedef struct wsuv_callbacks {
  /* Plaintext bytes arrived (writable: the core unmasks in place; valid
   * only during the call). */
  void (*on_data)(wsuv_stream *s, uint8_t *data, size_t len);
  /* The peer ended the stream (UV_EOF) or reading failed (a libuv error, or
   * a tls_* error as a WS_E_* code). Reading has stopped. */
  void (*on_end)(wsuv_stream *s, int err);
  /* Everything queued was handed to the kernel (err 0), or writing failed
   * (err < 0; the stream should be torn down). */
  void (*on_drain)(wsuv_stream *s, int err);
  /* The TLS handshake finished (err 0) or failed (a WS_E_tls_* code or a
   * libuv error). Only for streams with TLS. */
  void (*on_tls_done)(wsuv_stream *s, int err);
} wsuv_callbacks;

struct wsuv_stream {
  wsuv_loop *loop;              /* the loop state (one reference held) */
  uv_stream_t *h;               /* the luv-owned handle */
  const wsuv_callbacks *cb;     /* where events go */
  ws_conn *conn;                /* core output source once attached */
  wsuv_tls *tls;                /* TLS filter, or NULL */
  struct wsuv_raw *raw;         /* raw chunks queued ahead of conn output */
  struct wsuv_raw *raw_tail;    /* last raw chunk */
  size_t inflight;              /* bytes of the uv_write in flight */
  unsigned reading : 1;         /* uv_read_start is on */
  unsigned want_read : 1;       /* the caller wants bytes */
  unsigned writing : 1;         /* a uv_write is in flight */
  unsigned shutdown_want : 1;   /* half-close once drained */
  unsigned shutdown_sent : 1;   /* uv_shutdown was called */
  unsigned ended : 1;           /* on_end was reported */
  unsigned dead : 1;            /* the handle is closing: do nothing */
  unsigned in_flush : 1;        /* inside wsuv_flush (no re-entry) */
  unsigned flush_again : 1;     /* a flush was asked for during one */
  unsigned drained_report : 1;  /* report on_drain when the queue empties */
  unsigned dirty : 1;           /* on the loop's list of streams to flush */
  wsuv_stream *dirty_next;      /* next stream on that list */
};

/* Sets s up over handle h (a connected TCP or pipe handle owned by luv).
 * Returns 0. */
int wsuv_stream_init(wsuv_stream *s, wsuv_loop *l, uv_stream_t *h,
                     const wsuv_callbacks *cb);

/* Releases what the transport holds (call once the handle is closed or
 * when s is freed); stops reading; drops the loop reference. */
void wsuv_stream_dispose(wsuv_stream *s);

/* Marks the handle as closing: no more libuv calls on it. Pending write
 * callbacks still arrive (with UV_ECANCELED) and are absorbed. */
void wsuv_stream_dead(wsuv_stream *s);

/* Starts or stops delivering bytes (uv_read_start / uv_read_stop). */
int wsuv_read(wsuv_stream *s, int on);

/* Queues n raw bytes (copied) ahead of the core's output. Returns 0 or
 * UV_ENOMEM. */
int wsuv_write_raw(wsuv_stream *s, const void *p, size_t n);

/* Writes n bytes now if nothing else is queued or in flight (one
 * uv_try_write), and queues what the kernel did not take as raw bytes
 * (copied), ahead of the core's later output. Returns 0, or a libuv
 * error (the stream should fail), or 1 if the stream is busy (nothing was
 * written: the caller queues the bytes its usual way). Plain streams only
 * (returns 1 over TLS). */
int wsuv_write_now(wsuv_stream *s, const void *p, size_t n);

/* From now on output also comes from c's queue. */
void wsuv_attach(wsuv_stream *s, ws_conn *c);

/* Writes what is queued: uv_try_write, then one uv_write for the rest.
 * Reports on_drain(0) when everything queued so far has been written, if
 * wsuv_want_drain was called. Errors are reported with on_drain(err). */
void wsuv_flush(wsuv_stream *s);

/* Flushes s later in this loop iteration (after the I/O callbacks, in the
 * check phase), so that many writes made while handling one read go out in
 * one system call. */
void wsuv_flush_later(wsuv_stream *s);

/* Asks for one on_drain report when the queue is (or becomes) empty. */
void wsuv_want_drain(wsuv_stream *s);

/* Bytes queued and not yet handed to the kernel. */
size_t wsuv_pending(const wsuv_stream *s);

/* Half-closes the stream (uv_shutdown, or TLS close_notify then
 * uv_shutdown) once everything queued is written. */
void wsuv_shutdown(wsuv_stream *s);

#endif
