#include "wsuv.h"

#include <lhandle.h>
#include <stdlib.h>
#include <string.h>

#include "wsuv_tls.h"

/* Size of the shared read buffer (and of a fallback one): large enough that
 * several pipelined messages of 64 KiB arrive whole in one read (and go to
 * Lua in one copy); one per loop, whatever the number of connections. */
#define WSUV_RBUF (256 * 1024)
/* iovecs gathered per write. */
#define WSUV_IOV 64

struct wsuv_loop {
  uv_loop_t *uv;        /* the libuv loop */
  uv_idle_t *idle;      /* drains the post queue; NULL after shutdown */
  uv_timer_t *timer;    /* fires the earliest deadline; NULL after shutdown */
  uv_check_t *check;    /* flushes dirty streams; NULL after shutdown */
  wsuv_stream *dirty;   /* streams to flush in the check phase */
  int check_on;         /* the check handle is started */
  unsigned refs;        /* creator + streams */
  wsuv_post *head;      /* post queue, oldest first */
  wsuv_post *tail;      /* last node of the post queue */
  int idle_on;          /* the idle handle is started */
  wsuv_timer **heap;    /* min-heap of armed timers by due */
  size_t heap_len;      /* timers in the heap */
  size_t heap_cap;      /* capacity of heap */
  uint64_t armed_due;   /* due the uv timer is set for; UINT64_MAX if none */
  uint8_t *rbuf;        /* the shared read buffer (lazily allocated) */
  int rbuf_busy;        /* rbuf is lent to a read in progress */
  uv_write_t *free_w;   /* spare write requests (linked through data) */
  unsigned nfree_w;     /* how many */
};

/* Write requests live only while a write is in flight (an idle connection
 * holds none); a few spares are kept per loop. */
#define WSUV_SPARE_WRITES 64

/* ------------------------------------------------------------------ loop */

static wsuv_loop *loop_of(uv_handle_t *h) {
  luv_handle_t *d = (luv_handle_t *)h->data;
  return d ? (wsuv_loop *)d->extra : NULL;
}

static void idle_cb(uv_idle_t *h) {
  wsuv_loop *l = loop_of((uv_handle_t *)h);
  wsuv_post *p;
  if (!l) return;
  p = l->head;
  l->head = l->tail = NULL;
  l->refs++;
  while (p) {
    wsuv_post *next = p->next;
    p->next = NULL;
    p->fn(p);
    p = next;
  }
  /* Stay on while streams wait for their flush: an active idle handle
   * keeps the poll from blocking before the check phase runs. */
  if (!l->head && !l->dirty && l->idle_on && l->idle) {
    uv_idle_stop(l->idle);
    l->idle_on = 0;
  }
  wsuv_loop_release(l);
}

static void check_cb(uv_check_t *h) {
  wsuv_loop *l = loop_of((uv_handle_t *)h);
  wsuv_stream *s;
  if (!l) return;
  l->refs++;
  while ((s = l->dirty) != NULL) {
    l->dirty = s->dirty_next;
    s->dirty_next = NULL;
    s->dirty = 0;
    wsuv_flush(s);
  }
  if (l->check_on && l->check) {
    uv_check_stop(l->check);
    l->check_on = 0;
  }
  wsuv_loop_release(l);
}

static void heap_swap(wsuv_loop *l, size_t a, size_t b) {
  wsuv_timer *t = l->heap[a];
  l->heap[a] = l->heap[b];
  l->heap[b] = t;
  l->heap[a]->slot = a + 1;
  l->heap[b]->slot = b + 1;
}

static void heap_up(wsuv_loop *l, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (l->heap[parent]->due <= l->heap[i]->due) break;
    heap_swap(l, parent, i);
    i = parent;
  }
}

static void heap_down(wsuv_loop *l, size_t i) {
  for (;;) {
    size_t left = 2 * i + 1, right = left + 1, least = i;
    if (left < l->heap_len && l->heap[left]->due < l->heap[least]->due)
      least = left;
    if (right < l->heap_len && l->heap[right]->due < l->heap[least]->due)
      least = right;
    if (least == i) break;
    heap_swap(l, i, least);
    i = least;
  }
}

