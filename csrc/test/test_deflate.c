/*
 * permessage-deflate in the connection engine: a client and a server wired
 * through memory with every combination of window bits (8..15 each way)
 * and context takeover, levels, mem levels and thresholds; RFC 7692's
 * examples; fragmented messages with control frames between fragments;
 * final (BFINAL) blocks; truncated and bad deflate data; a compression
 * bomb under a counting allocator; UTF-8 on inflated bytes; failing
 * allocators over every compression path; shared (prebuilt) compressed
 * frames; per-connection memory.
 *
 * Inputs are fed all at once and one byte at a time.
 */
#include <stdint.h>
#include <stdlib.h>

#ifndef ZLIB_CONST
#define ZLIB_CONST
#endif
#include <zlib.h>

#include "tap.h"
#include "ws_conn.h"
#include "conn_harness.h"

/* ----------------------------------------------------------------- data */

/* JSON-ish text: compresses well, as game and chat traffic does. */
static uint8_t *json_text(size_t n, uint32_t seed) {
  static const char *const names[] = {"alice", "bob",     "carol", "dave",
                                      "eve",   "mallory", "trent"};
  uint8_t *b = malloc(n + 1);
  size_t pos = 0;
  uint32_t s = seed * 2654435761u + 1;
  char item[160];
  while (pos < n) {
    int k;
    size_t m;
    s = s * 1664525u + 1013904223u;
    k = snprintf(item, sizeof item,
                 "{\"id\":%u,\"name\":\"%s\",\"x\":%u.%02u,\"y\":%u,"
                 "\"tags\":[\"a\",\"b\"],\"ok\":%s},",
                 (unsigned)(s >> 8) % 100000, names[(s >> 4) % 7],
                 (unsigned)(s >> 12) % 1000, (unsigned)(s >> 3) % 100,
                 (unsigned)(s >> 20) % 5000, (s & 1) ? "true" : "false");
    m = (size_t)k;
    if (m > n - pos) m = n - pos;
    memcpy(b + pos, item, m);
    pos += m;
  }
  return b;
}

/* Bytes that do not compress. */
static uint8_t *random_bytes(size_t n, uint32_t seed) {
  uint8_t *b = malloc(n + 1);
  uint32_t s = seed | 1;
  size_t i;
  for (i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    b[i] = (uint8_t)s;
  }
  return b;
}

/* UTF-8 text with two-, three- and four-byte characters. */
static uint8_t *utf8_text(size_t n, uint32_t seed) {
  static const char *const parts[] = {"h\xc3\xa9llo ", "\xe2\x82\xac ",
                                      "\xf0\x9f\x98\x80", "wor\xce\xbb\x64 ",
                                      "abc "};
  uint8_t *b = malloc(n + 8);
  size_t pos = 0;
  uint32_t s = seed + 7;
  while (pos < n) {
    const char *p;
    size_t m;
    s = s * 1664525u + 1013904223u;
    p = parts[(s >> 10) % 5];
    m = strlen(p);
    if (pos + m > n) {
      /* pad with ASCII so the text stays whole */
      while (pos < n)
        b[pos++] = 'z';
      break;
    }
    memcpy(b + pos, p, m);
    pos += m;
  }
  return b;
}

/* ----------------------------------------------------------------- peer */

#define MAX_MSG 256
#define MAX_CTL 64

typedef struct {
  ws_conn *c;
  test_rng rng;
  counting cnt;
  ws_allocator al;
  /* the message being assembled */
  uint8_t *cur;
  size_t cur_len, cur_cap;
  int in_msg, cur_text;
  /* complete messages */
  int nmsg;
  uint8_t *msg[MAX_MSG];
  size_t msg_len[MAX_MSG];
  int msg_text[MAX_MSG];
  int flag_errors;
  size_t max_chunk;
  size_t delivered; /* bytes of every message */
  int data_rv;      /* what on_data returns */
  int abort_in_data;
  int set_pmd_in_data;   /* call ws_conn_set_pmd from on_data ... */
  int set_pmd_rv;        /* ... and keep what it returned */
  int inplace, inflated; /* on_data calls with and without INPLACE */
  int nctl;
  int ctl_op[MAX_CTL];
} peer;

static int on_data(void *user, const uint8_t *data, size_t len,
                   unsigned flags) {
  peer *p = user;
  int text = (flags & WS_DATA_TEXT) != 0;
  if ((flags & WS_DATA_FIRST) ? p->in_msg : !p->in_msg) p->flag_errors++;
  if (flags & WS_DATA_FIRST) {
    p->in_msg = 1;
    p->cur_len = 0;
    p->cur_text = text;
  } else if (p->cur_text != text) {
    p->flag_errors++;
  }
  if (len == 0 && !(flags & WS_DATA_FIN)) p->flag_errors++;
  if (len > p->max_chunk) p->max_chunk = len;
  if (flags & WS_DATA_INPLACE)
    p->inplace++;
  else
    p->inflated++;
  p->delivered += len;
  if (p->cur_len + len > p->cur_cap) {
    p->cur_cap = (p->cur_len + len) * 2 + 16;
    p->cur = realloc(p->cur, p->cur_cap);
  }
  if (len) memcpy(p->cur + p->cur_len, data, len);
  p->cur_len += len;
  if (flags & WS_DATA_FIN) {
    p->in_msg = 0;
    if (p->nmsg < MAX_MSG) {
      p->msg[p->nmsg] = p->cur;
      p->msg_len[p->nmsg] = p->cur_len;
      p->msg_text[p->nmsg] = p->cur_text;
      p->cur = NULL;
      p->cur_len = p->cur_cap = 0;
    }
    p->nmsg++;
  }
  if (ws_conn_is_message_done(p->c) != ((flags & WS_DATA_FIN) != 0))
    p->flag_errors++;
  if (p->abort_in_data) ws_conn_abort(p->c);
  if (p->set_pmd_in_data) p->set_pmd_rv = ws_conn_set_pmd(p->c, NULL, NULL);
  return p->data_rv;
}

static int on_control(void *user, int op, const uint8_t *pl, size_t len) {
  peer *p = user;
  (void)pl;
  (void)len;
  if (p->nctl < MAX_CTL) p->ctl_op[p->nctl] = op;
  p->nctl++;
  return 0;
}

static const ws_conn_callbacks callbacks = {on_data, on_control, NULL};

/* A peer of role, with a counting allocator (fail_at as given) and
 * read_message_max max. Returns 0 if the engine could not be made. */
static int peer_init(peer *p, int role, uint64_t max, long fail_at) {
  ws_conn_config cfg;
  memset(p, 0, sizeof *p);
  p->rng.s = 777 + (uint32_t)role;
  p->al = cnt_alloc(&p->cnt);
  p->cnt.fail_at = fail_at;
  ws_conn_config_default(&cfg, role);
  cfg.read_message_max = max;
  cfg.alloc = &p->al;
  cfg.rng.ud = &p->rng;
  cfg.rng.fill = rng_fill;
  p->c = ws_conn_new(&cfg, &callbacks, p);
  return p->c != NULL;
}

static void peer_forget(peer *p) {
  int i;
  for (i = 0; i < p->nmsg && i < MAX_MSG; i++)
    free(p->msg[i]);
  p->nmsg = 0;
}

/* Frees the engine; returns 1 if its allocator shows no leak. */
static int peer_free(peer *p) {
  ws_conn_free(p->c);
  p->c = NULL;
  peer_forget(p);
  free(p->cur);
  p->cur = NULL;
  return p->cnt.allocs == p->cnt.frees && p->cnt.live == 0;
}

static ws_pmd_params params(int sbits, int cbits, int snct, int cnct) {
  ws_pmd_params pm;
  memset(&pm, 0, sizeof pm);
  pm.active = 1;
  pm.server_max_window_bits = sbits;
  pm.client_max_window_bits = cbits;
  pm.server_no_context_takeover = snct;
  pm.client_no_context_takeover = cnct;
  return pm;
}

static int set_pmd(peer *p, ws_pmd_params pm, int level, int mem,
                   size_t threshold) {
  ws_pmd_config cfg;
  ws_pmd_config_default(&cfg);
  cfg.comp_level = level;
  cfg.mem_level = mem;
  cfg.msg_size_threshold = threshold;
  return ws_conn_set_pmd(p->c, &pm, &cfg);
}

/* ----------------------------------------------------------- wire helpers */

