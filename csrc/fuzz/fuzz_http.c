/*
 * libFuzzer target for the HTTP head parser and everything that reads a
 * parsed head: the request and response checks and both sides of
 * permessage-deflate negotiation.
 *
 * For each parser the input is parsed all at once and in two pieces (the
 * second call passing prev_len), and the answers must agree. A parsed head
 * is written back with the writer, parsed again, and must come back the
 * same. Every buffer handed to the parser is a heap copy of exactly the
 * bytes it may read, so AddressSanitizer sees any over-read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_http.h"

#define CAP 32
#define MAX_BYTES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond) abort();
}

static int str_same(ws_str a, ws_str b) {
  return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* True if two parsed heads say the same thing. */
static int head_same(const ws_http_head *a, const ws_http_head *b) {
  size_t i;
  if (a->version != b->version || a->status != b->status ||
      !str_same(a->method, b->method) || !str_same(a->target, b->target) ||
      !str_same(a->reason, b->reason) || a->num_headers != b->num_headers)
    return 0;
  for (i = 0; i < a->num_headers; i++) {
    if (!str_same(a->headers[i].name, b->headers[i].name) ||
        !str_same(a->headers[i].value, b->headers[i].value))
      return 0;
  }
  return 1;
}

/* Parses a heap copy of data[0..len). The copy is returned in *copy (the
 * head points into it) and must be freed by the caller. */
static int parse(int request, const uint8_t *data, size_t len, size_t prev_len,
                 size_t max, ws_http_head *h, ws_header *f, size_t cap,
                 char **copy) {
  char *b = malloc(len ? len : 1);
  check(b != NULL);
  if (len) memcpy(b, data, len);
  *copy = b;
  memset(h, 0, sizeof *h);
  h->headers = f;
  h->num_headers = cap;
  return request ? ws_http_parse_request(b, len, prev_len, max, h)
                 : ws_http_parse_response(b, len, prev_len, max, h);
}

/* Writes h back out and checks that it parses to the same head. */
static void round_trip(int request, const ws_http_head *h) {
  ws_http_head h2;
  ws_header f2[CAP];
  size_t i, n;
  char *out, *copy;
  int r;
  for (i = 0; i < h->num_headers; i++)
    check(ws_http_field_valid(h->headers[i].name, h->headers[i].value));
  n = request ? ws_http_write_request(NULL, 0, h->method, h->target, h->version,
                                      h->headers, h->num_headers)
              : ws_http_write_response(NULL, 0, h->status, h->reason,
                                       h->version, h->headers, h->num_headers);
  out = malloc(n);
  check(out != NULL);
  check((request
             ? ws_http_write_request(out, n, h->method, h->target, h->version,
                                     h->headers, h->num_headers)
             : ws_http_write_response(out, n, h->status, h->reason, h->version,
                                      h->headers, h->num_headers)) == n);
  r = parse(request, (const uint8_t *)out, n, 0, n, &h2, f2, h->num_headers,
            &copy);
  check(r >= 0 && (size_t)r == n);
  check(head_same(h, &h2));
  free(copy);
  free(out);
}

/* For a request the server accepts: the 101 it would write passes the
 * client's check for the same key. */
static void accept_round_trip(const ws_http_head *req) {
  const ws_header *key = ws_http_find(req, "Sec-WebSocket-Key");
  char acc[WS_ACCEPT_LEN + 1], out[256], *copy;
  ws_header f[3] = {{{"Upgrade", 7}, {"websocket", 9}},
                    {{"Connection", 10}, {"Upgrade", 7}},
                    {{"Sec-WebSocket-Accept", 20}, {NULL, WS_ACCEPT_LEN}}};
  ws_header pf[CAP];
  ws_http_head res;
  size_t n;
  check(key != NULL && ws_key_valid(key->value.p, key->value.n));
  check(ws_accept_compute(key->value.p, key->value.n, acc) == 0);
  check(strlen(acc) == WS_ACCEPT_LEN);
  f[2].value.p = acc;
  n = ws_http_write_response(out, sizeof out, 101,
                             (ws_str){"Switching Protocols", 19}, 11, f, 3);
  check(n < sizeof out);
  check(parse(0, (const uint8_t *)out, n, 0, n, &res, pf, CAP, &copy) ==
        (int)n);
  check(ws_client_check_response(&res, acc, NULL, 0, NULL) == 0);
  free(copy);
}

