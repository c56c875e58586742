/*
 * libFuzzer target for csrc/tls: arbitrary bytes from the "network" into a
 * server session and into a client session that has sent its ClientHello.
 * Nothing should crash, leak, or return a code outside the contract.
 *
 * The first input byte picks the role and how the rest is cut into feeds;
 * the server's certificate is wolfSSL's own ECC test certificate
 * (wolfssl/certs_test.h), turned into PEM at start-up.
 */
#include "../tls/wstls.c"

#define USE_CERT_BUFFERS_256
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include <wolfssl/certs_test.h>
#pragma GCC diagnostic pop

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static wstls_ctx *server_ctx, *client_ctx;

static char *to_pem(const unsigned char *der, int n, int type) {
  char *pem = malloc(4096);
  int len;
  if (!pem) abort();
  len = wc_DerToPem(der, (word32)n, (byte *)pem, 4095, type);
  if (len <= 0) abort();
  pem[len] = '\0';
  return pem;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  wstls_ctx_config cfg;
  char err[256];
  char *cert, *key, *ca;
  (void)argc;
  (void)argv;
  cert = to_pem(serv_ecc_der_256, sizeof_serv_ecc_der_256, CERT_TYPE);
  key = to_pem(ecc_key_der_256, sizeof_ecc_key_der_256, ECC_PRIVATEKEY_TYPE);
  ca = to_pem(ca_ecc_cert_der_256, sizeof_ca_ecc_cert_der_256, CERT_TYPE);
  wstls_ctx_config_init(&cfg);
  cfg.server = 1;
  cfg.cert = cert;
  cfg.key = key;
  cfg.alpn = "http/1.1";
  if (wstls_ctx_new(&cfg, &server_ctx, err, sizeof(err)) != 0) {
    fprintf(stderr, "server context: %s\n", err);
    abort();
  }
  wstls_ctx_config_init(&cfg);
  cfg.ca = ca;
  cfg.alpn = "h2,http/1.1";
  if (wstls_ctx_new(&cfg, &client_ctx, err, sizeof(err)) != 0) {
    fprintf(stderr, "client context: %s\n", err);
    abort();
  }
  free(cert);
  free(key);
  free(ca);
  return 0;
}

/* Every return is a count, 0, a WSTLS_* status or a WS_E_* name. */
static void check(int r) {
  if (r < WSTLS_MISUSE && !ws_err_name(r)) abort();
}

/* Drains t's output into to (NULL: drops it), XORing the stream with
 * mask (mask[i] applies to stream byte *off + i) when mask is given. */
static void move(wstls *t, wstls *to, const uint8_t *mask, size_t masklen,
                 size_t *off) {
  ws_iov iov[8];
  size_t k, i, j;
  uint8_t tmp[512];
  while ((k = wstls_out(t, iov, 8)) > 0) {
    size_t total = 0;
    for (i = 0; i < k; i++) {
      for (j = 0; j < iov[i].len; j += sizeof(tmp)) {
        size_t n = iov[i].len - j < sizeof(tmp) ? iov[i].len - j : sizeof(tmp);
        size_t m;
        memcpy(tmp, iov[i].base + j, n);
        for (m = 0; mask && m < n; m++)
          if (*off + m < masklen) tmp[m] ^= mask[*off + m];
        *off += n;
        if (to) check(wstls_feed(to, tmp, n));
      }
      total += iov[i].len;
    }
    wstls_out_consume(t, total);
  }
}

/* Reads until the session needs input; 1 if it is still healthy. */
static int drain_reads(wstls *t) {
  uint8_t buf[4096];
  int r;
  do {
    r = wstls_read(t, buf, sizeof(buf));
    check(r);
  } while (r > 0);
  return r == 0;
}

/* A genuine client and server; data[] is XORed into one direction. */
static void tamper(const uint8_t *data, size_t size, int to_client) {
  wstls *c = wstls_new(client_ctx, "localhost"),
        *s = wstls_new(server_ctx, NULL);
  size_t off_c = 0, off_s = 0;
  int i, rc = WSTLS_WANT, rs = WSTLS_WANT;
  if (!c || !s) goto out;
  for (i = 0; i < 12; i++) {
    if (rc == WSTLS_WANT)
      check(rc = wstls_handshake(c));
    else if (rc == WSTLS_OK && drain_reads(c))
      check(wstls_write(c, (const uint8_t *)"ping", 4));
    move(c, s, to_client ? NULL : data, size, &off_c);
    if (rs == WSTLS_WANT)
      check(rs = wstls_handshake(s));
    else if (rs == WSTLS_OK && drain_reads(s))
      check(wstls_write(s, (const uint8_t *)"pong", 4));
    move(s, c, to_client ? data : NULL, size, &off_s);
  }
  check(wstls_close_notify(c));
  move(c, s, to_client ? NULL : data, size, &off_c);
  drain_reads(s);
out:
  wstls_free(c);
  wstls_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wstls *t;
  size_t step, at = 1;
  int r = WSTLS_WANT, mode;
  if (size < 1) return 0;
  /* Bits 0-1: 0 raw bytes to a server, 1 raw bytes to a client after its
   * ClientHello, 2 and 3: a genuine exchange with the rest XORed into the
   * server's or the client's stream. Bits 2-7: feed size for 0 and 1
   * (0 = everything at once). */
  mode = data[0] & 3;
  if (mode >= 2) {
    tamper(data + 1, size - 1, mode == 2);
    return 0;
  }
  step = data[0] >> 2;
  if (step == 0) step = size;
  t = wstls_new(mode ? client_ctx : server_ctx, "localhost");
  if (!t) return 0;
  if (mode) check(wstls_handshake(t)); /* the ClientHello */
  while (at < size) {
    size_t n = size - at < step ? size - at : step, off = 0;
    if (wstls_feed(t, data + at, n) != 0) break;
    at += n;
    if (!wstls_handshake_done(t)) {
      r = wstls_handshake(t);
      check(r);
    }
    if (wstls_handshake_done(t) && drain_reads(t))
      check(wstls_write(t, (const uint8_t *)"x", 1));
    move(t, NULL, NULL, 0, &off);
    if (r < WSTLS_MISUSE) break;
  }
  check(wstls_close_notify(t));
  (void)wstls_eof(t);
  (void)wstls_alpn(t);
  (void)wstls_cipher(t);
  (void)wstls_version(t);
  (void)wstls_servername(t);
  (void)wstls_detail(t);
  wstls_free(t);
  return 0;
}
