/*
 * The connection engine: a client and a server wired through memory,
 * hand-built frames for every protocol error, the close handshake, control
 * frames, the output queue, abort, and allocation failures.
 *
 * Every test that feeds input runs twice: all at once and one byte at a
 * time.
 */
#include <stdint.h>
#include <stdlib.h>

#include "tap.h"
#include "ws_conn.h"
#include "conn_harness.h"

/* ----------------------------------------------------------------- peer */

#define MAX_CTL 64
#define MAX_SENT 512

typedef struct {
  ws_conn *c;
  test_rng rng;
  /* The message being assembled from on_data. */
  uint8_t *cur;
  size_t cur_len, cur_cap;
  int in_msg;
  /* Complete messages. */
  int nmsg;
  uint8_t *last;
  size_t last_len;
  int last_text;
  int data_calls;
  int flag_errors; /* FIRST/FIN/TEXT flags out of order */
  int data_rv;     /* what on_data returns */
  /* Control frames. */
  int nctl;
  int ctl_op[MAX_CTL];
  uint8_t ctl_pl[MAX_CTL][125];
  size_t ctl_len[MAX_CTL];
  unsigned ctl_state[MAX_CTL]; /* ws_conn_state during on_control */
  /* Completions. */
  int nsent;
  void *sent_tok[MAX_SENT];
  int sent_st[MAX_SENT];
} peer;

static int on_data(void *user, const uint8_t *data, size_t len,
                   unsigned flags) {
  peer *p = user;
  int text = (flags & WS_DATA_TEXT) != 0;
  p->data_calls++;
  if ((flags & WS_DATA_FIRST) ? p->in_msg : !p->in_msg) p->flag_errors++;
  if (flags & WS_DATA_FIRST) {
    p->in_msg = 1;
    p->cur_len = 0;
    p->last_text = text;
  } else if (p->last_text != text) {
    p->flag_errors++;
  }
  if (len == 0 && !(flags & WS_DATA_FIN)) p->flag_errors++;
  if (p->cur_len + len > p->cur_cap) {
    p->cur_cap = (p->cur_len + len) * 2 + 16;
    p->cur = realloc(p->cur, p->cur_cap);
  }
  if (len) memcpy(p->cur + p->cur_len, data, len);
  p->cur_len += len;
  if (flags & WS_DATA_FIN) {
    p->in_msg = 0;
    p->nmsg++;
    free(p->last);
    p->last = p->cur;
    p->last_len = p->cur_len;
    p->cur = NULL;
    p->cur_len = p->cur_cap = 0;
  }
  if (ws_conn_is_message_done(p->c) != ((flags & WS_DATA_FIN) != 0))
    p->flag_errors++;
  return p->data_rv;
}

static int on_control(void *user, int op, const uint8_t *pl, size_t len) {
  peer *p = user;
  if (p->nctl < MAX_CTL) {
    p->ctl_op[p->nctl] = op;
    memcpy(p->ctl_pl[p->nctl], pl, len);
    p->ctl_len[p->nctl] = len;
    p->ctl_state[p->nctl] = ws_conn_state(p->c);
  }
  p->nctl++;
  return 0;
}

static void on_sent(void *user, void *token, int status) {
  peer *p = user;
  if (p->nsent < MAX_SENT) {
    p->sent_tok[p->nsent] = token;
    p->sent_st[p->nsent] = status;
  }
  p->nsent++;
}

static const ws_conn_callbacks callbacks = {on_data, on_control, on_sent};

static int peer_init_cfg(peer *p, ws_conn_config *cfg) {
  memset(p, 0, sizeof *p);
  p->rng.s = 12345;
  cfg->rng.ud = &p->rng;
  cfg->rng.fill = rng_fill;
  p->c = ws_conn_new(cfg, &callbacks, p);
  return p->c != NULL;
}

static void peer_init(peer *p, int role) {
  ws_conn_config cfg;
  ws_conn_config_default(&cfg, role);
  peer_init_cfg(p, &cfg);
}

static void peer_free(peer *p) {
  ws_conn_free(p->c);
  p->c = NULL;
  free(p->cur);
  free(p->last);
  p->cur = p->last = NULL;
}

/* ----------------------------------------------------------- wire helpers */

static uint8_t *scratch;
static size_t scratch_cap;

static uint8_t *scratch_get(size_t n) {
  if (n > scratch_cap) {
    scratch_cap = n * 2;
    scratch = realloc(scratch, scratch_cap);
  }
  return scratch;
}

/* Sum of the lengths of every iov out_iov gives, with a large max. */
static int pending_matches_iov(ws_conn *c) {
  static ws_iov iov[70000];
  size_t n = ws_conn_out_iov(c, iov, 70000), i, sum = 0;
  for (i = 0; i < n; i++)
    sum += iov[i].len;
  return sum == ws_conn_out_pending(c);
}

/* Moves everything a has queued to b: out_iov in batches of up to 16,
 * recv in pieces of chunk bytes (0 = whole batch), consume in steps of
 * step bytes (0 = whole batch). Returns the first nonzero recv result. */
static int pump(peer *a, peer *b, size_t chunk, size_t step) {
  ws_iov iov[16];
  size_t n;
  int rv = 0;

  while (ws_conn_out_pending(a->c) > 0) {
    size_t i, total = 0, done = 0;
    uint8_t *buf;
    if (!pending_matches_iov(a->c)) {
      printf("# out_pending does not match the iovs\n");
      return -99999;
    }
    n = ws_conn_out_iov(a->c, iov, 16);
    if (n == 0) break;
    for (i = 0; i < n; i++)
      total += iov[i].len;
    buf = scratch_get(total);
    for (i = 0; i < n; i++) {
      memcpy(buf + done, iov[i].base, iov[i].len);
      done += iov[i].len;
    }
    if (!rv) {
      size_t k = chunk ? chunk : total;
      for (i = 0; i < total && !rv; i += k)
        rv = ws_conn_recv(b->c, buf + i, total - i < k ? total - i : k);
    }
    if (step == 0) {
      ws_conn_out_consume(a->c, total);
    } else {
      for (i = 0; i < total; i += step)
        ws_conn_out_consume(a->c, total - i < step ? total - i : step);
    }
  }
  return rv;
}

/* A frame parsed from wire bytes (payload unmasked in place). */
typedef struct {
  int fin, rsv, op, masked;
  uint8_t key[4];
  size_t len;
  uint8_t *payload;
} tframe;

/* Parses up to max frames from b; returns how many (stops at a partial
 * frame). */
static size_t parse_frames(uint8_t *b, size_t n, tframe *f, size_t max) {
  size_t pos = 0, k = 0;
  while (k < max && n - pos >= 2) {
    size_t h = 2, i;
    uint64_t len = b[pos + 1] & 0x7f;
    if (len == 126) {
      if (n - pos < 4) break;
      len = ((uint64_t)b[pos + 2] << 8) | b[pos + 3];
      h = 4;
    } else if (len == 127) {
      if (n - pos < 10) break;
      len = 0;
      for (i = 0; i < 8; i++)
        len = (len << 8) | b[pos + 2 + i];
      h = 10;
    }
    f[k].fin = (b[pos] & 0x80) != 0;
    f[k].rsv = (b[pos] >> 4) & 7;
    f[k].op = b[pos] & 0x0f;
    f[k].masked = (b[pos + 1] & 0x80) != 0;
    if (f[k].masked) {
      if (n - pos < h + 4) break;
      memcpy(f[k].key, b + pos + h, 4);
      h += 4;
    }
    if (n - pos - h < len) break;
    f[k].len = (size_t)len;
    f[k].payload = b + pos + h;
    if (f[k].masked) ws_mask(f[k].payload, f[k].payload, f[k].len, f[k].key, 0);
    pos += h + (size_t)len;
    k++;
  }
  return k;
}

/* Builds a frame as a peer of the given role would send it (client frames
 * masked with a fixed key). first = byte 0 (FIN, RSV, opcode). */
static size_t mk(uint8_t *out, uint8_t first, int masked, const void *pl,
                 size_t n) {
  static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  size_t h = ws_frame_header_build(out, 0, 0, 0, masked ? key : NULL, n);
  out[0] = first;
  if (masked)
    ws_mask(out + h, pl, n, key, 0);
  else if (n)
    memcpy(out + h, pl, n);
  return h + n;
}

/* The close code of the only frame c has queued, which must be a close; -1
 * if that is not so. */
