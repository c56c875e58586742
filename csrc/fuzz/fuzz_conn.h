/*
 * The shared body of the connection fuzzers (fuzz_conn_server.c and
 * fuzz_conn_client.c), after Beast's test/fuzz/websocket_server.cpp: the
 * first bytes choose the options, the rest is what the peer sends, fed in
 * pieces of varying size, with sends, pings, pongs, closes, out_iov,
 * partial consumes, reconfigures and aborts in between, all chosen by a
 * generator seeded from the input.
 *
 * Input layout:
 *   byte 0   read_message_max (bits 0-1), auto_fragment (bit 2),
 *            secure_prng (bit 3), write_buffer_bytes (bits 4-6),
 *            permessage-deflate (bit 7)
 *   byte 1-3 seed of the action generator
 *   with permessage-deflate only:
 *   byte 4   server_max_window_bits - 8 (bits 0-2), client_max_window_bits
 *            - 8 (bits 3-5), server_no_context_takeover (bit 6),
 *            client_no_context_takeover (bit 7)
 *   byte 5   comp_level (low nibble % 10), mem_level (1 + high nibble % 9)
 *   rest     the bytes the peer sends (RSV1 frames carry deflate data)
 *
 * With permessage-deflate both engines get the same params; sends ask for
 * compression at random, and the server sends shared compressed frames
 * (ws_pmd_compress_message) too, so the mirror checks that every
 * compressed message we write inflates.
 *
 * Invariants checked (abort() on failure):
 *   - out_pending equals the sum of the iov lengths;
 *   - every queued token completes exactly once, never after free;
 *   - no callback runs after ws_conn_free returned;
 *   - message data comes in order (FIRST ... FIN), text is valid UTF-8 at
 *     every chunk and whole at FIN, no message exceeds read_message_max;
 *   - nothing is delivered after a close arrived or the engine failed;
 *   - a protocol error stays: later ws_conn_recv returns the same error;
 *   - the state flags are consistent;
 *   - every byte written out parses in a mirror engine of the other role
 *     without a protocol error (frames, masking, fragmentation are right).
 */
#ifndef FUZZ_CONN_H
#define FUZZ_CONN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_conn.h"

#define FZ_TOKENS 256

/* The harness state passed to every callback. */
typedef struct {
  ws_conn *c;                    /* the engine under test */
  ws_conn *mirror;               /* the other side, fed our output */
  int freed;                     /* ws_conn_free(c) has returned */
  int aborted;                   /* the harness called ws_conn_abort */
  uint64_t max;                  /* read_message_max */
  uint64_t msg_len;              /* bytes of the message being delivered */
  int in_msg;                    /* a message is being delivered */
  int text;                      /* it is text */
  ws_utf8 utf8;                  /* validator of the text delivered */
  uint8_t token_done[FZ_TOKENS]; /* completions per token */
  int ntokens;                   /* tokens handed out */
  uint32_t rng;                  /* the rng given to the engine */
  int pmd;                       /* permessage-deflate is on */
  int tx_bits;                   /* window bits of our direction */
  int level, mem_level;          /* compression settings */
  uint8_t *shared[FZ_TOKENS];    /* prebuilt compressed frames to free */
  const uint8_t *in;             /* the buffer given to ws_conn_recv */
  size_t in_len;                 /* its length */
  int nshared;
} fz_ctx;

#define FZ_CHECK(cond)                                                         \
  do {                                                                         \
    if (!(cond)) abort();                                                      \
  } while (0)

/* Payload for sends: ASCII, so text messages are valid; longer than any
 * control payload the harness asks for (up to 129 bytes). */
static const uint8_t *fz_payload(void) {
  static const uint8_t text[] =
      "The quick brown fox jumps over the lazy dog. 0123456789 "
      "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ !? "
      "Pack my box with five dozen liquor jugs.";
  return text;
}

#define FZ_PAYLOAD_LEN 150