static void heap_remove(wsuv_loop *l, wsuv_timer *t) {
  size_t i = t->slot - 1;
  l->heap_len--;
  if (i != l->heap_len) {
    l->heap[i] = l->heap[l->heap_len];
    l->heap[i]->slot = i + 1;
    heap_down(l, i);
    heap_up(l, i);
  }
  t->slot = 0;
}

static void timer_cb(uv_timer_t *h);

static void timer_rearm(wsuv_loop *l) {
  uint64_t due, now;
  if (!l->timer) return;
  if (l->heap_len == 0) {
    if (l->armed_due != UINT64_MAX) uv_timer_stop(l->timer);
    l->armed_due = UINT64_MAX;
    return;
  }
  due = l->heap[0]->due;
  if (due == l->armed_due) return;
  now = uv_now(l->uv);
  uv_timer_start(l->timer, timer_cb, due > now ? due - now : 0, 0);
  l->armed_due = due;
}

static void timer_cb(uv_timer_t *h) {
  wsuv_loop *l = loop_of((uv_handle_t *)h);
  uint64_t now;
  if (!l) return;
  l->armed_due = UINT64_MAX;
  now = uv_now(l->uv);
  l->refs++;
  while (l->heap_len > 0 && l->heap[0]->due <= now) {
    wsuv_timer *t = l->heap[0];
    heap_remove(l, t);
    t->fn(t);
  }
  timer_rearm(l);
  wsuv_loop_release(l);
}

wsuv_loop *wsuv_loop_new(uv_loop_t *loop, uv_idle_t *idle, uv_timer_t *timer,
                         uv_check_t *check) {
  wsuv_loop *l = calloc(1, sizeof(*l));
  if (!l) return NULL;
  l->uv = loop;
  l->idle = idle;
  l->timer = timer;
  l->check = check;
  l->refs = 1;
  l->armed_due = UINT64_MAX;
  ((luv_handle_t *)idle->data)->extra = l;
  ((luv_handle_t *)timer->data)->extra = l;
  ((luv_handle_t *)check->data)->extra = l;
  return l;
}

void wsuv_loop_release(wsuv_loop *l) {
  if (--l->refs > 0) return;
  while (l->free_w) {
    uv_write_t *w = l->free_w;
    l->free_w = (uv_write_t *)w->data;
    free(w);
  }
  free(l->heap);
  free(l->rbuf);
  free(l);
}

void wsuv_loop_shutdown(wsuv_loop *l) {
  if (l->idle) {
    if (l->idle_on) uv_idle_stop(l->idle);
    ((luv_handle_t *)l->idle->data)->extra = NULL;
    l->idle = NULL;
  }
  if (l->timer) {
    uv_timer_stop(l->timer);
    ((luv_handle_t *)l->timer->data)->extra = NULL;
    l->timer = NULL;
  }
  if (l->check) {
    if (l->check_on) uv_check_stop(l->check);
    ((luv_handle_t *)l->check->data)->extra = NULL;
    l->check = NULL;
  }
  while (l->dirty) {
    wsuv_stream *d = l->dirty;
    l->dirty = d->dirty_next;
    d->dirty_next = NULL;
    d->dirty = 0;
  }
  /* Run what is queued once more: the owners see that the loop is going
   * away and only free their memory. */
  while (l->head) {
    wsuv_post *p = l->head;
    l->head = p->next;
    if (!l->head) l->tail = NULL;
    p->next = NULL;
    p->fn(p);
  }
  while (l->heap_len > 0) heap_remove(l, l->heap[0]);
  wsuv_loop_release(l);
}

uv_loop_t *wsuv_loop_uv(const wsuv_loop *l) {
  return l->uv;
}

uint64_t wsuv_now(const wsuv_loop *l) {
  return uv_now(l->uv);
}

void wsuv_post_add(wsuv_loop *l, wsuv_post *p, wsuv_post_fn fn) {
  p->fn = fn;
  p->next = NULL;
  if (l->tail)
    l->tail->next = p;
  else
    l->head = p;
  l->tail = p;
  if (!l->idle_on && l->idle) {
    uv_idle_start(l->idle, idle_cb);
    l->idle_on = 1;
  }
}

