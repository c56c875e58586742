/*
 * Tests of the HTTP head parser, the field helpers and the writers
 * (csrc/core/ws_http.c).
 *
 * Every parse is made three ways and the answers must agree: all at once,
 * one byte at a time passing prev_len, and one byte at a time without it.
 * Each input is copied so that it ends where a PROT_NONE page starts, so a
 * read past len crashes the test.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tap.h"
#include "ws_http.h"

/* ------------------------------------------------------------ guard page */

#define REGION_PAGES 8

static char *region;      /* REGION_PAGES readable pages... */
static size_t region_len; /* ...followed by one PROT_NONE page */

static void guard_init(void) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  void *p;
  region_len = page * REGION_PAGES;
  p = mmap(NULL, region_len + page, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) abort();
  region = p;
  if (mprotect(region + region_len, page, PROT_NONE) != 0) abort();
}

/* Copies s[0..n) so that it ends at the guard page. */
static const char *place(const char *s, size_t n) {
  char *p;
  if (n > region_len) abort();
  p = region + region_len - n;
  if (n > 0) memcpy(p, s, n);
  return p;
}

/* ---------------------------------------------------------------- parsing */

typedef int (*parse_fn)(const char *, size_t, size_t, size_t, ws_http_head *);

#define CAP 64

static ws_header fields[CAP];
static ws_header scratch[CAP];

/* Feeds s one byte at a time (len 1, 2, ...) and returns the first nonzero
 * answer, or 0; *at gets the len that gave it. */
static int parse_bytewise(parse_fn fn, const char *s, size_t n, size_t max,
                          size_t cap, int use_prev, size_t *at) {
  size_t k;
  for (k = 1; k <= n; k++) {
    ws_http_head h;
    int r;
    memset(&h, 0, sizeof h);
    h.headers = scratch;
    h.num_headers = cap;
    r = fn(place(s, k), k, use_prev ? k - 1 : 0, max, &h);
    if (r != 0) {
      *at = k;
      return r;
    }
  }
  *at = n;
  return 0;
}

/* Parses s all at once into *h (its fields in fields[0..cap)) and checks
 * that both byte-at-a-time parses give the same answer at the same point:
 * a head is found exactly when its last byte arrives, an error is the same
 * error. Returns the all-at-once answer. h points into the guard region
 * until the next call. */
static int parse3(parse_fn fn, const char *s, size_t n, size_t max, size_t cap,
                  ws_http_head *h, const char *what) {
  int r, r1, r2;
  size_t at1, at2;
  r1 = parse_bytewise(fn, s, n, max, cap, 1, &at1);
  r2 = parse_bytewise(fn, s, n, max, cap, 0, &at2);
  memset(h, 0, sizeof *h);
  h->headers = fields;
  h->num_headers = cap;
  r = fn(place(s, n), n, 0, max, h);
  IS_INT(r1, r, "%s: byte at a time with prev_len agrees", what);
  IS_INT(r2, r, "%s: byte at a time without prev_len agrees", what);
  IS_INT(at1, at2, "%s: both byte-wise parses stop at the same byte", what);
  if (r > 0) IS_INT(at1, r, "%s: the head completes at its last byte", what);
  return r;
}

static int preq(const char *s, size_t max, size_t cap, ws_http_head *h,
                const char *what) {
  return parse3(ws_http_parse_request, s, strlen(s), max, cap, h, what);
}

static int pres(const char *s, size_t max, size_t cap, ws_http_head *h,
                const char *what) {
  return parse3(ws_http_parse_response, s, strlen(s), max, cap, h, what);
}

/* The len at which the first error shows when s is fed a byte at a
 * time. */
static size_t error_at(parse_fn fn, const char *s) {
  size_t at;
  parse_bytewise(fn, s, strlen(s), WS_HTTP_MAX_HEAD_BYTES, CAP, 1, &at);
  return at;
}

#define STR_IS(got, want, ...)                                                 \
  IS_MEM((got).p, (got).n, want, strlen(want), __VA_ARGS__)