static int queued_close_code(ws_conn *c) {
  size_t n;
  uint8_t *b = out_flatten(c, &n);
  tframe f[4];
  size_t k = parse_frames(b, n, f, 4);
  int code = -1;
  if (k >= 1 && f[k - 1].op == WS_OP_CLOSE && f[k - 1].fin) {
    if (f[k - 1].len >= 2)
      code = (f[k - 1].payload[0] << 8) | f[k - 1].payload[1];
    else
      code = 0;
  }
  free(b);
  return code;
}

/* The role of c's frames: 1 if the last queued frame is masked. */
static int queued_last_masked(ws_conn *c) {
  size_t n, k;
  uint8_t *b = out_flatten(c, &n);
  tframe f[8];
  int m = -1;
  k = parse_frames(b, n, f, 8);
  if (k) m = f[k - 1].masked;
  free(b);
  return m;
}

static uint8_t *pattern(size_t n, int text) {
  uint8_t *b = malloc(n + 1);
  size_t i;
  for (i = 0; i < n; i++)
    b[i] = text ? (uint8_t)('a' + i % 26) : (uint8_t)(i * 31 + (i >> 9));
  return b;
}

/* ---------------------------------------------------------------- tests */

TEST(messages) {
  static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 1 << 20};
  size_t si;
  int dir, chunk, text;

  for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
    for (dir = 0; dir < 2; dir++)
      for (chunk = 0; chunk < 2; chunk++) {
        size_t n = sizes[si];
        int ok = 1;
        for (text = 0; text < 2; text++) {
          peer cl, sv, *from, *to;
          uint8_t *m = pattern(n, text);
          int rv;
          peer_init(&cl, WS_ROLE_CLIENT);
          peer_init(&sv, WS_ROLE_SERVER);
          from = dir ? &sv : &cl;
          to = dir ? &cl : &sv;
          rv = ws_conn_send(from->c, text ? WS_OP_TEXT : WS_OP_BINARY, m, n,
                            WS_SEND_FIN, m);
          rv |= pump(from, to, (size_t)chunk, 0);
          ok &= rv == 0 && to->nmsg == 1 && to->last_len == n &&
                (n == 0 || memcmp(to->last, m, n) == 0) &&
                to->last_text == text && to->flag_errors == 0 &&
                from->nsent == 1 && from->sent_tok[0] == m &&
                from->sent_st[0] == 0 && ws_conn_out_pending(from->c) == 0 &&
                ws_conn_got_text(to->c) == text &&
                ws_conn_is_message_done(to->c) == 1;
          peer_free(&cl);
          peer_free(&sv);
          free(m);
        }
        OK(ok, "%zu bytes %s, %s", n,
           dir ? "server to client" : "client to server",
           chunk ? "one byte at a time" : "all at once");
      }
}

TEST(many_messages_both_ways) {
  peer cl, sv;
  int i, ok = 1;
  peer_init(&cl, WS_ROLE_CLIENT);
  peer_init(&sv, WS_ROLE_SERVER);
  for (i = 0; i < 50; i++) {
    uint8_t *m = pattern((size_t)i * 97, i & 1);
    ok &= ws_conn_send(cl.c, i & 1 ? WS_OP_TEXT : WS_OP_BINARY, m,
                       (size_t)i * 97, WS_SEND_FIN, NULL) == 0;
    ok &= ws_conn_send(sv.c, WS_OP_BINARY, m, (size_t)i * 97, WS_SEND_FIN,
                       NULL) == 0;
    ok &= pump(&cl, &sv, 0, 0) == 0 && pump(&sv, &cl, 7, 3) == 0;
    ok &= sv.nmsg == i + 1 && cl.nmsg == i + 1 &&
          sv.last_len == (size_t)i * 97 && cl.last_len == (size_t)i * 97 &&
          (i == 0 || memcmp(sv.last, m, (size_t)i * 97) == 0);
    free(m);
  }
  OK(ok, "50 messages each way, interleaved");
  IS_INT(cl.nsent + sv.nsent, 0, "NULL tokens are not reported");
  peer_free(&cl);
  peer_free(&sv);
}

TEST(write_some) {
  int chunk;
  for (chunk = 0; chunk < 2; chunk++) {
    peer cl, sv;
    static const uint8_t s1[] = "Hel\xe4", s2[] = "\xb8\xadlo";
    int rv;
    peer_init(&cl, WS_ROLE_CLIENT);
    peer_init(&sv, WS_ROLE_SERVER);
    rv = ws_conn_send(cl.c, WS_OP_TEXT, s1, 4, 0, (void *)s1);
    OK(rv == 0 && ws_conn_sending_message(cl.c), "first part queued");
    /* The opcode of a later part is ignored. */
    rv = ws_conn_send(cl.c, 77, s2, 4, WS_SEND_FIN, (void *)s2);
    OK(rv == 0 && !ws_conn_sending_message(cl.c), "last part queued");
    rv = pump(&cl, &sv, (size_t)chunk, 0);
    OK(rv == 0 && sv.nmsg == 1 && sv.last_len == 8 &&
           memcmp(sv.last, "Hel\xe4\xb8\xadlo", 8) == 0 && sv.last_text &&
           sv.flag_errors == 0,
       "one text message, a character split between parts (%s)",
       chunk ? "byte-wise" : "at once");
    OK(cl.nsent == 2 && cl.sent_tok[0] == s1 && cl.sent_tok[1] == s2,
       "both parts complete in order");
    peer_free(&cl);
    peer_free(&sv);
  }
  {
    peer sv;
    uint8_t *b;
    size_t n;
    tframe f[4];
    peer_init(&sv, WS_ROLE_SERVER);
    ws_conn_send(sv.c, WS_OP_BINARY, (const uint8_t *)"ab", 2, 0, NULL);
    ws_conn_send(sv.c, WS_OP_BINARY, (const uint8_t *)"", 0, 0, NULL);
    ws_conn_send(sv.c, WS_OP_BINARY, (const uint8_t *)"c", 1, WS_SEND_FIN,
                 NULL);
    b = out_flatten(sv.c, &n);
    OK(parse_frames(b, n, f, 4) == 3 && f[0].op == WS_OP_BINARY && !f[0].fin &&
           f[1].op == WS_OP_CONT && !f[1].fin && f[1].len == 0 &&
           f[2].op == WS_OP_CONT && f[2].fin,
       "parts become binary, continuation, continuation (fin)");
    free(b);
    IS_INT(ws_conn_send_prebuilt(sv.c, (const uint8_t *)"\x81\x00", 2, NULL, 0,
                                 NULL),
           0, "prebuilt after the message ended");
    ws_conn_send(sv.c, WS_OP_TEXT, (const uint8_t *)"x", 1, 0, NULL);
    IS_INT(ws_conn_send_prebuilt(sv.c, (const uint8_t *)"\x81\x00", 2, NULL, 0,
                                 NULL),
           WS_E_operation_in_progress, "prebuilt inside a message");
    IS_INT(ws_conn_send(sv.c, WS_OP_TEXT, NULL, 0, WS_SEND_FIN, NULL), 0,
           "empty last part");
    peer_free(&sv);
  }
}

/* Checks the frames of one message of n bytes sent by role. */
static int check_fragments(int role, int autofrag, size_t wbb, size_t n,
                           const size_t *want, size_t nwant) {
  ws_conn_config cfg;
  peer p, q;
  uint8_t *m = pattern(n, 1), *b, keys[64][4];
  size_t len, k, i, pos = 0;
  tframe f[64];
  int ok = 1;

  ws_conn_config_default(&cfg, role);
  cfg.auto_fragment = autofrag;
  cfg.write_buffer_bytes = wbb;
  peer_init_cfg(&p, &cfg);
  ws_conn_send(p.c, WS_OP_TEXT, m, n, WS_SEND_FIN, NULL);
  b = out_flatten(p.c, &len);
  k = parse_frames(b, len, f, 64);
  ok &= k == nwant;
  for (i = 0; ok && i < k; i++) {
    ok &= f[i].len == want[i] && f[i].fin == (i + 1 == k) &&
          f[i].op == (i == 0 ? WS_OP_TEXT : WS_OP_CONT) && f[i].rsv == 0 &&
          f[i].masked == (role == WS_ROLE_CLIENT) &&
          memcmp(f[i].payload, m + pos, f[i].len) == 0;
    memcpy(keys[i], f[i].key, 4);
    if (role == WS_ROLE_CLIENT && i > 0)
      ok &= memcmp(keys[i], keys[i - 1], 4) != 0;
    pos += f[i].len;
  }
  free(b);
  /* The other side gets the message back whole. */
  peer_init(&q, !role);
  ok &= pump(&p, &q, 0, 0) == 0 && q.nmsg == 1 && q.last_len == n &&
        memcmp(q.last, m, n) == 0;
  peer_free(&p);
  peer_free(&q);
  free(m);
  return ok;
}

