/*
 * libFuzzer target: permessage-deflate in the connection engine.
 *
 * Two modes, chosen by bit 7 of byte 2:
 *
 *   roundtrip: a client and a server with the params of bytes 0-1 send
 *   each other messages cut from the input (whole or in write_some parts,
 *   compressed or not, text when the bytes are UTF-8), shared compressed
 *   frames (ws_pmd_compress_message) and pings, with their output fed to
 *   each other in pieces of varying size. Every message must arrive
 *   exactly as it was sent: this checks our compressor against our
 *   decompressor for every window, takeover, level and mem_level.
 *
 *   inflate: the rest of the input is cut into frames (RSV1 on the first
 *   frame of each message, control frames between fragments, some
 *   messages uncompressed) that a server sends to two client engines,
 *   one fed everything at once, one fed in pieces. Both must end with the
 *   same result and, on success, the same messages (with a 15-bit window,
 *   where zlib's checks do not depend on how input is split); on failure
 *   only bad_compressed_data, bad_frame_payload, message_too_big or a
 *   framing error may come. Every message respects read_message_max and
 *   the 16 KiB piece size, and text is valid UTF-8.
 *
 * Input layout:
 *   byte 0   server_max_window_bits - 8 (bits 0-2), client_max_window_bits
 *            - 8 (bits 3-5), server_no_context_takeover (bit 6),
 *            client_no_context_takeover (bit 7)
 *   byte 1   comp_level (low nibble % 10), mem_level (1 + high nibble % 9)
 *   byte 2   read_message_max (bits 0-1), write_buffer_bytes (bits 2-3),
 *            auto_fragment (bit 4), mode (bit 7)
 *   byte 3   seed of the piece sizes
 *   rest     messages (roundtrip) or frames (inflate)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_conn.h"

#define FZ_CHECK(cond)                                                         \
  do {                                                                         \
    if (!(cond)) abort();                                                      \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ----------------------------------------------------------- collector */

typedef struct {
  ws_conn *c;
  uint64_t max;
  uint8_t *buf; /* the messages, one after the other */
  size_t len, cap;
  size_t *ends; /* the offset where each message ends */
  size_t nmsg, ends_cap;
  int in_msg, text;
  size_t msg_len;
  ws_utf8 utf8;
} fz_col;

static int fz_on_data(void *user, const uint8_t *d, size_t n, unsigned f) {
  fz_col *k = user;
  FZ_CHECK(n <= 16384);
  if (f & WS_DATA_FIRST) {
    FZ_CHECK(!k->in_msg);
    k->in_msg = 1;
    k->text = (f & WS_DATA_TEXT) != 0;
    k->msg_len = 0;
    ws_utf8_reset(&k->utf8);
  } else {
    FZ_CHECK(k->in_msg);
  }
  FZ_CHECK(n > 0 || (f & WS_DATA_FIN));
  k->msg_len += n;
  FZ_CHECK(k->max == 0 || k->msg_len <= k->max);
  if (k->text) {
    FZ_CHECK(ws_utf8_feed(&k->utf8, d, n) == 0);
    if (f & WS_DATA_FIN) FZ_CHECK(ws_utf8_complete(&k->utf8));
  }
  FZ_CHECK(ws_conn_is_message_done(k->c) == ((f & WS_DATA_FIN) != 0));
  if (k->len + n > k->cap) {
    k->cap = (k->len + n) * 2 + 64;
    k->buf = realloc(k->buf, k->cap);
    FZ_CHECK(k->buf != NULL);
  }
  if (n) memcpy(k->buf + k->len, d, n);
  k->len += n;
  if (f & WS_DATA_FIN) {
    k->in_msg = 0;
    if (k->nmsg == k->ends_cap) {
      k->ends_cap = k->ends_cap * 2 + 8;
      k->ends = realloc(k->ends, k->ends_cap * sizeof *k->ends);
      FZ_CHECK(k->ends != NULL);
    }
    k->ends[k->nmsg++] = k->len;
  }
  return 0;
}

static int fz_rng_fill(void *ud, uint8_t *out, size_t n) {
  uint32_t *s = ud;
  size_t i;
  for (i = 0; i < n; i++) {
    *s = *s * 1664525u + 1013904223u;
    out[i] = (uint8_t)(*s >> 24);
  }
  return 0;
}

