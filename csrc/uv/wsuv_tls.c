#include "wsuv_tls.h"

#include <stdlib.h>

/* Plaintext is encrypted only while less than this much ciphertext waits
 * for the socket, so a peer that does not read holds the backlog in the
 * core's queue (where buffered_amount and max_queued_bytes see it). */
#define WSUV_TLS_OUT_HIGH (256u * 1024u)
/* One TLS record of plaintext. */
#define WSUV_TLS_RECORD 16384

struct wsuv_tls {
  wstls *t;          /* the session */
  int hs_done;       /* the handshake completed and was reported */
  int hs_failed;     /* the handshake failed (reported) */
  int notify_sent;   /* close_notify was queued */
};

int wsuv_tls_attach(wsuv_stream *s, wstls *session) {
  wsuv_tls *tls = calloc(1, sizeof(*tls));
  if (!tls) return UV_ENOMEM;
  tls->t = session;
  s->tls = tls;
  return 0;
}

wstls *wsuv_tls_session(const wsuv_stream *s) {
  return s->tls ? s->tls->t : NULL;
}

void wsuv_tls_free(wsuv_tls *tls) {
  wstls_free(tls->t);
  free(tls);
}

size_t wsuv_tls_pending(const wsuv_tls *tls) {
  return wstls_out_pending(tls->t);
}

/* Runs the handshake as far as the input allows; reports the outcome. */
static int drive_handshake(wsuv_stream *s) {
  wsuv_tls *tls = s->tls;
  int r = wstls_handshake(tls->t);
  if (r == WSTLS_WANT) {
    wsuv_flush(s);
    return 0;
  }
  if (r != WSTLS_OK) {
    tls->hs_failed = 1;
    wsuv_flush(s); /* the alert that tells the peer why, best effort */
    if (!s->dead) s->cb->on_tls_done(s, r);
    return r;
  }
  tls->hs_done = 1;
  wsuv_flush(s);
  if (!s->dead) s->cb->on_tls_done(s, 0);
  return 0;
}

void wsuv_tls_start(wsuv_stream *s) {
  if (!s->tls || s->dead) return;
  wsuv_read(s, 1);
  drive_handshake(s);
}

int wsuv_tls_recv(wsuv_stream *s, const uint8_t *cipher, size_t n) {
  wsuv_tls *tls = s->tls;
  uint8_t plain[WSUV_TLS_RECORD];
  int r = wstls_feed(tls->t, cipher, n);
  if (r < 0) return r;
  if (tls->hs_failed) return 0;
  if (!tls->hs_done) {
    r = drive_handshake(s);
    if (r < 0) return 0; /* reported through on_tls_done */
    if (!tls->hs_done || s->dead) return 0;
  }
  for (;;) {
    r = wstls_read(tls->t, plain, sizeof(plain));
    if (r > 0) {
      s->cb->on_data(s, plain, (size_t)r);
      if (s->dead || s->ended) return 0;
      continue;
    }
    if (r == 0) break;
    if (r == WSTLS_CLOSED) return UV_EOF;
    return r;
  }
  /* Reading may have produced records to send (a key update). */
  if (wstls_out_pending(tls->t)) wsuv_flush(s);
  return 0;
}

int wsuv_tls_eof(wsuv_stream *s) {
  /* With or without close_notify the stream has ended: the layer above
   * decides whether that was clean (after a completed close handshake it
   * is, whatever TLS says). */
  (void)wstls_eof(s->tls->t);
  return UV_EOF;
}

size_t wsuv_tls_gather(wsuv_stream *s, ws_iov *iov, size_t max) {
  wsuv_tls *tls = s->tls;
  if (tls->hs_done && !tls->notify_sent) {
    while (wstls_out_pending(tls->t) < WSUV_TLS_OUT_HIGH) {
      ws_iov p[16];
      size_t i, n = wsuv__gather_plain(s, p, 16), done = 0;
      int failed = 0;
      if (n == 0) break;
      for (i = 0; i < n; i++) {
        int r = wstls_write(tls->t, p[i].base, p[i].len);
        if (r < 0) {
          failed = 1;
          break;
        }
        done += p[i].len;
      }
      wsuv__consume_plain(s, done);
      if (failed || s->dead) break;
    }
  }
  return wstls_out(tls->t, iov, max);
}

void wsuv_tls_consume(wsuv_stream *s, size_t n) {
  wstls_out_consume(s->tls->t, n);
}

int wsuv_tls_close_notify(wsuv_stream *s) {
  wsuv_tls *tls = s->tls;
  if (tls->notify_sent || !tls->hs_done) return 0;
  tls->notify_sent = 1;
  return wstls_close_notify(tls->t);
}