TEST(auto_fragment) {
  static const size_t w3[] = {4096, 4096, 1808}, w1[] = {10000},
                      w4096[] = {4096}, w8[] = {8, 8, 4};
  int role;
  for (role = 0; role < 2; role++) {
    const char *r = role ? "server" : "client";
    OK(check_fragments(role, 1, 4096, 10000, w3, 3),
       "%s: 10000 bytes are 4096+4096+1808, fin on the last", r);
    OK(check_fragments(role, 0, 4096, 10000, w1, 1),
       "%s: auto_fragment off, one frame", r);
    OK(check_fragments(role, 1, 4096, 4096, w4096, 1),
       "%s: exactly write_buffer_bytes, one frame", r);
    OK(check_fragments(role, 1, 8, 20, w8, 3), "%s: write_buffer_bytes 8", r);
  }
}

TEST(reconfigure) {
  ws_conn_config cfg;
  peer p;
  uint8_t *m = pattern(250, 0), *b;
  size_t len;
  tframe f[8];

  peer_init(&p, WS_ROLE_SERVER);
  ws_conn_config_default(&cfg, WS_ROLE_CLIENT); /* the role is kept */
  cfg.write_buffer_bytes = 100;
  cfg.read_message_max = 5;
  IS_INT(ws_conn_reconfigure(p.c, &cfg), 0, "reconfigure");
  ws_conn_send(p.c, WS_OP_BINARY, m, 250, WS_SEND_FIN, NULL);
  b = out_flatten(p.c, &len);
  OK(parse_frames(b, len, f, 8) == 3 && f[0].len == 100 && f[2].len == 50 &&
         !f[0].masked,
     "new fragment size; still the server role");
  free(b);
  {
    uint8_t in[32];
    size_t n = mk(in, 0x82, 1, "123456", 6);
    IS_INT(feed(p.c, in, n, 0), WS_E_message_too_big, "new read limit");
  }
  peer_free(&p);
  free(m);
}

TEST(control_between_fragments) {
  int chunk;
  for (chunk = 0; chunk < 2; chunk++) {
    peer sv;
    uint8_t in[64], *b;
    size_t n = 0, len;
    static const uint8_t pong[] = {0x8a, 0x02, 0x70, 0x70};
    peer_init(&sv, WS_ROLE_SERVER);
    n += mk(in + n, 0x01, 1, "Hel", 3);
    n += mk(in + n, 0x89, 1, "pp", 2);
    n += mk(in + n, 0x80, 1, "lo", 2);
    IS_INT(feed(sv.c, in, n, (size_t)chunk), 0, "fed (%s)",
           chunk ? "byte-wise" : "at once");
    OK(sv.nmsg == 1 && sv.last_len == 5 && memcmp(sv.last, "Hello", 5) == 0 &&
           sv.flag_errors == 0,
       "the message is whole");
    OK(sv.nctl == 1 && sv.ctl_op[0] == WS_OP_PING && sv.ctl_len[0] == 2 &&
           memcmp(sv.ctl_pl[0], "pp", 2) == 0,
       "the ping is reported");
    b = out_flatten(sv.c, &len);
    IS_MEM(b, len, pong, sizeof pong, "the automatic pong is 8a 02 70 70");
    free(b);
    peer_free(&sv);
  }
}

/* A protocol error case: bytes a peer sends, and what must follow. */
typedef struct {
  const char *name;
  int role;     /* role of the engine that receives */
  uint64_t max; /* read_message_max (0 = no limit) */
  uint8_t in[300];
  size_t n;
  int err;
  unsigned code;
} pcase;

static size_t ncases;
static pcase cases[64];

/* Adds a case whose input is the frames given as (first byte, payload)
 * pairs, masked as the peer of role would. */
static pcase *add_case(const char *name, int role, uint64_t max, int err,
                       unsigned code) {
  pcase *c = &cases[ncases++];
  memset(c, 0, sizeof *c);
  c->name = name;
  c->role = role;
  c->max = max;
  c->err = err;
  c->code = code;
  return c;
}

static void add_frame(pcase *c, uint8_t first, const void *pl, size_t n) {
  c->n += mk(c->in + c->n, first, c->role == WS_ROLE_SERVER, pl, n);
}

static void add_raw(pcase *c, const void *b, size_t n) {
  memcpy(c->in + c->n, b, n);
  c->n += n;
}

static void build_cases(void) {
  const int S = WS_ROLE_SERVER, C = WS_ROLE_CLIENT;
  const uint64_t M = 16u << 20;
  pcase *c;
  static const uint8_t key[4] = {1, 2, 3, 4};

  c = add_case("rsv1 on text", S, M, WS_E_bad_reserved_bits, 1002);
  add_frame(c, 0xc1, "a", 1);
  c = add_case("rsv2 on binary", S, M, WS_E_bad_reserved_bits, 1002);
  add_frame(c, 0xa2, "a", 1);
  c = add_case("rsv3 on ping", S, M, WS_E_bad_reserved_bits, 1002);
  add_frame(c, 0x99, "", 0);
  c = add_case("rsv1 on continuation", S, M, WS_E_bad_reserved_bits, 1002);
  add_frame(c, 0x01, "a", 1);
  add_frame(c, 0xc0, "b", 1);
  c = add_case("client: rsv1", C, M, WS_E_bad_reserved_bits, 1002);
  add_frame(c, 0xc1, "a", 1);
  c = add_case("opcode 3", S, M, WS_E_bad_opcode, 1002);
  add_frame(c, 0x83, "a", 1);
  c = add_case("opcode 7", S, M, WS_E_bad_opcode, 1002);
  add_frame(c, 0x87, "", 0);
  c = add_case("opcode B", S, M, WS_E_bad_opcode, 1002);
  add_frame(c, 0x8b, "", 0);
  c = add_case("opcode F", C, M, WS_E_bad_opcode, 1002);
  add_frame(c, 0x8f, "", 0);
  c = add_case("ping without fin", S, M, WS_E_bad_control_fragment, 1002);
  add_frame(c, 0x09, "", 0);
  c = add_case("close without fin", C, M, WS_E_bad_control_fragment, 1002);
  add_frame(c, 0x08, "", 0);
  c = add_case("ping of 126 bytes", S, M, WS_E_bad_control_size, 1002);
  {
    uint8_t big[126];
    memset(big, 'x', sizeof big);
    add_frame(c, 0x89, big, sizeof big);
  }
  c = add_case("pong with a 64-bit length", C, M, WS_E_bad_control_size, 1002);
  add_raw(c, "\x8a\x7f\0\0\0\0\0\0\0\x05", 10);
  c = add_case("server: unmasked frame", S, M, WS_E_bad_unmasked_frame, 1002);
  add_raw(c,
          "\x81\x01"
          "a",
          3);
  c = add_case("client: masked frame", C, M, WS_E_bad_masked_frame, 1002);
  add_raw(c,
          "\x81\x81\x01\x02\x03\x04"
          "a",
          7);
  c = add_case("16-bit length 125", S, M, WS_E_bad_size, 1002);
  add_raw(c, "\x82\xfe\x00\x7d", 4);
  add_raw(c, key, 4);
  c = add_case("64-bit length 65535", C, M, WS_E_bad_size, 1002);
  add_raw(c, "\x82\x7f\0\0\0\0\0\0\xff\xff", 10);
  c = add_case("64-bit length with the top bit", S, 0, WS_E_bad_size, 1002);
  add_raw(c, "\x82\xff\x80\0\0\0\0\0\0\0", 10);
  add_raw(c, key, 4);
  c = add_case("text while a message is open", S, M, WS_E_bad_data_frame, 1002);
  add_frame(c, 0x01, "a", 1);
  add_frame(c, 0x81, "b", 1);
  c = add_case("binary while a message is open", C, M, WS_E_bad_data_frame,
               1002);
  add_frame(c, 0x02, "a", 1);
  add_frame(c, 0x89, "p", 1);
  add_frame(c, 0x82, "b", 1);
  c = add_case("continuation first", S, M, WS_E_bad_continuation, 1002);
  add_frame(c, 0x80, "a", 1);
  c = add_case("continuation after a whole message", C, M,
               WS_E_bad_continuation, 1002);
  add_frame(c, 0x81, "a", 1);
  add_frame(c, 0x00, "b", 1);
  c = add_case("too big, header only", S, 10, WS_E_message_too_big, 1009);
  add_raw(c, "\x82\x8b", 2);
  add_raw(c, key, 4);
  c = add_case("too big over fragments, header only", S, 10,
               WS_E_message_too_big, 1009);
  add_frame(c, 0x02, "123456", 6);
  add_raw(c, "\x80\x85", 2);
  add_raw(c, key, 4);
  c = add_case("client: too big, 64-bit header only", C, 1000,
               WS_E_message_too_big, 1009);
  add_raw(c, "\x82\x7f\0\0\0\0\0\x01\0\0", 10);
  c = add_case("bad UTF-8", S, M, WS_E_bad_frame_payload, 1007);
  add_frame(c, 0x81, "ok\xc0\xaf", 4);
  c = add_case("surrogate in a fragment", C, M, WS_E_bad_frame_payload, 1007);
  add_frame(c, 0x01, "ab\xed", 3);
  add_frame(c, 0x80, "\xa0\x80", 2);
  c = add_case("message ends inside a character", S, M, WS_E_bad_frame_payload,
               1007);
  add_frame(c, 0x01, "ab\xe4", 3);
  add_frame(c, 0x80, "\xb8", 1);
  add_frame(c, 0x80, "", 0);
  c = add_case("close of one byte", S, M, WS_E_bad_close_size, 1002);
  add_frame(c, 0x88, "\x03", 1);
  c = add_case("close code 1005", S, M, WS_E_bad_close_code, 1002);
  add_frame(c, 0x88, "\x03\xed", 2);
  c = add_case("close code 999", C, M, WS_E_bad_close_code, 1002);
  add_frame(c, 0x88, "\x03\xe7", 2);
  c = add_case("close code 1015", S, M, WS_E_bad_close_code, 1002);
  add_frame(c, 0x88, "\x03\xf7", 2);
  c = add_case("close code 2999", S, M, WS_E_bad_close_code, 1002);
  add_frame(c, 0x88, "\x0b\xb7", 2);
  c = add_case("close code 5000", C, M, WS_E_bad_close_code, 1002);
  add_frame(c, 0x88, "\x13\x88", 2);
  c = add_case("close reason not UTF-8", S, M, WS_E_bad_close_payload, 1002);
  add_frame(c, 0x88,
            "\x03\xe8"
            "ab\xff",
            5);
  c = add_case("client: close reason truncated", C, M, WS_E_bad_close_payload,
               1002);
  add_frame(c, 0x88, "\x03\xe8\xc3", 3);
}

