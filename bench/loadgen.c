/* bench/loadgen.c: a WebSocket (and raw TCP echo) load generator on libuv.
 *
 * It shares no code with luvws on purpose: its own HTTP upgrade request and
 * 101 check, its own client framing and masking, its own parser for the
 * echoed frames. Only SHA-1 and base64 come from wolfCrypt, and wss comes
 * from wolfSSL (no certificate verification: this is a load generator).
 *
 * Modes (see usage()):
 *   echo        --conns N --size B --inflight K --duration S
 *   handshakes  --handshakes --conns N --duration S
 *   idle        --idle N            (holds N open connections until SIGTERM)
 *   subscribe   --subscribe N --duration S
 *                                   (N connections that only receive: counts
 *                                   the messages and their delivery latency,
 *                                   from a send time in the first 8 bytes)
 *   probe       --probe             (waits until the port accepts a connection)
 *   free port   --free-port         (prints a free loopback port)
 * --raw speaks plain TCP echo instead of WebSocket, --tls speaks wss.
 *
 * Output: one line "RESULT key=value ..." on stdout; errors on stderr. The
 * exit status is 0 only if no error happened.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <uv.h>

#include "loadgen_openssl.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_HEAD 16384
#define READ_BUF (256 * 1024)
/* connections being set up at once in --idle and --subscribe (more, 256,
 * made node-ws stall with 10,000 subscribers: it then accepted a few a
 * second while publishing, and 256 connections waited for their 101) */
#define IDLE_PARALLEL 64

enum mode { MODE_ECHO, MODE_HANDSHAKES, MODE_IDLE, MODE_SUBSCRIBE, MODE_PROBE, MODE_FREEPORT };
enum cstate { CS_NONE, CS_CONNECTING, CS_TLS, CS_UPGRADE, CS_OPEN, CS_CLOSING, CS_DEAD };

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

typedef struct {
  uint8_t *data;
  size_t len, cap, off;
} buf_t;

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  uv_timer_t retry; /* --handshakes: back-off after an error */
  int id;
  int state;
  int writing; /* a uv_write of `out` is in progress */
  buf_t out;   /* bytes handed to the kernel (owned by wreq while writing) */
  buf_t pend;  /* bytes queued while `out` is being written */
  buf_t ptx;   /* --tls: plaintext staged for wolfSSL_write */
  buf_t tin;   /* --tls: ciphertext received, not yet consumed by wolfSSL */
  lgo *ot;     /* --tls with OpenSSL (--tls-lib openssl) */
  buf_t head;  /* the HTTP response head being read */
  WOLFSSL *ssl;
  char accept[32]; /* the Sec-WebSocket-Accept we expect */
  /* frame parser */
  uint8_t hb[14];
  int hlen, hneed;
  uint64_t remaining; /* payload bytes left in the current frame */
  int opcode, fin;
  int in_msg, msg_opcode;
  uint64_t msg_len;
  uint8_t ctrl[125];
  int ctrl_len;
  int got_close;
  /* messages in flight: ring of send times */
  uint64_t *ts;
  int ts_head, ts_count;
  uint64_t raw_rx;  /* --raw: bytes received of the current chunk */
  uint64_t rx_msgs; /* echoes received whole */
  int vcheck;       /* compare the current echo's bytes with those sent */
  uint8_t stamp[8]; /* --subscribe: the first 8 bytes of the message */
  uint64_t last_rx; /* --subscribe: when the last message arrived */
} conn_t;

static struct {
  const char *host;
  int port;
  const char *path;
  int conns;
  size_t size;
  int inflight;
  double duration, warmup, timeout;
  int mode, raw, tls, text, verify, busy_poll;
  size_t frag;
  int idle_n;
  const char *ciphers;
  int ossl; /* --tls through OpenSSL rather than wolfSSL */
} cfg = {
    .host = "127.0.0.1",
    .port = 0,
    .path = "/",
    .conns = 1,
    .size = 32,
    .inflight = 1,
    .duration = 3.0,
    .warmup = 0.3,
    .timeout = 10.0,
    .mode = MODE_ECHO,
    .verify = 1,
#ifdef LOADGEN_OPENSSL
    .ossl = 1,
#endif
};

static uv_loop_t *loop;
static struct sockaddr_storage g_addr;
static uint8_t *g_payload;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static conn_t *g_conns;
static int g_nconns;
static int g_open, g_alive, g_started;
static int g_running, g_measuring, g_finished;
static uint64_t g_msgs, g_hs, g_errors, g_err_total;
static uint64_t g_t0, g_start, g_last_progress;
/* How busy the generator itself was in the measured window: time in the loop
 * that was not spent waiting for events (or, with --busy-poll, polling for
 * them in vain). Near 1.0 means the generator, not the server, may limit. */
static uint64_t g_work, g_idle_ns, g_idle0;
static uint64_t g_late_close;
/* --subscribe: bytes received, latencies that were negative (a send time
 * from another clock), the largest latency, the generator's own CPU time */
static uint64_t g_bytes, g_negative, g_max_lat;
static double g_self0;
/* --subscribe: the ticks (distinct send times) seen in the measured window
 * and how many connections got each, to tell the share delivered */
#define MAX_TICKS 8192
static struct {
  uint64_t stamp;
  uint32_t count;
} g_ticks[MAX_TICKS];
static int g_nticks;
#define SETTLE_NS 500000000ull /* a tick is counted once it is this old */
/* When pinned to one CPU: how much of it something else took (other
 * processes, or the hypervisor's steal), so a disturbed run can be told. */
static int g_cpu = -1;
static double g_other0_cpu, g_other0_self; /* --handshakes: the server kept TCP open 1 s after its close frame */
static uv_timer_t g_tick, g_phase;
static uv_signal_t g_sigterm, g_sigint;
static WOLFSSL_CTX *g_tls;
static uint8_t g_rbuf[READ_BUF];
static uint8_t g_pbuf[READ_BUF];

/* --verify-all checks every echo; by default the first of each connection
 * and every 16th after it (length and type are always checked). */
#define VERIFY_EVERY 16
static int want_verify(const conn_t *c) {
  return cfg.verify == 2 || (cfg.verify == 1 && c->rx_msgs % VERIFY_EVERY == 0);
}

/* ---- latency histogram: log-linear, 128 sub-buckets per power of two ---- */
#define HSUB 128
#define HBUCKETS (58 * HSUB)
static uint64_t g_hist[HBUCKETS];
static uint64_t g_hist_n;

static int hist_index(uint64_t v) {
  if (v < HSUB) return (int)v;
  int e = 63 - __builtin_clzll(v);
  return (e - 6) * HSUB + (int)((v >> (e - 7)) & (HSUB - 1));
}

static double hist_mid(int i) {
  if (i < HSUB) return (double)i;
  int e = i / HSUB + 6;
  uint64_t lo = (uint64_t)(HSUB + i % HSUB) << (e - 7);
  return (double)lo + (double)((uint64_t)1 << (e - 7)) / 2.0;
}

