/* bench/loadgen_openssl.c: see loadgen_openssl.h. */
#define _POSIX_C_SOURCE 200809L

#include "loadgen_openssl.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lgo {
  SSL *ssl;
  BIO *in, *out; /* memory BIOs: ciphertext from and to the peer */
};

static SSL_CTX *g_ctx;
static char g_err[256];

static void set_err(const char *what) {
  unsigned long e = ERR_get_error();
  char buf[200];
  if (e)
    ERR_error_string_n(e, buf, sizeof buf);
  else
    snprintf(buf, sizeof buf, "no OpenSSL error queued");
  snprintf(g_err, sizeof g_err, "%s: %s", what, buf);
  ERR_clear_error();
}

const char *lgo_error(void) { return g_err; }

const char *lgo_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

int lgo_init(const char *ciphers, char *err, size_t errlen) {
  g_ctx = SSL_CTX_new(TLS_client_method());
  if (!g_ctx) {
    snprintf(err, errlen, "SSL_CTX_new failed");
    return -1;
  }
  SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(g_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  if (ciphers && *ciphers) {
    /* split the list: TLS 1.3 suites (TLS_*) and the rest */
    size_t n = strlen(ciphers) + 1;
    char *s13 = calloc(1, n), *s12 = calloc(1, n), *copy = strdup(ciphers);
    if (!s13 || !s12 || !copy) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
      char *dst = strncmp(tok, "TLS_", 4) == 0 ? s13 : s12;
      if (*dst) strcat(dst, ":");
      strcat(dst, tok);
    }
    int ok = (!*s13 || SSL_CTX_set_ciphersuites(g_ctx, s13) == 1) && (!*s12 || SSL_CTX_set_cipher_list(g_ctx, s12) == 1);
    free(s13);
    free(s12);
    free(copy);
    if (!ok) {
      snprintf(err, errlen, "OpenSSL does not accept the cipher list \"%s\"", ciphers);
      return -1;
    }
  }
  return 0;
}

lgo *lgo_new(void) {
  lgo *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->ssl = SSL_new(g_ctx);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->in || !t->out) {
    SSL_free(t->ssl);
    BIO_free(t->in);
    BIO_free(t->out);
    free(t);
    return NULL;
  }
  /* an empty memory BIO asks to retry rather than reporting EOF */
  BIO_set_mem_eof_return(t->in, -1);
  SSL_set_bio(t->ssl, t->in, t->out); /* the SSL owns both BIOs now */
  SSL_set_connect_state(t->ssl);
  return t;
}

void lgo_free(lgo *t) {
  if (!t) return;
  SSL_free(t->ssl);
  free(t);
}

int lgo_feed(lgo *t, const uint8_t *p, size_t n) {
  while (n > 0) {
    int k = n > (1u << 30) ? (1 << 30) : (int)n;
    int w = BIO_write(t->in, p, k);
    if (w <= 0) {
      set_err("BIO_write");
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int lgo_handshake(lgo *t) {
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) return 1;
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  set_err("TLS handshake");
  return -1;
}

int lgo_read(lgo *t, uint8_t *buf, size_t n) {
  int r = SSL_read(t->ssl, buf, n > (1u << 30) ? (1 << 30) : (int)n);
  if (r > 0) return r;
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  if (e == SSL_ERROR_ZERO_RETURN) return -1;
  set_err("TLS read");
  return -2;
}

int lgo_write(lgo *t, const uint8_t *p, size_t n) {
  while (n > 0) {
    int k = n > (1u << 30) ? (1 << 30) : (int)n;
    int w = SSL_write(t->ssl, p, k);
    if (w <= 0) {
      set_err("TLS write");
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

size_t lgo_out_pending(lgo *t) { return BIO_ctrl_pending(t->out); }

size_t lgo_out_take(lgo *t, uint8_t *dst, size_t n) {
  int r = BIO_read(t->out, dst, n > (1u << 30) ? (1 << 30) : (int)n);
  return r > 0 ? (size_t)r : 0;
}

void lgo_describe(lgo *t, char *out, size_t n) {
  const char *group = NULL;
  int nid = SSL_get_negotiated_group(t->ssl);
  if (nid) group = SSL_group_to_name(t->ssl, nid);
  snprintf(out, n, "%s/%s/%s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl), group ? group : "?");
}