TEST(protocol_errors) {
  size_t i;
  int chunk;

  build_cases();
  for (i = 0; i < ncases; i++) {
    const pcase *t = &cases[i];
    for (chunk = 0; chunk < 2; chunk++) {
      ws_conn_config cfg;
      peer p;
      int rv, rv2, code, masked;
      uint8_t more[8] = {0x81, 0x80, 0, 0, 0, 0, 0, 0};
      ws_conn_config_default(&cfg, t->role);
      cfg.read_message_max = t->max;
      peer_init_cfg(&p, &cfg);
      rv = feed(p.c, t->in, t->n, (size_t)chunk);
      rv2 = ws_conn_recv(p.c, more, sizeof more);
      code = queued_close_code(p.c);
      masked = queued_last_masked(p.c);
      OK(rv == t->err && rv2 == t->err && ws_conn_error(p.c) == t->err &&
             (ws_conn_state(p.c) & WS_ST_FAILED) &&
             (ws_conn_state(p.c) & WS_ST_CLOSE_SENT) && code == (int)t->code &&
             masked == (t->role == WS_ROLE_CLIENT),
         "%s: %s, close %u (%s)", t->name, ws_err_name(t->err), t->code,
         chunk ? "byte-wise" : "at once");
      if (rv != t->err || code != (int)t->code)
        printf("#   got %s, close %d\n",
               ws_err_name(rv) ? ws_err_name(rv) : "0", code);
      IS_INT(ws_conn_send(p.c, WS_OP_TEXT, more, 1, WS_SEND_FIN, NULL),
             WS_E_operation_aborted, "%s: send after failure", t->name);
      peer_free(&p);
    }
  }
}

TEST(too_big_limits) {
  int chunk;
  for (chunk = 0; chunk < 2; chunk++) {
    ws_conn_config cfg;
    peer p;
    uint8_t in[64];
    size_t n = 0;
    ws_conn_config_default(&cfg, WS_ROLE_SERVER);
    cfg.read_message_max = 10;
    peer_init_cfg(&p, &cfg);
    n += mk(in + n, 0x02, 1, "12345", 5);
    n += mk(in + n, 0x80, 1, "67890", 5);
    n += mk(in + n, 0x81, 1, "0123456789", 10);
    IS_INT(feed(p.c, in, n, (size_t)chunk), 0,
           "messages of exactly read_message_max are fine");
    IS_INT(p.nmsg, 2, "both arrived");
    peer_free(&p);
  }
  {
    ws_conn_config cfg;
    peer p;
    uint8_t in[16];
    size_t n;
    ws_conn_config_default(&cfg, WS_ROLE_CLIENT);
    cfg.read_message_max = 0;
    peer_init_cfg(&p, &cfg);
    /* A 2^40-byte frame header is fine without a limit. */
    memcpy(in, "\x82\x7f\0\0\x01\0\0\0\0\0", 10);
    n = 10;
    IS_INT(feed(p.c, in, n, 0), 0, "no limit: a 2^40-byte frame starts");
    IS_INT(feed(p.c, (uint8_t *)"abc", 3, 0), 0, "and its data flows");
    IS_INT(p.data_calls, 1, "delivered as it arrives");
    peer_free(&p);
  }
}

TEST(close_handshake) {
  int chunk;
  for (chunk = 0; chunk < 2; chunk++) {
    peer cl, sv;
    const char *r;
    size_t rl;
    uint8_t *b;
    size_t n;
    static const uint8_t echo[] = {0x88, 0x02, 0x03, 0xe8};
    static int tok;
    peer_init(&cl, WS_ROLE_CLIENT);
    peer_init(&sv, WS_ROLE_SERVER);
    IS_INT(ws_conn_close(cl.c, 1000, "bye", 3, &tok), 0, "client closes");
    IS_INT(ws_conn_state(cl.c), WS_ST_CLOSE_SENT, "client: close sent");
    IS_INT(pump(&cl, &sv, (size_t)chunk, 0), 0, "to the server");
    OK(cl.nsent == 1 && cl.sent_tok[0] == &tok && cl.sent_st[0] == 0,
       "the close completes");
    IS_INT(ws_conn_state(cl.c), WS_ST_CLOSE_SENT | WS_ST_CLOSE_WRITTEN,
           "client: close written");
    OK(sv.nctl == 1 && sv.ctl_op[0] == WS_OP_CLOSE && sv.ctl_len[0] == 5 &&
           memcmp(sv.ctl_pl[0],
                  "\x03\xe8"
                  "bye",
                  5) == 0,
       "server: on_control gets the whole close payload");
    OK(sv.ctl_state[0] & WS_ST_CLOSE_RECEIVED,
       "server: close received before on_control");
    IS_INT(ws_conn_peer_close(sv.c, &r, &rl), 1000, "server: peer code");
    IS_MEM(r, rl, "bye", 3, "server: peer reason");
    IS_INT(ws_conn_state(sv.c), WS_ST_CLOSE_RECEIVED | WS_ST_CLOSE_SENT,
           "server: echo queued");
    b = out_flatten(sv.c, &n);
    IS_MEM(b, n, echo, sizeof echo, "server: the echo is 88 02 03 e8");
    free(b);
    IS_INT(ws_conn_send(sv.c, WS_OP_TEXT, (const uint8_t *)"x", 1, WS_SEND_FIN,
                        NULL),
           WS_E_operation_aborted, "server: send after the echo");
    IS_INT(ws_conn_ping(sv.c, NULL, 0, NULL), WS_E_operation_aborted,
           "server: ping after the echo");
    IS_INT(ws_conn_pong(sv.c, NULL, 0, NULL), WS_E_operation_aborted,
           "server: pong after the echo");
    IS_INT(ws_conn_close(sv.c, 1000, NULL, 0, NULL), WS_E_operation_aborted,
           "server: close after the echo");
    IS_INT(pump(&sv, &cl, (size_t)chunk, 0), 0, "echo to the client");
    IS_INT(ws_conn_state(sv.c),
           WS_ST_CLOSE_RECEIVED | WS_ST_CLOSE_SENT | WS_ST_CLOSE_WRITTEN,
           "server: closed");
    IS_INT(ws_conn_state(cl.c),
           WS_ST_CLOSE_RECEIVED | WS_ST_CLOSE_SENT | WS_ST_CLOSE_WRITTEN,
           "client: closed");
    IS_INT(ws_conn_peer_close(cl.c, &r, &rl), 1000, "client: echoed code");
    IS_INT(rl, 0, "client: no reason in the echo");
    IS_INT(ws_conn_recv(sv.c, (uint8_t *)"\x81\x00garbage", 9), 0,
           "bytes after a close are ignored");
    IS_INT(ws_conn_pong(cl.c, NULL, 0, NULL), WS_E_operation_aborted,
           "client: pong after close");
    IS_INT(ws_conn_ping(cl.c, NULL, 0, NULL), WS_E_operation_aborted,
           "client: ping after close");
    peer_free(&cl);
    peer_free(&sv);
  }
}