static double hist_pct(double p) {
  if (g_hist_n == 0) return 0.0;
  uint64_t rank = (uint64_t)(p * (double)g_hist_n + 0.5);
  if (rank < 1) rank = 1;
  uint64_t acc = 0;
  for (int i = 0; i < HBUCKETS; i++) {
    acc += g_hist[i];
    if (acc >= rank) return hist_mid(i);
  }
  return hist_mid(HBUCKETS - 1);
}

/* ---- small helpers ---- */
static uint64_t rng_next(void) {
  uint64_t x = g_rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  g_rng = x;
  return x * 2685821657736338717ull;
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "loadgen: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) die("out of memory (%zu bytes)", n);
  return q;
}

/* Room for n more bytes at the end of b; the caller bumps b->len. */
static uint8_t *buf_space(buf_t *b, size_t n) {
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 512;
    while (cap - b->len < n) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
  }
  return b->data + b->len;
}

static void buf_put(buf_t *b, const void *p, size_t n) {
  memcpy(buf_space(b, n), p, n);
  b->len += n;
}

/* XOR-copy with a 4-byte key, eight bytes at a time. */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4]) {
  uint32_t k32;
  memcpy(&k32, key, 4);
  uint64_t k64 = ((uint64_t)k32 << 32) | k32;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= k64;
    memcpy(dst + i, &v, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

/* ---- forward declarations ---- */
static void conn_start(conn_t *c);
static void conn_fail(conn_t *c, const char *fmt, ...);
static void conn_opened(conn_t *c);
static void finish(void);
static void check_stalled(uint64_t now);
static double cpu_busy_s(void);
static double self_cpu_s(void);
static int ws_in(conn_t *c, const uint8_t *p, size_t n);
static void close_conn(conn_t *c);
static void on_measure(uv_timer_t *t);
static void on_close_wait(uv_timer_t *t);
static void sub_msg_done(conn_t *c);

static int conn_gone(const conn_t *c) { return c->state == CS_DEAD || c->state == CS_NONE; }

/* ---- output ---- */
static buf_t *obuf(conn_t *c) { return cfg.tls ? &c->ptx : &c->pend; }

static void on_write(uv_write_t *req, int status);

static void flush(conn_t *c) {
  if (conn_gone(c) || uv_is_closing((uv_handle_t *)&c->tcp)) return;
  if (cfg.ossl && cfg.tls) {
#ifdef LOADGEN_OPENSSL
    if (c->ptx.len && lgo_write(c->ot, c->ptx.data, c->ptx.len) < 0) {
      conn_fail(c, "%s", lgo_error());
      return;
    }
    c->ptx.len = 0;
    size_t k = lgo_out_pending(c->ot);
    if (k) c->pend.len += lgo_out_take(c->ot, buf_space(&c->pend, k), k);
#endif
  } else if (cfg.tls && c->ptx.len) {
    /* The send callback takes everything, so one call writes it all. */
    int r = wolfSSL_write(c->ssl, c->ptx.data, (int)c->ptx.len);
    if (r != (int)c->ptx.len) {
      conn_fail(c, "wolfSSL_write: error %d", wolfSSL_get_error(c->ssl, r));
      return;
    }
    c->ptx.len = 0;
  }
  if (c->writing || c->pend.len == 0) return;
  buf_t t = c->out;
  c->out = c->pend;
  c->pend = t;
  c->pend.len = 0;
  uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)c->out.len) {
    c->out.len = 0;
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    conn_fail(c, "write: %s", uv_strerror(n));
    return;
  }
  if (n < 0) n = 0;
  b = uv_buf_init((char *)c->out.data + n, (unsigned)(c->out.len - (size_t)n));
  c->writing = 1;
  int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r < 0) {
    c->writing = 0;
    conn_fail(c, "uv_write: %s", uv_strerror(r));
  }
}

static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->data;
  g_work++;
  c->writing = 0;
  c->out.len = 0;
  if (status < 0) {
    if (status != UV_ECANCELED && !conn_gone(c)) conn_fail(c, "write: %s", uv_strerror(status));
    return;
  }
  flush(c);
}