static int fz_on_data(void *user, const uint8_t *data, size_t len,
                      unsigned flags) {
  fz_ctx *z = user;
  unsigned st;
  FZ_CHECK(!z->freed);
  st = ws_conn_state(z->c);
  FZ_CHECK(!(st & (WS_ST_FAILED | WS_ST_CLOSE_RECEIVED)));
  if (flags & WS_DATA_FIRST) {
    FZ_CHECK(!z->in_msg);
    z->in_msg = 1;
    z->msg_len = 0;
    z->text = (flags & WS_DATA_TEXT) != 0;
    ws_utf8_reset(&z->utf8);
  } else {
    FZ_CHECK(z->in_msg);
    FZ_CHECK(z->text == ((flags & WS_DATA_TEXT) != 0));
  }
  FZ_CHECK(len > 0 || (flags & WS_DATA_FIN));
  /* INPLACE data is in the caller's buffer; inflated data never is */
  if ((flags & WS_DATA_INPLACE) && len > 0)
    FZ_CHECK(data >= z->in && data + len <= z->in + z->in_len);
  if (!(flags & WS_DATA_INPLACE))
    FZ_CHECK(len == 0 || data + len <= z->in || data >= z->in + z->in_len);
  z->msg_len += len;
  FZ_CHECK(z->max == 0 || z->msg_len <= z->max);
  if (z->text) {
    FZ_CHECK(ws_utf8_feed(&z->utf8, data, len) == 0);
    if (flags & WS_DATA_FIN) FZ_CHECK(ws_utf8_complete(&z->utf8));
  }
  FZ_CHECK(ws_conn_got_text(z->c) == z->text);
  FZ_CHECK(ws_conn_is_message_done(z->c) == ((flags & WS_DATA_FIN) != 0));
  if (flags & WS_DATA_FIN) z->in_msg = 0;
  return 0;
}

static int fz_on_control(void *user, int op, const uint8_t *pl, size_t len) {
  fz_ctx *z = user;
  FZ_CHECK(!z->freed);
  FZ_CHECK(op == WS_OP_PING || op == WS_OP_PONG || op == WS_OP_CLOSE);
  FZ_CHECK(len <= WS_MAX_CONTROL_PAYLOAD);
  FZ_CHECK(!(ws_conn_state(z->c) & WS_ST_FAILED));
  if (op == WS_OP_CLOSE) {
    const char *r;
    size_t rl;
    unsigned code = ws_conn_peer_close(z->c, &r, &rl);
    FZ_CHECK(ws_conn_state(z->c) & WS_ST_CLOSE_RECEIVED);
    FZ_CHECK(ws_conn_state(z->c) & WS_ST_CLOSE_SENT);
    FZ_CHECK(len == 0 ? code == 0 : ws_close_code_valid(code));
    FZ_CHECK(len == 0 ||
             (rl == len - 2 && ws_utf8_valid((const uint8_t *)r, rl)));
  }
  (void)pl;
  return 0;
}

static void fz_on_sent(void *user, void *token, int status) {
  fz_ctx *z = user;
  size_t id = (size_t)((uint8_t *)token - z->token_done);
  FZ_CHECK(!z->freed);
  FZ_CHECK(id < FZ_TOKENS && (int)id < z->ntokens);
  FZ_CHECK(status == 0 || status == WS_E_operation_aborted);
  FZ_CHECK(z->token_done[id] == 0);
  z->token_done[id] = 1;
}

/* The mirror only needs to parse; its callbacks accept anything. */
static int fz_m_data(void *u, const uint8_t *d, size_t n, unsigned f) {
  (void)u;
  (void)d;
  (void)n;
  (void)f;
  return 0;
}

static int fz_rng_fill(void *ud, uint8_t *out, size_t n) {
  fz_ctx *z = ud;
  size_t i;
  for (i = 0; i < n; i++) {
    z->rng = z->rng * 1664525u + 1013904223u;
    out[i] = (uint8_t)(z->rng >> 24);
  }
  return 0;
}

/* A new token, or NULL (not reported) about one time in eight. */
static void *fz_token(fz_ctx *z, uint32_t r) {
  if ((r & 7) == 0 || z->ntokens >= FZ_TOKENS) return NULL;
  return &z->token_done[z->ntokens++];
}

/* A call given tok failed: no completion may come for it (marking it done
 * makes a later one trip the check in fz_on_sent). */
static void fz_unused(fz_ctx *z, void *tok, int rv) {
  if (rv != 0 && tok) z->token_done[(uint8_t *)tok - z->token_done] = 1;
}

