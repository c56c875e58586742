/*
 * What the engine tests (test_conn.c, test_deflate.c) share: a counting
 * allocator that can fail a chosen allocation, a seeded rng that can fail,
 * and the two wire helpers (copy out the queued bytes; feed bytes in
 * chunks). Test code only; include after tap.h and ws_conn.h.
 */
#ifndef LUVWS_CONN_HARNESS_H
#define LUVWS_CONN_HARNESS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_conn.h"

/* ------------------------------------------------------------ allocator */

/* Counts allocations, frees and live bytes; fails the fail_at-th
 * allocation attempt (1-based; 0 = never). Zero it before use. */
typedef struct {
  long count;   /* allocation attempts (malloc and realloc) */
  long fail_at; /* the attempt that fails */
  long allocs;  /* blocks allocated */
  long frees;   /* blocks freed */
  size_t live;  /* bytes allocated and not freed */
  size_t peak;  /* the most live bytes at any time */
} counting;

/* Each block carries its size in a header this big (keeps malloc's
 * alignment). */
#define CNT_HDR 16

static inline void cnt_add(counting *a, size_t n) {
  a->live += n;
  if (a->live > a->peak) a->peak = a->live;
}

static inline void *cnt_malloc(size_t n, void *ud) {
  counting *a = ud;
  uint8_t *p;
  if (++a->count == a->fail_at) return NULL;
  p = malloc(n + CNT_HDR);
  if (!p) return NULL;
  memcpy(p, &n, sizeof n);
  a->allocs++;
  cnt_add(a, n);
  return p + CNT_HDR;
}

static inline void *cnt_realloc(void *p, size_t n, void *ud) {
  counting *a = ud;
  uint8_t *b, *q;
  size_t old;
  if (!p) return cnt_malloc(n, ud);
  if (++a->count == a->fail_at) return NULL;
  b = (uint8_t *)p - CNT_HDR;
  memcpy(&old, b, sizeof old);
  q = realloc(b, n + CNT_HDR);
  if (!q) return NULL;
  memcpy(q, &n, sizeof n);
  a->live -= old;
  cnt_add(a, n);
  return q + CNT_HDR;
}

static inline void cnt_free(void *p, void *ud) {
  counting *a = ud;
  uint8_t *b;
  size_t n;
  if (!p) return;
  b = (uint8_t *)p - CNT_HDR;
  memcpy(&n, b, sizeof n);
  a->live -= n;
  a->frees++;
  free(b);
}

/* Zeroes a and returns an allocator counting into it. */
static inline ws_allocator cnt_alloc(counting *a) {
  ws_allocator al;
  memset(a, 0, sizeof *a);
  al.ud = a;
  al.malloc = cnt_malloc;
  al.realloc = cnt_realloc;
  al.free = cnt_free;
  return al;
}

/* ------------------------------------------------------------------ rng */

/* A seeded LCG; counts its calls and fails every call while fail is set. */
typedef struct {
  uint32_t s; /* state */
  long calls; /* fill calls */
  int fail;   /* fail every call */
} test_rng;

static inline int rng_fill(void *ud, uint8_t *out, size_t n) {
  test_rng *r = ud;
  size_t i;
  r->calls++;
  if (r->fail) return -1;
  for (i = 0; i < n; i++) {
    r->s = r->s * 1103515245u + 12345u;
    out[i] = (uint8_t)(r->s >> 16);
  }
  return 0;
}

/* --------------------------------------------------------- wire helpers */

/* Copies every pending byte of c (without consuming it) into a new buffer. */
static inline uint8_t *out_flatten(ws_conn *c, size_t *len) {
  static ws_iov iov[70000];
  size_t n = ws_conn_out_iov(c, iov, 70000), i, pos = 0;
  uint8_t *b = malloc(ws_conn_out_pending(c) + 1);
  for (i = 0; i < n; i++) {
    memcpy(b + pos, iov[i].base, iov[i].len);
    pos += iov[i].len;
  }
  *len = pos;
  return b;
}

/* Feeds n bytes to c, chunk at a time (0 = all at once); returns the first
 * nonzero result or 0. The input is copied since recv unmasks in place. */
static inline int feed(ws_conn *c, const uint8_t *b, size_t n, size_t chunk) {
  uint8_t *copy = malloc(n + 1);
  size_t i = 0;
  int rv = 0;
  if (n) memcpy(copy, b, n);
  if (chunk == 0) chunk = n ? n : 1;
  if (n == 0) rv = ws_conn_recv(c, copy, 0);
  while (i < n) {
    size_t k = n - i < chunk ? n - i : chunk;
    rv = ws_conn_recv(c, copy + i, k);
    if (rv) break;
    i += k;
  }
  free(copy);
  return rv;
}

#endif