TEST(close_echo_codes) {
  static const struct {
    unsigned code;
    unsigned echo;
  } t[] = {{0, 1000}, {1001, 1001}, {4000, 4000}, {3000, 3000}, {1014, 1014}};
  size_t i;
  int chunk;
  for (i = 0; i < sizeof t / sizeof t[0]; i++)
    for (chunk = 0; chunk < 2; chunk++) {
      peer cl, sv;
      int c1, c2;
      peer_init(&cl, WS_ROLE_CLIENT);
      peer_init(&sv, WS_ROLE_SERVER);
      ws_conn_close(sv.c, t[i].code, NULL, 0, NULL);
      pump(&sv, &cl, (size_t)chunk, 0);
      c1 = queued_close_code(cl.c);
      OK(c1 == (int)t[i].echo && queued_last_masked(cl.c) == 1,
         "server closes with %u, client echoes %u masked", t[i].code,
         t[i].echo);
      OK(cl.nctl == 1 && cl.ctl_len[0] == (t[i].code ? 2u : 0u) &&
             ws_conn_peer_close(cl.c, NULL, NULL) == t[i].code,
         "client sees code %u", t[i].code);
      pump(&cl, &sv, (size_t)chunk, 0);
      c2 = (int)ws_conn_peer_close(sv.c, NULL, NULL);
      IS_INT(c2, t[i].echo, "server gets the echo");
      peer_free(&cl);
      peer_free(&sv);
    }
}

TEST(close_arguments) {
  peer p;
  char reason[130];
  memset(reason, 'r', sizeof reason);
  peer_init(&p, WS_ROLE_SERVER);
  IS_INT(ws_conn_close(p.c, 1005, NULL, 0, NULL), WS_E_bad_close_code,
         "1005 cannot be sent");
  IS_INT(ws_conn_close(p.c, 5000, NULL, 0, NULL), WS_E_bad_close_code,
         "5000 cannot be sent");
  IS_INT(ws_conn_close(p.c, 0, "x", 1, NULL), WS_E_bad_close_code,
         "a reason needs a code");
  IS_INT(ws_conn_close(p.c, 1000, reason, 124, NULL), WS_E_bad_close_size,
         "reason of 124 bytes");
  IS_INT(ws_conn_close(p.c, 1000, "\xc3", 1, NULL), WS_E_bad_close_payload,
         "reason not UTF-8");
  IS_INT(ws_conn_state(p.c), 0, "still open");
  IS_INT(ws_conn_close(p.c, 1000, reason, 123, NULL), 0, "reason of 123 bytes");
  IS_INT(ws_conn_out_pending(p.c), 2 + 2 + 123, "a 127-byte close frame");
  IS_INT(ws_conn_close(p.c, 1000, NULL, 0, NULL), WS_E_operation_aborted,
         "a second close");
  peer_free(&p);
}

TEST(peer_close_drops_unstarted) {
  peer cl, sv;
  static int a, b;
  ws_iov iov[4];
  uint8_t *m = pattern(100, 0);
  peer_init(&cl, WS_ROLE_CLIENT);
  peer_init(&sv, WS_ROLE_SERVER);
  ws_conn_send(sv.c, WS_OP_BINARY, m, 100, WS_SEND_FIN, &a);
  ws_conn_send(sv.c, WS_OP_BINARY, m, 100, WS_SEND_FIN, &b);
  ws_conn_out_iov(sv.c, iov, 1); /* a is started */
  ws_conn_out_consume(sv.c, 1);
  ws_conn_close(cl.c, 1001, "away", 4, NULL);
  pump(&cl, &sv, 0, 0);
  OK(sv.nsent == 1 && sv.sent_tok[0] == &b &&
         sv.sent_st[0] == WS_E_operation_aborted,
     "the unstarted unit is dropped");
  IS_INT(ws_conn_out_pending(sv.c), 101 + 4, "a's rest, then the echo");
  ws_conn_out_consume(sv.c, 101);
  OK(sv.nsent == 2 && sv.sent_tok[1] == &a && sv.sent_st[1] == 0,
     "the started unit completes");
  IS_INT(queued_close_code(sv.c), 1001, "the echo is next");
  peer_free(&cl);
  peer_free(&sv);
  free(m);
}

TEST(ping_pong) {
  int chunk;
  for (chunk = 0; chunk < 2; chunk++) {
    peer cl, sv;
    uint8_t pl[126];
    static int tp, tq;
    memset(pl, 'p', sizeof pl);
    peer_init(&cl, WS_ROLE_CLIENT);
    peer_init(&sv, WS_ROLE_SERVER);
    IS_INT(ws_conn_ping(cl.c, pl, 126, NULL), WS_E_bad_control_size,
           "ping of 126 bytes");
    IS_INT(ws_conn_pong(cl.c, pl, 126, NULL), WS_E_bad_control_size,
           "pong of 126 bytes");
    IS_INT(ws_conn_ping(cl.c, pl, 125, &tp), 0, "ping of 125 bytes");
    IS_INT(pump(&cl, &sv, (size_t)chunk, 0), 0, "to the server");
    OK(sv.nctl == 1 && sv.ctl_op[0] == WS_OP_PING && sv.ctl_len[0] == 125,
       "server sees the ping");
    IS_INT(ws_conn_out_pending(sv.c), 2 + 125, "the pong is queued");
    IS_INT(pump(&sv, &cl, (size_t)chunk, 0), 0, "to the client");
    OK(cl.nctl == 1 && cl.ctl_op[0] == WS_OP_PONG && cl.ctl_len[0] == 125 &&
           memcmp(cl.ctl_pl[0], pl, 125) == 0,
       "client sees the pong with the ping's payload");
    IS_INT(sv.nsent, 0, "the automatic pong is not reported");
    OK(cl.nsent == 1 && cl.sent_tok[0] == &tp, "the ping completes");
    IS_INT(ws_conn_pong(sv.c, (const uint8_t *)"hb", 2, &tq), 0,
           "unsolicited pong");
    pump(&sv, &cl, (size_t)chunk, 0);
    OK(cl.nctl == 2 && cl.ctl_op[1] == WS_OP_PONG &&
           ws_conn_out_pending(cl.c) == 0,
       "it is reported, and not answered");
    /* Three pings in a row get three pongs. */
    ws_conn_ping(cl.c, (const uint8_t *)"1", 1, NULL);
    ws_conn_ping(cl.c, (const uint8_t *)"2", 1, NULL);
    ws_conn_ping(cl.c, (const uint8_t *)"3", 1, NULL);
    pump(&cl, &sv, (size_t)chunk, 0);
    pump(&sv, &cl, (size_t)chunk, 0);
    OK(cl.nctl == 5 && cl.ctl_pl[2][0] == '1' && cl.ctl_pl[3][0] == '2' &&
           cl.ctl_pl[4][0] == '3',
       "three pings, three pongs in order");
    /* After we sent a close, a ping is reported but not answered. */
    ws_conn_close(sv.c, 1000, NULL, 0, NULL);
    ws_conn_ping(cl.c, (const uint8_t *)"late", 4, NULL);
    pump(&cl, &sv, (size_t)chunk, 0);
    OK(sv.ctl_op[sv.nctl - 1] == WS_OP_PING &&
           queued_close_code(sv.c) == 1000 && ws_conn_out_pending(sv.c) == 4,
       "no pong after our close");
    peer_free(&cl);
    peer_free(&sv);
  }
}