/* Moves everything a has queued to b (recv in pieces of chunk bytes, 0 =
 * all) and consumes it. Returns the first nonzero recv result. */
static int pump(peer *a, peer *b, size_t chunk) {
  size_t n;
  uint8_t *buf;
  int rv;
  if (ws_conn_out_pending(a->c) == 0) return 0;
  buf = out_flatten(a->c, &n);
  if (n != ws_conn_out_pending(a->c)) {
    free(buf);
    return -99999;
  }
  rv = feed(b->c, buf, n, chunk);
  ws_conn_out_consume(a->c, n);
  free(buf);
  return rv;
}

/* A frame parsed from wire bytes (payload unmasked in place). */
typedef struct {
  int fin, rsv, op;
  size_t len;
  uint8_t *payload;
} tframe;

static size_t parse_frames(uint8_t *b, size_t n, tframe *f, size_t max) {
  size_t pos = 0, k = 0;
  while (k < max && n - pos >= 2) {
    size_t h = 2, i;
    uint64_t len = b[pos + 1] & 0x7f;
    int masked = (b[pos + 1] & 0x80) != 0;
    uint8_t key[4];
    if (len == 126) {
      len = ((uint64_t)b[pos + 2] << 8) | b[pos + 3];
      h = 4;
    } else if (len == 127) {
      len = 0;
      for (i = 0; i < 8; i++)
        len = (len << 8) | b[pos + 2 + i];
      h = 10;
    }
    if (masked) {
      memcpy(key, b + pos + h, 4);
      h += 4;
    }
    if (n - pos < h || n - pos - h < len) break;
    f[k].fin = (b[pos] & 0x80) != 0;
    f[k].rsv = (b[pos] >> 4) & 7;
    f[k].op = b[pos] & 0x0f;
    f[k].len = (size_t)len;
    f[k].payload = b + pos + h;
    if (masked) ws_mask(f[k].payload, f[k].payload, f[k].len, key, 0);
    pos += h + (size_t)len;
    k++;
  }
  return k;
}

/* Checks the RSV bits of everything c has queued: RSV1 only on the first
 * frame of a message, nothing on continuations and control frames.
 * Returns the number of messages whose first frame has RSV1, or -1. */
static int wire_rsv(ws_conn *c) {
  size_t n, k, i;
  uint8_t *b = out_flatten(c, &n);
  static tframe f[70000];
  int comp = 0;
  k = parse_frames(b, n, f, 70000);
  for (i = 0; i < k; i++) {
    if (f[i].op == WS_OP_TEXT || f[i].op == WS_OP_BINARY) {
      if (f[i].rsv == 4)
        comp++;
      else if (f[i].rsv != 0)
        comp = -1000000;
    } else if (f[i].rsv != 0) {
      comp = -1000000;
    }
  }
  free(b);
  return comp < 0 ? -1 : comp;
}

/* The close code of the last close frame c has queued (0 if none). */
static unsigned queued_close_code(ws_conn *c) {
  size_t n, k, i;
  uint8_t *b = out_flatten(c, &n);
  static tframe f[4096];
  unsigned code = 0;
  k = parse_frames(b, n, f, 4096);
  for (i = 0; i < k; i++)
    if (f[i].op == WS_OP_CLOSE && f[i].len >= 2)
      code = ((unsigned)f[i].payload[0] << 8) | f[i].payload[1];
  free(b);
  return code;
}

/* A frame as a peer sends it: first = byte 0 (FIN, RSV, opcode); masked
 * (with a fixed key) for frames to a server. */
static uint8_t *mkframe(uint8_t first, int masked, const uint8_t *pl, size_t n,
                        size_t *out_len) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t *b = malloc(n + WS_MAX_FRAME_HEADER);
  size_t h = ws_frame_header_build(b, 0, 0, 0, masked ? key : NULL, n);
  b[0] = first;
  if (masked)
    ws_mask(b + h, pl, n, key, 0);
  else if (n)
    memcpy(b + h, pl, n);
  *out_len = h + n;
  return b;
}

/* Appends a frame to a growing buffer. */
typedef struct {
  uint8_t *p;
  size_t n;
} wire;

static void wire_add(wire *w, uint8_t first, int masked, const void *pl,
                     size_t n) {
  size_t fl;
  uint8_t *f = mkframe(first, masked, (const uint8_t *)pl, n, &fl);
  w->p = realloc(w->p, w->n + fl);
  memcpy(w->p + w->n, f, fl);
  w->n += fl;
  free(f);
}

/* Raw deflate of in[0..n) with zlib directly (a "foreign" compressor):
 * window bits wb, Z_SYNC_FLUSH, the tail stripped. */
static uint8_t *zraw(const uint8_t *in, size_t n, int wb, int level,
                     size_t *out_len) {
  z_stream z;
  size_t cap = n + n / 8 + 128;
  uint8_t *out = malloc(cap);
  memset(&z, 0, sizeof z);
  deflateInit2(&z, level, Z_DEFLATED, -wb, 8, Z_DEFAULT_STRATEGY);
  z.next_in = in;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  deflate(&z, Z_SYNC_FLUSH);
  *out_len = cap - z.avail_out;
  deflateEnd(&z);
  if (*out_len >= 4) *out_len -= 4;
  return out;
}

/* Inflates in[0..n) + 00 00 ff ff with a raw window of wb bits; returns
 * the output length, or (size_t)-1 on a zlib error. zlib lets a match
 * reach back into what the same call wrote, past the window; one output
 * byte per call makes the window the only history, so this is a strict
 * check that no match reaches further back than 2^wb bytes. */
static size_t zinflate(const uint8_t *in, size_t n, int wb, uint8_t *out,
                       size_t cap) {
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  uint8_t *all = malloc(n + 4);
  z_stream z;
  int r;
  size_t got;
  memcpy(all, in, n);
  memcpy(all + n, tail, 4);
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, -wb) != Z_OK) {
    free(all);
    return (size_t)-1;
  }
  z.next_in = all;
  z.avail_in = (uInt)(n + 4);
  z.next_out = out;
  do {
    z.avail_out = z.next_out < out + cap ? 1 : 0;
    r = inflate(&z, Z_SYNC_FLUSH);
  } while (r == Z_OK && z.avail_in > 0);
  got = (size_t)(z.next_out - out);
  inflateEnd(&z);
  free(all);
  return r == Z_OK || r == Z_STREAM_END || r == Z_BUF_ERROR ? got : (size_t)-1;
}

/* --------------------------------------------------- pairs and messages */

typedef struct {
  peer cl, sv;
} pair;

/* A client and a server with the same params (and the same local
 * config). */
static int pair_init(pair *pp, ws_pmd_params pm, int level, int mem,
                     size_t threshold, uint64_t max) {
  if (!peer_init(&pp->cl, WS_ROLE_CLIENT, max, 0)) return 0;
  if (!peer_init(&pp->sv, WS_ROLE_SERVER, max, 0)) return 0;
  if (set_pmd(&pp->cl, pm, level, mem, threshold) != 0) return 0;
  if (set_pmd(&pp->sv, pm, level, mem, threshold) != 0) return 0;
  return 1;
}

static int pair_free(pair *pp) {
  int a = peer_free(&pp->cl), b = peer_free(&pp->sv);
  return a && b;
}

/* Sends one message from a to b (in parts of part bytes with write_some
 * when part > 0), checks the wire's RSV bits, pumps it in chunk-byte
 * pieces and checks b got it. Returns 1 if all is well. */
static int one_message(peer *a, peer *b, const uint8_t *d, size_t n, int text,
                       unsigned flags, size_t part, size_t chunk,
                       int want_rsv1) {
  int op = text ? WS_OP_TEXT : WS_OP_BINARY, rv, idx = b->nmsg;
  if (part == 0 || part >= n) {
    rv = ws_conn_send(a->c, op, d, n, WS_SEND_FIN | flags, NULL);
    if (rv) return 0;
  } else {
    size_t off = 0;
    while (off < n) {
      size_t k = n - off < part ? n - off : part;
      rv = ws_conn_send(a->c, op, d + off, k,
                        (off + k == n ? WS_SEND_FIN : 0) | flags, NULL);
      if (rv) return 0;
      off += k;
    }
  }
  if (wire_rsv(a->c) != want_rsv1) {
    printf("# rsv1 frames: %d, want %d\n", wire_rsv(a->c), want_rsv1);
    return 0;
  }
  rv = pump(a, b, chunk);
  if (rv) {
    printf("# recv: %s\n", ws_err_name(rv));
    return 0;
  }
  if (b->nmsg != idx + 1 || idx >= MAX_MSG) return 0;
  if (b->msg_len[idx] != n || (n && memcmp(b->msg[idx], d, n) != 0)) {
    printf("# message of %zu bytes arrived as %zu bytes\n", n, b->msg_len[idx]);
    return 0;
  }
  if (b->msg_text[idx] != text || b->flag_errors) return 0;
  peer_forget(b);
  return 1;
}