/* One frame, masked, into the connection's output. */
static void put_frame(conn_t *c, int opcode, int fin, const uint8_t *payload, size_t n) {
  buf_t *b = obuf(c);
  uint8_t *p = buf_space(b, 14 + n);
  size_t h = 0;
  p[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
  if (n < 126) {
    p[h++] = (uint8_t)(0x80 | n);
  } else if (n <= 0xFFFF) {
    p[h++] = 0x80 | 126;
    p[h++] = (uint8_t)(n >> 8);
    p[h++] = (uint8_t)n;
  } else {
    p[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) p[h++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  uint32_t k = (uint32_t)rng_next();
  memcpy(p + h, &k, 4);
  mask_copy(p + h + 4, payload, n, p + h);
  b->len += h + 4 + n;
}

static void send_msg(conn_t *c) {
  int slot = (c->ts_head + c->ts_count) % cfg.inflight;
  c->ts[slot] = uv_hrtime();
  c->ts_count++;
  if (cfg.raw) {
    buf_put(obuf(c), g_payload, cfg.size);
    return;
  }
  int op = cfg.text ? OP_TEXT : OP_BINARY;
  if (cfg.frag == 0 || cfg.size <= cfg.frag) {
    put_frame(c, op, 1, g_payload, cfg.size);
    return;
  }
  for (size_t off = 0; off < cfg.size; off += cfg.frag) {
    size_t n = cfg.size - off < cfg.frag ? cfg.size - off : cfg.frag;
    put_frame(c, off == 0 ? op : OP_CONT, off + n == cfg.size, g_payload + off, n);
  }
}

/* An echo came back whole. */
static void msg_done(conn_t *c) {
  if (c->ts_count == 0) {
    conn_fail(c, "an echo arrived that was never sent");
    return;
  }
  uint64_t t = uv_hrtime();
  uint64_t sent = c->ts[c->ts_head];
  c->ts_head = (c->ts_head + 1) % cfg.inflight;
  c->ts_count--;
  g_last_progress = t;
  if (g_measuring) {
    g_msgs++;
    g_hist[hist_index(t - sent)]++;
    g_hist_n++;
  }
  if (g_running) send_msg(c);
}

/* --subscribe: a message came whole; its first 8 bytes are the time it was
 * sent, big-endian nanoseconds of CLOCK_MONOTONIC (uv_hrtime). */
static void sub_msg_done(conn_t *c) {
  if (c->msg_opcode != OP_BINARY || c->msg_len < 8) {
    conn_fail(c, "expected a binary message of at least 8 bytes, got opcode %d, %" PRIu64 " bytes", c->msg_opcode,
              c->msg_len);
    return;
  }
  uint64_t t = uv_hrtime(), sent = 0;
  for (int i = 0; i < 8; i++) sent = sent << 8 | c->stamp[i];
  c->last_rx = t;
  g_last_progress = t;
  if (!g_measuring) return;
  g_msgs++;
  g_bytes += c->msg_len;
  uint64_t lat = 0;
  if (sent > t)
    g_negative++;
  else
    lat = t - sent;
  if (lat > g_max_lat) g_max_lat = lat;
  g_hist[hist_index(lat)]++;
  g_hist_n++;
  /* messages come in tick order: the newest ticks first */
  for (int i = g_nticks - 1; i >= 0; i--) {
    if (g_ticks[i].stamp == sent) {
      g_ticks[i].count++;
      return;
    }
  }
  if (g_nticks < MAX_TICKS) {
    g_ticks[g_nticks].stamp = sent;
    g_ticks[g_nticks++].count = 1;
  }
}

/* ---- TLS (memory I/O through wolfSSL's callbacks) ---- */
static int tls_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  (void)ssl;
  conn_t *c = ctx;
  size_t avail = c->tin.len - c->tin.off;
  if (avail == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  size_t n = avail < (size_t)sz ? avail : (size_t)sz;
  memcpy(buf, c->tin.data + c->tin.off, n);
  c->tin.off += n;
  if (c->tin.off == c->tin.len) c->tin.off = c->tin.len = 0;
  return (int)n;
}

static int tls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
  (void)ssl;
  conn_t *c = ctx;
  buf_put(&c->pend, buf, (size_t)sz);
  return sz;
}

static void tls_setup(void) {
#ifdef LOADGEN_OPENSSL
  if (cfg.ossl) {
    char err[256];
    if (lgo_init(cfg.ciphers, err, sizeof err) < 0) die("%s", err);
    return;
  }
#endif
  if (wolfSSL_Init() != WOLFSSL_SUCCESS) die("wolfSSL_Init failed");
  g_tls = wolfSSL_CTX_new(wolfSSLv23_client_method());
  if (!g_tls) die("wolfSSL_CTX_new failed");
  wolfSSL_CTX_set_verify(g_tls, WOLFSSL_VERIFY_NONE, NULL);
  if (cfg.ciphers && wolfSSL_CTX_set_cipher_list(g_tls, cfg.ciphers) != WOLFSSL_SUCCESS)
    die("wolfSSL does not accept the cipher list \"%s\"", cfg.ciphers);
  wolfSSL_CTX_SetIORecv(g_tls, tls_recv);
  wolfSSL_CTX_SetIOSend(g_tls, tls_send);
}

/* ---- HTTP upgrade ---- */
static void send_upgrade(conn_t *c) {
  uint8_t raw[16], key[32], sha[20], acc[40];
  word32 klen = sizeof key, alen = sizeof acc;
  uint64_t r1 = rng_next(), r2 = rng_next();
  memcpy(raw, &r1, 8);
  memcpy(raw + 8, &r2, 8);
  if (Base64_Encode_NoNl(raw, 16, key, &klen) != 0 || klen != 24) die("base64 failed");
  key[klen] = 0;
  char cat[64];
  memcpy(cat, key, 24);
  memcpy(cat + 24, WS_GUID, 36);
  if (wc_ShaHash((const byte *)cat, 60, sha) != 0) die("SHA-1 failed");
  if (Base64_Encode_NoNl(sha, 20, acc, &alen) != 0 || alen != 28) die("base64 failed");
  memcpy(c->accept, acc, 28);
  c->accept[28] = 0;
  char req[1024];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: luvws-loadgen\r\n\r\n",
                   cfg.path, cfg.host, cfg.port, (const char *)key);
  if (n <= 0 || (size_t)n >= sizeof req) die("request too long");
  c->head.len = 0;
  c->state = CS_UPGRADE;
  buf_put(obuf(c), req, (size_t)n);
  flush(c);
}

/* Returns 1 if the head is a 101 with the right accept value. */
static int check_head(conn_t *c, char *head, size_t len, char *why, size_t whylen) {
  head[len] = 0;
  if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
    char *eol = strstr(head, "\r\n");
    if (eol) *eol = 0;
    snprintf(why, whylen, "upgrade declined: \"%.100s\"", head);
    return 0;
  }
  int upgrade = 0, accept = 0;
  char *line = strstr(head, "\r\n");
  while (line && line[2]) {
    line += 2;
    char *eol = strstr(line, "\r\n");
    if (!eol) break;
    *eol = 0;
    char *colon = strchr(line, ':');
    if (colon) {
      *colon = 0;
      char *v = colon + 1;
      while (*v == ' ' || *v == '\t') v++;
      char *e = v + strlen(v);
      while (e > v && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
      if (strcasecmp(line, "sec-websocket-accept") == 0) {
        if (strcmp(v, c->accept) != 0) {
          snprintf(why, whylen, "bad Sec-WebSocket-Accept \"%.40s\", expected \"%s\"", v, c->accept);
          return 0;
        }
        accept = 1;
      } else if (strcasecmp(line, "upgrade") == 0 && strcasecmp(v, "websocket") == 0) {
        upgrade = 1;
      }
    }
    line = eol;
    *eol = '\r';
  }
  if (!accept) {
    snprintf(why, whylen, "101 without Sec-WebSocket-Accept");
    return 0;
  }
  if (!upgrade) {
    snprintf(why, whylen, "101 without Upgrade: websocket");
    return 0;
  }
  return 1;
}

static int http_in(conn_t *c, const uint8_t *p, size_t n) {
  size_t before = c->head.len;
  size_t take = n;
  if (before + take > MAX_HEAD) take = MAX_HEAD - before;
  buf_put(&c->head, p, take);
  size_t from = before >= 3 ? before - 3 : 0;
  uint8_t *end = NULL;
  for (size_t i = from; i + 4 <= c->head.len; i++) {
    if (memcmp(c->head.data + i, "\r\n\r\n", 4) == 0) {
      end = c->head.data + i + 4;
      break;
    }
  }
  if (!end) {
    if (c->head.len >= MAX_HEAD) {
      conn_fail(c, "response head larger than %d bytes", MAX_HEAD);
      return -1;
    }
    return 0;
  }
  size_t hlen = (size_t)(end - c->head.data);
  size_t extra = before + n - hlen; /* bytes after the head, from p */
  char why[256];
  buf_space(&c->head, 1);
  if (!check_head(c, (char *)c->head.data, hlen, why, sizeof why)) {
    conn_fail(c, "%s", why);
    return -1;
  }
  conn_opened(c);
  if (conn_gone(c)) return -1;
  if (extra && ws_in(c, p + (n - extra), extra) < 0) return -1;
  return 0;
}

/* ---- frame parser for what the server sends ---- */
static void frame_done(conn_t *c) {
  if (c->opcode >= 8) {
    switch (c->opcode) {
      case OP_PING:
        put_frame(c, OP_PONG, 1, c->ctrl, (size_t)c->ctrl_len);
        break;
      case OP_PONG:
        break;
      case OP_CLOSE: {
        int code = c->ctrl_len >= 2 ? (c->ctrl[0] << 8 | c->ctrl[1]) : 1005;
        if (c->state == CS_CLOSING) {
          /* RFC 6455 7.1.1: the server closes TCP first and keeps the
           * TIME_WAIT; close ourselves only if it has not within 1 s. */
          c->got_close = 1;
          uv_timer_start(&c->retry, on_close_wait, 1000, 0);
          return;
        }
        conn_fail(c, "server sent close %d \"%.*s\"", code, c->ctrl_len > 2 ? c->ctrl_len - 2 : 0,
                  (const char *)c->ctrl + 2);
        return;
      }
      default:
        conn_fail(c, "unknown control opcode %d", c->opcode);
        return;
    }
    return;
  }
  if (c->fin) {
    c->in_msg = 0;
    c->rx_msgs++;
    if (cfg.mode == MODE_SUBSCRIBE) {
      sub_msg_done(c);
      return;
    }
    int want = cfg.text ? OP_TEXT : OP_BINARY;
    if (c->msg_opcode != want) {
      conn_fail(c, "echo has opcode %d, sent %d", c->msg_opcode, want);
      return;
    }
    if (c->msg_len != cfg.size) {
      conn_fail(c, "echo has %" PRIu64 " bytes, sent %zu", c->msg_len, cfg.size);
      return;
    }
    if (cfg.mode == MODE_ECHO) {
      msg_done(c);
    } else {
      conn_fail(c, "unexpected data message");
    }
  }
}

static int header_done(conn_t *c) {
  uint8_t b0 = c->hb[0], b1 = c->hb[1];
  if (b0 & 0x70) {
    conn_fail(c, "frame with RSV bits 0x%02x", b0 & 0x70);
    return -1;
  }
  if (b1 & 0x80) {
    conn_fail(c, "server frame is masked");
    return -1;
  }
  c->fin = b0 >> 7;
  c->opcode = b0 & 0x0F;
  uint64_t len = b1 & 0x7F;
  if (len == 126) {
    len = (uint64_t)c->hb[2] << 8 | c->hb[3];
  } else if (len == 127) {
    len = 0;
    for (int i = 2; i < 10; i++) len = len << 8 | c->hb[i];
  }
  c->remaining = len;
  if (c->opcode >= 8) {
    if (len > 125 || !c->fin) {
      conn_fail(c, "bad control frame");
      return -1;
    }
    c->ctrl_len = 0;
  } else if (c->opcode == OP_CONT) {
    if (!c->in_msg) {
      conn_fail(c, "continuation frame outside a message");
      return -1;
    }
  } else if (c->opcode == OP_TEXT || c->opcode == OP_BINARY) {
    if (c->in_msg) {
      conn_fail(c, "new message inside a fragmented one");
      return -1;
    }
    c->in_msg = 1;
    c->msg_opcode = c->opcode;
    c->msg_len = 0;
    c->vcheck = want_verify(c);
  } else {
    conn_fail(c, "reserved opcode %d", c->opcode);
    return -1;
  }
  if (cfg.mode == MODE_SUBSCRIBE) {
    if (c->opcode < 8 && c->msg_len + len > ((uint64_t)1 << 24)) {
      conn_fail(c, "message larger than 16 MiB");
      return -1;
    }
  } else if (c->opcode < 8 && c->msg_len + len > cfg.size) {
    conn_fail(c, "echo longer than the %zu bytes sent", cfg.size);
    return -1;
  }
  c->hlen = 0;
  c->hneed = 0;
  if (len == 0) {
    frame_done(c);
    if (conn_gone(c) || c->got_close) return -1;
  }
  return 0;
}

static int ws_in(conn_t *c, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (c->hneed == 0 && c->remaining == 0) c->hneed = 2; /* start a header */
    if (c->hneed) {
      while (n > 0 && c->hlen < c->hneed) {
        c->hb[c->hlen++] = *p++;
        n--;
        if (c->hlen == 2) {
          int l7 = c->hb[1] & 0x7F;
          c->hneed = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->hb[1] & 0x80) ? 4 : 0);
        }
      }
      if (c->hlen < c->hneed) return 0;
      if (header_done(c) < 0) return -1;
      continue;
    }
    size_t k = c->remaining < n ? (size_t)c->remaining : n;
    if (c->opcode >= 8) {
      memcpy(c->ctrl + c->ctrl_len, p, k);
      c->ctrl_len += (int)k;
    } else if (cfg.mode == MODE_SUBSCRIBE) {
      if (c->msg_len < 8) memcpy(c->stamp + c->msg_len, p, k < 8 - c->msg_len ? k : 8 - c->msg_len);
      c->msg_len += k;
    } else {
      if (c->vcheck && memcmp(p, g_payload + c->msg_len, k) != 0) {
        conn_fail(c, "echoed bytes differ from those sent (message offset %" PRIu64 ")", c->msg_len);
        return -1;
      }
      c->msg_len += k;
    }
    c->remaining -= k;
    p += k;
    n -= k;
    if (c->remaining == 0) {
      frame_done(c);
      if (conn_gone(c) || c->got_close) return -1;
    }
  }
  return 0;
}

