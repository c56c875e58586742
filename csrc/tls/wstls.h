/*
 * luvws TLS: wolfSSL without sockets.
 *
 * A sans-I/O wrapper around one wolfSSL session. The caller moves the bytes:
 *
 *   network ciphertext --wstls_feed--> [wstls] --wstls_read--> plaintext
 *   plaintext --wstls_write--> [wstls] --wstls_out, wstls_out_consume-->
 *     network ciphertext
 *
 * wolfSSL reads and writes through memory callbacks: it never blocks, never
 * touches a socket, and never waits for the output to be drained (the output
 * queue grows instead, see wstls_out). After EVERY call (feed, handshake,
 * read, write, close_notify) the caller checks wstls_out_pending() and sends
 * what is there: the handshake, TLS 1.3 key updates and alerts produce
 * output from calls that do not look like writes.
 *
 * Return values: 0 or a positive count on success, a small negative WSTLS_*
 * status, or a WS_E_tls_* / WS_E_no_memory code from ws_errors.h (all of
 * those are below -900, so they never collide with the WSTLS_* values).
 * A WS_E_* failure is sticky: every later call on the session returns it.
 *
 * Threads: contexts may be shared between threads (the reference count is
 * atomic; wolfSSL's context is read-only once built); a session belongs to
 * one thread at a time. wolfSSL_Init runs once per process, on the first
 * wstls_ctx_new.
 */
#ifndef WSTLS_H
#define WSTLS_H

#include <stddef.h>
#include <stdint.h>

#include "ws_core.h"
#include "ws_errors.h"

/* Statuses that are not failures. */
enum wstls_status {
  WSTLS_OK = 0,         /* done */
  WSTLS_WANT = -1,      /* handshake: needs more input from the peer */
  WSTLS_CLOSED = -2,    /* the peer sent close_notify */
  WSTLS_TRUNCATED = -3, /* the stream ended without close_notify */
  WSTLS_MISUSE = -4     /* called in the wrong state (see each call) */
};

typedef struct wstls_ctx wstls_ctx; /* settings + WOLFSSL_CTX; refcounted */
typedef struct wstls wstls;         /* one session */

/* ---------------------------------------------------------------- context */

typedef struct wstls_ctx_config {
  /* 0 = client, 1 = server. */
  int server;
  /* Certificate (chain: leaf first) and private key, each a file path or
   * PEM text (anything starting with "-----BEGIN"). Required for a server;
   * optional for a client (a client certificate). NULL = none. */
  const char *cert;
  const char *key;
  /* Trusted CAs: a PEM file, a directory of PEM files, PEM text, or
   * "system" (the system store, /etc/ssl/certs). NULL = "system" for a
   * client, none for a server. */
  const char *ca;
  /* -1 = the default: a client verifies the server's certificate and host
   * name; a server does not ask for a client certificate.
   * Client: 0 = no verification at all (explicit), 1 = verify.
   * Server: 0 = no client certificate, 1 = require one and verify it,
   * 2 = ask for one, verify it if sent, accept a client that sends none.
   * A server with verify 1 or 2 needs ca. */
  int verify;
  /* ALPN protocols, comma separated ("h2,http/1.1"); NULL = no ALPN.
   * Client: offered in this order. Server: its preference order; the first
   * of these the client offers is chosen; if none is offered, the
   * handshake goes on without ALPN. */
  const char *alpn;
  /* Lowest and highest TLS versions: 12 or 13. 0 = the defaults (lowest
   * 1.2, highest 1.3). */
  int min_version;
  int max_version;
  /* Cipher suites, colon separated, in wolfSSL's names
   * ("TLS13-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256"). As with
   * OpenSSL's two lists, the TLS 1.3 suites named (TLS13-*) replace the
   * default TLS 1.3 suites and the others replace the default TLS 1.2
   * suites; a kind not named keeps its defaults. The defaults (NULL): AEAD
   * suites with ECDHE only, ChaCha20-Poly1305 first (faster than AES-GCM
   * in Debian's wolfSSL, which has no AES-NI), then AES-128-GCM, then
   * AES-256-GCM. A server chooses in its own order. Key exchange: X25519,
   * then P-256, P-384, P-521. */
  const char *ciphers;
} wstls_ctx_config;

/* Sets every field to its default (server 0, everything NULL, verify -1,
 * versions 0). */
void wstls_ctx_config_init(wstls_ctx_config *cfg);

