/*
 * luvws TLS: wolfSSL over memory buffers. See wstls.h.
 *
 * wolfSSL pulls ciphertext through recv_cb (from t->in, filled by
 * wstls_feed) and pushes ciphertext through send_cb (into a chunk list the
 * caller drains with wstls_out / wstls_out_consume). send_cb always takes
 * everything, so wolfSSL never sees WANT_WRITE and never holds output back.
 */
/* options.h first, in a block of its own (clang-format sorts blocks). */
#include <wolfssl/options.h>

#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "wstls.h"

/* The suites used when the caller names none: AEAD with forward secrecy
 * only, ChaCha20-Poly1305 first because Debian's wolfSSL has no AES-NI
 * (ChaCha20 measures faster than AES-GCM there). A server picks in its own
 * order. */
#define WSTLS_DEFAULT_TLS13                                                    \
  "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:"                    \
  "TLS13-AES256-GCM-SHA384"
#define WSTLS_DEFAULT_TLS12                                                    \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                 \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                 \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"

/* Key exchange groups, X25519 first: it makes a handshake (both ends) take
 * about a third of the time P-256 does in this build. */
static int default_groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1,
                               WOLFSSL_ECC_SECP384R1, WOLFSSL_ECC_SECP521R1};

/* Smallest output chunk: small records (WebSocket frames of a few bytes)
 * share one chunk; a full record gets a chunk of its own size. */
#define WSTLS_CHUNK_MIN 4096

/* ------------------------------------------------------------------ types */

struct wstls_sni {
  char *host;     /* lower case, no trailing dot; may start with "*." */
  wstls_ctx *ctx; /* the context whose certificate it selects (a ref) */
};

struct wstls_ctx {
  WOLFSSL_CTX *ssl_ctx;  /* wolfSSL's context */
  atomic_int refs;       /* references: creator, sessions, SNI tables */
  int server;            /* 1 = server role */
  int verify;            /* resolved mode (see wstls_ctx_config.verify) */
  char *alpn;            /* client: the list as wolfSSL_UseALPN wants it */
  uint8_t *alpn_wire;    /* server: preference list, length-prefixed */
  size_t alpn_wire_len;  /* bytes in alpn_wire */
  struct wstls_sni *sni; /* SNI table (server) */
  size_t nsni;           /* entries in sni */
};

struct wstls_chunk {
  struct wstls_chunk *next; /* next (newer) chunk */
  size_t start;             /* first byte not yet consumed */
  size_t end;               /* bytes written */
  size_t cap;               /* bytes allocated in data */
  uint8_t data[];
};

struct wstls {
  WOLFSSL *ssl;             /* the wolfSSL session */
  wstls_ctx *ctx;           /* its context (a ref) */
  uint8_t *in;              /* ciphertext fed and not yet taken by wolfSSL */
  size_t in_off;            /* first unread byte of in */
  size_t in_len;            /* bytes in in */
  size_t in_cap;            /* bytes allocated for in */
  struct wstls_chunk *head; /* output queue, oldest first */
  struct wstls_chunk *tail; /* newest chunk */
  size_t pending;           /* output bytes not yet consumed */
  size_t produced;          /* output bytes ever queued */
  int err;                  /* sticky failure (WS_E_*), or 0 */
  char *detail;             /* wolfSSL's detail for err, or NULL */
  char *alpn;               /* agreed ALPN protocol, or NULL */
  unsigned done : 1;        /* handshake complete */
  unsigned peer_closed : 1; /* close_notify received */
  unsigned sent_close : 1;  /* close_notify queued */
  unsigned oom : 1;         /* send_cb could not allocate */
};

/* -------------------------------------------------------------- wolfSSL */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void init_wolfssl(void) {
  init_rc = wolfSSL_Init();
}

static int ensure_init(void) {
  pthread_once(&init_once, init_wolfssl);
  return init_rc == WOLFSSL_SUCCESS ? 0 : -1;
}

/* wolfSSL keeps a per-thread queue of error codes (OPENSSL_EXTRA builds);
 * nothing here reads it, so keep it empty. */
static void clear_errors(void) {
  wolfSSL_ERR_clear_error();
}

/* ---------------------------------------------------------- small helpers */

/* Writes the message for a failed wstls_ctx_new; returns -1. */
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (err && errlen > 0) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static char *dup_str(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static int is_pem(const char *s) {
  return strncmp(s, "-----BEGIN", 10) == 0;
}

/* wolfSSL's text for one of its codes. */
static const char *wolf_reason(int code) {
  const char *s = wolfSSL_ERR_reason_error_string((unsigned long)code);
  return s && *s ? s : "unknown error";
}

/* 0 if path can be opened for reading, else -1 with "what: path: why". */
static int check_readable(const char *what, const char *path, char *err,
                          size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) return fail(err, errlen, "%s: %s: %s", what, path, strerror(errno));
  fclose(f);
  return 0;
}

/* ---------------------------------------------------------- context setup */