/* The roundtrip used for every parameter combination: messages of many
 * sizes both ways, compressed and not, whole and in parts. */
static int roundtrip(ws_pmd_params pm, int level, int mem, size_t chunk) {
  static const size_t sizes[] = {0, 1, 5, 125, 126, 1000, 4097, 20000};
  pair pp;
  size_t i;
  int ok = 1, dir;
  if (!pair_init(&pp, pm, level, mem, 0, 0)) return 0;
  for (dir = 0; dir < 2 && ok; dir++) {
    peer *a = dir ? &pp.sv : &pp.cl, *b = dir ? &pp.cl : &pp.sv;
    for (i = 0; i < sizeof sizes / sizeof sizes[0] && ok; i++) {
      size_t n = sizes[i];
      uint8_t *t = json_text(n, (uint32_t)i), *r = random_bytes(n, (uint32_t)i);
      /* twice the same text, so context takeover has something to use */
      ok = ok && one_message(a, b, t, n, 1, WS_SEND_COMPRESS, 0, chunk, 1);
      ok = ok && one_message(a, b, t, n, 1, WS_SEND_COMPRESS, 0, chunk, 1);
      ok = ok && one_message(a, b, r, n, 0, WS_SEND_COMPRESS, 0, chunk, 1);
      /* uncompressed between compressed: windows are untouched */
      ok = ok && one_message(a, b, t, n, 0, 0, 0, chunk, 0);
      ok = ok && one_message(a, b, t, n, 1, WS_SEND_COMPRESS, 333, chunk, 1);
      free(t);
      free(r);
    }
  }
  if (!pair_free(&pp)) ok = 0;
  return ok;
}

/* ------------------------------------------------------------------ tests */

TEST(matrix) {
  int sb, cb, nct;
  for (sb = 8; sb <= 15; sb++)
    for (cb = 8; cb <= 15; cb++)
      for (nct = 0; nct < 4; nct++)
        OK(roundtrip(params(sb, cb, nct & 1, nct >> 1), 8, 4, 0),
           "server bits %d, client bits %d, snct %d, cnct %d", sb, cb, nct & 1,
           nct >> 1);
}

TEST(byte_by_byte) {
  static const int bits[][2] = {{15, 15}, {8, 8}, {9, 15}, {15, 9}, {12, 10}};
  size_t i;
  int nct;
  for (i = 0; i < sizeof bits / sizeof bits[0]; i++)
    for (nct = 0; nct < 4; nct += 3)
      OK(roundtrip(params(bits[i][0], bits[i][1], nct & 1, nct >> 1), 6, 5, 1),
         "byte by byte: bits %d/%d, nct %d", bits[i][0], bits[i][1], nct);
}

TEST(levels) {
  int level, mem;
  for (level = 0; level <= 9; level++)
    OK(roundtrip(params(15, 15, 0, 0), level, 4, 0), "level %d", level);
  for (mem = 1; mem <= 9; mem++)
    OK(roundtrip(params(11, 13, 0, 0), 8, mem, 0), "mem_level %d", mem);
  for (level = 0; level <= 9; level += 9)
    for (mem = 1; mem <= 9; mem += 8)
      OK(roundtrip(params(8, 8, 1, 0), level, mem, 7),
         "bits 8: level %d, mem_level %d", level, mem);
}

TEST(big_messages) {
  static const int cases[][4] = {
      {15, 15, 0, 0}, {9, 9, 1, 1}, {8, 8, 0, 0}, {10, 14, 1, 0}};
  size_t i, n = 1u << 20;
  uint8_t *t = json_text(n, 99), *r = random_bytes(n, 98),
          *u = utf8_text(n, 97);
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pair pp;
    int ok = pair_init(
        &pp, params(cases[i][0], cases[i][1], cases[i][2], cases[i][3]), 8, 4,
        0, 16u << 20);
    ok = ok && one_message(&pp.cl, &pp.sv, t, n, 1, WS_SEND_COMPRESS, 0, 0, 1);
    ok = ok && one_message(&pp.sv, &pp.cl, t, n, 1, WS_SEND_COMPRESS, 0, 0, 1);
    ok = ok && one_message(&pp.sv, &pp.cl, r, n, 0, WS_SEND_COMPRESS, 0, 0, 1);
    ok = ok && one_message(&pp.cl, &pp.sv, r, n, 0, WS_SEND_COMPRESS, 0, 0, 1);
    ok = ok &&
         one_message(&pp.cl, &pp.sv, u, n, 1, WS_SEND_COMPRESS, 70001, 0, 1);
    ok = ok &&
         one_message(&pp.sv, &pp.cl, u, n, 1, WS_SEND_COMPRESS, 4096, 0, 1);
    OK(ok, "1 MiB text, binary and fragmented: bits %d/%d nct %d/%d",
       cases[i][0], cases[i][1], cases[i][2], cases[i][3]);
    OK(pp.cl.max_chunk <= 16384 && pp.sv.max_chunk <= 16384,
       "on_data pieces of at most 16 KiB (%zu, %zu)", pp.cl.max_chunk,
       pp.sv.max_chunk);
    OK(pair_free(&pp), "no leak");
  }
  {
    pair pp;
    int ok = pair_init(&pp, params(15, 15, 0, 0), 8, 4, 0, 0);
    ok = ok && one_message(&pp.sv, &pp.cl, t, n, 1, WS_SEND_COMPRESS, 0, 1, 1);
    ok = ok && one_message(&pp.cl, &pp.sv, t, n, 1, WS_SEND_COMPRESS, 0, 1, 1);
    OK(ok, "1 MiB byte by byte");
    OK(pair_free(&pp), "no leak");
  }
  free(t);
  free(r);
  free(u);
}