static uint32_t fz_next(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static const ws_conn_callbacks fz_cb = {fz_on_data, NULL, NULL};

static ws_conn *fz_engine(int role, const uint8_t *d, fz_col *k,
                          uint32_t *rng) {
  static const uint64_t maxes[4] = {0, 100, 20000, 1u << 20};
  static const size_t wbbs[4] = {8, 125, 4096, 65536};
  ws_conn_config cfg;
  ws_pmd_params pm;
  ws_pmd_config pc;
  ws_conn *c;

  ws_conn_config_default(&cfg, role);
  cfg.read_message_max = maxes[d[2] & 3];
  cfg.write_buffer_bytes = wbbs[(d[2] >> 2) & 3];
  cfg.auto_fragment = (d[2] >> 4) & 1;
  cfg.rng.ud = rng;
  cfg.rng.fill = fz_rng_fill;
  c = ws_conn_new(&cfg, &fz_cb, k);
  FZ_CHECK(c != NULL);
  memset(k, 0, sizeof *k);
  k->c = c;
  k->max = cfg.read_message_max;
  memset(&pm, 0, sizeof pm);
  pm.active = 1;
  pm.server_max_window_bits = 8 + (d[0] & 7);
  pm.client_max_window_bits = 8 + ((d[0] >> 3) & 7);
  pm.server_no_context_takeover = (d[0] >> 6) & 1;
  pm.client_no_context_takeover = (d[0] >> 7) & 1;
  ws_pmd_config_default(&pc);
  pc.comp_level = (d[1] & 15) % 10;
  pc.mem_level = 1 + (d[1] >> 4) % 9;
  FZ_CHECK(ws_conn_set_pmd(c, &pm, &pc) == 0);
  return c;
}

static void fz_col_free(fz_col *k) {
  ws_conn_free(k->c);
  free(k->buf);
  free(k->ends);
}

/* Moves everything a queued to b, in pieces; returns b's first error. */
static int fz_pump(ws_conn *a, ws_conn *b, uint32_t *s) {
  ws_iov iov[64];
  uint8_t buf[8192];
  int rv = 0;

  while (ws_conn_out_pending(a) > 0) {
    size_t n = ws_conn_out_iov(a, iov, 64), i;
    for (i = 0; i < n; i++) {
      size_t off = 0;
      while (off < iov[i].len) {
        uint32_t r = fz_next(s);
        size_t piece = (r & 3) == 0 ? 1 : (r & 3) == 1 ? r % 17 + 1 : 8192;
        if (piece > iov[i].len - off) piece = iov[i].len - off;
        if (piece > sizeof buf) piece = sizeof buf;
        memcpy(buf, iov[i].base + off, piece);
        if (!rv) rv = ws_conn_recv(b, buf, piece);
        off += piece;
      }
      ws_conn_out_consume(a, iov[i].len);
    }
  }
  return rv;
}

/* ------------------------------------------------------------ roundtrip */

static void fz_roundtrip(const uint8_t *d, size_t size) {
  fz_col kc, ks;
  uint32_t rc = 1, rs = 2, s = (uint32_t)d[3] * 2654435761u + 1;
  ws_conn *cl = fz_engine(WS_ROLE_CLIENT, d, &kc, &rc);
  ws_conn *sv = fz_engine(WS_ROLE_SERVER, d, &ks, &rs);
  ws_pmd_params pm;
  size_t pos = 4;
  uint8_t *shared[64];
  int nshared = 0, i;

  ws_conn_get_pmd(sv, &pm);
  while (pos + 3 <= size) {
    uint8_t op = d[pos], b1 = d[pos + 1], b2 = d[pos + 2];
    size_t n = ((size_t)b1 << 8 | b2) % 5000;
    const uint8_t *msg;
    ws_conn *from = (op & 1) ? sv : cl, *to = (op & 1) ? cl : sv;
    fz_col *k = (op & 1) ? &kc : &ks;
    size_t before = k->nmsg, start = k->len;
    int text, rv;
    pos += 3;
    if (n > size - pos) n = size - pos;
    msg = d + pos;
    pos += n;
    text = (op & 2) && ws_utf8_valid(msg, n);
    if ((op >> 2) % 4 == 3) {
      /* a shared compressed frame, server to client */
      uint8_t hdr[WS_MAX_FRAME_HEADER], *zd, *frame;
      size_t zl, hl;
      int level = (d[1] & 15) % 10, mem = 1 + (d[1] >> 4) % 9;
      if (nshared == 64) break;
      FZ_CHECK(ws_pmd_compress_message(NULL, pm.server_max_window_bits, level,
                                       mem, msg, n, &zd, &zl) == 0);
      hl =
          ws_frame_server_message(hdr, text ? WS_OP_TEXT : WS_OP_BINARY, 1, zl);
      frame = malloc(hl + zl);
      FZ_CHECK(frame != NULL);
      memcpy(frame, hdr, hl);
      memcpy(frame + hl, zd, zl);
      free(zd);
      shared[nshared++] = frame;
      FZ_CHECK(ws_conn_send_prebuilt(sv, frame, hl, frame + hl, zl, NULL) == 0);
      from = sv;
      to = cl;
      k = &kc;
      before = k->nmsg;
      start = k->len;
    } else {
      /* whole or in parts, compressed or not; a ping between parts */
      unsigned comp = (op & 4) ? WS_SEND_COMPRESS : 0;
      size_t parts = 1 + (op >> 5), off = 0, j;
      for (j = 0; j < parts; j++) {
        size_t take = j + 1 == parts ? n - off : (n - off) / 2;
        rv =
            ws_conn_send(from, text ? WS_OP_TEXT : WS_OP_BINARY, msg + off,
                         take, (j + 1 == parts ? WS_SEND_FIN : 0) | comp, NULL);
        FZ_CHECK(rv == 0);
        off += take;
        if (op & 8) FZ_CHECK(ws_conn_ping(from, msg, n < 9 ? n : 9, NULL) == 0);
        if (op & 16) {
          rv = fz_pump(from, to, &s);
          if (rv == WS_E_message_too_big) goto done;
          FZ_CHECK(rv == 0);
        }
      }
    }
    rv = fz_pump(from, to, &s);
    if (rv == WS_E_message_too_big) {
      FZ_CHECK(k->max && n > k->max);
      goto done;
    }
    FZ_CHECK(rv == 0);
    /* the pongs go back */
    FZ_CHECK(fz_pump(to, from, &s) == 0);
    FZ_CHECK(k->nmsg == before + 1);
    FZ_CHECK(k->len - start == n);
    FZ_CHECK(n == 0 || memcmp(k->buf + start, msg, n) == 0);
  }
done:
  fz_col_free(&kc);
  fz_col_free(&ks);
  for (i = 0; i < nshared; i++)
    free(shared[i]);
}

/* -------------------------------------------------------------- inflate */

static void fz_inflate(const uint8_t *d, size_t size) {
  fz_col ka, kb;
  uint32_t ra = 1, rb = 1, s = (uint32_t)d[3] * 2654435761u + 7;
  uint8_t dd[4];
  ws_conn *a, *b;
  uint8_t *wire = NULL, *copy;
  size_t wn = 0, pos = 4, i;
  int in_msg = 0, ra_rv, rb_rv = 0, compare;

  memcpy(dd, d, 4);
  /* with a 15-bit window (bit 6 of byte 2) zlib's checks do not depend
   * on how the input is split */
  compare = (d[2] >> 6) & 1;
  if (compare) dd[0] |= 7;
  a = fz_engine(WS_ROLE_CLIENT, dd, &ka, &ra);
  b = fz_engine(WS_ROLE_CLIENT, dd, &kb, &rb);
  /* frames: a control byte, a length byte, then that many payload bytes */
  while (pos + 2 <= size) {
    uint8_t ctl = d[pos], first;
    size_t n = d[pos + 1], h;
    uint8_t hdr[WS_MAX_FRAME_HEADER];
    pos += 2;
    if (ctl & 0x80) n = n * 64 + (ctl & 0x3f); /* longer frames */
    if (n > size - pos) n = size - pos;
    if ((ctl & 0x60) == 0x60 && (ctl & 0x80) == 0) {
      /* a ping between fragments */
      if (n > 125) n = 125;
      first = 0x89;
    } else if (!in_msg) {
      /* a message starts: compressed unless bit 4 */
      first = (uint8_t)(((ctl & 0x10) ? 0x00 : 0x40) |
                        ((ctl & 0x08) ? 0x01 : 0x02));
    } else {
      first = 0x00;
    }
    if (first != 0x89) {
      int fin = (ctl & 0x01) || pos + n >= size;
      if (fin) first |= 0x80;
      in_msg = !fin;
    }
    h = ws_frame_header_build(hdr, 0, 0, 0, NULL, n);
    hdr[0] = first;
    wire = realloc(wire, wn + h + n);
    FZ_CHECK(wire != NULL);
    memcpy(wire + wn, hdr, h);
    memcpy(wire + wn + h, d + pos, n);
    wn += h + n;
    pos += n;
  }
  copy = malloc(wn + 1);
  FZ_CHECK(copy != NULL);
  if (wn) memcpy(copy, wire, wn);
  ra_rv = ws_conn_recv(a, copy, wn);
  for (i = 0; i < wn && rb_rv == 0;) {
    uint32_t r = fz_next(&s);
    size_t piece = (r & 3) == 0 ? 1 : (r & 3) == 1 ? r % 23 + 1 : r % 3000 + 1;
    if (piece > wn - i) piece = wn - i;
    memcpy(copy, wire + i, piece);
    rb_rv = ws_conn_recv(b, copy, piece);
    i += piece;
  }
  FZ_CHECK(ra_rv == 0 || ws_err_condition(ra_rv) == WS_COND_PROTOCOL ||
           ra_rv == WS_E_message_too_big);
  if (ra_rv) FZ_CHECK(ws_conn_state(a) & WS_ST_CLOSE_SENT);
  if (compare) {
    size_t m = ka.len < kb.len ? ka.len : kb.len;
    FZ_CHECK(ra_rv == rb_rv);
    FZ_CHECK(m == 0 || memcmp(ka.buf, kb.buf, m) == 0);
    if (ra_rv == 0) {
      FZ_CHECK(ka.len == kb.len && ka.nmsg == kb.nmsg);
      FZ_CHECK(ka.nmsg == 0 ||
               memcmp(ka.ends, kb.ends, ka.nmsg * sizeof *ka.ends) == 0);
    }
  }
  free(copy);
  free(wire);
  fz_col_free(&ka);
  fz_col_free(&kb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  if (data[2] & 0x80)
    fz_inflate(data, size);
  else
    fz_roundtrip(data, size);
  return 0;
}