static int load_cert(wstls_ctx *c, const char *cert, char *err, size_t errlen) {
  int rc;
  if (is_pem(cert)) {
    rc = wolfSSL_CTX_use_certificate_chain_buffer(
        c->ssl_ctx, (const unsigned char *)cert, (long)strlen(cert));
    if (rc != WOLFSSL_SUCCESS)
      return fail(err, errlen,
                  "cert: the PEM text is not a certificate chain (%s)",
                  wolf_reason(rc));
    return 0;
  }
  if (check_readable("cert", cert, err, errlen)) return -1;
  rc = wolfSSL_CTX_use_certificate_chain_file(c->ssl_ctx, cert);
  if (rc != WOLFSSL_SUCCESS)
    return fail(err, errlen,
                "cert: %s does not hold a PEM certificate chain (%s)", cert,
                wolf_reason(rc));
  return 0;
}

/* Reads a whole (small) file; NULL on failure. */
static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0, got;
  if (!f) return NULL;
  for (;;) {
    if (cap - n < 4096) {
      char *grown;
      if (cap >= (1u << 20)) break; /* no key file is this big */
      grown = realloc(buf, cap + 8192);
      if (!grown) break;
      buf = grown;
      cap += 8192;
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  fclose(f);
  if (buf) buf[n] = '\0';
  *len = n;
  return buf;
}

/* The EC public point of a private key in PEM, exported (0x04 || X || Y);
 * 0 if it is not an EC key, -1 on failure. */
static int ec_point_of_key(const char *pem, size_t len, uint8_t *out,
                           word32 *outlen) {
  int derlen, rc = 0;
  word32 idx = 0;
  ecc_key k;
  uint8_t *der = malloc(len);
  if (!der) return -1;
  derlen =
      wc_KeyPemToDer((const unsigned char *)pem, (int)len, der, (int)len, NULL);
  if (derlen <= 0 || wc_ecc_init(&k) != 0) {
    free(der);
    return 0;
  }
  if (wc_EccPrivateKeyDecode(der, &idx, &k, (word32)derlen) == 0) {
    /* Derive the point from the scalar: whatever public key the file
     * carries is not what signs. */
    rc = wc_ecc_make_pub(&k, NULL) == 0 &&
                 wc_ecc_export_x963(&k, out, outlen) == 0
             ? 1
             : -1;
  }
  wc_ecc_free(&k);
  free(der);
  return rc;
}

/* The EC public point in the context's certificate; 0 if not EC. */
static int ec_point_of_cert(WOLFSSL_CTX *ctx, uint8_t *out, word32 *outlen) {
  WOLFSSL_X509 *x = wolfSSL_CTX_get0_certificate(ctx);
  uint8_t spki[1024];
  int n = (int)sizeof(spki), rc = 0;
  word32 idx = 0;
  ecc_key k;
  if (!x || wolfSSL_X509_get_pubkey_buffer(x, spki, &n) != WOLFSSL_SUCCESS)
    return 0;
  if (wc_ecc_init(&k) != 0) return 0;
  if (wc_EccPublicKeyDecode(spki, &idx, &k, (word32)n) == 0)
    rc = wc_ecc_export_x963(&k, out, outlen) == 0 ? 1 : -1;
  wc_ecc_free(&k);
  return rc;
}

/* wolfSSL 5.5.4's wolfSSL_CTX_check_private_key passes any EC key with any
 * EC certificate (it does catch RSA and Ed25519 mismatches), so compare the
 * points here. Returns 1 when they differ. */
static int ec_key_mismatch(WOLFSSL_CTX *ctx, const char *key) {
  uint8_t a[200], b[200];
  word32 alen = sizeof(a), blen = sizeof(b);
  char *text = NULL;
  size_t len;
  int ka, kb;
  if (is_pem(key)) {
    len = strlen(key);
  } else {
    text = read_file(key, &len);
    if (!text) return 0;
    key = text;
  }
  ka = ec_point_of_key(key, len, a, &alen);
  free(text);
  if (ka <= 0) return 0;
  kb = ec_point_of_cert(ctx, b, &blen);
  if (kb <= 0) return kb < 0;
  return alen != blen || memcmp(a, b, alen) != 0;
}

static int load_key(wstls_ctx *c, const char *key, char *err, size_t errlen) {
  int rc;
  if (is_pem(key)) {
    rc = wolfSSL_CTX_use_PrivateKey_buffer(
        c->ssl_ctx, (const unsigned char *)key, (long)strlen(key),
        WOLFSSL_FILETYPE_PEM);
    if (rc != WOLFSSL_SUCCESS)
      return fail(err, errlen, "key: the PEM text is not a private key (%s)",
                  wolf_reason(rc));
  } else {
    if (check_readable("key", key, err, errlen)) return -1;
    rc = wolfSSL_CTX_use_PrivateKey_file(c->ssl_ctx, key, WOLFSSL_FILETYPE_PEM);
    if (rc != WOLFSSL_SUCCESS)
      return fail(err, errlen, "key: %s does not hold a PEM private key (%s)",
                  key, wolf_reason(rc));
  }
  if (wolfSSL_CTX_check_private_key(c->ssl_ctx) != WOLFSSL_SUCCESS ||
      ec_key_mismatch(c->ssl_ctx, key))
    return fail(err, errlen, "key: does not match the certificate");
  return 0;
}

static int load_ca(wstls_ctx *c, const char *ca, char *err, size_t errlen) {
  struct stat st;
  int rc;
  if (strcmp(ca, "system") == 0) {
    rc = wolfSSL_CTX_load_system_CA_certs(c->ssl_ctx);
    if (rc != WOLFSSL_SUCCESS)
      return fail(err, errlen,
                  "ca: no system CA certificate could be loaded (is the "
                  "ca-certificates package installed?)");
    return 0;
  }
  if (is_pem(ca)) {
    rc = wolfSSL_CTX_load_verify_buffer(c->ssl_ctx, (const unsigned char *)ca,
                                        (long)strlen(ca), WOLFSSL_FILETYPE_PEM);
    if (rc != WOLFSSL_SUCCESS)
      return fail(err, errlen, "ca: the PEM text is not a certificate (%s)",
                  wolf_reason(rc));
    return 0;
  }
  if (stat(ca, &st) != 0)
    return fail(err, errlen, "ca: %s: %s", ca, strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    /* Skip what is not a certificate (hash links to the same files, README
     * files), as the system directory needs. */
    rc = wolfSSL_CTX_load_verify_locations_ex(
        c->ssl_ctx, NULL, ca,
        WOLFSSL_LOAD_FLAG_IGNORE_ERR | WOLFSSL_LOAD_FLAG_IGNORE_ZEROFILE);
    if (rc != WOLFSSL_SUCCESS)
      return fail(err, errlen, "ca: no certificate could be loaded from %s",
                  ca);
    return 0;
  }
  if (check_readable("ca", ca, err, errlen)) return -1;
  rc = wolfSSL_CTX_load_verify_locations(c->ssl_ctx, ca, NULL);
  if (rc != WOLFSSL_SUCCESS)
    return fail(err, errlen, "ca: %s does not hold PEM certificates (%s)", ca,
                wolf_reason(rc));
  return 0;
}

/* Parses "a, b,c" into the client form ("a,b,c") and the wire form. */
static int parse_alpn(wstls_ctx *c, const char *list, char *err,
                      size_t errlen) {
  size_t n = strlen(list), i = 0, clen = 0, wlen = 0;
  c->alpn = malloc(n + 1);
  c->alpn_wire = malloc(n + 1);
  if (!c->alpn || !c->alpn_wire) return fail(err, errlen, "out of memory");
  while (i <= n) {
    size_t s, e;
    while (i < n && (list[i] == ' ' || list[i] == '\t'))
      i++;
    s = i;
    while (i < n && list[i] != ',')
      i++;
    e = i;
    while (e > s && (list[e - 1] == ' ' || list[e - 1] == '\t'))
      e--;
    if (e == s)
      return fail(err, errlen, "alpn: empty protocol name in \"%s\"", list);
    if (e - s > 255)
      return fail(err, errlen, "alpn: a protocol name is over 255 bytes");
    if (clen) c->alpn[clen++] = ',';
    memcpy(c->alpn + clen, list + s, e - s);
    clen += e - s;
    c->alpn_wire[wlen++] = (uint8_t)(e - s);
    memcpy(c->alpn_wire + wlen, list + s, e - s);
    wlen += e - s;
    i++; /* past the comma (or the end) */
  }
  c->alpn[clen] = '\0';
  c->alpn_wire_len = wlen;
  return 0;
}

/* Server: choose the first of our protocols that the client offers. */
static int alpn_select(WOLFSSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  const wstls_ctx *c = arg;
  size_t i = 0;
  (void)ssl;
  while (i < c->alpn_wire_len) {
    size_t len = c->alpn_wire[i], j = 0;
    const uint8_t *name = c->alpn_wire + i + 1;
    while (j < inlen) {
      size_t l = in[j];
      if (j + 1 + l > inlen) break;
      if (l == len && memcmp(in + j + 1, name, len) == 0) {
        *out = name;
        *outlen = (unsigned char)len;
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1 + l;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

/* Sets the suites as OpenSSL treats its two lists: the TLS 1.3 suites
 * named in list (TLS13-* or TLS_*) replace the default TLS 1.3 suites, the
 * others replace the default TLS 1.2 suites; a kind the list does not name
 * keeps its defaults (if its version is enabled). So
 * "ECDHE-ECDSA-AES128-GCM-SHA256" limits TLS 1.2 without turning TLS 1.3
 * off. */
static int set_ciphers(WOLFSSL_CTX *ctx, const char *list, int server, int lo,
                       int hi, char *err, size_t errlen) {
  const char *p;
  int has13 = 0, has12 = 0, rc;
  char *all;
  size_t n;
  if (!list) list = "";
  for (p = list; *p;) {
    size_t len = strcspn(p, ":");
    if (len > 0) {
      if (strncmp(p, "TLS13-", 6) == 0 || strncmp(p, "TLS_", 4) == 0)
        has13 = 1;
      else if (*p != '!' && *p != '-' && *p != '+')
        has12 = 1;
    }
    p += len;
    if (*p == ':') p++;
  }
  /* Leave out the defaults of a disabled version. A 1.3-only server that
   * kept TLS 1.2 suites would report a missing shared 1.3 suite as a
   * version error; a 1.3-only client keeps them, because offering them lets
   * a 1.2-only server answer, and the client then fails with
   * protocol_version instead of the server with handshake_failure. */
  if (hi == 12) has13 = 1;
  if (lo == 13 && server) has12 = 1;
  if (*list && wolfSSL_CTX_set_cipher_list(ctx, list) != WOLFSSL_SUCCESS)
    return fail(err, errlen,
                "ciphers: no suite in \"%s\" is one wolfSSL "
                "knows",
                list);
  n = strlen(list) + sizeof(WSTLS_DEFAULT_TLS13) + sizeof(WSTLS_DEFAULT_TLS12) +
      2;
  all = malloc(n);
  if (!all) return fail(err, errlen, "out of memory");
  all[0] = '\0';
  if (!has13) strcat(all, WSTLS_DEFAULT_TLS13);
  if (*list) strcat(strcat(all, *all ? ":" : ""), list);
  if (!has12) strcat(strcat(all, *all ? ":" : ""), WSTLS_DEFAULT_TLS12);
  rc = wolfSSL_CTX_set_cipher_list(ctx, all);
  free(all);
  if (rc != WOLFSSL_SUCCESS)
    return fail(err, errlen, "ciphers: wolfSSL refused the list");
  return 0;
}

void wstls_ctx_config_init(wstls_ctx_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->verify = -1;
}

static void ctx_free(wstls_ctx *c) {
  size_t i;
  if (c->ssl_ctx) wolfSSL_CTX_free(c->ssl_ctx);
  for (i = 0; i < c->nsni; i++) {
    free(c->sni[i].host);
    wstls_ctx_unref(c->sni[i].ctx);
  }
  free(c->sni);
  free(c->alpn);
  free(c->alpn_wire);
  free(c);
}

int wstls_ctx_new(const wstls_ctx_config *cfg, wstls_ctx **out, char *err,
                  size_t errlen) {
  wstls_ctx *c;
  WOLFSSL_METHOD *method;
  int server = cfg->server ? 1 : 0;
  int lo = cfg->min_version ? cfg->min_version : 12;
  int hi = cfg->max_version ? cfg->max_version : 13;
  int verify = cfg->verify;
  const char *ca = cfg->ca;
  int mode;

  *out = NULL;
  if (lo != 12 && lo != 13)
    return fail(err, errlen, "min_version: must be 12 or 13 (TLS 1.2 or 1.3)");
  if (hi != 12 && hi != 13)
    return fail(err, errlen, "max_version: must be 12 or 13 (TLS 1.2 or 1.3)");
  if (lo > hi)
    return fail(err, errlen, "min_version: %d is above max_version %d", lo, hi);
  if (verify == -1) verify = server ? 0 : 1;
  if (verify < 0 || verify > (server ? 2 : 1))
    return fail(err, errlen,
                server ? "verify: must be 0, 1 (require a client "
                         "certificate) or 2 (ask for one)"
                       : "verify: must be 0 or 1");
  if (server && !cfg->cert)
    return fail(err, errlen, "cert: a server needs a certificate and key");
  if (cfg->cert && !cfg->key)
    return fail(err, errlen, "key: cert is given without its key");
  if (cfg->key && !cfg->cert)
    return fail(err, errlen, "cert: key is given without its certificate");
  if (!ca && !server && verify) ca = "system";
  if (server && verify && !ca)
    return fail(err, errlen,
                "ca: verifying client certificates needs the CAs that sign "
                "them");
  if (ensure_init() != 0) return fail(err, errlen, "wolfSSL_Init failed");

  c = calloc(1, sizeof(*c));
  if (!c) return fail(err, errlen, "out of memory");
  atomic_init(&c->refs, 1);
  c->server = server;
  c->verify = verify;
  /* The flexible method, then the bounds: a 1.3-only client facing a
   * 1.2-only server then fails with protocol_version, not a parse error. */
  method = server ? wolfSSLv23_server_method() : wolfSSLv23_client_method();
  c->ssl_ctx = method ? wolfSSL_CTX_new(method) : NULL;
  if (!c->ssl_ctx) {
    fail(err, errlen, "out of memory (wolfSSL_CTX_new)");
    goto bad;
  }
  if (wolfSSL_CTX_SetMinVersion(c->ssl_ctx,
                                lo == 13 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2) !=
          WOLFSSL_SUCCESS ||
      (hi == 12 && wolfSSL_CTX_set_max_proto_version(
                       c->ssl_ctx, TLS1_2_VERSION) != WOLFSSL_SUCCESS)) {
    fail(err, errlen, "min_version: wolfSSL refused TLS 1.%d to 1.%d", lo % 10,
         hi % 10);
    goto bad;
  }
  if (set_ciphers(c->ssl_ctx, cfg->ciphers, server, lo, hi, err, errlen))
    goto bad;
  wolfSSL_CTX_set_groups(
      c->ssl_ctx, default_groups,
      (int)(sizeof(default_groups) / sizeof(default_groups[0])));
  if (cfg->cert && (load_cert(c, cfg->cert, err, errlen) ||
                    load_key(c, cfg->key, err, errlen)))
    goto bad;
  if (ca && load_ca(c, ca, err, errlen)) goto bad;
  if (!verify)
    mode = WOLFSSL_VERIFY_NONE;
  else if (server && verify == 1)
    mode = WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  else
    mode = WOLFSSL_VERIFY_PEER;
  wolfSSL_CTX_set_verify(c->ssl_ctx, mode, NULL);
  if (cfg->alpn) {
    if (parse_alpn(c, cfg->alpn, err, errlen)) goto bad;
    if (server) wolfSSL_CTX_set_alpn_select_cb(c->ssl_ctx, alpn_select, c);
  }
  clear_errors();
  *out = c;
  return 0;

bad:
  ctx_free(c);
  clear_errors();
  return -1;
}

void wstls_ctx_ref(wstls_ctx *c) {
  atomic_fetch_add(&c->refs, 1);
}

void wstls_ctx_unref(wstls_ctx *c) {
  if (c && atomic_fetch_sub(&c->refs, 1) == 1) ctx_free(c);
}

int wstls_ctx_is_server(const wstls_ctx *c) {
  return c->server;
}

/* Copies a host name in lower case without a trailing dot. */
static char *host_norm(const char *h) {
  size_t n = strlen(h), i;
  char *d;
  if (n > 0 && h[n - 1] == '.') n--;
  d = dup_str(h, n);
  if (!d) return NULL;
  for (i = 0; i < n; i++)
    if (d[i] >= 'A' && d[i] <= 'Z') d[i] = (char)(d[i] - 'A' + 'a');
  return d;
}

/* Does pattern (normalised; "*." for one label) match name? */
static int host_match(const char *pattern, const char *name, size_t n) {
  if (pattern[0] == '*' && pattern[1] == '.') {
    const char *dot = memchr(name, '.', n);
    size_t rest;
    if (!dot || dot == name) return 0;
    rest = n - (size_t)(dot - name);
    return strlen(pattern + 1) == rest &&
           strncasecmp(pattern + 1, dot, rest) == 0;
  }
  return strlen(pattern) == n && strncasecmp(pattern, name, n) == 0;
}

static int sni_cb(WOLFSSL *ssl, int *alert, void *arg) {
  const wstls_ctx *c = arg;
  const char *name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
  size_t i, n;
  (void)alert;
  if (!name) return SSL_TLSEXT_ERR_OK;
  n = strlen(name);
  if (n > 0 && name[n - 1] == '.') n--;
  for (i = 0; i < c->nsni; i++) {
    if (!host_match(c->sni[i].host, name, n)) continue;
    if (!wolfSSL_set_SSL_CTX(ssl, c->sni[i].ctx->ssl_ctx))
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    break;
  }
  return SSL_TLSEXT_ERR_OK;
}

int wstls_ctx_add_sni(wstls_ctx *server, const char *hostname,
                      wstls_ctx *other) {
  struct wstls_sni *grown;
  char *host;
  if (!server->server || !other->server || other == server || !hostname ||
      !*hostname)
    return WSTLS_MISUSE;
  host = host_norm(hostname);
  if (!host) return WS_E_no_memory;
  grown = realloc(server->sni, (server->nsni + 1) * sizeof(*grown));
  if (!grown) {
    free(host);
    return WS_E_no_memory;
  }
  server->sni = grown;
  grown[server->nsni].host = host;
  grown[server->nsni].ctx = other;
  server->nsni++;
  wstls_ctx_ref(other);
  if (server->nsni == 1) {
    wolfSSL_CTX_set_servername_callback(server->ssl_ctx, sni_cb);
    wolfSSL_CTX_set_servername_arg(server->ssl_ctx, server);
  }
  return 0;
}

/* ------------------------------------------------------------------ output */

static int out_append(wstls *t, const uint8_t *p, size_t n) {
  struct wstls_chunk *c = t->tail;
  size_t take;
  t->pending += n;
  t->produced += n;
  if (c && c->cap > c->end) {
    take = c->cap - c->end < n ? c->cap - c->end : n;
    memcpy(c->data + c->end, p, take);
    c->end += take;
    p += take;
    n -= take;
  }
  if (n == 0) return 0;
  take = n < WSTLS_CHUNK_MIN ? WSTLS_CHUNK_MIN : n;
  c = malloc(sizeof(*c) + take);
  if (!c) {
    t->pending -= n;
    t->produced -= n;
    return -1;
  }
  c->next = NULL;
  c->start = 0;
  c->end = n;
  c->cap = take;
  memcpy(c->data, p, n);
  if (t->tail)
    t->tail->next = c;
  else
    t->head = c;
  t->tail = c;
  return 0;
}

size_t wstls_out(wstls *t, ws_iov *iov, size_t max) {
  size_t n = 0;
  const struct wstls_chunk *c;
  for (c = t->head; c && n < max; c = c->next) {
    if (c->end == c->start) continue;
    iov[n].base = c->data + c->start;
    iov[n].len = c->end - c->start;
    n++;
  }
  return n;
}

void wstls_out_consume(wstls *t, size_t n) {
  if (n > t->pending) n = t->pending;
  t->pending -= n;
  while (n > 0 && t->head) {
    struct wstls_chunk *c = t->head;
    size_t left = c->end - c->start;
    size_t take = n < left ? n : left;
    c->start += take;
    n -= take;
    if (c->start < c->end) break;
    /* Emptied: free it (an idle session holds no output buffer). */
    t->head = c->next;
    if (!t->head) t->tail = NULL;
    free(c);
  }
}

size_t wstls_out_pending(const wstls *t) {
  return t->pending;
}

/* -------------------------------------------------------------- I/O hooks */

static int recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ud) {
  wstls *t = ud;
  size_t avail = t->in_len - t->in_off;
  size_t n = (size_t)sz < avail ? (size_t)sz : avail;
  (void)ssl;
  if (n == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
  memcpy(buf, t->in + t->in_off, n);
  t->in_off += n;
  return (int)n;
}

static int send_cb(WOLFSSL *ssl, char *buf, int sz, void *ud) {
  wstls *t = ud;
  (void)ssl;
  if (sz <= 0) return 0;
  if (out_append(t, (const uint8_t *)buf, (size_t)sz) != 0) {
    t->oom = 1;
    return WOLFSSL_CBIO_ERR_GENERAL;
  }
  return sz;
}

/* Frees the input copy once wolfSSL has taken all of it, so an idle
 * session holds no input buffer. */
static void in_trim(wstls *t) {
  if (t->in && t->in_off == t->in_len) {
    free(t->in);
    t->in = NULL;
    t->in_off = t->in_len = t->in_cap = 0;
  }
}

int wstls_feed(wstls *t, const uint8_t *cipher, size_t n) {
  size_t live = t->in_len - t->in_off;
  if (t->err) return t->err;
  /* After close_notify nothing more is read: drop, do not hoard. */
  if (n == 0 || t->peer_closed) return 0;
  if (t->in_off > 0) {
    memmove(t->in, t->in + t->in_off, live);
    t->in_off = 0;
    t->in_len = live;
  }
  if (live + n > t->in_cap) {
    size_t cap = live + n;
    uint8_t *grown = realloc(t->in, cap);
    if (!grown) return WS_E_no_memory;
    t->in = grown;
    t->in_cap = cap;
  }
  memcpy(t->in + t->in_len, cipher, n);
  t->in_len += n;
  return 0;
}

/* ----------------------------------------------------------------- errors */

static const char *alert_name(int code) {
  switch (code) {
  case 0: return "close_notify";
  case 10: return "unexpected_message";
  case 20: return "bad_record_mac";
  case 22: return "record_overflow";
  case 40: return "handshake_failure";
  case 42: return "bad_certificate";
  case 43: return "unsupported_certificate";
  case 44: return "certificate_revoked";
  case 45: return "certificate_expired";
  case 46: return "certificate_unknown";
  case 47: return "illegal_parameter";
  case 48: return "unknown_ca";
  case 49: return "access_denied";
  case 50: return "decode_error";
  case 51: return "decrypt_error";
  case 70: return "protocol_version";
  case 71: return "insufficient_security";
  case 80: return "internal_error";
  case 86: return "inappropriate_fallback";
  case 90: return "user_canceled";
  case 109: return "missing_extension";
  case 110: return "unsupported_extension";
  case 112: return "unrecognized_name";
  case 116: return "certificate_required";
  case 120: return "no_application_protocol";
  default: return "unknown alert";
  }
}

/* The name for a fatal alert the peer sent. */
static int map_alert(int code) {
  switch (code) {
  case 48: return WS_E_tls_unknown_ca;
  case 45: return WS_E_tls_cert_expired;
  case 41:
  case 42:
  case 43:
  case 44:
  case 46:
  case 116: return WS_E_tls_bad_certificate;
  case 70: return WS_E_tls_protocol_version;
  case 40:
  case 71: return WS_E_tls_handshake_failed;
  case 20:
  case 22: return WS_E_tls_bad_record; /* bad_record_mac, record_overflow */
  default: return WS_E_tls_alert;
  }
}

/* The name for a wolfSSL error code found on our side. */
static int map_error(int e) {
  switch (e) {
  case MEMORY_E:
  case MEMORY_ERROR: return WS_E_no_memory;
  case ASN_NO_SIGNER_E:
  case ASN_SELF_SIGNED_E: return WS_E_tls_unknown_ca;
  case ASN_AFTER_DATE_E:
  case ASN_BEFORE_DATE_E: return WS_E_tls_cert_expired;
  case DOMAIN_NAME_MISMATCH:
  case IPADDR_MISMATCH: return WS_E_tls_hostname_mismatch;
  case VERSION_ERROR:
  case UNSUPPORTED_PROTO_VERSION: return WS_E_tls_protocol_version;
  case NO_PEER_CERT:
  case VERIFY_CERT_ERROR:
  case NOT_CA_ERROR:
  case EXTKEYUSE_AUTH_E:
  case KEYUSE_SIGNATURE_E:
  case KEYUSE_ENCIPHER_E:
  case EXTKEYUSAGE_E:
  case KEYUSAGE_E:
  case OCSP_CERT_REVOKED:
  case CRL_CERT_REVOKED:
  case MAX_CHAIN_ERROR:
  case ASN_SIG_CONFIRM_E:
  case ASN_SIG_OID_E:
  case ASN_SIG_HASH_E:
  case ASN_SIG_KEY_E:
  case ASN_NAME_INVALID_E:
  case ASN_PATHLEN_SIZE_E:
  case ASN_PATHLEN_INV_E:
  case ASN_PARSE_E:
  case RSA_KEY_SIZE_E:
  case ECC_KEY_SIZE_E: return WS_E_tls_bad_certificate;
  case VERIFY_MAC_ERROR:
  case DECRYPT_ERROR:
  case UNKNOWN_RECORD_TYPE:
  case LENGTH_ERROR:
  case PARSE_ERROR: return WS_E_tls_bad_record;
  default: return WS_E_tls_handshake_failed;
  }
}

/* Records failure e (from wolfSSL_get_error) and returns its WS_E_ code. */
static int session_fail(wstls *t, int e) {
  char buf[160];
  int code;
  if (t->oom || e == MEMORY_E || e == MEMORY_ERROR) {
    code = WS_E_no_memory;
    snprintf(buf, sizeof(buf), "out of memory");
  } else if (e == FATAL_ERROR) {
    WOLFSSL_ALERT_HISTORY h;
    memset(&h, 0, sizeof(h));
    wolfSSL_get_alert_history(t->ssl, &h);
    code = map_alert(h.last_rx.code);
    snprintf(buf, sizeof(buf), "peer sent fatal alert %d (%s)", h.last_rx.code,
             alert_name(h.last_rx.code));
  } else {
    code = map_error(e);
    snprintf(buf, sizeof(buf), "wolfSSL %d: %s", e, wolf_reason(e));
  }
  t->err = code;
  free(t->detail);
  t->detail = dup_str(buf, strlen(buf)); /* NULL if out of memory: fine */
  clear_errors();
  return code;
}

/* The byte at offset pos of the queued output (pos < t->pending). */
static uint8_t *out_at(wstls *t, size_t pos) {
  struct wstls_chunk *c;
  for (c = t->head; c; c = c->next) {
    size_t len = c->end - c->start;
    if (pos < len) return c->data + c->start + pos;
    pos -= len;
  }
  return NULL;
}

/* The alert that tells the peer about our failure code (e is wolfSSL's). */
static int alert_for(int code, int e) {
  if (e == NO_PEER_CERT) return 40; /* RFC 5246 7.4.6: handshake_failure */
  switch (code) {
  case WS_E_tls_unknown_ca: return 48;
  case WS_E_tls_cert_expired: return 45;
  case WS_E_tls_hostname_mismatch:
  case WS_E_tls_bad_certificate: return 42;
  case WS_E_tls_protocol_version: return 70;
  default: return 40;
  }
}

/* wolfSSL fails some handshakes without telling the peer (a TLS 1.2 server
 * whose client sent no certificate), which leaves the peer waiting for a
 * timeout. Then tell it: wolfSSL_shutdown queues a close_notify under
 * whatever protection the write side has; while that is still plaintext
 * (the 7 bytes 21 3 x 0 2 1 0), make it the fatal alert that names the
 * failure. An encrypted close_notify stays as it is: the peer fails on it
 * too. */
static void handshake_alert(wstls *t, int code, int e) {
  WOLFSSL_ALERT_HISTORY h;
  size_t before = t->pending;
  uint8_t *r[7];
  int i;
  memset(&h, 0, sizeof(h));
  if (t->oom || e == FATAL_ERROR) return; /* nothing to send / they know */
  if (wolfSSL_get_alert_history(t->ssl, &h) == WOLFSSL_SUCCESS &&
      h.last_tx.level == alert_fatal)
    return; /* wolfSSL sent one */
  wolfSSL_shutdown(t->ssl);
  if (t->oom || t->pending - before != 7) return;
  for (i = 0; i < 7; i++)
    r[i] = out_at(t, before + (size_t)i);
  if (*r[0] == 21 && *r[1] == 3 && *r[3] == 0 && *r[4] == 2 && *r[5] == 1 &&
      *r[6] == 0) {
    *r[5] = 2;
    *r[6] = (uint8_t)alert_for(code, e);
  }
}

/* ---------------------------------------------------------------- session */

/* Strips [brackets] and reports whether host is an IP literal. */
/* If host is an IP literal, writes it to ip in the form wolfSSL compares
 * against (dotted quad; IPv6 as eight full groups, "0000:...:0001", which
 * is how wolfSSL 5.5.4 prints the certificate's address) and returns 1. */
static int ip_literal(const char *host, char ip[64]) {
  size_t n = strlen(host), i;
  unsigned char bin[16];
  char tmp[64];
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
    host++;
    n -= 2;
  }
  if (n >= sizeof(tmp)) return 0;
  memcpy(tmp, host, n);
  tmp[n] = '\0';
  if (inet_pton(AF_INET, tmp, bin) == 1) {
    memcpy(ip, tmp, n + 1);
    return 1;
  }
  if (inet_pton(AF_INET6, tmp, bin) != 1) return 0;
  for (i = 0; i < 8; i++)
    snprintf(ip + i * 5, 6, "%02x%02x%s", bin[2 * i], bin[2 * i + 1],
             i < 7 ? ":" : "");
  return 1;
}

/* Client: SNI and the name the certificate must match. */
static int setup_client(wstls *t, const char *servername) {
  char ip[64], *host;
  int ok = 1;
  if (ip_literal(servername, ip)) {
    /* RFC 6066: no SNI for an address. */
    return !t->ctx->verify ||
                   wolfSSL_X509_VERIFY_PARAM_set1_ip_asc(
                       wolfSSL_get0_param(t->ssl), ip) == WOLFSSL_SUCCESS
               ? 0
               : -1;
  }
  host = host_norm(servername);
  if (!host) return -1;
  /* A name too long for DNS is not sent, but still has to match. */
  if (*host && strlen(host) <= 253)
    ok = wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, host,
                        (unsigned short)strlen(host)) == WOLFSSL_SUCCESS;
  if (ok && *host && t->ctx->verify)
    ok = wolfSSL_check_domain_name(t->ssl, host) == WOLFSSL_SUCCESS;
  free(host);
  return ok ? 0 : -1;
}

wstls *wstls_new(wstls_ctx *ctx, const char *servername) {
  wstls *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->ctx = ctx;
  wstls_ctx_ref(ctx);
  t->ssl = wolfSSL_new(ctx->ssl_ctx);
  if (!t->ssl) goto bad;
  wolfSSL_SSLSetIORecv(t->ssl, recv_cb);
  wolfSSL_SSLSetIOSend(t->ssl, send_cb);
  wolfSSL_SetIOReadCtx(t->ssl, t);
  wolfSSL_SetIOWriteCtx(t->ssl, t);
  if (!ctx->server) {
    if (servername && setup_client(t, servername) != 0) goto bad;
    if (ctx->alpn &&
        wolfSSL_UseALPN(t->ssl, ctx->alpn, (unsigned)strlen(ctx->alpn),
                        WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS)
      goto bad;
  }
  clear_errors();
  return t;
bad:
  wstls_free(t);
  clear_errors();
  return NULL;
}

void wstls_free(wstls *t) {
  if (!t) return;
  if (t->ssl) wolfSSL_free(t->ssl);
  while (t->head) {
    struct wstls_chunk *c = t->head;
    t->head = c->next;
    free(c);
  }
  free(t->in);
  free(t->detail);
  free(t->alpn);
  wstls_ctx_unref(t->ctx);
  free(t);
}

static void handshake_finished(wstls *t) {
  char *name = NULL;
  unsigned short len = 0;
  t->done = 1;
  if (wolfSSL_ALPN_GetProtocol(t->ssl, &name, &len) == WOLFSSL_SUCCESS &&
      name && len > 0)
    t->alpn = dup_str(name, len);
}

int wstls_handshake(wstls *t) {
  int rc, e;
  if (t->err) return t->err;
  if (t->done) return WSTLS_OK;
  rc = wolfSSL_negotiate(t->ssl);
  if (rc == WOLFSSL_SUCCESS) {
    handshake_finished(t);
    in_trim(t);
    clear_errors();
    return WSTLS_OK;
  }
  e = wolfSSL_get_error(t->ssl, rc);
  if ((e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) &&
      !t->oom) {
    in_trim(t);
    clear_errors();
    return WSTLS_WANT;
  }
  rc = session_fail(t, e);
  handshake_alert(t, rc, e);
  clear_errors();
  return rc;
}

int wstls_handshake_done(const wstls *t) {
  return t->done;
}

int wstls_read(wstls *t, uint8_t *out, size_t cap) {
  int rc, e;
  if (t->err) return t->err;
  if (!t->done || cap == 0) return WSTLS_MISUSE;
  if (t->peer_closed) return WSTLS_CLOSED;
  rc = wolfSSL_read(t->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
  if (rc > 0) return rc;
  e = wolfSSL_get_error(t->ssl, rc);
  if ((e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) &&
      !t->oom) {
    in_trim(t);
    clear_errors();
    return 0;
  }
  if (e == WOLFSSL_ERROR_ZERO_RETURN) {
    t->peer_closed = 1;
    clear_errors();
    return WSTLS_CLOSED;
  }
  return session_fail(t, e);
}

int wstls_write(wstls *t, const uint8_t *p, size_t n) {
  size_t off = 0;
  if (t->err) return t->err;
  if (!t->done || t->sent_close || n > INT_MAX) return WSTLS_MISUSE;
  while (off < n) {
    int rc = wolfSSL_write(t->ssl, p + off, (int)(n - off));
    if (rc <= 0) return session_fail(t, wolfSSL_get_error(t->ssl, rc));
    off += (size_t)rc;
  }
  return (int)n;
}

int wstls_close_notify(wstls *t) {
  size_t before = t->produced;
  if (t->sent_close || t->err) return 0;
  t->sent_close = 1;
  wolfSSL_shutdown(t->ssl);
  clear_errors();
  if (t->oom) {
    t->err = WS_E_no_memory;
    return 0;
  }
  return (int)(t->produced - before);
}

int wstls_eof(wstls *t) {
  return t->peer_closed ? WSTLS_CLOSED : WSTLS_TRUNCATED;
}

int wstls_peer_closed(const wstls *t) {
  return t->peer_closed;
}

/* -------------------------------------------------------------- observers */

const char *wstls_alpn(const wstls *t) {
  return t->alpn;
}

const char *wstls_version(const wstls *t) {
  return t->done ? wolfSSL_get_version(t->ssl) : NULL;
}

const char *wstls_cipher(const wstls *t) {
  return t->done ? wolfSSL_get_cipher_name(t->ssl) : NULL;
}

const char *wstls_servername(const wstls *t) {
  const char *s;
  if (!t->ctx->server) return NULL;
  s = wolfSSL_get_servername(t->ssl, WOLFSSL_SNI_HOST_NAME);
  return s && *s ? s : NULL;
}

const char *wstls_detail(const wstls *t) {
  return t->detail;
}

const uint8_t *wstls_peer_cert(wstls *t, size_t *len) {
  WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(t->ssl);
  int n;
  *len = 0;
  if (!chain || wolfSSL_get_chain_count(chain) < 1) return NULL;
  n = wolfSSL_get_chain_length(chain, 0);
  if (n <= 0) return NULL;
  *len = (size_t)n;
  return wolfSSL_get_chain_cert(chain, 0);
}