void wsuv_timer_start(wsuv_loop *l, wsuv_timer *t, uint64_t ms,
                      wsuv_timer_fn fn) {
  if (!l->timer) return;
  if (t->slot) heap_remove(l, t);
  if (l->heap_len == l->heap_cap) {
    size_t cap = l->heap_cap ? 2 * l->heap_cap : 64;
    wsuv_timer **heap = realloc(l->heap, cap * sizeof(*heap));
    if (!heap) return; /* the deadline is lost; nothing better to do */
    l->heap = heap;
    l->heap_cap = cap;
  }
  t->due = uv_now(l->uv) + ms;
  t->fn = fn;
  l->heap[l->heap_len] = t;
  t->slot = ++l->heap_len;
  heap_up(l, l->heap_len - 1);
  timer_rearm(l);
}

void wsuv_timer_stop(wsuv_loop *l, wsuv_timer *t) {
  if (!t->slot) return;
  heap_remove(l, t);
  timer_rearm(l);
}

/* ---------------------------------------------------------------- stream */

/* A chunk of raw bytes (an HTTP head), written before the core's output. */
struct wsuv_raw {
  struct wsuv_raw *next; /* next chunk */
  size_t len;            /* bytes in data */
  size_t off;            /* bytes already written */
  uint8_t data[];        /* the bytes */
};

static wsuv_stream *stream_of(uv_handle_t *h) {
  luv_handle_t *d = (luv_handle_t *)h->data;
  return d ? (wsuv_stream *)d->extra : NULL;
}

int wsuv_stream_init(wsuv_stream *s, wsuv_loop *l, uv_stream_t *h,
                     const wsuv_callbacks *cb) {
  memset(s, 0, sizeof(*s));
  s->loop = l;
  s->h = h;
  s->cb = cb;
  l->refs++;
  return 0;
}

void wsuv_stream_dispose(wsuv_stream *s) {
  if (!s->loop) return;
  if (s->dirty) {
    wsuv_stream **pp = &s->loop->dirty;
    while (*pp && *pp != s) pp = &(*pp)->dirty_next;
    if (*pp) *pp = s->dirty_next;
    s->dirty = 0;
  }
  if (s->reading && !s->dead) uv_read_stop(s->h);
  s->reading = 0;
  while (s->raw) {
    struct wsuv_raw *next = s->raw->next;
    free(s->raw);
    s->raw = next;
  }
  s->raw_tail = NULL;
  if (s->tls) wsuv_tls_free(s->tls);
  s->tls = NULL;
  wsuv_loop_release(s->loop);
  s->loop = NULL;
}

void wsuv_stream_dead(wsuv_stream *s) {
  s->dead = 1;
  s->reading = 0;
  s->want_read = 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  wsuv_stream *s = stream_of(h);
  wsuv_loop *l = s ? s->loop : NULL;
  (void)suggested;
  buf->base = NULL;
  buf->len = 0;
  if (!l) return;
  if (!l->rbuf_busy) {
    if (!l->rbuf) l->rbuf = malloc(WSUV_RBUF);
    if (l->rbuf) {
      l->rbuf_busy = 1;
      buf->base = (char *)l->rbuf;
      buf->len = WSUV_RBUF;
      return;
    }
  }
  buf->base = malloc(WSUV_RBUF);
  if (buf->base) buf->len = WSUV_RBUF;
}

static void buf_release(wsuv_loop *l, const uv_buf_t *buf) {
  if (!buf->base) return;
  if (l && buf->base == (char *)l->rbuf)
    l->rbuf_busy = 0;
  else
    free(buf->base);
}

static void stream_end(wsuv_stream *s, int err) {
  if (s->reading && !s->dead) uv_read_stop(s->h);
  s->reading = 0;
  if (s->ended) return;
  s->ended = 1;
  s->cb->on_end(s, err);
}

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  wsuv_stream *s = stream_of((uv_handle_t *)h);
  wsuv_loop *l;
  if (!s || !s->loop) {
    /* The state is gone; only a buffer can be left to give back. */
    free(buf->base);
    return;
  }
  l = s->loop;
  l->refs++;
  if (nread > 0) {
    if (s->tls) {
      int err = wsuv_tls_recv(s, (uint8_t *)buf->base, (size_t)nread);
      if (err < 0 && !s->dead) stream_end(s, err);
    } else {
      s->cb->on_data(s, (uint8_t *)buf->base, (size_t)nread);
    }
  } else if (nread < 0 && !s->dead) {
    if (nread == UV_EOF && s->tls) nread = wsuv_tls_eof(s);
    stream_end(s, (int)nread);
  }
  buf_release(l, buf);
  wsuv_loop_release(l);
}