static int raw_in(conn_t *c, const uint8_t *p, size_t n) {
  if (cfg.mode != MODE_ECHO) return 0;
  while (n > 0) {
    size_t k = cfg.size - c->raw_rx < n ? (size_t)(cfg.size - c->raw_rx) : n;
    if (c->raw_rx == 0) c->vcheck = want_verify(c);
    if (c->vcheck && memcmp(p, g_payload + c->raw_rx, k) != 0) {
      conn_fail(c, "echoed bytes differ from those sent (chunk offset %" PRIu64 ")", c->raw_rx);
      return -1;
    }
    c->raw_rx += k;
    p += k;
    n -= k;
    if (c->raw_rx == cfg.size) {
      c->raw_rx = 0;
      c->rx_msgs++;
      msg_done(c);
      if (conn_gone(c)) return -1;
    }
  }
  return 0;
}

static int plain_in(conn_t *c, const uint8_t *p, size_t n) {
  if (cfg.raw) return raw_in(c, p, n);
  if (c->state == CS_UPGRADE) return http_in(c, p, n);
  return ws_in(c, p, n);
}

static char g_cipher[128];

static void tls_handshake(conn_t *c) {
  int r = 0;
#ifdef LOADGEN_OPENSSL
  if (cfg.ossl) {
    r = lgo_handshake(c->ot);
    if (r < 0) {
      conn_fail(c, "%s", lgo_error());
      return;
    }
    if (r == 0) {
      flush(c);
      return;
    }
    if (!g_cipher[0]) lgo_describe(c->ot, g_cipher, sizeof g_cipher);
  }
#endif
  if (!cfg.ossl) r = wolfSSL_connect(c->ssl);
  if (cfg.ossl || r == WOLFSSL_SUCCESS) {
    if (!g_cipher[0]) {
      const char *name = wolfSSL_get_cipher_name(c->ssl);
      const char *curve = wolfSSL_get_curve_name(c->ssl);
      snprintf(g_cipher, sizeof g_cipher, "%s/%s/%s", wolfSSL_get_version(c->ssl), name ? name : "?",
               curve ? curve : "?");
    }
    if (cfg.raw) {
      c->state = CS_OPEN;
      conn_opened(c);
    } else {
      send_upgrade(c);
    }
    return;
  }
  int e = wolfSSL_get_error(c->ssl, r);
  if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
    flush(c);
    return;
  }
  char msg[WOLFSSL_MAX_ERROR_SZ];
  conn_fail(c, "TLS handshake: %s", wolfSSL_ERR_error_string((unsigned long)e, msg));
}