/* The examples of RFC 7692 §7.2.3, as a server sends them to a client. */
TEST(rfc_examples) {
  static const uint8_t hello1[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd,
                                   0xc9, 0xc9, 0x07, 0x00};
  static const uint8_t hello2[] = {0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
  static const uint8_t frag[] = {0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80,
                                 0x04, 0xc9, 0xc9, 0x07, 0x00};
  static const uint8_t stored[] = {0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff,
                                   0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00};
  static const uint8_t bfinal8[] = {0xc1, 0x08, 0xf3, 0x48, 0xcd,
                                    0xc9, 0xc9, 0x07, 0x00, 0x00};
  static const uint8_t bfinal7[] = {0xc1, 0x07, 0xf3, 0x48, 0xcd,
                                    0xc9, 0xc9, 0x07, 0x00};
  static const uint8_t two[] = {0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00,
                                0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};
  /* a final block, then a new stream that refers to the old window */
  static const uint8_t after_final[] = {0xc1, 0x0c, 0xf3, 0x48, 0xcd,
                                        0xc9, 0xc9, 0x07, 0x00, 0xf2,
                                        0x00, 0x11, 0x00, 0x00};
  /* a sender that keeps the 00 00 ff ff of its flush */
  static const uint8_t unstripped[] = {0xc1, 0x0b, 0xf2, 0x48, 0xcd, 0xc9, 0xc9,
                                       0x07, 0x00, 0x00, 0x00, 0xff, 0xff};
  /* ... or ends a fragmented message with an empty frame after it */
  static const uint8_t empty_last[] = {0x41, 0x0b, 0xf2, 0x48, 0xcd,
                                       0xc9, 0xc9, 0x07, 0x00, 0x00,
                                       0x00, 0xff, 0xff, 0x80, 0x00};
  static const struct {
    const char *what;
    const uint8_t *b;
    size_t n;
    const char *want;
  } ex[] = {
      {"7.2.3.1 Hello", hello1, sizeof hello1, "Hello"},
      {"7.2.3.2 Hello again, from the shared window", hello2, sizeof hello2,
       "Hello"},
      {"7.2.3.1 fragmented", frag, sizeof frag, "Hello"},
      {"7.2.3.3 stored block", stored, sizeof stored, "Hello"},
      {"7.2.3.4 BFINAL with the empty block byte", bfinal8, sizeof bfinal8,
       "Hello"},
      {"BFINAL at the very end of the payload", bfinal7, sizeof bfinal7,
       "Hello"},
      {"window kept across a final block", hello2, sizeof hello2, "Hello"},
      {"7.2.3.5 two blocks", two, sizeof two, "Hello"},
      {"a new stream after a final block, same message", after_final,
       sizeof after_final, "HelloHello"},
      {"and the window after it", hello2, sizeof hello2, "Hello"},
      {"00 00 ff ff kept by the sender", unstripped, sizeof unstripped,
       "Hello"},
      {"the window after it", hello2, sizeof hello2, "Hello"},
      {"... and an empty last frame", empty_last, sizeof empty_last, "Hello"},
      {"the window after that", hello2, sizeof hello2, "Hello"},
  };
  size_t chunk, i;
  for (chunk = 0; chunk <= 1; chunk++) {
    peer p;
    peer_init(&p, WS_ROLE_CLIENT, 0, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    for (i = 0; i < sizeof ex / sizeof ex[0]; i++) {
      int rv = feed(p.c, ex[i].b, ex[i].n, chunk);
      IS_INT(rv, 0, "%s (%s)", ex[i].what, chunk ? "byte by byte" : "at once");
      OK(p.nmsg == 1 && p.msg_len[0] == strlen(ex[i].want) &&
             memcmp(p.msg[0], ex[i].want, p.msg_len[0]) == 0 &&
             p.msg_text[0] == 1,
         "%s: the text", ex[i].what);
      peer_forget(&p);
    }
    OK(p.flag_errors == 0, "flags in order");
    OK(peer_free(&p), "no leak");
  }
}

/* What our compressor writes for RFC 7692's examples. */
TEST(send_vectors) {
  static const uint8_t hello1[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd,
                                   0xc9, 0xc9, 0x07, 0x00};
  static const uint8_t hello2[] = {0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
  static const uint8_t empty[] = {0xc1, 0x01, 0x00};
  peer p;
  uint8_t *b;
  size_t n;
  peer_init(&p, WS_ROLE_SERVER, 0, 0);
  set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
  ws_conn_send(p.c, WS_OP_TEXT, (const uint8_t *)"Hello", 5,
               WS_SEND_FIN | WS_SEND_COMPRESS, NULL);
  b = out_flatten(p.c, &n);
  IS_MEM(b, n, hello1, sizeof hello1, "Hello: c1 07 f2 48 cd c9 c9 07 00");
  ws_conn_out_consume(p.c, n);
  free(b);
  ws_conn_send(p.c, WS_OP_TEXT, (const uint8_t *)"Hello", 5,
               WS_SEND_FIN | WS_SEND_COMPRESS, NULL);
  b = out_flatten(p.c, &n);
  IS_MEM(b, n, hello2, sizeof hello2, "Hello again: c1 05 f2 00 11 00 00");
  ws_conn_out_consume(p.c, n);
  free(b);
  ws_conn_send(p.c, WS_OP_TEXT, (const uint8_t *)"", 0,
               WS_SEND_FIN | WS_SEND_COMPRESS, NULL);
  b = out_flatten(p.c, &n);
  IS_MEM(b, n, empty, sizeof empty, "empty message: c1 01 00");
  ws_conn_out_consume(p.c, n);
  free(b);
  /* A write_some message whose last part is empty: the earlier part ends
   * on a whole sync flush; the last frame carries the 00 that the peer's
   * 00 00 ff ff completes into an empty stored block. */
  ws_conn_send(p.c, WS_OP_BINARY, (const uint8_t *)"abc", 3, WS_SEND_COMPRESS,
               NULL);
  ws_conn_send(p.c, WS_OP_BINARY, (const uint8_t *)"", 0, WS_SEND_FIN, NULL);
  {
    tframe f[4];
    b = out_flatten(p.c, &n);
    OK(parse_frames(b, n, f, 4) == 2 && f[0].rsv == 4 && f[0].fin == 0 &&
           f[1].rsv == 0 && f[1].op == 0 && f[1].fin == 1 && f[1].len == 1 &&
           f[1].payload[0] == 0,
       "parts: RSV1 on the first frame only, empty last part is 00");
    ws_conn_out_consume(p.c, n);
    free(b);
  }
  /* An empty message right after a message that ended in a flush. */
  ws_conn_send(p.c, WS_OP_BINARY, (const uint8_t *)"", 0,
               WS_SEND_FIN | WS_SEND_COMPRESS, NULL);
  b = out_flatten(p.c, &n);
  IS_MEM(b, n, "\xc2\x01\x00", 3, "empty message after a flush: c2 01 00");
  ws_conn_out_consume(p.c, n);
  free(b);
  OK(peer_free(&p), "no leak");
}

/* Control frames between the fragments of a compressed message, in both
 * directions; RSV1 only on the first frame. */
TEST(fragments_and_control) {
  size_t chunk;
  uint8_t *t = json_text(30000, 5);
  for (chunk = 0; chunk <= 1; chunk++) {
    pair pp;
    int i, ok;
    tframe f[64];
    uint8_t *b;
    size_t n, k;
    pair_init(&pp, params(15, 15, 0, 0), 8, 4, 0, 0);
    /* client sends 3 parts with a ping after each of the first two */
    for (i = 0; i < 3; i++) {
      ws_conn_send(pp.cl.c, WS_OP_TEXT, t + i * 10000, 10000,
                   (i == 2 ? WS_SEND_FIN : 0) | WS_SEND_COMPRESS, NULL);
      if (i < 2) {
        /* out_iov starts every unit queued, so the ping goes after them */
        uint8_t *w;
        size_t wn;
        w = out_flatten(pp.cl.c, &wn);
        free(w);
        ws_conn_ping(pp.cl.c, (const uint8_t *)"p", 1, NULL);
      }
    }
    b = out_flatten(pp.cl.c, &n);
    k = parse_frames(b, n, f, 64);
    ok = k >= 5;
    {
      size_t j;
      int pings = 0, data = 0, rsv_ok = 1;
      for (j = 0; j < k; j++) {
        if (f[j].op == WS_OP_PING) {
          pings++;
          if (f[j].rsv) rsv_ok = 0;
        } else {
          if (f[j].rsv != (data == 0 ? 4 : 0)) rsv_ok = 0;
          data++;
        }
      }
      ok = ok && pings == 2 && rsv_ok && f[0].op == WS_OP_TEXT;
    }
    free(b);
    OK(ok, "wire: pings between fragments, RSV1 on the first frame only");
    IS_INT(pump(&pp.cl, &pp.sv, chunk ? 1 : 0), 0, "server reads it");
    OK(pp.sv.nmsg == 1 && pp.sv.msg_len[0] == 30000 &&
           memcmp(pp.sv.msg[0], t, 30000) == 0,
       "the message arrives whole (%s)", chunk ? "byte by byte" : "at once");
    OK(pp.sv.nctl == 2, "both pings seen");
    IS_INT(pump(&pp.sv, &pp.cl, 0), 0, "pongs back");
    OK(pp.cl.nctl == 2 && pp.cl.ctl_op[0] == WS_OP_PONG, "pongs arrive");
    OK(pair_free(&pp), "no leak");
  }
  free(t);
}

/* Hand-built: compressed fragments with ping/pong between, fed to a
 * server (masked) all at once and byte by byte. */
TEST(fragments_hand_built) {
  uint8_t *t = json_text(5000, 11);
  size_t zl, chunk;
  uint8_t *z = zraw(t, 5000, 15, 6, &zl);
  wire w = {NULL, 0};
  size_t a = zl / 3, b2 = 2 * zl / 3;
  wire_add(&w, 0x41, 1, z, a); /* RSV1, text, no FIN */
  wire_add(&w, 0x89, 1, "x", 1);
  wire_add(&w, 0x00, 1, z + a, b2 - a);
  wire_add(&w, 0x8a, 1, "y", 1);
  wire_add(&w, 0x80, 1, z + b2, zl - b2);
  for (chunk = 0; chunk <= 1; chunk++) {
    peer p;
    peer_init(&p, WS_ROLE_SERVER, 0, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    IS_INT(feed(p.c, w.p, w.n, chunk), 0, "fed (%s)",
           chunk ? "byte by byte" : "at once");
    OK(p.nmsg == 1 && p.msg_len[0] == 5000 && memcmp(p.msg[0], t, 5000) == 0,
       "message whole");
    OK(p.nctl == 2, "control frames between fragments seen");
    OK(peer_free(&p), "no leak");
  }
  free(w.p);
  free(z);
  free(t);
}

TEST(reserved_bits) {
  static const struct {
    const char *what;
    int pmd;
    uint8_t first;
    int cont; /* a first fragment goes before */
  } c[] = {
      {"RSV1 without permessage-deflate", 0, 0xc1, 0},
      {"RSV1 on a continuation", 1, 0x80, 1},
      {"RSV1 on a ping", 1, 0xc9, 0},
      {"RSV1 on a close", 1, 0xc8, 0},
      {"RSV2 with permessage-deflate", 1, 0xa1, 0},
      {"RSV3 with permessage-deflate", 1, 0x91, 0},
  };
  size_t i, chunk;
  for (i = 0; i < sizeof c / sizeof c[0]; i++)
    for (chunk = 0; chunk <= 1; chunk++) {
      peer p;
      wire w = {NULL, 0};
      uint8_t first = c[i].first;
      peer_init(&p, WS_ROLE_SERVER, 0, 0);
      if (c[i].pmd) set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
      if (c[i].cont) {
        wire_add(&w, 0x41, 1, "\xf2\x48", 2);
        first = 0xc0; /* FIN, RSV1, continuation */
      }
      wire_add(&w, first, 1, "\x00", 1);
      IS_INT(feed(p.c, w.p, w.n, chunk), WS_E_bad_reserved_bits, "%s",
             c[i].what);
      IS_INT(queued_close_code(p.c), 1002, "%s: close 1002", c[i].what);
      free(w.p);
      OK(peer_free(&p), "no leak");
    }
}

TEST(bad_data) {
  uint8_t *d = random_bytes(600, 3), *twice = malloc(1200), *z;
  size_t zl, chunk;
  memcpy(twice, d, 600);
  memcpy(twice + 600, d, 600);
  /* matches 600 bytes back: fine for 10 bits and up, not for 9 */
  z = zraw(twice, 1200, 15, 9, &zl);
  for (chunk = 0; chunk <= 1; chunk++) {
    static const struct {
      const char *what;
      const uint8_t *b;
      size_t n;
    } bad[] = {
        {"reserved block type", (const uint8_t *)"\xff", 1},
        {"bad stored length", (const uint8_t *)"\x00\x05\x00\x05\x00hello", 10},
        {"distance before the start", (const uint8_t *)"\xf2\x00\x11\x00\x00",
         5},
        {"truncated stored block", (const uint8_t *)"\x00\x0a\x00\xf5\xffHe",
         7},
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      peer p;
      wire w = {NULL, 0};
      peer_init(&p, WS_ROLE_SERVER, 0, 0);
      set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
      wire_add(&w, 0xc2, 1, bad[i].b, bad[i].n);
      IS_INT(feed(p.c, w.p, w.n, chunk), WS_E_bad_compressed_data, "%s (%s)",
             bad[i].what, chunk ? "byte by byte" : "at once");
      IS_INT(queued_close_code(p.c), 1007, "%s: close 1007", bad[i].what);
      IS_INT(ws_conn_error(p.c), WS_E_bad_compressed_data, "engine failed");
      IS_INT(feed(p.c, w.p, w.n, 0), WS_E_bad_compressed_data,
             "the error stays");
      OK(p.nmsg == 0, "nothing delivered as complete");
      free(w.p);
      OK(peer_free(&p), "no leak");
    }
    {
      peer p;
      wire w = {NULL, 0};
      peer_init(&p, WS_ROLE_SERVER, 0, 0);
      set_pmd(&p, params(15, 10, 0, 0), 8, 4, 0);
      wire_add(&w, 0xc2, 1, z, zl);
      IS_INT(feed(p.c, w.p, w.n, chunk), 0, "600 bytes back with 10 bits");
      OK(p.nmsg == 1 && p.msg_len[0] == 1200, "decoded");
      peer_free(&p);
      if (chunk) {
        /* zlib refuses a match past the window only when the bytes it
         * refers to are not in the output of the same inflate call, so
         * a peer that breaks its window may pass when its data comes in
         * large pieces (and decodes right); byte by byte it cannot. */
        peer_init(&p, WS_ROLE_SERVER, 0, 0);
        set_pmd(&p, params(15, 9, 0, 0), 8, 4, 0);
        IS_INT(feed(p.c, w.p, w.n, chunk), WS_E_bad_compressed_data,
               "600 bytes back with 9 bits, byte by byte: past the window");
        peer_free(&p);
      }
      free(w.p);
    }
    {
      /* client_no_context_takeover: the server drops its window, so a
       * message that refers to the last one is bad */
      peer p;
      wire w = {NULL, 0};
      peer_init(&p, WS_ROLE_SERVER, 0, 0);
      set_pmd(&p, params(15, 15, 0, 1), 8, 4, 0);
      wire_add(&w, 0xc1, 1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
      wire_add(&w, 0xc1, 1, "\xf2\x00\x11\x00\x00", 5);
      IS_INT(feed(p.c, w.p, w.n, chunk), WS_E_bad_compressed_data,
             "no context takeover: the window is gone");
      OK(p.nmsg == 1, "the first message arrived");
      peer_free(&p);
      free(w.p);
    }
  }
  free(d);
  free(twice);
  free(z);
}

/* Messages cut short: with 00 00 ff ff appended they end inside a block. */
TEST(truncated) {
  uint8_t *t = json_text(3000, 21), *z;
  size_t zl, cut, chunk;
  z = zraw(t, 3000, 15, 8, &zl);
  for (chunk = 0; chunk <= 1; chunk++) {
    int errors = 0, other = 0;
    for (cut = 1; cut < zl; cut += (cut < 40 ? 1 : 97)) {
      peer p;
      wire w = {NULL, 0};
      int rv;
      peer_init(&p, WS_ROLE_SERVER, 0, 0);
      set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
      wire_add(&w, 0xc2, 1, z, zl - cut);
      rv = feed(p.c, w.p, w.n, chunk);
      if (rv == WS_E_bad_compressed_data && p.nmsg == 0)
        errors++;
      else
        other++;
      free(w.p);
      peer_free(&p);
    }
    OK(other == 0,
       "every cut is bad_compressed_data (%d of them), none "
       "hangs or passes as complete (%s)",
       errors, chunk ? "byte by byte" : "at once");
  }
  {
    /* 200,000 empty final blocks (03 00 each) in one message, after a
     * final block with "Hello": each restarts the stream with the window kept, in constant
     * time */
    peer p;
    wire w = {NULL, 0};
    size_t i, n = 400000;
    uint8_t *b = malloc(n + 7);
    memcpy(b, "\xf3\x48\xcd\xc9\xc9\x07\x00", 7);
    for (i = 0; i < n; i += 2) {
      b[7 + i] = 0x03;
      b[8 + i] = 0x00;
    }
    peer_init(&p, WS_ROLE_SERVER, 0, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    wire_add(&w, 0xc1, 1, b, n + 7);
    wire_add(&w, 0xc1, 1, "\xf2\x00\x11\x00\x00", 5);
    IS_INT(feed(p.c, w.p, w.n, 0), 0, "many final blocks");
    OK(p.nmsg == 2 && p.msg_len[0] == 5 && p.msg_len[1] == 5 &&
           memcmp(p.msg[1], "Hello", 5) == 0,
       "decoded, and the window survives them");
    free(w.p);
    free(b);
    OK(peer_free(&p), "no leak");
  }
  {
    /* an empty compressed payload is an empty message, and the window
     * stays usable */
    peer p;
    wire w = {NULL, 0};
    peer_init(&p, WS_ROLE_CLIENT, 0, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    wire_add(&w, 0xc1, 0, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
    wire_add(&w, 0xc1, 0, "", 0);
    wire_add(&w, 0x42, 0, "", 0);
    wire_add(&w, 0x80, 0, "", 0);
    wire_add(&w, 0xc1, 0, "\xf2\x00\x11\x00\x00", 5);
    IS_INT(feed(p.c, w.p, w.n, 0), 0, "empty compressed payloads");
    OK(p.nmsg == 4 && p.msg_len[1] == 0 && p.msg_len[2] == 0 &&
           p.msg_len[3] == 5 && memcmp(p.msg[3], "Hello", 5) == 0,
       "empty messages, then the window still works");
    free(w.p);
    OK(peer_free(&p), "no leak");
  }
  free(t);
  free(z);
}

TEST(utf8) {
  size_t chunk;
  for (chunk = 0; chunk <= 1; chunk++) {
    /* a two-byte character across the 16 KiB boundary of on_data */
    uint8_t *t = malloc(40000), *z;
    size_t zl;
    peer p;
    wire w = {NULL, 0};
    memset(t, 'a', 40000);
    t[16383] = 0xc3;
    t[16384] = 0xa9;
    t[32767] = 0xe2;
    t[32768] = 0x82;
    t[32769] = 0xac;
    z = zraw(t, 40000, 15, 6, &zl);
    peer_init(&p, WS_ROLE_SERVER, 0, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    wire_add(&w, 0xc1, 1, z, zl);
    IS_INT(feed(p.c, w.p, w.n, chunk), 0, "characters across pieces");
    OK(p.nmsg == 1 && p.msg_len[0] == 40000, "text arrived");
    free(w.p);
    free(z);
    peer_free(&p);
    /* invalid UTF-8 deep inside */
    t[30000] = 0xff;
    z = zraw(t, 40000, 15, 6, &zl);
    w.p = NULL;
    w.n = 0;
    peer_init(&p, WS_ROLE_SERVER, 0, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    wire_add(&w, 0xc1, 1, z, zl);
    IS_INT(feed(p.c, w.p, w.n, chunk), WS_E_bad_frame_payload,
           "invalid UTF-8 after inflation");
    IS_INT(queued_close_code(p.c), 1007, "close 1007");
    OK(p.delivered <= 16384 + 16384, "stopped at the piece that has it");
    free(w.p);
    free(z);
    peer_free(&p);
    /* a message that ends inside a character */
    z = zraw((const uint8_t *)"ab\xc3", 3, 15, 6, &zl);
    w.p = NULL;
    w.n = 0;
    peer_init(&p, WS_ROLE_SERVER, 0, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    wire_add(&w, 0xc1, 1, z, zl);
    IS_INT(feed(p.c, w.p, w.n, chunk), WS_E_bad_frame_payload,
           "text ending inside a character");
    free(w.p);
    free(z);
    peer_free(&p);
    free(t);
  }
}

/* 100 MiB of zeros in about 100 KiB: stops at read_message_max, holding
 * little memory. */
TEST(bomb) {
  static uint8_t zeros[1 << 20];
  z_stream z;
  size_t cap = 1 << 20, zl, i;
  uint8_t *out = malloc(cap);
  uint64_t max = 1u << 20;
  size_t chunk;
  memset(&z, 0, sizeof z);
  deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
  z.next_out = out;
  z.avail_out = (uInt)cap;
  for (i = 0; i < 100; i++) {
    z.next_in = zeros;
    z.avail_in = sizeof zeros;
    deflate(&z, i == 99 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
  }
  zl = cap - z.avail_out - 4;
  deflateEnd(&z);
  printf("# bomb: 100 MiB in %zu bytes\n", zl);
  for (chunk = 0; chunk <= 1; chunk++) {
    peer p;
    wire w = {NULL, 0};
    size_t base;
    peer_init(&p, WS_ROLE_CLIENT, max, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    base = p.cnt.live;
    wire_add(&w, 0xc2, 0, out, zl);
    IS_INT(feed(p.c, w.p, w.n, chunk ? 1 : 0), WS_E_message_too_big,
           "message_too_big (%s)", chunk ? "byte by byte" : "at once");
    IS_INT(queued_close_code(p.c), 1009, "close 1009");
    OK(p.delivered <= max, "at most read_message_max delivered (%zu)",
       p.delivered);
    printf("# bomb: engine peak %zu bytes, %zu for the engine alone\n",
           p.cnt.peak, base);
    OK(p.cnt.peak < base + 64 * 1024,
       "peak engine memory %zu < engine + 64 KiB (limit %llu)", p.cnt.peak,
       (unsigned long long)max);
    ws_conn_out_consume(p.c, ws_conn_out_pending(p.c));
    OK(p.cnt.live == base, "zlib state freed once failed (%zu live)",
       p.cnt.live);
    free(w.p);
    OK(peer_free(&p), "no leak");
  }
  {
    /* the limit exactly: max bytes pass, max + 1 do not */
    uint8_t *t = json_text(1000, 1), *zz;
    size_t zzl;
    peer p;
    wire w = {NULL, 0};
    zz = zraw(t, 1000, 15, 6, &zzl);
    peer_init(&p, WS_ROLE_CLIENT, 1000, 0);
    set_pmd(&p, params(15, 15, 0, 1), 8, 4, 0);
    wire_add(&w, 0xc1, 0, zz, zzl);
    IS_INT(feed(p.c, w.p, w.n, 0), 0, "exactly read_message_max: fine");
    peer_free(&p);
    peer_init(&p, WS_ROLE_CLIENT, 999, 0);
    set_pmd(&p, params(15, 15, 0, 1), 8, 4, 0);
    IS_INT(feed(p.c, w.p, w.n, 0), WS_E_message_too_big,
           "one byte more: message_too_big");
    OK(p.delivered == 0, "nothing of it delivered");
    peer_free(&p);
    free(w.p);
    free(zz);
    free(t);
  }
  free(out);
}

TEST(threshold_and_flags) {
  pair pp;
  uint8_t *t = json_text(3000, 8);
  int ok;
  pair_init(&pp, params(15, 15, 0, 0), 8, 4, 100, 0);
  ok = one_message(&pp.sv, &pp.cl, t, 99, 1, WS_SEND_COMPRESS, 0, 0, 0);
  OK(ok, "99 bytes under a threshold of 100: uncompressed");
  ok = one_message(&pp.sv, &pp.cl, t, 100, 1, WS_SEND_COMPRESS, 0, 0, 1);
  OK(ok, "100 bytes: compressed");
  ok = one_message(&pp.cl, &pp.sv, t, 3000, 1, WS_SEND_COMPRESS, 50, 0, 0);
  OK(ok, "first part of 50 decides: uncompressed");
  ok = one_message(&pp.cl, &pp.sv, t, 3000, 1, WS_SEND_COMPRESS, 1000, 0, 1);
  OK(ok, "first part of 1000: compressed");
  pp.sv.inplace = pp.sv.inflated = 0;
  ok = one_message(&pp.cl, &pp.sv, t, 3000, 1, 0, 0, 0, 0);
  OK(ok, "without WS_SEND_COMPRESS: uncompressed");
  OK(pp.sv.inplace > 0 && pp.sv.inflated == 0,
     "uncompressed data is WS_DATA_INPLACE");
  pp.sv.inplace = pp.sv.inflated = 0;
  ok = one_message(&pp.cl, &pp.sv, t, 3000, 1, WS_SEND_COMPRESS, 0, 0, 1);
  OK(ok && pp.sv.inplace == 0 && pp.sv.inflated > 0,
     "inflated data is not WS_DATA_INPLACE");
  OK(pair_free(&pp), "no leak");
  {
    /* without permessage-deflate, WS_SEND_COMPRESS does nothing */
    peer a, b;
    peer_init(&a, WS_ROLE_CLIENT, 0, 0);
    peer_init(&b, WS_ROLE_SERVER, 0, 0);
    OK(one_message(&a, &b, t, 3000, 1, WS_SEND_COMPRESS, 0, 0, 0),
       "no pmd: uncompressed");
    peer_free(&a);
    peer_free(&b);
  }
  free(t);
}

TEST(set_get) {
  peer p;
  ws_pmd_params pm, got;
  ws_pmd_config cfg;
  peer_init(&p, WS_ROLE_SERVER, 0, 0);
  ws_conn_get_pmd(p.c, &got);
  IS_INT(got.active, 0, "off at first");
  pm = params(10, 12, 1, 0);
  IS_INT(ws_conn_set_pmd(p.c, &pm, NULL), 0, "on with the default config");
  ws_conn_get_pmd(p.c, &got);
  OK(got.active == 1 && got.server_max_window_bits == 10 &&
         got.client_max_window_bits == 12 &&
         got.server_no_context_takeover == 1 &&
         got.client_no_context_takeover == 0,
     "get_pmd reports what was set");
  pm = params(7, 15, 0, 0);
  IS_INT(ws_conn_set_pmd(p.c, &pm, NULL), WS_E_bad_extension, "bits 7");
  pm = params(15, 16, 0, 0);
  IS_INT(ws_conn_set_pmd(p.c, &pm, NULL), WS_E_bad_extension, "bits 16");
  ws_pmd_config_default(&cfg);
  cfg.comp_level = 10;
  pm = params(15, 15, 0, 0);
  IS_INT(ws_conn_set_pmd(p.c, &pm, &cfg), WS_E_bad_extension, "level 10");
  cfg.comp_level = 8;
  cfg.mem_level = 0;
  IS_INT(ws_conn_set_pmd(p.c, &pm, &cfg), WS_E_bad_extension, "mem_level 0");
  ws_conn_get_pmd(p.c, &got);
  IS_INT(got.server_max_window_bits, 10, "a refused set changes nothing");
  memset(&pm, 0, sizeof pm);
  IS_INT(ws_conn_set_pmd(p.c, &pm, NULL), 0, "inactive params: off");
  ws_conn_get_pmd(p.c, &got);
  IS_INT(got.active, 0, "off again");
  IS_INT(ws_conn_set_pmd(p.c, NULL, NULL), 0, "NULL params: off");
  OK(peer_free(&p), "no leak");
}

/* Our 8-bit direction compresses with literals only: a real 256-byte
 * window decodes it. */
TEST(window_bits_8) {
  uint8_t *t = json_text(20000, 4), *out = malloc(30000);
  peer p;
  tframe f[16];
  uint8_t *b;
  size_t n, k, got;
  peer_init(&p, WS_ROLE_CLIENT, 0, 0);
  set_pmd(&p, params(15, 8, 0, 0), 9, 9, 0);
  ws_conn_send(p.c, WS_OP_TEXT, t, 20000, WS_SEND_FIN | WS_SEND_COMPRESS, NULL);
  b = out_flatten(p.c, &n);
  k = parse_frames(b, n, f, 16);
  /* auto_fragment: join the payloads */
  {
    size_t i, len = 0;
    uint8_t *all = malloc(n);
    for (i = 0; i < k; i++) {
      memcpy(all + len, f[i].payload, f[i].len);
      len += f[i].len;
    }
    got = zinflate(all, len, 8, out, 30000);
    OK(got == 20000 && memcmp(out, t, 20000) == 0,
       "inflates with a 256-byte window (%zu -> %zu bytes)", len, got);
    OK(len < 20000, "still compresses (Huffman only): %zu bytes", len);
    free(all);
  }
  free(b);
  peer_free(&p);
  /* the check above can fail: a match 300 bytes back does not inflate
   * with a 256-byte window */
  {
    uint8_t *d = random_bytes(300, 1), *in = malloc(600), *z;
    size_t zl;
    memcpy(in, d, 300);
    memcpy(in + 300, d, 300);
    z = zraw(in, 600, 15, 9, &zl);
    OK(zinflate(z, zl, 8, out, 30000) == (size_t)-1,
       "a 256-byte window refuses a match 300 bytes back");
    OK(zinflate(z, zl, 9, out, 30000) == 600, "... which 9 bits decode");
    free(z);
    free(in);
    free(d);
  }
  free(t);
  free(out);
}

/* Shared frames: compressed once, sent to many. */
TEST(shared_frames) {
  static const int bits[] = {15, 9, 8};
  /* the shared message differs from what the connection sends itself, so
   * a compressor that refers past it would be caught */
  uint8_t *t = json_text(3000, 12), *sh = json_text(3000, 55), *z;
  size_t zl;
  uint8_t hdr[WS_MAX_FRAME_HEADER];
  size_t hl, i;
  IS_INT(ws_pmd_compress_message(NULL, 15, 8, 4, (const uint8_t *)"Hello", 5,
                                 &z, &zl),
         0, "compress Hello");
  IS_MEM(z, zl, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, "f2 48 cd c9 c9 07 00");
  free(z);
  IS_INT(ws_pmd_compress_message(NULL, 15, 8, 4, NULL, 0, &z, &zl), 0,
         "compress nothing");
  IS_MEM(z, zl, "\x00", 1, "an empty message is 00");
  free(z);
  IS_INT(ws_pmd_compress_message(NULL, 16, 8, 4, t, 10, &z, &zl),
         WS_E_bad_extension, "bits 16 refused");
  for (i = 0; i < sizeof bits / sizeof bits[0]; i++) {
    int nct, ok = 1;
    IS_INT(ws_pmd_compress_message(NULL, bits[i], 8, 4, sh, 3000, &z, &zl), 0,
           "compress 3000 bytes with %d bits", bits[i]);
    hl = ws_frame_server_message(hdr, WS_OP_TEXT, 1, zl);
    for (nct = 0; nct < 4; nct++) {
      pair pp;
      int rv;
      pair_init(&pp, params(bits[i], 15, nct & 1, nct >> 1), 8, 4, 0, 0);
      /* a message first, so the window has something */
      ok = ok &&
           one_message(&pp.sv, &pp.cl, t, 3000, 1, WS_SEND_COMPRESS, 0, 0, 1);
      rv = ws_conn_send_prebuilt(pp.sv.c, hdr, hl, z, zl, NULL);
      ok = ok && rv == 0;
      ok = ok && pump(&pp.sv, &pp.cl, nct == 3 ? 1 : 0) == 0;
      ok = ok && pp.cl.nmsg == 1 && pp.cl.msg_len[0] == 3000 &&
           memcmp(pp.cl.msg[0], sh, 3000) == 0;
      peer_forget(&pp.cl);
      /* our own compressor goes on correctly after it */
      ok = ok &&
           one_message(&pp.sv, &pp.cl, t, 3000, 1, WS_SEND_COMPRESS, 0, 0, 1);
      ok = ok && one_message(&pp.sv, &pp.cl, t + 100, 2000, 1, WS_SEND_COMPRESS,
                             0, 0, 1);
      OK(pair_free(&pp), "no leak");
    }
    OK(ok,
       "%d bits: the shared frame decodes with and without takeover, "
       "and so do later messages",
       bits[i]);
    free(z);
  }
  free(sh);
  {
    peer p;
    ws_pmd_params pm = params(15, 15, 0, 0);
    peer_init(&p, WS_ROLE_SERVER, 0, 0);
    hl = ws_frame_server_message(hdr, WS_OP_TEXT, 1, 1);
    IS_INT(
        ws_conn_send_prebuilt(p.c, hdr, hl, (const uint8_t *)"\x00", 1, NULL),
        WS_E_bad_extension, "RSV1 frame without permessage-deflate");
    {
      uint8_t whole[3];
      memcpy(whole, hdr, hl);
      whole[hl] = 0;
      IS_INT(ws_conn_send_prebuilt(p.c, whole, hl + 1, NULL, 0, NULL),
             WS_E_bad_extension, "... also as one buffer");
    }
    hdr[0] |= 0x20;
    ws_conn_set_pmd(p.c, &pm, NULL);
    IS_INT(
        ws_conn_send_prebuilt(p.c, hdr, hl, (const uint8_t *)"\x00", 1, NULL),
        WS_E_bad_extension, "RSV2 refused");
    hdr[0] &= (uint8_t)~0x20;
    IS_INT(
        ws_conn_send_prebuilt(p.c, hdr, hl, (const uint8_t *)"\x00", 1, NULL),
        0, "RSV1 with permessage-deflate");
    OK(peer_free(&p), "no leak");
  }
  free(t);
}

/* What a connection holds between messages, per direction and setting. */
TEST(memory) {
  static const struct {
    const char *what;
    int nct, level, mem, bits;
  } c[] = {
      {"takeover, window 15, mem_level 4", 0, 8, 4, 15},
      {"takeover, window 15, mem_level 8", 0, 8, 8, 15},
      {"takeover, window 10, mem_level 4", 0, 8, 4, 10},
      {"no context takeover, window 15, mem_level 4", 1, 8, 4, 15},
  };
  size_t i;
  uint8_t *t = json_text(5000, 3);
  for (i = 0; i < sizeof c / sizeof c[0]; i++) {
    pair pp;
    size_t s0, c0;
    pair_init(&pp, params(c[i].bits, c[i].bits, c[i].nct, c[i].nct), c[i].level,
              c[i].mem, 0, 0);
    s0 = pp.sv.cnt.live;
    c0 = pp.cl.cnt.live;
    one_message(&pp.sv, &pp.cl, t, 5000, 1, WS_SEND_COMPRESS, 0, 0, 1);
    printf("# %s: compressor %zu bytes, decompressor %zu bytes (engine "
           "%zu); peaks %zu / %zu\n",
           c[i].what, pp.sv.cnt.live - s0, pp.cl.cnt.live - c0, s0,
           pp.sv.cnt.peak, pp.cl.cnt.peak);
    if (c[i].nct) {
      OK(pp.sv.cnt.live == s0 && pp.cl.cnt.live == c0,
         "%s: nothing held between messages", c[i].what);
    } else {
      OK(pp.sv.cnt.live > s0 && pp.cl.cnt.live > c0,
         "%s: windows kept between messages", c[i].what);
    }
    /* a close frees each direction's state */
    ws_conn_close(pp.sv.c, 1000, NULL, 0, NULL);
    pump(&pp.sv, &pp.cl, 0);
    pump(&pp.cl, &pp.sv, 0);
    /* Each side keeps the peer's close (its control payload buffer). */
    OK(pp.sv.cnt.live == s0 + WS_MAX_CONTROL_PAYLOAD &&
           pp.cl.cnt.live == c0 + WS_MAX_CONTROL_PAYLOAD,
       "%s: freed after the close handshake", c[i].what);
    OK(pair_free(&pp), "no leak");
  }
  {
    /* a connection that never compresses allocates no zlib state */
    pair pp;
    size_t s0, c0;
    pair_init(&pp, params(15, 15, 0, 0), 8, 4, 0, 0);
    s0 = pp.sv.cnt.live;
    c0 = pp.cl.cnt.live;
    one_message(&pp.sv, &pp.cl, t, 5000, 1, 0, 0, 0, 0);
    one_message(&pp.cl, &pp.sv, t, 5000, 1, 0, 0, 0, 0);
    OK(pp.sv.cnt.live == s0 && pp.cl.cnt.live == c0,
       "negotiated but unused: no zlib state");
    OK(pair_free(&pp), "no leak");
  }
  free(t);
}

/* on_data's error and abort inside on_data, in the middle of inflating. */
TEST(callbacks) {
  uint8_t *t = json_text(100000, 6), *z;
  size_t zl;
  peer p;
  wire w = {NULL, 0};
  z = zraw(t, 100000, 15, 6, &zl);
  wire_add(&w, 0xc1, 1, z, zl);
  peer_init(&p, WS_ROLE_SERVER, 0, 0);
  set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
  p.data_rv = -42;
  IS_INT(feed(p.c, w.p, w.n, 0), -42, "on_data's error is passed through");
  IS_INT(ws_conn_state(p.c), 0, "the engine is not failed");
  OK(peer_free(&p), "no leak");
  peer_init(&p, WS_ROLE_SERVER, 0, 0);
  set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
  p.abort_in_data = 1;
  IS_INT(feed(p.c, w.p, w.n, 0), WS_E_operation_aborted,
         "abort from on_data stops inflating");
  OK(p.delivered == 16384, "one piece delivered (%zu)", p.delivered);
  OK(peer_free(&p), "no leak");
  peer_init(&p, WS_ROLE_SERVER, 0, 0);
  set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
  p.set_pmd_in_data = 1;
  IS_INT(feed(p.c, w.p, w.n, 0), 0, "set_pmd from on_data ...");
  IS_INT(p.set_pmd_rv, WS_E_operation_in_progress,
         "... is refused: operation_in_progress");
  OK(p.nmsg == 1 && p.msg_len[0] == 100000, "and the message is whole");
  OK(peer_free(&p), "no leak");
  {
    /* the limit lowered in the middle of a compressed message */
    ws_conn_config cfg;
    wire w2 = {NULL, 0};
    size_t half = zl / 2;
    peer_init(&p, WS_ROLE_SERVER, 0, 0);
    set_pmd(&p, params(15, 15, 0, 0), 8, 4, 0);
    wire_add(&w2, 0x41, 1, z, half);
    IS_INT(feed(p.c, w2.p, w2.n, 0), 0, "first half");
    ws_conn_config_default(&cfg, WS_ROLE_SERVER);
    cfg.read_message_max = 100;
    ws_conn_reconfigure(p.c, &cfg);
    free(w2.p);
    w2.p = NULL;
    w2.n = 0;
    wire_add(&w2, 0x80, 1, z + half, zl - half);
    IS_INT(feed(p.c, w2.p, w2.n, 0), WS_E_message_too_big,
           "read_message_max lowered mid-message: message_too_big");
    free(w2.p);
    OK(peer_free(&p), "no leak");
  }
  free(w.p);
  free(z);
  free(t);
}

/* Every allocation on the compression paths fails in turn. */
TEST(failing_allocator) {
  uint8_t *t = json_text(50000, 2);
  static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
  int role;
  for (role = 0; role < 2; role++) {
    long fail_at;
    int leaks = 0, bad = 0, done = 0;
    for (fail_at = 1; fail_at < 5000 && !done; fail_at++) {
      peer a, b;
      ws_pmd_params pm = params(15, 15, 0, 0);
      int rv, i;
      if (!peer_init(&a, role, 0, fail_at)) {
        ws_conn_free(a.c);
        continue;
      }
      peer_init(&b, !role, 0, 0);
      set_pmd(&a, pm, 8, 4, 0);
      set_pmd(&b, pm, 8, 4, 0);
      /* sends: whole, parts, empty, large */
      for (i = 0; i < 3; i++) {
        ws_conn_send(a.c, WS_OP_TEXT, t, 1000 * (size_t)(i + 1),
                     WS_SEND_FIN | WS_SEND_COMPRESS, NULL);
        ws_conn_send(a.c, WS_OP_TEXT, t, 30000, WS_SEND_COMPRESS, NULL);
        ws_conn_send(a.c, WS_OP_TEXT, t, 20000, WS_SEND_FIN | WS_SEND_COMPRESS,
                     NULL);
      }
      pump(&a, &b, 0);
      /* receives: messages from b, one with a final block */
      for (i = 0; i < 3; i++)
        ws_conn_send(b.c, WS_OP_TEXT, t, 40000, WS_SEND_FIN | WS_SEND_COMPRESS,
                     NULL);
      rv = pump(&b, &a, 0);
      if (rv == 0) {
        wire w = {NULL, 0};
        wire_add(&w, 0xc1, role == WS_ROLE_SERVER, bfinal, sizeof bfinal);
        rv = feed(a.c, w.p, w.n, 0);
        free(w.p);
      }
      if (rv != 0 && rv != WS_E_no_memory) bad++;
      if (rv == WS_E_no_memory) {
        /* failed with 1011 */
        if (queued_close_code(a.c) != 1011) bad++;
      }
      done = a.cnt.count < fail_at;
      if (done && (rv != 0 || b.nmsg != 6 || a.nmsg != 4)) bad++;
      if (!peer_free(&a)) leaks++;
      peer_free(&b);
    }
    OK(done, "%s: ran until no allocation failed (%ld attempts)",
       role ? "server" : "client", fail_at - 1);
    IS_INT(leaks, 0, "%s: no leak at any failure", role ? "server" : "client");
    IS_INT(bad, 0, "%s: every failure is no_memory with 1011",
           role ? "server" : "client");
  }
  {
    long fail_at;
    int leaks = 0, done = 0;
    for (fail_at = 1; fail_at < 100 && !done; fail_at++) {
      counting cn;
      ws_allocator al = cnt_alloc(&cn);
      uint8_t *z;
      size_t zl;
      int rv;
      cn.fail_at = fail_at;
      rv = ws_pmd_compress_message(&al, 15, 8, 4, t, 50000, &z, &zl);
      if (rv == 0) {
        al.free(z, al.ud);
        done = cn.count < fail_at;
      } else if (rv != WS_E_no_memory) {
        leaks++;
      }
      if (cn.live != 0) leaks++;
    }
    OK(done && leaks == 0, "ws_pmd_compress_message: no leak at any failure");
  }
  free(t);
}

int main(void) {
  RUN(rfc_examples);
  RUN(send_vectors);
  RUN(matrix);
  RUN(byte_by_byte);
  RUN(levels);
  RUN(big_messages);
  RUN(fragments_and_control);
  RUN(fragments_hand_built);
  RUN(reserved_bits);
  RUN(bad_data);
  RUN(truncated);
  RUN(utf8);
  RUN(bomb);
  RUN(threshold_and_flags);
  RUN(set_get);
  RUN(window_bits_8);
  RUN(shared_frames);
  RUN(memory);
  RUN(callbacks);
  RUN(failing_allocator);
  return tap_done();
}