int wsuv_read(wsuv_stream *s, int on) {
  int r = 0;
  s->want_read = on ? 1 : 0;
  if (s->dead || s->ended) return 0;
  if (on && !s->reading) {
    r = uv_read_start(s->h, alloc_cb, read_cb);
    if (r == 0) s->reading = 1;
  } else if (!on && s->reading) {
    uv_read_stop(s->h);
    s->reading = 0;
  }
  return r;
}

int wsuv_write_raw(wsuv_stream *s, const void *p, size_t n) {
  struct wsuv_raw *r;
  if (n == 0) return 0;
  r = malloc(sizeof(*r) + n);
  if (!r) return UV_ENOMEM;
  r->next = NULL;
  r->len = n;
  r->off = 0;
  memcpy(r->data, p, n);
  if (s->raw_tail)
    s->raw_tail->next = r;
  else
    s->raw = r;
  s->raw_tail = r;
  return 0;
}

int wsuv_write_now(wsuv_stream *s, const void *p, size_t n) {
  uv_buf_t b;
  int r;
  if (s->dead || !s->loop || s->tls || s->writing || s->raw || s->in_flush ||
      (s->conn && ws_conn_out_pending(s->conn) > 0))
    return 1;
  b.base = (char *)p;
  b.len = n;
  r = uv_try_write(s->h, &b, 1);
  if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
  if (r < 0) return r;
  if ((size_t)r < n) {
    if (wsuv_write_raw(s, (const char *)p + r, n - (size_t)r) != 0)
      return UV_ENOMEM;
    wsuv_flush_later(s);
  }
  return 0;
}

void wsuv_attach(wsuv_stream *s, ws_conn *c) {
  s->conn = c;
}

size_t wsuv_pending(const wsuv_stream *s) {
  size_t n = 0;
  const struct wsuv_raw *r;
  for (r = s->raw; r; r = r->next) n += r->len - r->off;
  if (s->conn) n += ws_conn_out_pending(s->conn);
  if (s->tls) n += wsuv_tls_pending(s->tls);
  return n;
}

/* Collects the plaintext to write next: raw bytes, then the core's. */
size_t wsuv__gather_plain(wsuv_stream *s, ws_iov *iov, size_t max);
size_t wsuv__gather_plain(wsuv_stream *s, ws_iov *iov, size_t max) {
  size_t n = 0;
  const struct wsuv_raw *r;
  for (r = s->raw; r && n < max; r = r->next) {
    iov[n].base = r->data + r->off;
    iov[n].len = r->len - r->off;
    n++;
  }
  if (s->conn && n < max) n += ws_conn_out_iov(s->conn, iov + n, max - n);
  return n;
}

/* Marks n bytes of plaintext written (raw first, then the core's). */
void wsuv__consume_plain(wsuv_stream *s, size_t n) {
  while (s->raw && n > 0) {
    struct wsuv_raw *r = s->raw;
    size_t left = r->len - r->off;
    size_t take = n < left ? n : left;
    r->off += take;
    n -= take;
    if (r->off < r->len) break;
    s->raw = r->next;
    if (!s->raw) s->raw_tail = NULL;
    free(r);
  }
  if (n && s->conn) ws_conn_out_consume(s->conn, n);
}

static void write_fail(wsuv_stream *s, int err) {
  s->drained_report = 0;
  s->cb->on_drain(s, err);
}

static void write_cb(uv_write_t *req, int status);

/* The bytes to hand to the kernel: plaintext, or TLS records. */
static size_t gather(wsuv_stream *s, uv_buf_t *bufs, size_t max,
                     size_t *total) {
  ws_iov iov[WSUV_IOV];
  size_t i, n;
  *total = 0;
  if (s->tls) {
    n = wsuv_tls_gather(s, iov, max < WSUV_IOV ? max : WSUV_IOV);
  } else {
    n = wsuv__gather_plain(s, iov, max < WSUV_IOV ? max : WSUV_IOV);
  }
  for (i = 0; i < n; i++) {
    bufs[i].base = (char *)iov[i].base;
    bufs[i].len = iov[i].len;
    *total += iov[i].len;
  }
  return n;
}