static void tls_in(conn_t *c, const uint8_t *p, size_t n) {
#ifdef LOADGEN_OPENSSL
  if (cfg.ossl) {
    if (lgo_feed(c->ot, p, n) < 0) die("%s", lgo_error());
    if (c->state == CS_TLS) {
      tls_handshake(c);
      if (conn_gone(c) || c->state == CS_TLS) return;
    }
    for (;;) {
      int r = lgo_read(c->ot, g_pbuf, sizeof g_pbuf);
      if (r > 0) {
        if (plain_in(c, g_pbuf, (size_t)r) < 0) return;
        continue;
      }
      if (r == 0) break;
      conn_fail(c, "%s", r == -1 ? "TLS close_notify from the server" : lgo_error());
      return;
    }
    return;
  }
#endif
  buf_put(&c->tin, p, n);
  if (c->state == CS_TLS) {
    tls_handshake(c);
    if (conn_gone(c) || c->state == CS_TLS) return;
  }
  for (;;) {
    int r = wolfSSL_read(c->ssl, g_pbuf, (int)sizeof g_pbuf);
    if (r > 0) {
      if (plain_in(c, g_pbuf, (size_t)r) < 0) return;
      continue;
    }
    int e = wolfSSL_get_error(c->ssl, r);
    if (e == WOLFSSL_ERROR_WANT_READ) break;
    if (e == WOLFSSL_ERROR_ZERO_RETURN) {
      conn_fail(c, "TLS close_notify from the server");
      return;
    }
    char msg[WOLFSSL_MAX_ERROR_SZ];
    conn_fail(c, "TLS read: %s", wolfSSL_ERR_error_string((unsigned long)e, msg));
    return;
  }
}

/* ---- connection lifecycle ---- */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h;
  (void)suggested;
  *b = uv_buf_init((char *)g_rbuf, sizeof g_rbuf);
}

static void on_closed(uv_handle_t *h);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn_t *c = s->data;
  (void)b;
  g_work++;
  if (nread == 0 || conn_gone(c) || uv_is_closing((uv_handle_t *)s)) return;
  if (c->got_close) { /* the close handshake is done: wait for the TCP close */
    if (nread < 0) close_conn(c);
    return;
  }
  if (nread < 0) {
    if (nread == UV_EOF)
      conn_fail(c, "the server closed the connection%s", c->state == CS_CLOSING ? " before its close frame" : "");
    else
      conn_fail(c, "read: %s", uv_strerror((int)nread));
    return;
  }
  if (cfg.tls)
    tls_in(c, g_rbuf, (size_t)nread);
  else if (plain_in(c, g_rbuf, (size_t)nread) < 0)
    return;
  flush(c);
}

static void conn_reset(conn_t *c) {
  c->writing = 0;
  c->out.len = c->out.off = 0;
  c->pend.len = c->pend.off = 0;
  c->ptx.len = c->ptx.off = 0;
  c->tin.len = c->tin.off = 0;
  c->head.len = 0;
  c->hlen = c->hneed = 0;
  c->remaining = 0;
  c->in_msg = 0;
  c->msg_len = 0;
  c->got_close = 0;
  c->ts_head = c->ts_count = 0;
  c->raw_rx = 0;
  c->rx_msgs = 0;
  if (c->ssl) {
    wolfSSL_free(c->ssl);
    c->ssl = NULL;
  }
#ifdef LOADGEN_OPENSSL
  lgo_free(c->ot);
  c->ot = NULL;
#endif
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  g_work++;
  if (conn_gone(c)) return;
  if (status < 0) {
    conn_fail(c, "connect: %s", uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r < 0) {
    conn_fail(c, "read_start: %s", uv_strerror(r));
    return;
  }
  if (cfg.tls) {
#ifdef LOADGEN_OPENSSL
    if (cfg.ossl) {
      c->ot = lgo_new();
      if (!c->ot) die("SSL_new failed");
    }
#endif
    if (!cfg.ossl) {
      c->ssl = wolfSSL_new(g_tls);
      if (!c->ssl) die("wolfSSL_new failed");
      wolfSSL_SetIOReadCtx(c->ssl, c);
      wolfSSL_SetIOWriteCtx(c->ssl, c);
    }
    c->state = CS_TLS;
    tls_handshake(c);
    return;
  }
  if (cfg.raw) {
    c->state = CS_OPEN;
    conn_opened(c);
    flush(c);
    return;
  }
  send_upgrade(c);
}

static void conn_start(conn_t *c) {
  conn_reset(c);
  int r = uv_tcp_init(loop, &c->tcp);
  if (r < 0) die("uv_tcp_init: %s", uv_strerror(r));
  c->tcp.data = c;
  c->creq.data = c;
  c->wreq.data = c;
  c->state = CS_CONNECTING;
  r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g_addr, on_connect);
  if (r < 0) conn_fail(c, "connect: %s", uv_strerror(r));
}

static void on_close_wait(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->tcp.data == c && !uv_is_closing((uv_handle_t *)&c->tcp)) {
    g_late_close++;
    close_conn(c);
  }
}

static void on_retry(uv_timer_t *t) {
  conn_t *c = t->data;
  if (g_running && !g_finished) conn_start(c);
}

/* The handle is closed: in --handshakes start the next cycle. */
static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  int ok = c->got_close;
  c->state = CS_NONE;
  if (cfg.mode != MODE_HANDSHAKES || g_finished) return;
  uv_timer_stop(&c->retry);
  if (ok) {
    if (g_measuring) g_hs++;
    g_last_progress = uv_hrtime();
    if (g_running) conn_start(c);
  } else if (g_running) {
    uv_timer_start(&c->retry, on_retry, 10, 0);
  }
}

static void close_conn(conn_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static int g_err_printed;

static void conn_fail(conn_t *c, const char *fmt, ...) {
  if (conn_gone(c)) return;
  g_errors++;
  g_err_total++;
  if (g_err_printed < 10) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: conn %d: ", c->id);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (++g_err_printed == 10) fprintf(stderr, "loadgen: (further errors not printed)\n");
  }
  c->state = CS_DEAD;
  if (c->tcp.data == c) close_conn(c);
  switch (cfg.mode) {
    case MODE_ECHO:
      if (!g_running) {
        fprintf(stderr, "loadgen: setup failed\n");
        exit(1);
      }
      if (--g_alive == 0) finish();
      break;
    case MODE_IDLE:
      if (!g_started || g_open < cfg.idle_n) {
        fprintf(stderr, "loadgen: setup failed\n");
        exit(1);
      }
      break;
    case MODE_SUBSCRIBE:
      if (!g_running) {
        fprintf(stderr, "loadgen: setup failed (%d of %d connections were open)\n", g_open, g_nconns);
        exit(1);
      }
      if (--g_alive == 0) finish();
      break;
    case MODE_HANDSHAKES:
      if (g_err_total > 1000) {
        fprintf(stderr, "loadgen: too many errors, giving up\n");
        finish();
      }
      break;
    default:
      break;
  }
}