static const char rfc_request[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

TEST(request_rfc_example) {
  ws_http_head h;
  int r = preq(rfc_request, WS_HTTP_MAX_HEAD_BYTES, CAP, &h, "rfc request");
  IS_INT(r, strlen(rfc_request), "returns the head length");
  STR_IS(h.method, "GET", "method");
  STR_IS(h.target, "/chat", "target");
  IS_INT(h.version, 11, "version 11");
  IS_INT(h.num_headers, 7, "seven fields");
  OK(h.headers == fields, "fields go to the caller's array");
  STR_IS(h.headers[0].name, "Host", "first name");
  STR_IS(h.headers[0].value, "server.example.com", "first value");
  STR_IS(h.headers[2].name, "Connection", "third name");
  STR_IS(h.headers[2].value, "Upgrade", "third value");
  STR_IS(h.headers[5].value, "chat, superchat", "list value kept whole");
  STR_IS(h.headers[6].name, "Sec-WebSocket-Version", "last name");
  STR_IS(h.headers[6].value, "13", "last value");
  IS_INT(h.status, 0, "no status in a request");
}

TEST(request_followed_by_data) {
  /* Bytes after the head (a first frame) are not part of it. */
  static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x05hello";
  ws_http_head h;
  memset(&h, 0, sizeof h);
  h.headers = fields;
  h.num_headers = CAP;
  IS_INT(ws_http_parse_request(place(s, sizeof s - 1), sizeof s - 1, 0,
                               WS_HTTP_MAX_HEAD_BYTES, &h),
         27, "the head ends at the empty line");
  IS_INT(h.num_headers, 1, "one field");
}

TEST(request_forms) {
  ws_http_head h;
  IS_INT(preq("GET / HTTP/1.0\r\n\r\n", 8192, CAP, &h, "1.0"), 18, "no field");
  IS_INT(h.version, 10, "HTTP/1.0 is version 10");
  IS_INT(h.num_headers, 0, "zero fields");
  OK(preq("M-SEARCH * HTTP/1.1\r\n\r\n", 8192, CAP, &h, "token") > 0,
     "a method may be any token");
  STR_IS(h.method, "M-SEARCH", "token method kept");
  STR_IS(h.target, "*", "asterisk target");
  OK(preq("get /a?b=%20&c#d HTTP/1.1\r\n\r\n", 8192, CAP, &h, "lower") > 0,
     "lower-case method parses (the check rejects it)");
  STR_IS(h.method, "get", "method case kept");
  STR_IS(h.target, "/a?b=%20&c#d", "target with query");
  OK(preq("GET http://a.example:80/x HTTP/1.1\r\n\r\n", 8192, CAP, &h,
          "absolute") > 0,
     "absolute-form target");
  IS_INT(preq("GET / HTTP/1.1\r\n\r\n", 0, CAP, &h, "max 0"),
         WS_E_header_too_large, "max_bytes 0 fits nothing");
  IS_INT(preq("", 8192, CAP, &h, "empty"), 0, "no bytes: need more");
}

TEST(field_values) {
  ws_http_head h;
  static const char s[] = "GET / HTTP/1.1\r\n"
                          "Host:   example.com  \t\r\n"
                          "X-Empty:\r\n"
                          "X-Blank: \t \r\n"
                          "X-Inner: a  b\tc\r\n"
                          "X-Tight:value\r\n"
                          "X-Obs: caf\xc3\xa9\x80\xff\r\n"
                          "x-lower: 1\r\n"
                          "X-LOWER: 2\r\n"
                          "\r\n";
  OK(preq(s, 8192, CAP, &h, "values") > 0, "parses");
  IS_INT(h.num_headers, 8, "eight fields");
  STR_IS(h.headers[0].value, "example.com", "OWS trimmed on both sides");
  IS_INT(h.headers[1].value.n, 0, "empty value");
  IS_INT(h.headers[2].value.n, 0, "whitespace-only value is empty");
  STR_IS(h.headers[3].value, "a  b\tc", "inner whitespace kept");
  STR_IS(h.headers[4].value, "value", "no space after the colon");
  STR_IS(h.headers[5].value, "caf\xc3\xa9\x80\xff", "obs-text kept");
  STR_IS(h.headers[6].name, "x-lower", "name case kept");
  STR_IS(h.headers[7].name, "X-LOWER", "repeated field kept apart");
  STR_IS(h.headers[7].value, "2", "repeated field's own value");
}

TEST(response_forms) {
  ws_http_head h;
  static const char ok[] =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
      "\r\n";
  IS_INT(pres(ok, 8192, CAP, &h, "101"), strlen(ok), "returns the length");
  IS_INT(h.status, 101, "status");
  STR_IS(h.reason, "Switching Protocols", "reason");
  IS_INT(h.version, 11, "version");
  IS_INT(h.num_headers, 3, "fields");
  STR_IS(h.headers[2].value, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "accept value");
  IS_INT(h.method.n, 0, "no method in a response");
  IS_INT(h.target.n, 0, "no target in a response");

  OK(pres("HTTP/1.0 403 \r\n\r\n", 8192, CAP, &h, "empty reason") > 0,
     "empty reason after SP");
  IS_INT(h.status, 403, "403");
  IS_INT(h.version, 10, "HTTP/1.0");
  IS_INT(h.reason.n, 0, "empty reason");
  OK(pres("HTTP/1.1 101\r\n\r\n", 8192, CAP, &h, "no SP") > 0,
     "no space and no reason");
  IS_INT(h.reason.n, 0, "empty reason without SP");
  OK(pres("HTTP/1.1 599 a\tb  \xe9 \r\n\r\n", 8192, CAP, &h, "odd") > 0,
     "reason with HTAB, obs-text and trailing space");
  STR_IS(h.reason, "a\tb  \xe9 ", "reason kept as sent");
  IS_INT(h.status, 599, "599 is the largest status");
  OK(pres("HTTP/1.1 100 Continue\r\n\r\n", 8192, CAP, &h, "100") > 0,
     "100 is the smallest status");
}

/* Malformed heads: the error, and the len at which it first shows. */
struct bad_case {
  const char *s;
  int err;
  size_t at;
};

static void run_bad(parse_fn fn, const struct bad_case *c, size_t n,
                    const char *kind) {
  size_t i;
  for (i = 0; i < n; i++) {
    ws_http_head h;
    int r = parse3(fn, c[i].s, strlen(c[i].s), WS_HTTP_MAX_HEAD_BYTES, CAP, &h,
                   kind);
    IS_INT(r, c[i].err, "%s case %zu gives %s", kind, i, ws_err_name(c[i].err));
    if (c[i].at) {
      IS_INT(error_at(fn, c[i].s), c[i].at, "%s case %zu fails at byte %zu",
             kind, i, c[i].at);
    }
  }
}

#define HEAD WS_E_bad_http_head
#define VER WS_E_bad_http_version

TEST(request_errors) {
  static const struct bad_case c[] = {
      {" GET / HTTP/1.1\r\n\r\n", HEAD, 1},        /* empty method */
      {"\r\nGET / HTTP/1.1\r\n\r\n", HEAD, 1},     /* leading empty line */
      {"GET  / HTTP/1.1\r\n\r\n", HEAD, 5},        /* two spaces */
      {"GET\t/ HTTP/1.1\r\n\r\n", HEAD, 4},        /* HTAB separator */
      {"G(T / HTTP/1.1\r\n\r\n", HEAD, 2},         /* non-token method */
      {"G\xc9T / HTTP/1.1\r\n\r\n", HEAD, 2},      /* non-ASCII method */
      {"GET /a\x7f HTTP/1.1\r\n\r\n", HEAD, 7},    /* DEL in target */
      {"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", HEAD, 6}, /* non-ASCII target */
      {"GET /\x01 HTTP/1.1\r\n\r\n", HEAD, 6},     /* control in target */
      {"GET /\r\n\r\n", HEAD, 6},                  /* no version */
      {"GET / HTTP/1.1 \r\n\r\n", HEAD, 15},       /* space after version */
      {"GET / http/1.1\r\n\r\n", HEAD, 7},         /* lower-case HTTP */
      {"GET / HTTP/1.12\r\n\r\n", HEAD, 15},       /* three digits */
      {"GET / HTTP/11\r\n\r\n", HEAD, 13},         /* no dot */
      {"GET / HTTP/1.\r\n\r\n", HEAD, 14},         /* no minor */
      {"GET / HTTP/1.x\r\n\r\n", HEAD, 14},        /* letter minor */
      {"GET / HTTP/2.0\r\n\r\n", VER, 15},         /* HTTP/2 */
      {"GET / HTTP/1.2\r\n\r\n", VER, 15},         /* unknown minor */
      {"GET / HTTP/0.9\r\n\r\n", VER, 15},         /* HTTP/0.9 */
      {"GET / HTTP/9.9\r\nHost: a\r\n\r\n", VER, 15},
      {"GET / HTTP/1.1\n\r\n", HEAD, 15},                /* bare LF */
      {"GET / HTTP/1.1\r\r\n", HEAD, 16},                /* CR CR */
      {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", HEAD, 21},  /* space before : */
      {"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", HEAD, 21}, /* HTAB before : */
      {"GET / HTTP/1.1\r\nHost a\r\n\r\n", HEAD, 21},    /* no colon */
      {"GET / HTTP/1.1\r\nHost\r\n\r\n", HEAD, 21},      /* CR in name */
      {"GET / HTTP/1.1\r\n: a\r\n\r\n", HEAD, 17},       /* empty name */
      {"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", HEAD, 19},  /* non-token */
      {"GET / HTTP/1.1\r\nH\xc3st: a\r\n\r\n", HEAD, 18},
      {"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", HEAD, 26}, /* obs-fold */
      {"GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", HEAD, 26},
      {"GET / HTTP/1.1\r\n b: c\r\n\r\n", HEAD, 17},    /* fold as first line */
      {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", HEAD, 21}, /* control */
      {"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", HEAD, 21}, /* DEL */
      {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", HEAD, 22},  /* bare CR */
      {"GET / HTTP/1.1\r\nA: b\nc\r\n\r\n", HEAD, 21},  /* bare LF */
      {"GET / HTTP/1.1\r\nA: b\r\n\n", HEAD, 23},       /* LF end */
      {"GET / HTTP/1.1\r\nA: b\r\n\rx", HEAD, 24},      /* CR x end */
  };
  static const char nul[] = "GET / HTTP/1.1\r\nA: \0 \r\n\r\n";
  static const char nul_target[] = "GET /\0 HTTP/1.1\r\n\r\n";
  ws_http_head h;
  size_t at;
  run_bad(ws_http_parse_request, c, sizeof c / sizeof c[0], "request");
  IS_INT(
      parse3(ws_http_parse_request, nul, sizeof nul - 1, 8192, CAP, &h, "nul"),
      HEAD, "NUL in a value");
  parse_bytewise(ws_http_parse_request, nul, sizeof nul - 1, 8192, CAP, 1, &at);
  IS_INT(at, 20, "NUL in a value fails at its byte");
  IS_INT(parse3(ws_http_parse_request, nul_target, sizeof nul_target - 1, 8192,
                CAP, &h, "nul target"),
         HEAD, "NUL in the target");
}

TEST(response_errors) {
  static const struct bad_case c[] = {
      {"HTTP/1.1 10 OK\r\n\r\n", HEAD, 12},
      {"HTTP/1.1 1010 OK\r\n\r\n", HEAD, 13},
      {"HTTP/1.1 099 X\r\n\r\n", HEAD, 10},
      {"HTTP/1.1 600 X\r\n\r\n", HEAD, 10},
      {"HTTP/1.1 abc\r\n\r\n", HEAD, 10},
      {"HTTP/1.1  101 X\r\n\r\n", HEAD, 10},
      {"HTTP/1.1 101X\r\n\r\n", HEAD, 13},
      {"HTTP/1.1 101\tX\r\n\r\n", HEAD, 13},
      {"HTTP/1.1\t101 X\r\n\r\n", HEAD, 9},
      {"HTTP/1.1\r\n\r\n", HEAD, 9},
      {"HTTP/2 101 X\r\n\r\n", HEAD, 7},
      {"HTTP/2.0 101 X\r\n\r\n", VER, 9},
      {"HTTP/1.5 101 X\r\n\r\n", VER, 9},
      {"HTTP/1.1 101 Sw\x01\r\n\r\n", HEAD, 16},
      {"HTTP/1.1 101 Sw\x7f\r\n\r\n", HEAD, 16},
      {"HTTP/1.1 101 X\n\r\n", HEAD, 15},
      {"HTTP/1.1 101 X\r\r\n", HEAD, 16},
      {"GET / HTTP/1.1\r\n\r\n", HEAD, 1},
      {"http/1.1 101 X\r\n\r\n", HEAD, 1},
      {"HTTP/1.1 101 X\r\nUpgrade : a\r\n\r\n", HEAD, 24},
      {"HTTP/1.1 101 X\r\nA: b\r\n c\r\n\r\n", HEAD, 23},
  };
  run_bad(ws_http_parse_response, c, sizeof c / sizeof c[0], "response");
}

TEST(incomplete_heads) {
  ws_http_head h;
  size_t k, n = strlen(rfc_request);
  int all_zero = 1;
  /* parse3 already checks every prefix byte-wise; check the answer for
   * each prefix on its own too, with the h it leaves untouched. */
  for (k = 0; k < n; k++) {
    memset(&h, 0, sizeof h);
    h.headers = fields;
    h.num_headers = CAP;
    if (ws_http_parse_request(place(rfc_request, k), k, 0, 8192, &h) != 0 ||
        h.num_headers != CAP || h.method.p != NULL)
      all_zero = 0;
  }
  OK(all_zero, "every strict prefix needs more and leaves h alone");
  IS_INT(preq("GET / HTTP/1.1\r\nHost: a\r\n\r", 8192, CAP, &h, "cr"), 0,
         "a final CR without LF needs more");
  IS_INT(pres("HTTP/1.1 101", 8192, CAP, &h, "status"), 0,
         "a status line without CRLF needs more");
}

/* Builds "GET / HTTP/1.1\r\n" + nfields fields "X: v...\r\n" + "\r\n", the
 * last field padded so that the head is total bytes long. */
static size_t build_head(char *buf, size_t nfields, size_t total) {
  size_t n = 0, i;
  memcpy(buf, "GET / HTTP/1.1\r\n", 16);
  n = 16;
  for (i = 0; i < nfields; i++) {
    memcpy(buf + n, "X: v\r\n", 6);
    n += 6;
  }
  if (total > n + 2 && nfields > 0) {
    size_t pad = total - n - 2;
    memmove(buf + n - 2 + pad, buf + n - 2, 2);
    memset(buf + n - 2, 'v', pad);
    n += pad;
  }
  memcpy(buf + n, "\r\n", 2);
  return n + 2;
}

TEST(limits) {
  static char big[WS_HTTP_MAX_HEAD_BYTES + 64];
  ws_http_head h;
  size_t n;
  int r;

  n = build_head(big, 3, 100);
  IS_INT(n, 100, "a 100-byte head");
  IS_INT(parse3(ws_http_parse_request, big, n, 100, CAP, &h, "max"), 100,
         "exactly max_bytes is accepted");
  IS_INT(parse3(ws_http_parse_request, big, n, 99, CAP, &h, "max-1"),
         WS_E_header_too_large, "one byte over max_bytes is too large");
  IS_INT(parse3(ws_http_parse_request, big, n - 1, 99, CAP, &h, "part"),
         WS_E_header_too_large, "an incomplete head at max_bytes is too large");
  IS_INT(parse3(ws_http_parse_request, big, n - 2, 99, CAP, &h, "less"), 0,
         "an incomplete head below max_bytes needs more");

  /* Bytes past the head do not count against max_bytes. */
  memcpy(big + n, "trailing bytes", 14);
  memset(&h, 0, sizeof h);
  h.headers = fields;
  h.num_headers = CAP;
  IS_INT(ws_http_parse_request(place(big, n + 14), n + 14, 0, 100, &h), 100,
         "a head within max_bytes followed by more bytes");

  /* An error within max_bytes is reported as what it is. */
  big[20] = '\x01';
  IS_INT(parse3(ws_http_parse_request, big, n, 99, CAP, &h, "bad"),
         WS_E_bad_http_head, "an error before the limit wins");

  n = build_head(big, 5, WS_HTTP_MAX_HEAD_BYTES);
  IS_INT(parse3(ws_http_parse_request, big, n, WS_HTTP_MAX_HEAD_BYTES, CAP, &h,
                "default"),
         WS_HTTP_MAX_HEAD_BYTES, "a head of exactly the default limit");
  n = build_head(big, 5, WS_HTTP_MAX_HEAD_BYTES + 1);
  IS_INT(parse3(ws_http_parse_request, big, n, WS_HTTP_MAX_HEAD_BYTES, CAP, &h,
                "default+1"),
         WS_E_header_too_large, "one byte more than the default limit");

  /* Field count. */
  n = build_head(big, 4, 0);
  r = parse3(ws_http_parse_request, big, n, 8192, 4, &h, "4 of 4");
  IS_INT(r, n, "as many fields as the capacity");
  IS_INT(h.num_headers, 4, "all four found");
  IS_INT(parse3(ws_http_parse_request, big, n, 8192, 3, &h, "4 of 3"),
         WS_E_header_too_large, "one field more than the capacity");
  IS_INT(parse_bytewise(ws_http_parse_request, big, n, 8192, 3, 1, &n),
         WS_E_header_too_large, "byte-wise too");
  IS_INT(n, 16 + 3 * 6 + 1, "too many fields shows at the extra field");
  n = build_head(big, 0, 0);
  IS_INT(parse3(ws_http_parse_request, big, n, 8192, 0, &h, "0 of 0"), n,
         "no field with capacity 0");
  n = build_head(big, 1, 0);
  IS_INT(parse3(ws_http_parse_request, big, n, 8192, 0, &h, "1 of 0"),
         WS_E_header_too_large, "one field with capacity 0");
  IS_INT(pres("HTTP/1.1 101 X\r\nA: b\r\nC: d\r\n\r\n", 8192, 1, &h, "res"),
         WS_E_header_too_large, "responses count fields too");
}

TEST(str_ieq) {
  ws_str a = {"Upgrade", 7}, e = {"", 0}, pre = {"Upg", 3};
  OK(ws_str_ieq(a, "upgrade"), "lower");
  OK(ws_str_ieq(a, "UPGRADE"), "upper");
  OK(ws_str_ieq(a, "Upgrade"), "same");
  OK(!ws_str_ieq(a, "Upgrades"), "b longer");
  OK(!ws_str_ieq(a, "Upgrad"), "b shorter");
  OK(!ws_str_ieq(a, "Upgrabe"), "one byte differs");
  OK(!ws_str_ieq(pre, "upgrade"), "a is a prefix");
  OK(ws_str_ieq(e, ""), "empty equals empty");
  OK(!ws_str_ieq(e, "a"), "empty is not a");
  OK(!ws_str_ieq((ws_str){"[", 1}, "{"), "only letters fold");
  OK(!ws_str_ieq((ws_str){"\xc9", 1}, "\xe9"), "only ASCII letters fold");
}

TEST(find_count_tokens) {
  ws_http_head h;
  const ws_header *f;
  static const char s[] = "GET / HTTP/1.1\r\n"
                          "connection: keep-alive\r\n"
                          "X-A: 1\r\n"
                          "CONNECTION: x, Upgrade ,\r\n"
                          "Upgrade: websocket/13, h2c\r\n"
                          "X-Q: \"a,upgrade\", b\r\n"
                          "X-E: , ,\t,\r\n"
                          "\r\n";
  OK(preq(s, 8192, CAP, &h, "tokens") > 0, "parses");
  f = ws_http_find(&h, "Connection");
  OK(f == &h.headers[0], "find gives the first match, any case");
  OK(ws_http_find(&h, "Host") == NULL, "find gives NULL when absent");
  OK(ws_http_find(&h, "X") == NULL, "find matches whole names");
  IS_INT(ws_http_count(&h, "connection"), 2, "count of a repeated field");
  IS_INT(ws_http_count(&h, "x-a"), 1, "count of a single field");
  IS_INT(ws_http_count(&h, "Host"), 0, "count of an absent field");
  OK(ws_http_has_token(&h, "Connection", "upgrade"),
     "token in the second field of the name");
  OK(ws_http_has_token(&h, "connection", "KEEP-ALIVE"), "any case");
  OK(!ws_http_has_token(&h, "Connection", "up"), "whole elements only");
  OK(!ws_http_has_token(&h, "Upgrade", "websocket"),
     "websocket/13 is not websocket");
  OK(ws_http_has_token(&h, "Upgrade", "h2c"), "last element");
  OK(!ws_http_has_token(&h, "X-Q", "upgrade"),
     "a comma inside a quoted-string does not split");
  OK(ws_http_has_token(&h, "X-Q", "b"), "element after a quoted-string");
  OK(!ws_http_has_token(&h, "X-E", ""), "empty elements are skipped");
  OK(!ws_http_has_token(&h, "Host", "a"), "absent field");
}

TEST(next_element) {
  static const char s[] = " a , b,,c ,\t\"x,\\\"y\" , \"open,";
  const char *p = s, *end = s + strlen(s);
  ws_str el;
  OK(ws_http_next_element(&p, end, &el), "first");
  STR_IS(el, "a", "a, trimmed");
  OK(ws_http_next_element(&p, end, &el), "second");
  STR_IS(el, "b", "b");
  OK(ws_http_next_element(&p, end, &el), "third, past an empty one");
  STR_IS(el, "c", "c, trimmed");
  OK(ws_http_next_element(&p, end, &el), "fourth");
  STR_IS(el, "\"x,\\\"y\"", "quoted-string with a comma and an escape");
  OK(ws_http_next_element(&p, end, &el), "fifth");
  STR_IS(el, "\"open,", "an unterminated quote runs to the end");
  OK(!ws_http_next_element(&p, end, &el), "then the end");
  OK(p == end, "p at the end");
  OK(!ws_http_next_element(&p, end, &el), "still the end");
  p = s;
  OK(!ws_http_next_element(&p, s, &el), "empty range");
  p = " , ,\t";
  OK(!ws_http_next_element(&p, p + 5, &el), "only separators");
}

TEST(field_valid) {
  ws_str n = {"X-Good", 6}, v = {"a b\tc\x80\xff", 7};
  OK(ws_http_field_valid(n, v), "token name, text value");
  OK(ws_http_field_valid(n, (ws_str){"", 0}), "empty value");
  OK(ws_http_field_valid((ws_str){"!#$%&'*+-.^_`|~09azAZ", 21}, v),
     "every tchar");
  OK(!ws_http_field_valid((ws_str){"", 0}, v), "empty name");
  OK(!ws_http_field_valid((ws_str){"X Y", 3}, v), "space in name");
  OK(!ws_http_field_valid((ws_str){"X:", 2}, v), "colon in name");
  OK(!ws_http_field_valid((ws_str){"X\xc3", 2}, v), "non-ASCII name");
  OK(!ws_http_field_valid(n, (ws_str){"a\rb", 3}), "CR in value");
  OK(!ws_http_field_valid(n, (ws_str){"a\nb", 3}), "LF in value");
  OK(!ws_http_field_valid(n, (ws_str){"a\0b", 3}), "NUL in value");
  OK(!ws_http_field_valid(n, (ws_str){"a\x01", 2}), "control in value");
  OK(!ws_http_field_valid(n, (ws_str){"\x7f", 1}), "DEL in value");
}

TEST(write_request) {
  static const char want[] = "GET /chat HTTP/1.1\r\n"
                             "Host: a.example\r\n"
                             "sec-websocket-protocol: chat\r\n"
                             "X-Dup: 1\r\n"
                             "X-Dup: 2\r\n"
                             "X-Empty: \r\n"
                             "\r\n";
  ws_header f[] = {{{"Host", 4}, {"a.example", 9}},
                   {{"sec-websocket-protocol", 22}, {"chat", 4}},
                   {{"X-Dup", 5}, {"1", 1}},
                   {{"X-Dup", 5}, {"2", 1}},
                   {{"X-Empty", 7}, {NULL, 0}}};
  char out[256];
  size_t n, len = sizeof want - 1;
  memset(out, '#', sizeof out);
  n = ws_http_write_request(out, 0, (ws_str){"GET", 3}, (ws_str){"/chat", 5},
                            11, f, 5);
  IS_INT(n, len, "cap 0 gives the size");
  OK(out[0] == '#', "cap 0 writes nothing");
  n = ws_http_write_request(NULL, 0, (ws_str){"GET", 3}, (ws_str){"/chat", 5},
                            11, f, 5);
  IS_INT(n, len, "NULL out gives the size");
  n = ws_http_write_request(out, len - 1, (ws_str){"GET", 3},
                            (ws_str){"/chat", 5}, 11, f, 5);
  IS_INT(n, len, "one byte short gives the size");
  OK(out[0] == '#', "one byte short writes nothing");
  n = ws_http_write_request(out, len, (ws_str){"GET", 3}, (ws_str){"/chat", 5},
                            11, f, 5);
  IS_MEM(out, n, want, len, "exact bytes, case and repeats kept");
  OK(out[len] == '#', "nothing past the head (no NUL)");
  n = ws_http_write_request(out, sizeof out, (ws_str){"GET", 3},
                            (ws_str){"/", 1}, 10, NULL, 0);
  IS_MEM(out, n, "GET / HTTP/1.0\r\n\r\n", 18, "HTTP/1.0, no field");
}

TEST(write_response) {
  static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "\r\n";
  ws_header f[] = {{{"Upgrade", 7}, {"websocket", 9}},
                   {{"Connection", 10}, {"Upgrade", 7}}};
  char out[256];
  size_t n;
  const char *r101 = ws_http_reason(101);
  memset(out, '#', sizeof out);
  n = ws_http_write_response(out, 10, 101, (ws_str){r101, strlen(r101)}, 11, f,
                             2);
  IS_INT(n, sizeof want - 1, "small cap gives the size");
  OK(out[0] == '#', "small cap writes nothing");
  n = ws_http_write_response(out, sizeof out, 101, (ws_str){r101, strlen(r101)},
                             11, f, 2);
  IS_MEM(out, n, want, sizeof want - 1, "exact bytes");
  n = ws_http_write_response(out, sizeof out, 426, (ws_str){NULL, 0}, 10, NULL,
                             0);
  IS_MEM(out, n, "HTTP/1.0 426 \r\n\r\n", 17, "empty reason, HTTP/1.0");
}

TEST(round_trip) {
  ws_header f[] = {{{"Host", 4}, {"example.com:8080", 16}},
                   {{"x-CASE", 6}, {"v a\tl", 5}},
                   {{"x-case", 6}, {"", 0}},
                   {{"X-Obs", 5}, {"\xfe\xff", 2}}};
  char out[512];
  ws_http_head h;
  size_t n, i;
  n = ws_http_write_request(out, sizeof out, (ws_str){"PATCH", 5},
                            (ws_str){"/a?b", 4}, 11, f, 4);
  IS_INT(parse3(ws_http_parse_request, out, n, 8192, CAP, &h, "rt req"), n,
         "a written request parses to its end");
  STR_IS(h.method, "PATCH", "method");
  STR_IS(h.target, "/a?b", "target");
  IS_INT(h.version, 11, "version");
  IS_INT(h.num_headers, 4, "field count");
  for (i = 0; i < 4; i++) {
    IS_MEM(h.headers[i].name.p, h.headers[i].name.n, f[i].name.p, f[i].name.n,
           "name %zu", i);
    IS_MEM(h.headers[i].value.p, h.headers[i].value.n, f[i].value.p,
           f[i].value.n, "value %zu", i);
  }
  n = ws_http_write_response(out, sizeof out, 404, (ws_str){"Not Found", 9}, 10,
                             f, 4);
  IS_INT(parse3(ws_http_parse_response, out, n, 8192, CAP, &h, "rt res"), n,
         "a written response parses to its end");
  IS_INT(h.status, 404, "status");
  STR_IS(h.reason, "Not Found", "reason");
  IS_INT(h.version, 10, "version");
  IS_INT(h.num_headers, 4, "fields");
  STR_IS(h.headers[3].value, "\xfe\xff", "obs-text value");
}

TEST(reason) {
  IS_STR(ws_http_reason(101), "Switching Protocols", "101");
  IS_STR(ws_http_reason(200), "OK", "200");
  IS_STR(ws_http_reason(400), "Bad Request", "400");
  IS_STR(ws_http_reason(403), "Forbidden", "403");
  IS_STR(ws_http_reason(426), "Upgrade Required", "426");
  IS_STR(ws_http_reason(431), "Request Header Fields Too Large", "431");
  IS_STR(ws_http_reason(503), "Service Unavailable", "503");
  IS_STR(ws_http_reason(0), "", "0");
  IS_STR(ws_http_reason(299), "", "unknown");
  IS_STR(ws_http_reason(-1), "", "negative");
}

int main(void) {
  guard_init();
  RUN(request_rfc_example);
  RUN(request_followed_by_data);
  RUN(request_forms);
  RUN(field_values);
  RUN(response_forms);
  RUN(request_errors);
  RUN(response_errors);
  RUN(incomplete_heads);
  RUN(limits);
  RUN(str_ieq);
  RUN(find_count_tokens);
  RUN(next_element);
  RUN(field_valid);
  RUN(write_request);
  RUN(write_response);
  RUN(round_trip);
  RUN(reason);
  return tap_done();
}