TEST(queue_order) {
  peer sv, cl;
  static int ta, tb, tp, tq, tc;
  uint8_t *a = pattern(300, 0), *bb = pattern(10, 0), *b;
  ws_iov iov[4];
  size_t n, i;
  tframe f[8];
  int ok = 1;

  peer_init(&sv, WS_ROLE_SERVER);
  ws_conn_send(sv.c, WS_OP_BINARY, a, 300, WS_SEND_FIN, &ta);
  ws_conn_send(sv.c, WS_OP_BINARY, bb, 10, WS_SEND_FIN, &tb);
  IS_INT(ws_conn_out_iov(sv.c, iov, 1), 1, "one iov");
  IS_INT(iov[0].len, 4, "a's header");
  ws_conn_out_consume(sv.c, 3); /* inside a's header */
  ws_conn_ping(sv.c, (const uint8_t *)"P", 1, &tp);
  ws_conn_pong(sv.c, (const uint8_t *)"Q", 1, &tq);
  ws_conn_close(sv.c, 1000, NULL, 0, &tc);
  b = out_flatten(sv.c, &n);
  OK(n == 1 + 300 + 3 + 3 + 12 + 4 && b[0] == 0x2c, "the rest of a first");
  OK(parse_frames(b + 301, n - 301, f, 8) == 4 && f[0].op == WS_OP_PING &&
         f[1].op == WS_OP_PONG && f[2].op == WS_OP_BINARY &&
         f[3].op == WS_OP_CLOSE,
     "then ping, pong (in the order queued), b, close");
  free(b);
  IS_INT(ws_conn_out_pending(sv.c), n, "out_pending");
  /* One byte at a time: units complete in order. */
  for (i = 0; i < n; i++) {
    ws_conn_out_consume(sv.c, 1);
    ok &= ws_conn_out_pending(sv.c) == n - i - 1;
  }
  OK(ok, "pending drops by one each time");
  OK(sv.nsent == 5 && sv.sent_tok[0] == &ta && sv.sent_tok[1] == &tp &&
         sv.sent_tok[2] == &tq && sv.sent_tok[3] == &tb &&
         sv.sent_tok[4] == &tc,
     "completions: a, ping, pong, b, close");
  IS_INT(ws_conn_state(sv.c), WS_ST_CLOSE_SENT | WS_ST_CLOSE_WRITTEN,
         "close written after its last byte");
  peer_free(&sv);

  /* A control frame goes between write_some parts, not inside one. */
  peer_init(&cl, WS_ROLE_CLIENT);
  ws_conn_send(cl.c, WS_OP_TEXT, a, 100, 0, NULL);
  ws_conn_send(cl.c, WS_OP_TEXT, a, 100, WS_SEND_FIN, NULL);
  ws_conn_out_iov(cl.c, iov, 1);
  ws_conn_ping(cl.c, NULL, 0, NULL);
  b = out_flatten(cl.c, &n);
  OK(parse_frames(b, n, f, 8) == 3 && f[0].op == WS_OP_TEXT &&
         f[1].op == WS_OP_PING && f[2].op == WS_OP_CONT && f[2].fin,
     "ping between two parts of a message");
  free(b);
  peer_free(&cl);
  free(a);
  free(bb);
}

/* Reads every pending byte by consuming step bytes at a time, checking
 * that each out_iov starts where the last consume ended. */
static int consume_in_steps(ws_conn *c, size_t step, const uint8_t *want,
                            size_t n) {
  static ws_iov iov[70000];
  size_t pos = 0;
  while (ws_conn_out_pending(c) > 0) {
    size_t k = ws_conn_out_iov(c, iov, 3), i, got = 0, take;
    uint8_t tmp[64];
    for (i = 0; i < k && got < step; i++) {
      size_t l = iov[i].len < step - got ? iov[i].len : step - got;
      memcpy(tmp + got, iov[i].base, l);
      got += l;
    }
    take = got;
    if (pos + take > n || memcmp(tmp, want + pos, take) != 0) return 0;
    ws_conn_out_consume(c, take);
    pos += take;
    if (ws_conn_out_pending(c) != n - pos) return 0;
  }
  return pos == n;
}

TEST(partial_consume) {
  int role, kind;
  size_t step;
  for (role = 0; role < 2; role++)
    for (kind = 0; kind < 3; kind++) {
      int ok = 1;
      for (step = 1; step <= 13 && ok; step += 4) {
        ws_conn_config cfg;
        peer p;
        uint8_t *m = pattern(1000, 1), *want;
        uint8_t hdr[WS_MAX_FRAME_HEADER];
        size_t n, hl;
        ws_conn_config_default(&cfg, role);
        cfg.write_buffer_bytes = 64;
        peer_init_cfg(&p, &cfg);
        if (kind == 0) {
          ws_conn_send(p.c, WS_OP_TEXT, m, 1000, WS_SEND_FIN, NULL);
        } else if (kind == 1) {
          ws_conn_send(p.c, WS_OP_TEXT, m, 10, 0, NULL);
          ws_conn_ping(p.c, m, 5, NULL);
          ws_conn_send(p.c, WS_OP_TEXT, m, 0, 0, NULL);
          ws_conn_send(p.c, WS_OP_TEXT, m, 990, WS_SEND_FIN, NULL);
          ws_conn_close(p.c, 1000, "x", 1, NULL);
        } else if (role == WS_ROLE_SERVER) {
          hl = ws_frame_server_message(hdr, WS_OP_TEXT, 0, 1000);
          ws_conn_send_prebuilt(p.c, hdr, hl, m, 1000, NULL);
          ws_conn_send_prebuilt(p.c, hdr, hl, m, 1000, NULL);
        }
        want = out_flatten(p.c, &n);
        ok &= consume_in_steps(p.c, step, want, n);
        free(want);
        peer_free(&p);
        free(m);
      }
      if (kind == 2 && role == WS_ROLE_CLIENT) continue;
      OK(ok, "%s, %s: consumed 1, 5, 9 or 13 bytes at a time",
         role ? "server" : "client",
         kind == 0   ? "fragmented message"
         : kind == 1 ? "parts, ping, empty part, close"
                     : "prebuilt");
    }
}

TEST(prebuilt) {
  uint8_t hdr[WS_MAX_FRAME_HEADER];
  uint8_t *m = pattern(70000, 1);
  size_t hl = ws_frame_server_message(hdr, WS_OP_TEXT, 0, 70000);
  peer s1, s2, c1, c2;
  static int t1;
  peer_init(&s1, WS_ROLE_SERVER);
  peer_init(&s2, WS_ROLE_SERVER);
  peer_init(&c1, WS_ROLE_CLIENT);
  peer_init(&c2, WS_ROLE_CLIENT);
  IS_INT(ws_conn_send_prebuilt(s1.c, hdr, hl, m, 70000, &t1), 0, "s1");
  IS_INT(ws_conn_send_prebuilt(s2.c, hdr, hl, m, 70000, NULL), 0, "s2");
  IS_INT(ws_conn_out_pending(s1.c), hl + 70000, "pending");
  pump(&s1, &c1, 0, 0);
  pump(&s2, &c2, 1000, 0);
  OK(c1.nmsg == 1 && c1.last_len == 70000 && memcmp(c1.last, m, 70000) == 0,
     "client 1 gets it");
  OK(c2.nmsg == 1 && c2.last_len == 70000 && memcmp(c2.last, m, 70000) == 0,
     "client 2 gets it");
  OK(s1.nsent == 1 && s1.sent_tok[0] == &t1 && s1.sent_st[0] == 0, "completes");
  OK(ws_conn_send_prebuilt(c1.c, hdr, hl, m, 1, NULL) != 0,
     "a client cannot send prebuilt frames");
  ws_conn_close(s1.c, 1000, NULL, 0, NULL);
  IS_INT(ws_conn_send_prebuilt(s1.c, hdr, hl, m, 70000, NULL),
         WS_E_operation_aborted, "not after close");
  peer_free(&s1);
  peer_free(&s2);
  peer_free(&c1);
  peer_free(&c2);
  free(m);
}