static void use_request(const ws_http_head *h) {
  ws_pmd_config cfg;
  ws_pmd_params p;
  char resp[256];
  size_t len = 0;
  int err = ws_server_check_request(h);
  check(err == 0 || ws_err_name(err) != NULL);
  check(ws_server_error_status(err) == 400 ||
        ws_server_error_status(err) == 426);
  if (err == 0) accept_round_trip(h);
  ws_pmd_config_default(&cfg);
  cfg.server_enable = 1;
  check(ws_pmd_server_negotiate(&cfg, h, &p, resp, sizeof resp, &len) == 0);
  check(len < sizeof resp && strlen(resp) == len);
  check(p.active ? len > 0 : len == 0);
  if (p.active) {
    ws_str name = {"Sec-WebSocket-Extensions", 24}, value = {resp, len};
    check(ws_http_field_valid(name, value));
    check(p.server_max_window_bits >= 9 && p.server_max_window_bits <= 15);
    check(p.client_max_window_bits >= 8 && p.client_max_window_bits <= 15);
  }
  cfg.server_max_window_bits = 10;
  cfg.client_max_window_bits = 9;
  cfg.client_no_context_takeover = 1;
  check(ws_pmd_server_negotiate(&cfg, h, &p, resp, 8, &len) == 0);
  if (p.active) check(p.server_max_window_bits <= 10);
}

static void use_response(const ws_http_head *h) {
  static const ws_str offered[] = {{"chat", 4}, {"superchat", 9}};
  static const char accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
  ws_pmd_config cfg;
  ws_pmd_params p;
  ws_str chosen;
  int err = ws_client_check_response(h, accept, offered, 2, &chosen);
  check(err == 0 || ws_err_name(err) != NULL);
  if (err == 0 && chosen.n > 0)
    check(str_same(chosen, offered[0]) || str_same(chosen, offered[1]));
  ws_pmd_config_default(&cfg);
  err = ws_pmd_client_accept(&cfg, h, &p);
  check(err == 0 || err == WS_E_bad_extension);
  check(!p.active);
  cfg.client_enable = 1;
  cfg.client_max_window_bits = 12;
  err = ws_pmd_client_accept(&cfg, h, &p);
  check(err == 0 || err == WS_E_bad_extension);
  if (p.active) {
    check(err == 0);
    check(p.server_max_window_bits >= 8 && p.server_max_window_bits <= 15);
    check(p.client_max_window_bits >= 9 && p.client_max_window_bits <= 12);
  }
}

static void run(int request, const uint8_t *data, size_t size, size_t split) {
  ws_http_head h, h1, h2;
  ws_header f[CAP], f1[CAP], f2[CAP];
  char *c, *c1, *c2 = NULL;
  int r, r1, r2;

  r = parse(request, data, size, 0, MAX_BYTES, &h, f, CAP, &c);
  check(r == 0 || r > 0 || ws_err_name(r) != NULL);
  check(r <= MAX_BYTES && (r <= 0 || (size_t)r <= size));

  /* In two pieces: the first piece may already decide, and then it must
   * decide the same way; otherwise the second call must. */
  r1 = parse(request, data, split, 0, MAX_BYTES, &h1, f1, CAP, &c1);
  if (r1 != 0) {
    check(r1 == r);
    if (r1 > 0) check(head_same(&h, &h1));
  } else {
    r2 = parse(request, data, size, split, MAX_BYTES, &h2, f2, CAP, &c2);
    check(r2 == r);
    if (r2 > 0) check(head_same(&h, &h2));
  }

  /* A smaller field array either fits or gives header_too_large. */
  free(c1);
  r1 = parse(request, data, size, 0, MAX_BYTES, &h1, f1, 3, &c1);
  check(r1 == r || r1 == WS_E_header_too_large);

  if (r > 0) {
    if (request) {
      use_request(&h);
    } else {
      use_response(&h);
    }
    round_trip(request, &h);
  }
  free(c);
  free(c1);
  free(c2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t i, sum = 0, split;
  for (i = 0; i < size; i++)
    sum += data[i];
  split = size ? sum % (size + 1) : 0;
  run(1, data, size, split);
  run(0, data, size, split);
  check(!ws_key_valid((const char *)data, size) || size == WS_KEY_LEN);
  return 0;
}