static void start_next_idle(void);

/* The connection is ready (upgraded, or connected in --raw). */
static void conn_opened(conn_t *c) {
  c->state = CS_OPEN;
  switch (cfg.mode) {
    case MODE_ECHO:
      if (++g_open == g_nconns) {
        g_running = 1;
        g_last_progress = uv_hrtime();
        for (int i = 0; i < g_nconns; i++) {
          for (int k = 0; k < cfg.inflight; k++) send_msg(&g_conns[i]);
          if (&g_conns[i] != c) flush(&g_conns[i]);
        }
        /* c is flushed by the caller's read callback (or right now in --raw) */
        if (cfg.warmup > 0)
          uv_timer_start(&g_phase, on_measure, (uint64_t)(cfg.warmup * 1000), 0);
        else
          on_measure(&g_phase);
      }
      break;
    case MODE_HANDSHAKES: {
      /* close frame 1000, then wait for the server's */
      uint8_t code[2] = {0x03, 0xE8};
      c->state = CS_CLOSING;
      put_frame(c, OP_CLOSE, 1, code, 2);
      break;
    }
    case MODE_IDLE:
      g_open++;
      start_next_idle();
      if (g_open == cfg.idle_n) {
        printf("READY idle=%d\n", g_open);
        fflush(stdout);
      }
      break;
    case MODE_SUBSCRIBE:
      g_open++;
      /* 10,000 idle connections: keep only small buffers */
      free(c->head.data);
      c->head = (buf_t){0};
      start_next_idle();
      if (g_open == g_nconns) {
        uint64_t now = uv_hrtime();
        printf("READY subscribed=%d setup_s=%.2f\n", g_open, (double)(now - g_start) / 1e9);
        fflush(stdout);
        g_running = 1;
        g_last_progress = now;
        for (int i = 0; i < g_nconns; i++) g_conns[i].last_rx = now;
        if (cfg.warmup > 0)
          uv_timer_start(&g_phase, on_measure, (uint64_t)(cfg.warmup * 1000), 0);
        else
          on_measure(&g_phase);
      }
      break;
    default:
      break;
  }
}

/* --idle and --subscribe: a bounded number of connections in their setup
 * at once, so the server's listen backlog never overflows. */
static void start_next_idle(void) {
  while (g_started < g_nconns && g_started - g_open < IDLE_PARALLEL) conn_start(&g_conns[g_started++]);
}

/* ---- run phases ---- */
static uint64_t idle_ns(void) { return cfg.busy_poll ? g_idle_ns : uv_metrics_idle_time(loop); }

static void finish(void) {
  if (g_finished) return;
  g_finished = 1;
  double el = g_measuring ? (double)(uv_hrtime() - g_t0) / 1e9 : 0.0;
  if (el <= 0) el = 1e-9;
  double busy = 1.0 - (double)(idle_ns() - g_idle0) / 1e9 / el;
  if (busy < 0) busy = 0;
  double other = 0.0;
  if (g_cpu >= 0 && g_measuring) {
    other = ((cpu_busy_s() - g_other0_cpu) - (self_cpu_s() - g_other0_self)) / el;
    if (other < 0) other = 0;
  }
  if (cfg.mode == MODE_ECHO && g_running) check_stalled(uv_hrtime());
  if (((cfg.mode == MODE_ECHO || cfg.mode == MODE_SUBSCRIBE) && g_msgs == 0) || (cfg.mode == MODE_HANDSHAKES && g_hs == 0)) {
    fprintf(stderr, "loadgen: nothing completed in the measured %.2f s\n", el);
    g_err_total++;
  }
  if (cfg.mode == MODE_ECHO) {
    double mps = (double)g_msgs / el;
    printf("RESULT mode=%s conns=%d size=%zu inflight=%d seconds=%.2f msgs=%" PRIu64
           " msgs_per_s=%.0f mb_per_s=%.2f p50_us=%.1f p99_us=%.1f p999_us=%.1f gen_busy=%.2f gen_cpu_other=%.2f errors=%" PRIu64 "\n",
           cfg.raw ? "raw-echo" : "ws-echo", g_nconns, cfg.size, cfg.inflight, el, g_msgs, mps,
           mps * (double)cfg.size / 1e6, hist_pct(0.50) / 1e3, hist_pct(0.99) / 1e3, hist_pct(0.999) / 1e3,
           busy, other, g_err_total);
  } else if (cfg.mode == MODE_SUBSCRIBE) {
    double mps = (double)g_msgs / el;
    double cpu = g_measuring ? (self_cpu_s() - g_self0) / el : 0.0;
    /* ticks sent in the window: their rate; those sent in it and at least
     * SETTLE_NS before its end: the share of connections that got them */
    uint64_t end = uv_hrtime(), got = 0;
    int in_window = 0, settled = 0;
    for (int i = 0; i < g_nticks; i++) {
      if (g_ticks[i].stamp < g_t0 || g_ticks[i].stamp > end) continue;
      in_window++;
      if (g_ticks[i].stamp + SETTLE_NS > end) continue;
      settled++;
      got += g_ticks[i].count;
    }
    double pct = settled ? 100.0 * (double)got / ((double)settled * g_nconns) : 0.0;
    printf("RESULT mode=subscribe conns=%d seconds=%.2f msgs=%" PRIu64 " msgs_per_s=%.0f ticks_per_s=%.2f"
           " delivered_pct=%.2f mb_per_s=%.2f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f gen_busy=%.2f"
           " gen_cpu=%.2f gen_cpu_other=%.2f errors=%" PRIu64 "\n",
           g_nconns, el, g_msgs, mps, (double)in_window / el, pct, (double)g_bytes / el / 1e6, hist_pct(0.50) / 1e3,
           hist_pct(0.99) / 1e3, hist_pct(0.999) / 1e3, (double)g_max_lat / 1e3, busy, cpu, other, g_err_total);
    if (g_negative)
      fprintf(stderr, "loadgen: %" PRIu64 " messages carried a send time later than their arrival: not CLOCK_MONOTONIC?\n",
              g_negative);
  } else if (cfg.mode == MODE_HANDSHAKES) {
    printf("RESULT mode=handshakes conns=%d seconds=%.2f handshakes=%" PRIu64 " hs_per_s=%.0f gen_busy=%.2f gen_cpu_other=%.2f late_tcp_close=%" PRIu64
           " errors=%" PRIu64 "\n",
           g_nconns, el, g_hs, (double)g_hs / el, busy, other, g_late_close, g_err_total);
    if (g_late_close)
      fprintf(stderr,
              "loadgen: %" PRIu64 " times the server had not closed TCP 1 s after its close frame "
              "(RFC 6455 7.1.1: the server closes first); the client closed it\n",
              g_late_close);
  }
  if (g_cipher[0]) fprintf(stderr, "loadgen: TLS %s\n", g_cipher);
  fflush(stdout);
  exit(g_err_total ? 1 : 0);
}

static void on_end(uv_timer_t *t) {
  (void)t;
  finish();
}