TEST(abort) {
  peer p;
  static int ta, tb, tp;
  uint8_t *m = pattern(5000, 0);
  ws_iov iov[4];
  peer_init(&p, WS_ROLE_CLIENT);
  ws_conn_send(p.c, WS_OP_BINARY, m, 5000, WS_SEND_FIN, &ta);
  ws_conn_send(p.c, WS_OP_BINARY, m, 10, WS_SEND_FIN, &tb);
  ws_conn_out_iov(p.c, iov, 1); /* only a is started */
  ws_conn_out_consume(p.c, 100);
  ws_conn_ping(p.c, NULL, 0, &tp);
  ws_conn_abort(p.c);
  OK(p.nsent == 3 && p.sent_tok[0] == &ta && p.sent_tok[1] == &tp &&
         p.sent_tok[2] == &tb && p.sent_st[0] == WS_E_operation_aborted &&
         p.sent_st[1] == WS_E_operation_aborted &&
         p.sent_st[2] == WS_E_operation_aborted,
     "every unit, the started one too, completes with operation_aborted");
  IS_INT(ws_conn_out_pending(p.c), 0, "nothing pending");
  IS_INT(ws_conn_out_iov(p.c, iov, 4), 0, "nothing to write");
  IS_INT(ws_conn_state(p.c), WS_ST_FAILED, "failed");
  IS_INT(ws_conn_error(p.c), WS_E_operation_aborted, "error");
  IS_INT(ws_conn_recv(p.c, m, 10), WS_E_operation_aborted, "recv");
  IS_INT(ws_conn_send(p.c, WS_OP_BINARY, m, 1, WS_SEND_FIN, NULL),
         WS_E_operation_aborted, "send");
  IS_INT(ws_conn_close(p.c, 1000, NULL, 0, NULL), WS_E_operation_aborted,
         "close");
  ws_conn_abort(p.c);
  IS_INT(p.nsent, 3, "a second abort reports nothing");
  peer_free(&p);
  IS_INT(p.nsent, 3, "nor does free");

  /* Free with units queued completes them first. */
  peer_init(&p, WS_ROLE_SERVER);
  ws_conn_send(p.c, WS_OP_BINARY, m, 10, WS_SEND_FIN, &ta);
  ws_conn_close(p.c, 1000, NULL, 0, &tb);
  ws_conn_free(p.c);
  OK(p.nsent == 2 && p.sent_st[0] == WS_E_operation_aborted &&
         p.sent_tok[1] == &tb,
     "free aborts queued units");
  free(p.cur);
  free(p.last);
  free(m);
}

TEST(failure_keeps_started) {
  peer p;
  static int ta, tb;
  uint8_t *m = pattern(200, 0), in[16];
  ws_iov iov[4];
  size_t n;
  uint8_t *b;
  tframe f[4];
  peer_init(&p, WS_ROLE_SERVER);
  ws_conn_send(p.c, WS_OP_BINARY, m, 200, WS_SEND_FIN, &ta);
  ws_conn_send(p.c, WS_OP_BINARY, m, 20, WS_SEND_FIN, &tb);
  ws_conn_out_iov(p.c, iov, 1);
  ws_conn_out_consume(p.c, 2);
  n = mk(in, 0x83, 1, "", 0);
  IS_INT(feed(p.c, in, n, 0), WS_E_bad_opcode, "protocol error");
  OK(p.nsent == 1 && p.sent_tok[0] == &tb &&
         p.sent_st[0] == WS_E_operation_aborted,
     "the unstarted unit is dropped");
  b = out_flatten(p.c, &n);
  /* a's header is 4 bytes, 2 of them consumed. */
  OK(n == 202 + 4 && memcmp(b + 2, m, 200) == 0, "a's rest stays");
  OK(parse_frames(b + 202, 4, f, 4) == 1 && f[0].op == WS_OP_CLOSE &&
         f[0].payload[0] == 0x03 && f[0].payload[1] == 0xea,
     "then the 1002 close");
  free(b);
  ws_conn_out_consume(p.c, 206);
  OK(p.nsent == 2 && p.sent_tok[1] == &ta && p.sent_st[1] == 0, "a completes");
  IS_INT(ws_conn_state(p.c),
         WS_ST_FAILED | WS_ST_CLOSE_SENT | WS_ST_CLOSE_WRITTEN, "state");
  peer_free(&p);
  free(m);
}

TEST(failure_keeps_queued_close) {
  int chunk;
  for (chunk = 0; chunk < 2; chunk++) {
    peer p;
    static int ta, tc;
    uint8_t in[16];
    size_t n;
    peer_init(&p, WS_ROLE_SERVER);
    ws_conn_send(p.c, WS_OP_BINARY, (const uint8_t *)"abc", 3, WS_SEND_FIN,
                 &ta);
    ws_conn_close(p.c, 4001, "mine", 4, &tc);
    n = mk(in, 0x81, 1, "\xff", 1);
    IS_INT(feed(p.c, in, n, (size_t)chunk), WS_E_bad_frame_payload,
           "protocol error after our close was queued");
    OK(p.nsent == 1 && p.sent_tok[0] == &ta &&
           p.sent_st[0] == WS_E_operation_aborted,
       "the message is dropped");
    IS_INT(queued_close_code(p.c), 4001, "our close still goes out");
    IS_INT(ws_conn_out_pending(p.c), 2 + 2 + 4, "and only it");
    ws_conn_out_consume(p.c, 8);
    OK(p.nsent == 2 && p.sent_tok[1] == &tc && p.sent_st[1] == 0,
       "it completes");
    IS_INT(ws_conn_state(p.c),
           WS_ST_FAILED | WS_ST_CLOSE_SENT | WS_ST_CLOSE_WRITTEN, "state");
    peer_free(&p);
  }
}

static int stop_rv;

static int on_data_stop(void *user, const uint8_t *d, size_t n, unsigned f) {
  (void)user;
  (void)d;
  (void)n;
  (void)f;
  return stop_rv;
}

TEST(callback_errors) {
  ws_conn_callbacks cb = {on_data_stop, NULL, NULL};
  ws_conn_config cfg;
  test_rng r = {1, 0, 0};
  ws_conn *c;
  uint8_t in[32];
  size_t n;

  ws_conn_config_default(&cfg, WS_ROLE_SERVER);
  cfg.rng.ud = &r;
  cfg.rng.fill = rng_fill;
  c = ws_conn_new(&cfg, &cb, NULL);
  stop_rv = -7;
  n = mk(in, 0x81, 1, "hi", 2);
  IS_INT(feed(c, in, n, 0), -7, "on_data's error is passed through");
  IS_INT(ws_conn_state(c), 0, "the engine is not failed");
  stop_rv = 0;
  n = mk(in, 0x81, 1, "ok", 2);
  IS_INT(feed(c, in, n, 0), 0, "the next frame is read");
  ws_conn_free(c);
}

TEST(accessors) {
  peer p;
  ws_pmd_params pm;
  ws_pmd_config pc;
  uint8_t in[32];
  size_t n;
  const char *r;
  size_t rl;

  peer_init(&p, WS_ROLE_SERVER);
  IS_INT(ws_conn_got_text(p.c), -1, "got_text before any frame");
  n = mk(in, 0x02, 1, "ab", 2);
  feed(p.c, in, n, 0);
  IS_INT(ws_conn_got_text(p.c), 0, "binary");
  IS_INT(ws_conn_is_message_done(p.c), 0, "message not done");
  n = mk(in, 0x80, 1, "c", 1);
  feed(p.c, in, n, 0);
  IS_INT(ws_conn_is_message_done(p.c), 1, "message done");
  n = mk(in, 0x81, 1, "x", 1);
  feed(p.c, in, n, 0);
  IS_INT(ws_conn_got_text(p.c), 1, "text");
  IS_INT(ws_conn_peer_close(p.c, &r, &rl), 0, "no peer close yet");
  IS_INT(rl, 0, "no reason");
  memset(&pm, 0, sizeof pm);
  memset(&pc, 0, sizeof pc);
  IS_INT(ws_conn_set_pmd(p.c, &pm, &pc), 0, "inactive pmd params");
  pm.active = 1;
  IS_INT(ws_conn_set_pmd(p.c, &pm, &pc), WS_E_bad_extension,
         "permessage-deflate not supported yet");
  pm.active = 7;
  ws_conn_get_pmd(p.c, &pm);
  IS_INT(pm.active, 0, "get_pmd: inactive");
  IS_INT(ws_conn_send(p.c, WS_OP_PING, in, 1, WS_SEND_FIN, NULL),
         WS_E_bad_opcode, "send with a control opcode");
  peer_free(&p);
}

TEST(config) {
  ws_conn_config cfg;
  test_rng r = {1, 0, 0};
  ws_conn *c;

  ws_conn_config_default(&cfg, WS_ROLE_CLIENT);
  OK(cfg.read_message_max == 16u << 20 && cfg.write_buffer_bytes == 4096 &&
         cfg.auto_fragment == 1 && cfg.secure_prng == 1 && !cfg.alloc,
     "defaults");
  OK(ws_conn_new(&cfg, &callbacks, NULL) == NULL, "client without an rng");
  cfg.rng.ud = &r;
  cfg.rng.fill = rng_fill;
  cfg.write_buffer_bytes = 7;
  OK(ws_conn_new(&cfg, &callbacks, NULL) == NULL, "write_buffer_bytes 7");
  cfg.write_buffer_bytes = 8;
  cfg.role = 2;
  OK(ws_conn_new(&cfg, &callbacks, NULL) == NULL, "bad role");
  cfg.role = WS_ROLE_CLIENT;
  cfg.secure_prng = 0;
  r.fail = 1;
  OK(ws_conn_new(&cfg, &callbacks, NULL) == NULL,
     "fast PRNG and the rng fails");
  r.fail = 0;
  c = ws_conn_new(&cfg, NULL, NULL);
  OK(c != NULL, "no callbacks at all");
  ws_conn_free(c);
  ws_conn_config_default(&cfg, WS_ROLE_SERVER);
  c = ws_conn_new(&cfg, &callbacks, NULL);
  OK(c != NULL, "a server needs no rng");
  ws_conn_free(c);
  ws_conn_free(NULL);
}

