/*
 * luvws core: the WebSocket opening handshake (RFC 6455 §4): keys, the
 * accept value, and the checks of the upgrade request and response in the
 * order Boost.Beast makes them.
 */
#include "ws_http.h"

#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/sha.h>

/* Bytes of the random nonce behind a Sec-WebSocket-Key. */
#define WS_NONCE_LEN 16

/* Base64-encodes n bytes (n <= 30) into out, which has room for want
 * characters and a NUL; fails unless exactly want characters come out. */
static int base64(const uint8_t *in, size_t n, char *out, size_t want) {
  word32 olen = (word32)want + 1;
  if (Base64_Encode_NoNl(in, (word32)n, (byte *)out, &olen) != 0 ||
      olen != want)
    return WS_E_no_memory;
  out[want] = '\0';
  return 0;
}

int ws_key_generate(const ws_rng *rng, char out[WS_KEY_LEN + 1]) {
  uint8_t nonce[WS_NONCE_LEN];
  int r;
  out[0] = '\0';
  if (rng == NULL || rng->fill == NULL ||
      rng->fill(rng->ud, nonce, sizeof nonce) != 0)
    return WS_E_no_memory;
  r = base64(nonce, sizeof nonce, out, WS_KEY_LEN);
  if (r != 0) out[0] = '\0';
  return r;
}

static int is_base64(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int ws_key_valid(const char *key, size_t n) {
  size_t i;
  char last;
  if (n != WS_KEY_LEN) return 0;
  for (i = 0; i < 22; i++) {
    if (!is_base64(key[i])) return 0;
  }
  /* 16 bytes are 128 bits; the 22nd character carries the last 2 of them
   * in its top bits, so its low 4 bits must be zero: A, Q, g or w. */
  last = key[21];
  if (last != 'A' && last != 'Q' && last != 'g' && last != 'w') return 0;
  return key[22] == '=' && key[23] == '=';
}

int ws_accept_compute(const char *key, size_t n, char out[WS_ACCEPT_LEN + 1]) {
  wc_Sha sha;
  uint8_t digest[WC_SHA_DIGEST_SIZE];
  int r = 0;
  out[0] = '\0';
  if (wc_InitSha(&sha) != 0) return WS_E_no_memory;
  while (r == 0 && n > 0) {
    word32 chunk = n > 0x40000000u ? 0x40000000u : (word32)n;
    r = wc_ShaUpdate(&sha, (const byte *)key, chunk);
    key += chunk;
    n -= chunk;
  }
  if (r == 0) {
    r = wc_ShaUpdate(&sha, (const byte *)WS_GUID, (word32)(sizeof WS_GUID - 1));
  }
  if (r == 0) r = wc_ShaFinal(&sha, digest);
  wc_ShaFree(&sha);
  if (r != 0) return WS_E_no_memory;
  return base64(digest, sizeof digest, out, WS_ACCEPT_LEN);
}

/* True if s is exactly the NUL-terminated string lit (case kept). */
static int str_eq(ws_str s, const char *lit) {
  size_t n = strlen(lit);
  return s.n == n && (n == 0 || memcmp(s.p, lit, n) == 0);
}

/* Beast looks at the first Connection and Upgrade fields only; luvws reads
 * every field of the name as one list, as RFC 9110 §5.3 says. */
static int check_upgrade_fields(const ws_http_head *h) {
  if (!ws_http_find(h, "Connection")) return WS_E_no_connection;
  if (!ws_http_has_token(h, "Connection", "upgrade"))
    return WS_E_no_connection_upgrade;
  if (!ws_http_find(h, "Upgrade")) return WS_E_no_upgrade;
  if (!ws_http_has_token(h, "Upgrade", "websocket"))
    return WS_E_no_upgrade_websocket;
  return 0;
}

int ws_server_check_request(const ws_http_head *req) {
  const ws_header *f;
  int r;
  if (req->version != 11) return WS_E_bad_http_version;
  if (!str_eq(req->method, "GET")) return WS_E_bad_method;
  /* Beast checks only that Host is present; an empty one passes. */
  if (!ws_http_find(req, "Host")) return WS_E_no_host;
  r = check_upgrade_fields(req);
  if (r != 0) return r;
  /* RFC 6455 §11.3.1 and §11.3.5: neither field may appear twice in a
   * request, so a second one is as bad as a wrong one. */
  f = ws_http_find(req, "Sec-WebSocket-Key");
  if (f == NULL) return WS_E_no_sec_key;
  if (ws_http_count(req, "Sec-WebSocket-Key") != 1 ||
      !ws_key_valid(f->value.p, f->value.n))
    return WS_E_bad_sec_key;
  f = ws_http_find(req, "Sec-WebSocket-Version");
  if (f == NULL) return WS_E_no_sec_version;
  if (ws_http_count(req, "Sec-WebSocket-Version") != 1 ||
      !str_eq(f->value, "13"))
    return WS_E_bad_sec_version;
  return 0;
}

int ws_server_error_status(int err) {
  return err == WS_E_bad_sec_version ? 426 : 400;
}

/* luvws's own check of Sec-WebSocket-Protocol: absent, or one field whose
 * value is exactly one of the offered subprotocols. */
static int check_subprotocol(const ws_http_head *res, const ws_str *offered,
                             size_t noffered, ws_str *chosen) {
  const ws_header *f = ws_http_find(res, "Sec-WebSocket-Protocol");
  size_t i;
  if (f == NULL) return 0;
  if (ws_http_count(res, "Sec-WebSocket-Protocol") != 1)
    return WS_E_bad_subprotocol;
  for (i = 0; i < noffered; i++) {
    if (offered[i].n > 0 && offered[i].n == f->value.n &&
        memcmp(offered[i].p, f->value.p, f->value.n) == 0) {
      if (chosen) *chosen = f->value;
      return 0;
    }
  }
  return WS_E_bad_subprotocol;
}

int ws_client_check_response(const ws_http_head *res,
                             const char accept[WS_ACCEPT_LEN + 1],
                             const ws_str *offered, size_t noffered,
                             ws_str *chosen) {
  const ws_header *f;
  int r;
  if (chosen) {
    chosen->p = "";
    chosen->n = 0;
  }
  if (res->status != 101) return WS_E_upgrade_declined;
  if (res->version != 11) return WS_E_bad_http_version;
  r = check_upgrade_fields(res);
  if (r != 0) return r;
  f = ws_http_find(res, "Sec-WebSocket-Accept");
  if (f == NULL) return WS_E_no_sec_accept;
  /* RFC 6455 §11.3.3: the field must not appear twice. */
  if (accept == NULL || accept[0] == '\0' ||
      ws_http_count(res, "Sec-WebSocket-Accept") != 1 ||
      !str_eq(f->value, accept))
    return WS_E_bad_sec_accept;
  return check_subprotocol(res, offered, noffered, chosen);
}