/* Builds a context. Returns 0 and sets *out (one reference held by the
 * caller), or -1 with a NUL-terminated message in err (if errlen > 0) that
 * names the option and the problem: "key: /x/k.pem: No such file or
 * directory", "key: does not match the certificate", "cert: /x/c.pem does
 * not hold a PEM certificate chain (ASN parsing error, invalid input)",
 * "cert: the PEM text is not a certificate chain (...)", "ca: no
 * certificate could be loaded from /x/dir", "min_version: must be 12 or
 * 13", "out of memory". Loading "system" CAs parses about 150 certificates
 * (about 10 ms of CPU): build client contexts once and share them, not
 * once per connection. */
int wstls_ctx_new(const wstls_ctx_config *cfg, wstls_ctx **out, char *err,
                  size_t errlen);

void wstls_ctx_ref(wstls_ctx *ctx);
/* Drops a reference; the last one frees the context (sessions hold one
 * each, so a context lives as long as its sessions). NULL is ignored. */
void wstls_ctx_unref(wstls_ctx *ctx);

/* Server: when a client asks for hostname (SNI, compared without regard to
 * case; "*.example.com" matches one label), use other's certificate and
 * key (and other's CA store for client certificates) instead of server's.
 * ALPN, versions, ciphers and the client-certificate mode stay server's.
 * A client that sends no SNI, or one that matches nothing, gets server's
 * own certificate. server takes a reference to other. Returns 0, or
 * WSTLS_MISUSE (server is not a server context, other is not one, or other
 * is server) or WS_E_no_memory. Add names before the first session. */
int wstls_ctx_add_sni(wstls_ctx *server, const char *hostname,
                      wstls_ctx *other);

/* 1 for a server context, 0 for a client one. */
int wstls_ctx_is_server(const wstls_ctx *ctx);

/* ---------------------------------------------------------------- session */

/* Starts a session on ctx (which it references). For a client, servername
 * is the host connected to: a DNS name is sent as SNI and, when the
 * context verifies, the certificate must match it (wildcards allowed); an
 * IP literal (127.0.0.1, ::1, [::1]) is not sent as SNI and must match an
 * IP address in the certificate. A verifying client without a servername
 * checks the chain but no name. A server ignores servername. Returns NULL
 * if out of memory. */
wstls *wstls_new(wstls_ctx *ctx, const char *servername);

/* Frees the session, its queued output and its reference to the context.
 * NULL is ignored. Pointers from wstls_out die with it. */
void wstls_free(wstls *t);

/* Appends n bytes of ciphertext received from the peer (copied). Returns 0,
 * WS_E_no_memory, or the session's failure if it has one (the bytes are
 * dropped). The bytes are decrypted by later wstls_handshake / wstls_read
 * calls; the copy is freed once they have all been consumed, so the input
 * held is bounded by what the caller feeds and does not read. Bytes fed
 * after the peer's close_notify are dropped. */
int wstls_feed(wstls *t, const uint8_t *cipher, size_t n);

/* Runs the handshake as far as the input allows. Returns WSTLS_OK once it
 * is complete (and on every later call), WSTLS_WANT when it needs more
 * input (send wstls_out first: it may hold the next flight), or a failure:
 * WS_E_tls_unknown_ca, _cert_expired, _hostname_mismatch, _bad_certificate,
 * _protocol_version, _handshake_failed, _alert, or WS_E_no_memory.
 * Failures found here come from wolfSSL's verdict (no signer: unknown_ca;
 * dates: cert_expired; name or IP: hostname_mismatch; no shared suite:
 * handshake_failed; ...). A fatal alert from the peer gets the name that
 * fits it: unknown_ca, certificate_expired, bad/unsupported/revoked/
 * unknown certificate and certificate_required map to those names,
 * protocol_version to tls_protocol_version, handshake_failure to
 * tls_handshake_failed, anything else to tls_alert. After a failure,
 * wstls_out holds the alert that tells the peer why (wstls sends one
 * where wolfSSL would not): send it (best effort) before closing.
 * Ciphertext fed after the last handshake message stays queued for
 * wstls_read. A TLS 1.3 client is done one flight before the server, so a
 * server's verdict on the client's certificate reaches it through
 * wstls_read. */
int wstls_handshake(wstls *t);

/* 1 once the handshake is complete. */
int wstls_handshake_done(const wstls *t);

/* Decrypts into out (cap bytes). Returns the number of plaintext bytes
 * (> 0; from one TLS record at most, so at most 16384), 0 when it needs
 * more input, WSTLS_CLOSED when the peer's close_notify arrived (and on
 * every later call), WSTLS_MISUSE before the handshake is done or with cap
 * 0, or a failure (a fatal alert from the peer named as for
 * wstls_handshake, WS_E_tls_handshake_failed for a corrupt record,
 * WS_E_no_memory). Call it until it returns <= 0 after each wstls_feed: a
 * feed may hold many records. It may queue output (a TLS 1.3 KeyUpdate
 * answer, an alert). The peer's close_notify is not answered by itself:
 * call wstls_close_notify. */