TEST(mask_sources) {
  ws_conn_config cfg;
  peer p;
  uint8_t *m = pattern(100000, 0);
  long calls;

  ws_conn_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.secure_prng = 0;
  peer_init_cfg(&p, &cfg);
  calls = p.rng.calls;
  ws_conn_send(p.c, WS_OP_BINARY, m, 100000, WS_SEND_FIN, NULL);
  ws_conn_ping(p.c, NULL, 0, NULL);
  IS_INT(p.rng.calls - calls, 0, "fast PRNG: the rng is not called again");
  p.rng.fail = 1;
  IS_INT(ws_conn_send(p.c, WS_OP_BINARY, m, 10, WS_SEND_FIN, NULL), 0,
         "nor needed");
  peer_free(&p);

  ws_conn_config_default(&cfg, WS_ROLE_CLIENT);
  peer_init_cfg(&p, &cfg);
  calls = p.rng.calls;
  ws_conn_send(p.c, WS_OP_BINARY, m, 100000, WS_SEND_FIN, NULL);
  IS_INT(p.rng.calls - calls, 1, "secure: 25 keys in one rng call");
  p.rng.fail = 1;
  IS_INT(ws_conn_send(p.c, WS_OP_BINARY, m, 10, WS_SEND_FIN, NULL),
         WS_E_no_memory, "secure: rng failure");
  IS_INT(ws_conn_ping(p.c, NULL, 0, NULL), WS_E_no_memory,
         "secure: rng failure on ping");
  IS_INT(ws_conn_out_pending(p.c) > 100000, 1, "the first message stays");
  cfg.secure_prng = 0;
  IS_INT(ws_conn_reconfigure(p.c, &cfg), WS_E_no_memory,
         "switching to the fast PRNG needs a seed");
  p.rng.fail = 0;
  IS_INT(ws_conn_reconfigure(p.c, &cfg), 0, "now it has one");
  peer_free(&p);
  free(m);
}

/* One session with allocation failures: every API call may fail; the
 * engines must stay consistent and free everything. */
static void session(counting *a) {
  ws_allocator al = {a, cnt_malloc, cnt_realloc, cnt_free};
  ws_conn_config cfg;
  peer cl, sv;
  uint8_t *m = pattern(10000, 1);
  int i, ok_c, ok_s;

  ws_conn_config_default(&cfg, WS_ROLE_CLIENT);
  cfg.alloc = &al;
  cfg.secure_prng = 0;
  ok_c = peer_init_cfg(&cl, &cfg);
  ws_conn_config_default(&cfg, WS_ROLE_SERVER);
  cfg.alloc = &al;
  ok_s = peer_init_cfg(&sv, &cfg);
  if (ok_c && ok_s) {
    for (i = 0; i < 3; i++) {
      ws_conn_send(cl.c, WS_OP_TEXT, m, 10000, WS_SEND_FIN, NULL);
      ws_conn_send(cl.c, WS_OP_BINARY, m, 10, 0, NULL);
      ws_conn_ping(cl.c, m, 3, m);
      ws_conn_send(cl.c, WS_OP_BINARY, m, 10, WS_SEND_FIN, NULL);
      ws_conn_send(sv.c, WS_OP_TEXT, m, 5000, WS_SEND_FIN, m);
      ws_conn_pong(sv.c, m, 3, NULL);
      pump(&cl, &sv, 0, 0);
      pump(&sv, &cl, 100, 0);
    }
    ws_conn_close(cl.c, 1000, "bye", 3, NULL);
    pump(&cl, &sv, 0, 0);
    pump(&sv, &cl, 0, 0);
    ws_conn_send(sv.c, WS_OP_TEXT, m, 5000, WS_SEND_FIN, m);
  }
  if (ok_c) peer_free(&cl);
  if (ok_s) peer_free(&sv);
  if (!ok_c) {
    free(cl.cur);
    free(cl.last);
  }
  if (!ok_s) {
    free(sv.cur);
    free(sv.last);
  }
  free(m);
}

TEST(failing_allocator) {
  counting a;
  long total, n;
  int leaks = 0;

  memset(&a, 0, sizeof a);
  session(&a);
  total = a.count;
  OK(total > 20 && a.allocs == a.frees, "a clean run: %ld allocations", total);
  for (n = 1; n <= total + 1; n++) {
    memset(&a, 0, sizeof a);
    a.fail_at = n;
    session(&a);
    if (a.allocs != a.frees) {
      if (!leaks) printf("# leak with allocation %ld failing\n", n);
      leaks++;
    }
  }
  IS_INT(leaks, 0, "allocation N fails, for every N: no leak, no crash");
}

/* Allocation failures while receiving: the auto-pong and the echo. */
TEST(failing_allocator_recv) {
  counting a;
  ws_allocator al = {&a, cnt_malloc, cnt_realloc, cnt_free};
  ws_conn_config cfg;
  peer p;
  uint8_t in[64];
  size_t n;

  memset(&a, 0, sizeof a);
  ws_conn_config_default(&cfg, WS_ROLE_SERVER);
  cfg.alloc = &al;
  peer_init_cfg(&p, &cfg);
  /* Allocation 1 is the control payload buffer (made when a control frame
   * with a payload arrives), 2 the automatic reply. */
  a.fail_at = a.count + 2;
  n = mk(in, 0x89, 1, "x", 1);
  IS_INT(feed(p.c, in, n, 0), WS_E_no_memory, "no memory for the pong");
  IS_INT(ws_conn_state(p.c), 0, "not failed");
  a.fail_at = a.count + 2;
  n = mk(in, 0x88, 1, "\x03\xe8", 2);
  IS_INT(feed(p.c, in, n, 0), WS_E_no_memory, "no memory for the echo");
  IS_INT(ws_conn_peer_close(p.c, NULL, NULL), 1000, "the close is known");
  peer_free(&p);
  IS_INT(a.allocs, a.frees, "no leak");

  /* No memory for the control payload: the frame cannot be taken in. */
  memset(&a, 0, sizeof a);
  peer_init_cfg(&p, &cfg);
  a.fail_at = a.count + 1;
  n = mk(in, 0x89, 1, "x", 1);
  IS_INT(feed(p.c, in, n, 0), WS_E_no_memory, "no memory for a ping's payload");
  OK(ws_conn_state(p.c) & WS_ST_FAILED, "failed");
  peer_free(&p);
  IS_INT(a.allocs, a.frees, "no leak");

  memset(&a, 0, sizeof a);
  peer_init_cfg(&p, &cfg);
  a.fail_at = a.count + 1;
  n = mk(in, 0x83, 1, "", 0);
  IS_INT(feed(p.c, in, n, 0), WS_E_bad_opcode,
         "no memory for the failing close: the error stands");
  IS_INT(ws_conn_state(p.c), WS_ST_FAILED, "failed, no close queued");
  peer_free(&p);
  IS_INT(a.allocs, a.frees, "no leak");
}

TEST(struct_size) {
  counting a;
  ws_allocator al = {&a, cnt_malloc, cnt_realloc, cnt_free};
  ws_conn_config cfg;
  ws_conn *c;
  memset(&a, 0, sizeof a);
  ws_conn_config_default(&cfg, WS_ROLE_SERVER);
  cfg.alloc = &al;
  c = ws_conn_new(&cfg, NULL, NULL);
  IS_INT(a.allocs, 1, "an idle server engine is one allocation");
  ws_conn_free(c);
}

int main(void) {
  RUN(messages);
  RUN(many_messages_both_ways);
  RUN(write_some);
  RUN(auto_fragment);
  RUN(reconfigure);
  RUN(control_between_fragments);
  RUN(protocol_errors);
  RUN(too_big_limits);
  RUN(close_handshake);
  RUN(close_echo_codes);
  RUN(close_arguments);
  RUN(peer_close_drops_unstarted);
  RUN(ping_pong);
  RUN(queue_order);
  RUN(partial_consume);
  RUN(prebuilt);
  RUN(abort);
  RUN(failure_keeps_started);
  RUN(failure_keeps_queued_close);
  RUN(callback_errors);
  RUN(accessors);
  RUN(config);
  RUN(mask_sources);
  RUN(failing_allocator);
  RUN(failing_allocator_recv);
  RUN(struct_size);
  free(scratch);
  return tap_done();
}