/* Busy seconds (user + nice + system + steal) of CPU g_cpu since boot. */
static double cpu_busy_s(void) {
  if (g_cpu < 0) return 0.0;
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return 0.0;
  char want[16], line[512];
  snprintf(want, sizeof want, "cpu%d ", g_cpu);
  double busy = 0.0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, want, strlen(want)) != 0) continue;
    unsigned long long v[8] = {0};
    sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
           &v[5], &v[6], &v[7]);
    busy = (double)(v[0] + v[1] + v[2] + v[7]) / (double)sysconf(_SC_CLK_TCK);
    break;
  }
  fclose(f);
  return busy;
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void on_measure(uv_timer_t *t) {
  (void)t;
  g_measuring = 1;
  g_msgs = g_hs = 0;
  memset(g_hist, 0, sizeof g_hist);
  g_hist_n = 0;
  g_t0 = uv_hrtime();
  g_idle0 = idle_ns();
  g_other0_cpu = cpu_busy_s();
  g_other0_self = self_cpu_s();
  g_self0 = self_cpu_s();
  g_bytes = g_negative = g_max_lat = 0;
  g_nticks = 0;
  uv_timer_start(&g_phase, on_end, (uint64_t)(cfg.duration * 1000), 0);
}

/* A connection whose oldest message in flight is older than --timeout. */
static void check_stalled(uint64_t now) {
  for (int i = 0; i < g_nconns; i++) {
    conn_t *c = &g_conns[i];
    if (c->state != CS_OPEN || c->ts_count == 0) continue;
    double age = (double)(now - c->ts[c->ts_head]) / 1e9;
    if (age > cfg.timeout) conn_fail(c, "stalled: no echo for %.1f s", age);
  }
}

static void on_tick(uv_timer_t *t) {
  (void)t;
  uint64_t now = uv_hrtime();
  double since_start = (double)(now - g_start) / 1e9;
  if (cfg.mode == MODE_ECHO && !g_running && since_start > cfg.timeout) {
    fprintf(stderr, "loadgen: setup timed out: %d of %d connections ready after %.0f s\n", g_open, g_nconns,
            cfg.timeout);
    exit(1);
  }
  if ((cfg.mode == MODE_IDLE || cfg.mode == MODE_SUBSCRIBE) && g_open < g_nconns &&
      since_start > cfg.timeout + g_nconns / 100.0) {
    int st[CS_DEAD + 1] = {0};
    for (int i = 0; i < g_started; i++) st[g_conns[i].state]++;
    fprintf(stderr,
            "loadgen: setup timed out: %d of %d connections ready (%d not started, %d connecting, %d in TLS,"
            " %d upgrading, %d failed)\n",
            g_open, g_nconns, g_nconns - g_started, st[CS_CONNECTING], st[CS_TLS], st[CS_UPGRADE], st[CS_DEAD]);
    exit(1);
  }
  if (cfg.mode == MODE_SUBSCRIBE && g_running) {
    for (int i = 0; i < g_nconns; i++) {
      conn_t *c = &g_conns[i];
      if (c->state == CS_OPEN && (double)(now - c->last_rx) / 1e9 > cfg.timeout)
        conn_fail(c, "no message for %.1f s", (double)(now - c->last_rx) / 1e9);
    }
  }
  if ((cfg.mode == MODE_ECHO || cfg.mode == MODE_HANDSHAKES) && g_running &&
      (double)(now - g_last_progress) / 1e9 > cfg.timeout) {
    fprintf(stderr, "loadgen: stalled: nothing completed for %.0f s\n", cfg.timeout);
    g_err_total++;
    finish();
  }
  if (cfg.mode == MODE_ECHO && g_running) check_stalled(now);
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  if (cfg.mode == MODE_IDLE) {
    fflush(stdout);
    exit(g_err_total ? 1 : 0);
  }
  finish();
}

/* ---- probe and free-port ---- */
static uv_tcp_t g_probe;
static uv_connect_t g_probe_req;
static uv_timer_t g_probe_timer;

static void probe_try(void);
static void on_probe_retry(uv_timer_t *t) {
  (void)t;
  probe_try();
}

static void on_probe_closed(uv_handle_t *h) {
  (void)h;
  if (now_s() - (double)g_start / 1e9 > cfg.timeout) {
    fprintf(stderr, "loadgen: nothing listens on %s:%d after %.0f s\n", cfg.host, cfg.port, cfg.timeout);
    exit(1);
  }
  uv_timer_start(&g_probe_timer, on_probe_retry, 50, 0);
}

static void on_probe(uv_connect_t *req, int status) {
  (void)req;
  if (status == 0) {
    printf("RESULT mode=probe port=%d ok=1\n", cfg.port);
    fflush(stdout);
    exit(0);
  }
  uv_close((uv_handle_t *)&g_probe, on_probe_closed);
}

static void probe_try(void) {
  uv_tcp_init(loop, &g_probe);
  int r = uv_tcp_connect(&g_probe_req, &g_probe, (const struct sockaddr *)&g_addr, on_probe);
  if (r < 0) uv_close((uv_handle_t *)&g_probe, on_probe_closed);
}

static int free_port(void) {
  uv_tcp_t t;
  struct sockaddr_in a;
  uv_tcp_init(loop, &t);
  uv_ip4_addr(cfg.host, 0, &a);
  if (uv_tcp_bind(&t, (const struct sockaddr *)&a, 0) < 0) die("bind failed");
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len) < 0) die("getsockname failed");
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- command line ---- */
static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host H] [--path /] [options]\n"
          "  echo (default): --conns N --size B --inflight K --duration S [--warmup S]\n"
          "                  [--text] [--frag BYTES] [--no-verify | --verify-all]\n"
          "  --handshakes --conns N --duration S   connect, upgrade, close, repeat\n"
          "  --idle N                               hold N connections; print READY; wait for SIGTERM\n"
          "  --subscribe N --duration S             N connections that only receive binary messages whose\n"
          "                                         first 8 bytes are the send time (big-endian ns of\n"
          "                                         CLOCK_MONOTONIC); prints READY once all are open, then\n"
          "                                         after --warmup counts messages and delivery latency,\n"
          "                                         ticks (distinct send times) per second and the share of\n"
          "                                         the connections that got each tick (delivered_pct)\n"
          "  --probe                                wait until the port accepts connections\n"
          "  --free-port                            print a free port and exit\n"
          "  --raw    plain TCP echo, no WebSocket (B-byte chunks)\n"
          "  --tls    wss, no certificate verification; --ciphers LIST (the TLS library's names)\n"
          "  --tls-lib openssl|wolfssl   which TLS library (default: openssl if built in)\n"
          "  --busy-poll   never sleep in the event loop (the generator owns its core)\n"
          "  --timeout S   setup and stall limit (default 10)\n");
  exit(2);
}

static double num_arg(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) usage();
  char *end;
  double v = strtod(argv[++*i], &end);
  if (*end || v < 0) {
    fprintf(stderr, "loadgen: bad number \"%s\" for %s\n", argv[*i], argv[*i - 1]);
    exit(2);
  }
  return v;
}

