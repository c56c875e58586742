/*
 * luvws transport: the TLS filter between the socket and the core, over
 * the sans-I/O wolfSSL layer (csrc/tls). Ciphertext read from the socket is
 * fed to the session and the plaintext goes to on_data; plaintext to send
 * (raw heads, then the core's frames) is encrypted when the transport
 * gathers what to write, and the records go to the socket.
 */
#ifndef WSUV_TLS_H
#define WSUV_TLS_H

#include "wstls.h"
#include "wsuv.h"

/* Gives s a TLS session (s owns it from now on). Returns 0 or UV_ENOMEM. */
int wsuv_tls_attach(wsuv_stream *s, wstls *session);

/* Starts the TLS handshake: reading on, the first flight out. The result
 * comes through on_tls_done. */
void wsuv_tls_start(wsuv_stream *s);

/* The session, or NULL. */
wstls *wsuv_tls_session(const wsuv_stream *s);

/* Used by the transport. */
int wsuv_tls_recv(wsuv_stream *s, const uint8_t *cipher, size_t n);
int wsuv_tls_eof(wsuv_stream *s);
size_t wsuv_tls_gather(wsuv_stream *s, ws_iov *iov, size_t max);
void wsuv_tls_consume(wsuv_stream *s, size_t n);
size_t wsuv_tls_pending(const wsuv_tls *tls);
int wsuv_tls_close_notify(wsuv_stream *s);
void wsuv_tls_free(wsuv_tls *tls);

/* Defined in wsuv.c: the plaintext queued to send (raw heads, then the
 * core's frames), and marking n bytes of it as handed on. */
size_t wsuv__gather_plain(wsuv_stream *s, ws_iov *iov, size_t max);
void wsuv__consume_plain(wsuv_stream *s, size_t n);

#endif
