/* bench/loadgen_openssl.h: the load generator's OpenSSL client (TLS over
 * memory BIOs), in a file of its own because OpenSSL's headers and
 * wolfSSL's OpenSSL-compatibility headers cannot share a translation unit.
 * Built in with -DLOADGEN_OPENSSL (run.sh does so when libssl-dev is there);
 * then `loadgen --tls` uses it by default and `--tls-lib wolfssl` does not.
 */
#ifndef LOADGEN_OPENSSL_H
#define LOADGEN_OPENSSL_H

#include <stddef.h>
#include <stdint.h>

typedef struct lgo lgo;

/* Once: a client context without certificate verification. ciphers (may be
 * NULL): a ':'-separated list; TLS 1.3 names (TLS_*) set the 1.3 suites,
 * the others the 1.2 list. Returns 0, or -1 with a message in err. */
int lgo_init(const char *ciphers, char *err, size_t errlen);
/* A client session; NULL if out of memory. */
lgo *lgo_new(void);
void lgo_free(lgo *t);
/* Ciphertext received from the peer. Returns 0, or -1 if out of memory. */
int lgo_feed(lgo *t, const uint8_t *p, size_t n);
/* Drives the handshake: 1 done, 0 needs more input, -1 error (lgo_error). */
int lgo_handshake(lgo *t);
/* Plaintext: > 0 bytes read, 0 needs more input, -1 the peer sent
 * close_notify, -2 error (lgo_error). */
int lgo_read(lgo *t, uint8_t *buf, size_t n);
/* Encrypts all of p. Returns 0, or -1 (lgo_error). */
int lgo_write(lgo *t, const uint8_t *p, size_t n);
/* Ciphertext to send: how many bytes wait, and take up to n of them. */
size_t lgo_out_pending(lgo *t);
size_t lgo_out_take(lgo *t, uint8_t *dst, size_t n);
/* "TLSv1.3/TLS_CHACHA20_POLY1305_SHA256/X25519" once the handshake is done. */
void lgo_describe(lgo *t, char *out, size_t n);
/* The last error, as text. */
const char *lgo_error(void);
/* "OpenSSL 3.0.x ..." */
const char *lgo_version(void);

#endif
