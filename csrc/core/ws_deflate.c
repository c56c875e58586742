/*
 * luvws core: zlib glue for permessage-deflate (RFC 7692). See
 * ws_deflate.h; the public part is ws_pmd_compress_message (ws_conn.h).
 */
#include "ws_deflate.h"

#include <limits.h>
#include <string.h>

#include "ws_conn.h"

/* The end of a sync flush, which RFC 7692 §7.2.1 strips and §7.2.2 puts
 * back. */
static const uint8_t ws__tail[4] = {0x00, 0x00, 0xff, 0xff};

/* ------------------------------------------------------------- allocator */

static voidpf ws__zalloc(voidpf opaque, uInt items, uInt size) {
  const ws_allocator *a = (const ws_allocator *)opaque;

  if (size != 0 && items > SIZE_MAX / size) return Z_NULL;
  return a->malloc((size_t)items * size, a->ud);
}

/* zlib gives no size back; the allocator's free does not need one. */
static void ws__zfree(voidpf opaque, voidpf p) {
  const ws_allocator *a = (const ws_allocator *)opaque;

  a->free(p, a->ud);
}

static void ws__zsetup(z_stream *z, ws_allocator *a) {
  memset(z, 0, sizeof *z);
  z->zalloc = ws__zalloc;
  z->zfree = ws__zfree;
  z->opaque = a;
}

/* --------------------------------------------------------------- deflate */

ws_zdef *ws_zdef_new(const ws_allocator *a, int bits, int level,
                     int mem_level) {
  ws_zdef *d = (ws_zdef *)a->malloc(sizeof *d, a->ud);
  int strategy = Z_DEFAULT_STRATEGY;

  if (!d) return NULL;
  d->a = *a;
  ws__zsetup(&d->z, &d->a);
  if (bits <= 8) {
    /* See ws_deflate.h: no matches, so no distance can pass 256. The
     * window size then only sets memory; 9 is the least zlib takes for
     * raw deflate. */
    bits = 9;
    strategy = Z_HUFFMAN_ONLY;
  }
  if (deflateInit2(&d->z, level, Z_DEFLATED, -bits, mem_level, strategy) !=
      Z_OK) {
    /* Only Z_MEM_ERROR here: the parameters were checked before. */
    a->free(d, a->ud);
    return NULL;
  }
  return d;
}

void ws_zdef_free(ws_zdef *d) {
  if (!d) return;
  deflateEnd(&d->z);
  d->a.free(d, d->a.ud);
}

void ws_zdef_reset(ws_zdef *d) {
  deflateReset(&d->z);
}

/* Makes room for at least want more bytes in b. */
static int ws__zbuf_reserve(const ws_allocator *a, ws_zbuf *b, size_t want) {
  size_t cap;
  uint8_t *p;

  if (b->cap - b->len >= want) return 0;
  if (want > SIZE_MAX - b->len) return WS_E_no_memory;
  cap = b->len + want;
  /* Grow by half again at least, so repeated reserves stay linear. */
  if (b->cap < SIZE_MAX / 3 && cap < b->cap + b->cap / 2)
    cap = b->cap + b->cap / 2;
  p = (uint8_t *)a->realloc(b->p, cap, a->ud);
  if (!p) return WS_E_no_memory;
  b->p = p;
  b->cap = cap;
  return 0;
}

int ws_zdef_run(ws_zdef *d, const uint8_t *data, size_t len, int strip,
                ws_zbuf *out) {
  z_stream *z = &d->z;
  size_t left = len, start = out->len;
  int rv;

  /* Deflate never grows data by much: literals cost at most 9 bits (and
   * zlib picks a stored block when that is shorter), plus block headers
   * and the flush marker. The loop below grows the buffer if ever this
   * is short. */
  if (len > (SIZE_MAX - 64) / 10 * 8) return WS_E_no_memory;
  if ((rv = ws__zbuf_reserve(&d->a, out, len + len / 8 + 64)) != 0) return rv;
  z->next_in = data;
  z->avail_in = 0;
  for (;;) {
    size_t room = out->cap - out->len;
    int flush, r;

    if (z->avail_in == 0 && left > 0) {
      uInt n = left > UINT_MAX ? UINT_MAX : (uInt)left;
      z->avail_in = n;
      left -= n;
    }
    flush = left > 0 ? Z_NO_FLUSH : Z_SYNC_FLUSH;
    if (room == 0) {
      if ((rv = ws__zbuf_reserve(&d->a, out, 4096)) != 0) goto fail;
      room = out->cap - out->len;
    }
    z->next_out = out->p + out->len;
    z->avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
    r = deflate(z, flush);
    out->len = (size_t)(z->next_out - out->p);
    /* Z_BUF_ERROR: nothing to do (a sync flush right after another with
     * no new input): not an error. */
    if (r != Z_OK && r != Z_BUF_ERROR) {
      rv = WS_E_no_memory;
      goto fail;
    }
    if (z->avail_out == 0) continue; /* more output may be waiting */
    if (z->avail_in == 0 && left == 0) break;
  }
  z->next_in = NULL;
  if (strip && out->len - start >= 4 &&
      memcmp(out->p + out->len - 4, ws__tail, 4) == 0)
    out->len -= 4;
  return 0;
fail:
  z->next_in = NULL;
  z->avail_in = 0;
  out->len = start;
  return rv;
}

/* --------------------------------------------------------------- inflate */

ws_zinf *ws_zinf_new(const ws_allocator *a, int bits) {
  ws_zinf *f = (ws_zinf *)a->malloc(sizeof *f, a->ud);

  if (!f) return NULL;
  memset(f, 0, sizeof *f);
  f->a = *a;
  ws__zsetup(&f->z, &f->a);
  /* Some zlib versions refuse or rewrite 8; any larger window decodes a
   * stream made with a smaller one. */
  if (bits < 9) bits = 9;
  if (inflateInit2(&f->z, -bits) != Z_OK) {
    a->free(f, a->ud);
    return NULL;
  }
  f->boundary = 1;
  return f;
}