static void consume(wsuv_stream *s, size_t n) {
  if (s->tls)
    wsuv_tls_consume(s, n);
  else
    wsuv__consume_plain(s, n);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

static void maybe_finish(wsuv_stream *s) {
  if (s->writing || s->dead || wsuv_pending(s) > 0) return;
  if (s->shutdown_want && !s->shutdown_sent) {
    if (s->tls && wsuv_tls_close_notify(s) > 0) {
      /* close_notify is queued: write it first. */
      wsuv_flush(s);
      return;
    }
    s->shutdown_sent = 1;
    {
      uv_shutdown_t *req = malloc(sizeof(*req));
      if (req && uv_shutdown(req, s->h, shutdown_cb) != 0) free(req);
    }
  }
  if (s->drained_report) {
    s->drained_report = 0;
    s->cb->on_drain(s, 0);
  }
}

void wsuv_flush(wsuv_stream *s) {
  uv_buf_t bufs[WSUV_IOV];
  if (s->dead || !s->loop) return;
  if (s->in_flush) {
    s->flush_again = 1;
    return;
  }
  if (s->writing) return;
  s->in_flush = 1;
  do {
    s->flush_again = 0;
    for (;;) {
      size_t total, n = gather(s, bufs, WSUV_IOV, &total);
      size_t i, done;
      int r;
      if (n == 0 || s->dead) break;
      r = uv_try_write(s->h, bufs, (unsigned)n);
      if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
      if (r < 0) {
        s->in_flush = 0;
        write_fail(s, r);
        return;
      }
      done = (size_t)r;
      if (done == total) {
        consume(s, done);
        continue;
      }
      /* Hand the rest to one uv_write; the memory stays put until
       * write_cb consumes it. */
      for (i = 0; i < n && done >= bufs[i].len; i++) done -= bufs[i].len;
      bufs[i].base += done;
      bufs[i].len -= done;
      consume(s, (size_t)r);
      if (s->dead) break;
      s->inflight = total - (size_t)r;
      {
        wsuv_loop *l = s->loop;
        uv_write_t *w = l->free_w;
        if (w) {
          l->free_w = (uv_write_t *)w->data;
          l->nfree_w--;
        } else {
          w = malloc(sizeof(*w));
        }
        if (!w) {
          r = UV_ENOMEM;
        } else {
          w->data = s;
          r = uv_write(w, s->h, bufs + i, (unsigned)(n - i), write_cb);
          if (r < 0) free(w);
        }
      }
      if (r < 0) {
        s->inflight = 0;
        s->in_flush = 0;
        write_fail(s, r);
        return;
      }
      s->writing = 1;
      break;
    }
  } while (s->flush_again && !s->writing && !s->dead);
  s->in_flush = 0;
  maybe_finish(s);
}

static void write_cb(uv_write_t *req, int status) {
  wsuv_stream *s = (wsuv_stream *)req->data;
  size_t n = s->inflight;
  if (s->loop && s->loop->nfree_w < WSUV_SPARE_WRITES) {
    req->data = s->loop->free_w;
    s->loop->free_w = req;
    s->loop->nfree_w++;
  } else {
    free(req);
  }
  s->writing = 0;
  s->inflight = 0;
  if (s->dead || !s->loop) return;
  if (status < 0) {
    write_fail(s, status);
    return;
  }
  s->loop->refs++;
  consume(s, n);
  wsuv_flush(s);
  wsuv_loop_release(s->loop);
}

void wsuv_flush_later(wsuv_stream *s) {
  wsuv_loop *l = s->loop;
  if (s->dirty || s->dead || !l || !l->check) {
    if (l && !l->check) wsuv_flush(s);
    return;
  }
  s->dirty = 1;
  s->dirty_next = l->dirty;
  l->dirty = s;
  if (!l->check_on) {
    uv_check_start(l->check, check_cb);
    l->check_on = 1;
  }
  if (!l->idle_on && l->idle) {
    uv_idle_start(l->idle, idle_cb);
    l->idle_on = 1;
  }
}

void wsuv_want_drain(wsuv_stream *s) {
  s->drained_report = 1;
  if (!s->in_flush) maybe_finish(s);
}

void wsuv_shutdown(wsuv_stream *s) {
  s->shutdown_want = 1;
  if (!s->in_flush) maybe_finish(s);
}