static uint32_t fz_next(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/* Checks out_pending against out_iov, then writes (consumes) some bytes,
 * feeding them to the mirror. */
static void fz_write(fz_ctx *z, uint32_t r, int all) {
  ws_iov iov[64];
  size_t n, i, sum = 0, take;
  uint8_t buf[4096];

  n = ws_conn_out_iov(z->c, iov, 64);
  for (i = 0; i < n; i++) {
    FZ_CHECK(iov[i].len > 0);
    sum += iov[i].len;
  }
  if (n < 64) FZ_CHECK(sum == ws_conn_out_pending(z->c));
  FZ_CHECK(sum <= ws_conn_out_pending(z->c));
  take = all ? sum : (r % 3 == 0 ? sum : (sum ? (r >> 8) % sum + 1 : 0));
  /* Copy the bytes to the mirror, as a transport would write them. */
  {
    size_t left = take, k = 0, off = 0;
    while (left > 0 && k < n) {
      size_t piece = iov[k].len - off;
      if (piece > left) piece = left;
      if (piece > sizeof buf) piece = sizeof buf;
      memcpy(buf, iov[k].base + off, piece);
      if (z->mirror) {
        int rv = ws_conn_recv(z->mirror, buf, piece);
        FZ_CHECK(ws_err_condition(rv) != WS_COND_PROTOCOL);
      }
      off += piece;
      left -= piece;
      if (off == iov[k].len) {
        k++;
        off = 0;
      }
    }
  }
  ws_conn_out_consume(z->c, take);
}

static void fz_check_state(fz_ctx *z) {
  unsigned st = ws_conn_state(z->c);
  if (st & WS_ST_CLOSE_WRITTEN) FZ_CHECK(st & WS_ST_CLOSE_SENT);
  if (st & WS_ST_FAILED) FZ_CHECK(ws_conn_error(z->c) != 0);
  if (!(st & WS_ST_FAILED)) FZ_CHECK(ws_conn_error(z->c) == 0);
}

/* One action chosen by r. */
static void fz_action(fz_ctx *z, uint32_t r, uint32_t *s) {
  const uint8_t *pl = fz_payload();
  void *tok;
  int rv;

  switch (r % 16) {
  case 0:
  case 1:
  case 2: {
    /* A message part: whole, or write_some pieces. */
    size_t len = (r >> 8) % 3 == 0 ? fz_next(s) % 20000 : (r >> 10) % 200;
    const uint8_t *d = len <= FZ_PAYLOAD_LEN ? pl : NULL;
    static const uint8_t big[20000] = {0};
    unsigned flags = (((r >> 4) & 3) != 0 ? WS_SEND_FIN : 0) |
                     ((r >> 7) & 1 ? WS_SEND_COMPRESS : 0);
    int op = (r >> 6) & 1 ? WS_OP_TEXT : WS_OP_BINARY;
    if (!d) d = big; /* zeros are valid UTF-8 too */
    tok = fz_token(z, r >> 16);
    rv = ws_conn_send(z->c, op, d, len, flags, tok);
    fz_unused(z, tok, rv);
    FZ_CHECK(rv == 0 || rv == WS_E_operation_aborted || rv == WS_E_no_memory);
    break;
  }
  case 3:
    tok = fz_token(z, r >> 16);
    rv = ws_conn_ping(z->c, pl, (r >> 8) % 130, tok);
    fz_unused(z, tok, rv);
    FZ_CHECK(rv == 0 || rv == WS_E_operation_aborted ||
             rv == WS_E_bad_control_size);
    break;
  case 4:
    tok = fz_token(z, r >> 16);
    rv = ws_conn_pong(z->c, pl, (r >> 8) % 126, tok);
    fz_unused(z, tok, rv);
    FZ_CHECK(rv == 0 || rv == WS_E_operation_aborted);
    break;
  case 5:
    if ((r >> 8) % 4 == 0) {
      static const unsigned codes[] = {0, 1000, 1001, 1011, 4000, 1005};
      unsigned code = codes[(r >> 10) % 6];
      size_t rl = code && code != 1005 ? (r >> 13) % 20 : 0;
      tok = fz_token(z, r >> 16);
      rv = ws_conn_close(z->c, code, (const char *)pl, rl, tok);
      fz_unused(z, tok, rv);
      FZ_CHECK(rv == 0 || rv == WS_E_operation_aborted ||
               (code == 1005 && rv == WS_E_bad_close_code));
    }
    break;
  case 6:
  case 7:
  case 8:
  case 9: fz_write(z, r >> 4, 0); break;
  case 10:
    if ((r >> 8) % 64 == 0) {
      ws_conn_abort(z->c);
      z->aborted = 1;
      FZ_CHECK(ws_conn_out_pending(z->c) == 0);
      FZ_CHECK(ws_conn_state(z->c) & WS_ST_FAILED);
    }
    break;
  case 11:
    if ((r >> 8) % 8 == 0) {
      ws_conn_config cfg;
      ws_conn_config_default(&cfg, WS_ROLE_SERVER);
      cfg.write_buffer_bytes = 8 + (r >> 12) % 200;
      cfg.auto_fragment = (r >> 11) & 1;
      cfg.secure_prng = (r >> 20) & 1;
      cfg.read_message_max = z->max;
      FZ_CHECK(ws_conn_reconfigure(z->c, &cfg) == 0);
    }
    break;
  case 12: {
    const uint8_t *hdr = (const uint8_t *)"\x82\x05";
    tok = fz_token(z, r >> 16);
    rv = ws_conn_send_prebuilt(z->c, hdr, 2, pl, 5, tok);
    fz_unused(z, tok, rv);
    FZ_CHECK(rv == 0 || rv == WS_E_operation_aborted ||
             rv == WS_E_operation_in_progress || rv == WS_E_bad_unmasked_frame);
    break;
  }
  case 13: {
    /* A shared compressed frame: header and payload in one buffer that
     * lives until the end of the run. */
    uint8_t *zd, *frame, hdr[WS_MAX_FRAME_HEADER];
    size_t zl, hl, n = (r >> 8) % (FZ_PAYLOAD_LEN + 1);
    if (!z->pmd || z->nshared >= FZ_TOKENS) break;
    rv = ws_pmd_compress_message(NULL, z->tx_bits, z->level, z->mem_level, pl,
                                 n, &zd, &zl);
    FZ_CHECK(rv == 0 && zl > 0);
    hl = ws_frame_server_message(hdr, (r >> 7) & 1 ? WS_OP_TEXT : WS_OP_BINARY,
                                 1, zl);
    frame = malloc(hl + zl);
    FZ_CHECK(frame != NULL);
    memcpy(frame, hdr, hl);
    memcpy(frame + hl, zd, zl);
    free(zd);
    z->shared[z->nshared++] = frame;
    tok = fz_token(z, r >> 16);
    rv = ws_conn_send_prebuilt(z->c, frame, hl + zl, NULL, 0, tok);
    fz_unused(z, tok, rv);
    FZ_CHECK(rv == 0 || rv == WS_E_operation_aborted ||
             rv == WS_E_operation_in_progress || rv == WS_E_bad_unmasked_frame);
    break;
  }
  default: break;
  }
  fz_check_state(z);
}

static int fz_run(int role, const uint8_t *data, size_t size) {
  static const uint64_t maxes[4] = {0, 16, 1000, 16u << 20};
  static const size_t wbbs[8] = {8, 9, 16, 100, 125, 126, 4096, 65536};
  ws_conn_callbacks cb = {fz_on_data, fz_on_control, fz_on_sent};
  ws_conn_callbacks mcb = {fz_m_data, NULL, NULL};
  ws_conn_config cfg, mcfg;
  fz_ctx z;
  uint32_t s;
  size_t pos = 4;
  int failed_with = 0, i;

  if (size < 4) return 0;
  memset(&z, 0, sizeof z);
  z.rng = 7;
  ws_conn_config_default(&cfg, role);
  cfg.read_message_max = maxes[data[0] & 3];
  cfg.auto_fragment = (data[0] >> 2) & 1;
  cfg.secure_prng = (data[0] >> 3) & 1;
  cfg.write_buffer_bytes = wbbs[(data[0] >> 4) & 7];
  cfg.rng.ud = &z;
  cfg.rng.fill = fz_rng_fill;
  z.max = cfg.read_message_max;
  s = ((uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3]) + 1;
  z.c = ws_conn_new(&cfg, &cb, &z);
  FZ_CHECK(z.c != NULL);
  ws_conn_config_default(&mcfg, !role);
  mcfg.read_message_max = 0;
  mcfg.rng = cfg.rng;
  z.mirror = ws_conn_new(&mcfg, &mcb, NULL);
  FZ_CHECK(z.mirror != NULL);
  if (data[0] & 0x80) {
    ws_pmd_params pm;
    ws_pmd_config pc;
    ws_pmd_params got;
    if (size < 6) {
      ws_conn_free(z.c);
      ws_conn_free(z.mirror);
      return 0;
    }
    memset(&pm, 0, sizeof pm);
    pm.active = 1;
    pm.server_max_window_bits = 8 + (data[4] & 7);
    pm.client_max_window_bits = 8 + ((data[4] >> 3) & 7);
    pm.server_no_context_takeover = (data[4] >> 6) & 1;
    pm.client_no_context_takeover = (data[4] >> 7) & 1;
    ws_pmd_config_default(&pc);
    pc.comp_level = (data[5] & 15) % 10;
    pc.mem_level = 1 + (data[5] >> 4) % 9;
    pc.msg_size_threshold = (data[5] & 0x10) ? 20 : 0;
    FZ_CHECK(ws_conn_set_pmd(z.c, &pm, &pc) == 0);
    FZ_CHECK(ws_conn_set_pmd(z.mirror, &pm, &pc) == 0);
    ws_conn_get_pmd(z.c, &got);
    FZ_CHECK(got.active == 1 &&
             got.server_max_window_bits == pm.server_max_window_bits);
    z.pmd = 1;
    z.tx_bits = role == WS_ROLE_SERVER ? pm.server_max_window_bits
                                       : pm.client_max_window_bits;
    z.level = pc.comp_level;
    z.mem_level = pc.mem_level;
    pos = 6;
  }

  while (pos < size) {
    uint32_t r = fz_next(&s);
    size_t piece;
    uint8_t buf[2048];
    int rv;
    /* Up to three actions, then a piece of input. */
    for (i = (int)(r & 3); i > 0; i--)
      fz_action(&z, fz_next(&s), &s);
    r = fz_next(&s);
    piece = (r & 0x300) == 0       ? 1
            : (r & 0x300) == 0x100 ? r % 16 + 1
                                   : r % 2048 + 1;
    if (piece > size - pos) piece = size - pos;
    memcpy(buf, data + pos, piece);
    pos += piece;
    z.in = buf;
    z.in_len = piece;
    rv = ws_conn_recv(z.c, buf, piece);
    if (failed_with) {
      FZ_CHECK(rv == failed_with);
    } else if (ws_err_condition(rv) == WS_COND_PROTOCOL ||
               rv == WS_E_message_too_big || rv == WS_E_no_memory) {
      failed_with = rv;
      FZ_CHECK(ws_conn_error(z.c) == rv);
      FZ_CHECK(ws_conn_state(z.c) & WS_ST_FAILED);
      FZ_CHECK(ws_conn_state(z.c) & WS_ST_CLOSE_SENT);
    } else if (rv == WS_E_operation_aborted) {
      FZ_CHECK(z.aborted && (ws_conn_state(z.c) & WS_ST_FAILED));
      failed_with = rv;
    } else {
      FZ_CHECK(rv == 0);
    }
    fz_check_state(&z);
  }
  /* Drain: everything left goes out, unless aborted. */
  while (ws_conn_out_pending(z.c) > 0)
    fz_write(&z, 0, 1);
  FZ_CHECK(ws_conn_out_pending(z.c) == 0);
  if ((ws_conn_state(z.c) & WS_ST_CLOSE_SENT) && !z.aborted)
    FZ_CHECK(ws_conn_state(z.c) & WS_ST_CLOSE_WRITTEN);
  ws_conn_free(z.c);
  z.freed = 1;
  for (i = 0; i < z.ntokens; i++)
    FZ_CHECK(z.token_done[i] == 1);
  ws_conn_free(z.mirror);
  for (i = 0; i < z.nshared; i++)
    free(z.shared[i]);
  return 0;
}

#endif