void ws_zinf_free(ws_zinf *f) {
  if (!f) return;
  inflateEnd(&f->z);
  f->a.free(f, f->a.ud);
}

static void ws__zinf_set(ws_zinf *f, const uint8_t *p, size_t n) {
  uInt k = n > UINT_MAX ? UINT_MAX : (uInt)n;

  f->z.next_in = p;
  f->z.avail_in = k;
  f->rest = p + k;
  f->rest_len = n - k;
}

void ws_zinf_input(ws_zinf *f, const uint8_t *p, size_t n) {
  if (n == 0) return;
  f->ended = 0;
  f->tail = 0;
  ws__zinf_set(f, p, n);
}

void ws_zinf_tail(ws_zinf *f) {
  f->tail = 1;
  ws__zinf_set(f, ws__tail, sizeof ws__tail);
}

void ws_zinf_drop_input(ws_zinf *f) {
  f->z.next_in = NULL;
  f->z.avail_in = 0;
  f->rest = NULL;
  f->rest_len = 0;
}

/* A final block ended the deflate stream. The message may go on (RFC 7692
 * §7.2.3.4 puts an empty stored block after it, and a peer may start a new
 * stream), and the sliding window must stay what it was (§7.2.2: the next
 * message is decoded with the window of the last one), so the stream is
 * restarted with its window kept: inflateResetKeep (declared in zlib.h,
 * exported since zlib 1.2.5.2) resets everything else, in constant time,
 * so a peer sending many tiny final blocks costs no more than any other
 * input (copying the window out and back in would cost 64 KiB a block). */
static void ws__zinf_restart(ws_zinf *f) {
  inflateResetKeep(&f->z);
}

int ws_zinf_run(ws_zinf *f, uint8_t *out, size_t cap, size_t *produced) {
  z_stream *z = &f->z;
  int rv = 0;

  z->next_out = out;
  z->avail_out = cap > UINT_MAX ? UINT_MAX : (uInt)cap;
  while (z->avail_out > 0) {
    int r;

    if (z->avail_in == 0 && f->rest_len > 0)
      ws__zinf_set(f, f->rest, f->rest_len);
    /* Never call inflate without input unless output is owed: a call with
     * nothing to read would hide that the stream is on a boundary. */
    if (z->avail_in == 0 && !f->pending) break;
    /* Z_BLOCK stops at every block boundary, so data_type tells whether
     * the stream stands on one. */
    r = inflate(z, Z_BLOCK);
    f->pending = 0;
    if (r == Z_STREAM_END) {
      /* what is left of the last byte is padding */
      f->boundary = 1;
      f->bits = 0;
      if (f->tail) {
        /* The payload ended inside a final block that the tail's zero
         * bits completed: the stream is done, the rest of the tail is
         * not needed. */
        ws_zinf_drop_input(f);
        f->ended = 1;
      } else {
        f->ended = z->avail_in == 0 && f->rest_len == 0;
      }
      ws__zinf_restart(f);
      continue;
    }
    if (r == Z_BUF_ERROR) break; /* no progress possible */
    if (r != Z_OK) {
      rv = r == Z_MEM_ERROR ? WS_E_no_memory : WS_E_bad_compressed_data;
      break;
    }
    f->boundary = (z->data_type & 128) != 0;
    f->bits = (uint8_t)(z->data_type & 63);
    if (z->avail_out == 0 && !f->boundary) f->pending = 1;
  }
  *produced = (size_t)(z->next_out - out);
  z->next_out = NULL;
  z->avail_out = 0;
  if (rv) ws_zinf_drop_input(f);
  return rv;
}

int ws_zinf_complete(const ws_zinf *f) {
  return f->ended || (f->boundary && !f->pending && f->bits == 0);
}

int ws_zinf_message_end(ws_zinf *f) {
  int ok = f->ended || (f->boundary && !f->pending);

  ws_zinf_drop_input(f);
  f->ended = 0;
  f->tail = 0;
  f->pending = 0;
  return ok;
}

/* ------------------------------------------------------- shared frames */

int ws_pmd_compress_message(const ws_allocator *a, int window_bits, int level,
                            int mem_level, const uint8_t *data, size_t len,
                            uint8_t **out, size_t *out_len) {
  ws_zdef *d;
  ws_zbuf b = {NULL, 0, 0};
  int rv;

  *out = NULL;
  *out_len = 0;
  if (!a) a = ws_default_allocator();
  if (window_bits < 8 || window_bits > 15 || level < 0 || level > 9 ||
      mem_level < 1 || mem_level > 9)
    return WS_E_bad_extension;
  if (!(d = ws_zdef_new(a, window_bits, level, mem_level)))
    return WS_E_no_memory;
  rv = ws_zdef_run(d, data, len, 1, &b);
  ws_zdef_free(d);
  /* A fresh stream's sync flush always writes a stored block, so the
   * output is never empty (an empty message is 00); ws_zdef_run leaves
   * room for the byte all the same. */
  if (rv == 0 && b.len == 0) b.p[b.len++] = 0x00;
  if (rv) {
    a->free(b.p, a->ud);
    return rv;
  }
  if (b.cap > b.len) {
    /* Give the slack back: the frame may be kept for a long time. */
    uint8_t *p = (uint8_t *)a->realloc(b.p, b.len, a->ud);
    if (p) b.p = p;
  }
  *out = b.p;
  *out_len = b.len;
  return 0;
}