int wstls_read(wstls *t, uint8_t *out, size_t cap);

/* Encrypts n bytes into records (at most 16384 plaintext bytes each)
 * appended to the output queue. Returns n (all of it is always taken; n = 0
 * queues nothing), WSTLS_MISUSE before the handshake is done, after
 * wstls_close_notify or for n > INT_MAX, or a failure. The output grows by
 * n plus at most WSTLS_RECORD_OVERHEAD per started 16384 bytes (22 bytes a
 * record for TLS 1.3 suites, 21 to 29 for the TLS 1.2 AEAD suites). */
int wstls_write(wstls *t, const uint8_t *p, size_t n);

/* Bound on the bytes a record adds to its plaintext (header, explicit IV,
 * MAC or tag, padding) for every suite wolfSSL can negotiate, CBC ones
 * included. */
#define WSTLS_RECORD_OVERHEAD 128

/* Queues a close_notify alert (once; later calls queue nothing). Returns
 * the number of bytes queued (0 if it was already sent, or after a failure,
 * when none is due). Writing is over after it; reading goes on (the peer's
 * close_notify arrives as WSTLS_CLOSED). */
int wstls_close_notify(wstls *t);

/* The transport saw the end of the stream (TCP EOF). Returns WSTLS_CLOSED
 * if the peer's close_notify had arrived, else WSTLS_TRUNCATED (the peer
 * dropped the connection without it; after a completed WebSocket close
 * handshake the layer above treats that as clean, as DESIGN.md asks; before
 * the handshake is complete it is an aborted handshake). */
int wstls_eof(wstls *t);

/* 1 once the peer's close_notify has been read. */
int wstls_peer_closed(const wstls *t);

/* ------------------------------------------------------------------ output */

/* Fills iov (up to max entries) with the queued ciphertext, oldest first,
 * and returns the number of entries. The pointers stay valid, and the bytes
 * unchanged, until wstls_out_consume covers them or wstls_free, whatever is
 * called in between (so they can sit in a uv_write while more is queued).
 *
 * The queue is a list of chunks: small records share a 4 KiB chunk, a
 * large one gets a chunk of its own size (so one iov entry per full record
 * at most, about 16 KiB each). Chunks are freed as they are consumed; an
 * idle session holds none. The queue is bounded only by what the caller
 * writes and does not drain: wolfSSL never waits for it, and besides
 * wstls_write (n bytes + WSTLS_RECORD_OVERHEAD per 16 KiB) the calls add
 * little: a handshake flight (a few KiB, most of it the certificate
 * chain), an alert (under 100 bytes), a TLS 1.3 KeyUpdate or session
 * ticket (a few hundred bytes). */
size_t wstls_out(wstls *t, ws_iov *iov, size_t max);

/* Marks the first n queued bytes as sent (n <= wstls_out_pending) and frees
 * the chunks they emptied. */
void wstls_out_consume(wstls *t, size_t n);

/* Bytes queued and not yet consumed. */
size_t wstls_out_pending(const wstls *t);

/* -------------------------------------------------------------- observers */

/* The ALPN protocol agreed, or NULL if none. Valid until wstls_free. */
const char *wstls_alpn(const wstls *t);
/* "TLSv1.3" or "TLSv1.2" (static strings), or NULL before the handshake
 * is done. */
const char *wstls_version(const wstls *t);
/* The suite in wolfSSL's name ("TLS13-AES128-GCM-SHA256"), or NULL before
 * the handshake is done (static string). */
const char *wstls_cipher(const wstls *t);
/* Server: the host name the client sent as SNI, or NULL. Client: NULL. */
const char *wstls_servername(const wstls *t);
/* After a failure: wolfSSL's detail ("wolfSSL -188: certificate verify
 * failed", "wolfSSL -325: peer ip address mismatch", "peer sent fatal alert
 * 48 (unknown_ca)"), for logs; NULL when there was none. Valid until
 * wstls_free. */
const char *wstls_detail(const wstls *t);
/* The peer's leaf certificate in DER (*len bytes), or NULL if it sent
 * none (a server: the client's certificate, if it asked for one). Valid
 * until wstls_free. */
const uint8_t *wstls_peer_cert(wstls *t, size_t *len);

#endif