static size_t size_arg(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) usage();
  char *end;
  double v = strtod(argv[++*i], &end);
  if (*end == 'k' || *end == 'K') v *= 1024, end++;
  else if (*end == 'm' || *end == 'M') v *= 1024 * 1024, end++;
  if (*end || v < 1) {
    fprintf(stderr, "loadgen: bad size \"%s\"\n", argv[*i]);
    exit(2);
  }
  return (size_t)v;
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--host") && i + 1 < argc) cfg.host = argv[++i];
    else if (!strcmp(a, "--port")) cfg.port = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--path") && i + 1 < argc) cfg.path = argv[++i];
    else if (!strcmp(a, "--conns")) cfg.conns = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--size")) cfg.size = size_arg(argc, argv, &i);
    else if (!strcmp(a, "--inflight")) cfg.inflight = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--duration")) cfg.duration = num_arg(argc, argv, &i);
    else if (!strcmp(a, "--warmup")) cfg.warmup = num_arg(argc, argv, &i);
    else if (!strcmp(a, "--timeout")) cfg.timeout = num_arg(argc, argv, &i);
    else if (!strcmp(a, "--frag")) cfg.frag = size_arg(argc, argv, &i);
    else if (!strcmp(a, "--text")) cfg.text = 1;
    else if (!strcmp(a, "--no-verify")) cfg.verify = 0;
    else if (!strcmp(a, "--verify-all")) cfg.verify = 2;
    else if (!strcmp(a, "--raw")) cfg.raw = 1;
    else if (!strcmp(a, "--tls")) cfg.tls = 1;
    else if (!strcmp(a, "--tls-lib") && i + 1 < argc) {
      const char *lib = argv[++i];
      if (!strcmp(lib, "wolfssl")) cfg.ossl = 0;
#ifdef LOADGEN_OPENSSL
      else if (!strcmp(lib, "openssl")) cfg.ossl = 1;
#endif
      else die("--tls-lib: \"%s\" is not built in (wolfssl%s)", lib,
#ifdef LOADGEN_OPENSSL
               ", openssl"
#else
               "; openssl needs -DLOADGEN_OPENSSL"
#endif
      );
    }
    else if (!strcmp(a, "--busy-poll")) cfg.busy_poll = 1;
    else if (!strcmp(a, "--ciphers") && i + 1 < argc) cfg.ciphers = argv[++i];
    else if (!strcmp(a, "--handshakes")) cfg.mode = MODE_HANDSHAKES;
    else if (!strcmp(a, "--idle")) cfg.mode = MODE_IDLE, cfg.idle_n = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--subscribe")) cfg.mode = MODE_SUBSCRIBE, cfg.conns = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--probe")) cfg.mode = MODE_PROBE;
    else if (!strcmp(a, "--free-port")) cfg.mode = MODE_FREEPORT;
    else if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage();
    else {
      fprintf(stderr, "loadgen: unknown argument \"%s\"\n", a);
      usage();
    }
  }
  if (cfg.mode != MODE_FREEPORT && (cfg.port <= 0 || cfg.port > 65535)) {
    fprintf(stderr, "loadgen: --port is required\n");
    usage();
  }
  if (cfg.conns < 1 || cfg.inflight < 1) die("--conns and --inflight must be at least 1");
  if (cfg.mode == MODE_IDLE && cfg.idle_n < 1) die("--idle needs a count of at least 1");
  if (cfg.mode == MODE_HANDSHAKES && cfg.raw) die("--handshakes has no meaning with --raw");
  if (cfg.mode == MODE_SUBSCRIBE && cfg.raw) die("--subscribe has no meaning with --raw");
  if (cfg.size > ((size_t)1 << 31)) die("--size too large");
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  loop = uv_default_loop();
  uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1)
    for (int i = 0; i < CPU_SETSIZE; i++)
      if (CPU_ISSET(i, &set)) g_cpu = i;
  g_start = uv_hrtime();
  g_rng ^= g_start * 0xD6E8FEB86659FD93ull;
  for (int i = 0; i < 4; i++) rng_next();

  if (cfg.mode == MODE_FREEPORT) {
    printf("%d\n", free_port());
    return 0;
  }
  struct sockaddr_in *a4 = (struct sockaddr_in *)&g_addr;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&g_addr;
  if (uv_ip4_addr(cfg.host, cfg.port, a4) != 0 && uv_ip6_addr(cfg.host, cfg.port, a6) != 0)
    die("--host must be a numeric IPv4 or IPv6 address, not \"%s\"", cfg.host);

  if (cfg.mode == MODE_PROBE) {
    uv_timer_init(loop, &g_probe_timer);
    probe_try();
    return uv_run(loop, UV_RUN_DEFAULT);
  }
  if (cfg.tls) tls_setup();

  g_payload = xrealloc(NULL, cfg.size);
  for (size_t i = 0; i < cfg.size; i++) g_payload[i] = cfg.text ? (uint8_t)('a' + i % 26) : (uint8_t)rng_next();

  g_nconns = cfg.mode == MODE_IDLE ? cfg.idle_n : cfg.conns;
  g_conns = calloc((size_t)g_nconns, sizeof *g_conns);
  if (!g_conns) die("out of memory");
  for (int i = 0; i < g_nconns; i++) {
    conn_t *c = &g_conns[i];
    c->id = i;
    if (cfg.mode == MODE_ECHO) c->ts = xrealloc(NULL, sizeof(uint64_t) * (size_t)cfg.inflight);
    if (cfg.mode == MODE_HANDSHAKES) {
      uv_timer_init(loop, &c->retry);
      c->retry.data = c;
    }
  }
  g_alive = g_nconns;

  uv_timer_init(loop, &g_phase);
  uv_timer_init(loop, &g_tick);
  uv_timer_start(&g_tick, on_tick, 250, 250);
  uv_signal_init(loop, &g_sigterm);
  uv_signal_start(&g_sigterm, on_signal, SIGTERM);
  uv_signal_init(loop, &g_sigint);
  uv_signal_start(&g_sigint, on_signal, SIGINT);

  switch (cfg.mode) {
    case MODE_ECHO:
      for (int i = 0; i < g_nconns; i++) conn_start(&g_conns[i]);
      break;
    case MODE_HANDSHAKES:
      g_running = 1;
      g_last_progress = uv_hrtime();
      if (cfg.warmup > 0)
        uv_timer_start(&g_phase, on_measure, (uint64_t)(cfg.warmup * 1000), 0);
      else
        on_measure(&g_phase);
      for (int i = 0; i < g_nconns; i++) conn_start(&g_conns[i]);
      break;
    case MODE_IDLE:
    case MODE_SUBSCRIBE:
      start_next_idle();
      break;
    default:
      break;
  }
  if (cfg.busy_poll) {
    for (;;) {
      uint64_t w = g_work, t = uv_hrtime();
      int more = uv_run(loop, UV_RUN_NOWAIT);
      if (g_work == w) g_idle_ns += uv_hrtime() - t;
      if (!more) break;
    }
  } else {
    uv_run(loop, UV_RUN_DEFAULT);
  }
  return 0;
}
