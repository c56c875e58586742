/*
 * luvws core: HTTP/1.x upgrade heads.
 *
 * The parser is strict and stateless: every call parses from the first
 * byte, looks at no byte past min(len, max_bytes), allocates nothing and
 * only stores pointers into the caller's buffer. It stops at the first byte
 * that cannot belong to a valid head, so a malformed head fails as soon as
 * the bytes that show it arrive, and the same bytes give the same answer
 * however they are split between calls.
 *
 * The grammar accepted (RFC 9112, with no leniency for obsolete forms):
 *
 *   request-line = method SP target SP version CRLF
 *   status-line  = version SP status [ SP reason ] CRLF
 *   field-line   = name ":" OWS value OWS CRLF
 *   head         = start-line *( field-line ) CRLF
 *
 * method and name are tokens, target is one or more visible ASCII bytes,
 * version is "HTTP/" DIGIT "." DIGIT (only 1.0 and 1.1 are accepted), status
 * is three digits from 100 to 599, reason and value are visible ASCII,
 * obs-text, SP and HTAB. A line that starts with whitespace (obs-fold), a
 * space before the colon, a bare CR or LF, or any other control byte is an
 * error.
 */
#include "ws_http.h"

#include <limits.h>
#include <string.h>

/* ------------------------------------------------------ character classes */

/* True for the tchar of RFC 9110: the bytes a token is made of. */
static int is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
      (c >= 'a' && c <= 'z'))
    return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* True for visible ASCII (VCHAR). */
static int is_vchar(unsigned char c) {
  return c >= 0x21 && c <= 0x7e;
}

/* True for the bytes a field value or a reason phrase may hold: VCHAR,
 * obs-text, SP and HTAB. */
static int is_text(unsigned char c) {
  return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

static int is_ows(char c) {
  return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ------------------------------------------------------------ the parser */

/* Internal results of the scanning steps. Errors are the negative WS_E_*
 * values; these two are never returned to the caller. */
enum { SCAN_MORE = 0, SCAN_DONE = 1 };

/* The bytes under scan: buf[0..lim) may be read, and lim is
 * min(len, max_bytes). */
typedef struct scan {
  const char *b;
  size_t lim;
} scan;

/* Expects LF at *i (the CR before it was already seen). */
static int scan_lf(const scan *s, size_t *i) {
  if (*i >= s->lim) return SCAN_MORE;
  if (s->b[*i] != '\n') return WS_E_bad_http_head;
  (*i)++;
  return SCAN_DONE;
}

/* Scans "HTTP/" DIGIT "." DIGIT followed by the byte term. The verdict on a
 * well-formed but unsupported version is given at the terminator, so that
 * "HTTP/1.12" is a malformed head, not a version error. */
static int scan_version(const scan *s, size_t *i, char term, int *version) {
  static const char pat[] = "HTTP/0.0";
  size_t k;
  int major, minor;
  for (k = 0; k < 8; k++) {
    unsigned char c;
    if (*i + k >= s->lim) return SCAN_MORE;
    c = (unsigned char)s->b[*i + k];
    if (pat[k] == '0') {
      if (c < '0' || c > '9') return WS_E_bad_http_head;
    } else if (c != (unsigned char)pat[k]) {
      return WS_E_bad_http_head;
    }
  }
  if (*i + 8 >= s->lim) return SCAN_MORE;
  if (s->b[*i + 8] != term) return WS_E_bad_http_head;
  major = s->b[*i + 5] - '0';
  minor = s->b[*i + 7] - '0';
  if (major != 1 || minor > 1) return WS_E_bad_http_version;
  *version = 10 + minor;
  *i += 9;
  return SCAN_DONE;
}

/* Scans "method SP target SP version CRLF". */
static int scan_request_line(const scan *s, size_t *i, ws_http_head *h) {
  size_t j = *i, start = j;
  int r;
  while (j < s->lim && is_tchar((unsigned char)s->b[j]))
    j++;
  if (j >= s->lim) return SCAN_MORE;
  if (s->b[j] != ' ' || j == start) return WS_E_bad_http_head;
  h->method.p = s->b + start;
  h->method.n = j - start;
  start = ++j;
  while (j < s->lim && is_vchar((unsigned char)s->b[j]))
    j++;
  if (j >= s->lim) return SCAN_MORE;
  if (s->b[j] != ' ' || j == start) return WS_E_bad_http_head;
  h->target.p = s->b + start;
  h->target.n = j - start;
  j++;
  r = scan_version(s, &j, '\r', &h->version);
  if (r != SCAN_DONE) return r;
  r = scan_lf(s, &j);
  if (r != SCAN_DONE) return r;
  *i = j;
  return SCAN_DONE;
}

/* Scans "version SP status [SP reason] CRLF". The space before an empty
 * reason may be left out, as RFC 9112 allows a client to accept. */
static int scan_status_line(const scan *s, size_t *i, ws_http_head *h) {
  size_t j = *i, start, k;
  int r, status = 0;
  r = scan_version(s, &j, ' ', &h->version);
  if (r != SCAN_DONE) return r;
  for (k = 0; k < 3; k++, j++) {
    unsigned char c;
    if (j >= s->lim) return SCAN_MORE;
    c = (unsigned char)s->b[j];
    if (c < (k == 0 ? '1' : '0') || c > (k == 0 ? '5' : '9'))
      return WS_E_bad_http_head;
    status = status * 10 + (c - '0');
  }
  if (j >= s->lim) return SCAN_MORE;
  if (s->b[j] == ' ') {
    j++;
  } else if (s->b[j] != '\r') {
    return WS_E_bad_http_head;
  }
  start = j;
  while (j < s->lim && is_text((unsigned char)s->b[j]))
    j++;
  if (j >= s->lim) return SCAN_MORE;
  if (s->b[j] != '\r') return WS_E_bad_http_head;
  h->status = status;
  h->reason.p = s->b + start;
  h->reason.n = j - start;
  j++;
  r = scan_lf(s, &j);
  if (r != SCAN_DONE) return r;
  *i = j;
  return SCAN_DONE;
}

/* Scans field lines from *i, which is the start of a line, through the
 * empty line that ends the head. *count is the number of fields before *i;
 * a field past cap is header_too_large. Fields are stored in out when it is
 * not NULL. */
static int scan_fields(const scan *s, size_t *i, ws_header *out, size_t cap,
                       size_t *count) {
  size_t j = *i;
  for (;;) {
    size_t name_start, name_end, value_start, value_end;
    int r;
    if (j >= s->lim) return SCAN_MORE;
    if (s->b[j] == '\r') {
      j++;
      r = scan_lf(s, &j);
      if (r == SCAN_DONE) *i = j;
      return r;
    }
    /* A line that starts with SP or HTAB is obs-fold; one that starts with
     * ':' has an empty name; both fail here. */
    if (!is_tchar((unsigned char)s->b[j])) return WS_E_bad_http_head;
    if (*count >= cap) return WS_E_header_too_large;
    name_start = j;
    while (j < s->lim && is_tchar((unsigned char)s->b[j]))
      j++;
    if (j >= s->lim) return SCAN_MORE;
    if (s->b[j] != ':') return WS_E_bad_http_head;
    name_end = j++;
    while (j < s->lim && is_ows(s->b[j]))
      j++;
    value_start = j;
    while (j < s->lim && is_text((unsigned char)s->b[j]))
      j++;
    if (j >= s->lim) return SCAN_MORE;
    if (s->b[j] != '\r') return WS_E_bad_http_head;
    value_end = j;
    while (value_end > value_start && is_ows(s->b[value_end - 1]))
      value_end--;
    j++;
    r = scan_lf(s, &j);
    if (r != SCAN_DONE) return r;
    if (out) {
      out[*count].name.p = s->b + name_start;
      out[*count].name.n = name_end - name_start;
      out[*count].value.p = s->b + value_start;
      out[*count].value.n = value_end - value_start;
    }
    (*count)++;
  }
}

/* Uses prev_len to skip the lines a previous call already checked: since
 * buf[0..prev_len) was a valid but incomplete head, every LF in it ends a
 * line, so scanning can resume at the line after the last LF, with one
 * field per LF but the first. Returns SCAN_DONE when the head is complete
 * (the caller then parses it from the start to fill in h), else the
 * verdict the full parse would give. */
static int scan_resume(const scan *s, size_t prev_len, size_t cap) {
  size_t k = prev_len, j, lines = 0, count;
  const char *p, *end;
  while (k > 0 && s->b[k - 1] != '\n')
    k--;
  if (k == 0) return SCAN_DONE; /* no whole line yet: parse from the start */
  p = s->b;
  end = s->b + k;
  while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
    lines++;
    p++;
  }
  count = lines - 1;
  j = k;
  return scan_fields(s, &j, NULL, cap, &count);
}

static int parse_head(const char *buf, size_t len, size_t prev_len,
                      size_t max_bytes, ws_http_head *h, int request) {
  scan s;
  size_t i = 0, count = 0, cap = h->num_headers;
  ws_http_head tmp;
  int r;
  if (max_bytes > INT_MAX) max_bytes = INT_MAX;
  s.b = buf;
  s.lim = len < max_bytes ? len : max_bytes;
  if (prev_len > 0 && prev_len <= s.lim) {
    r = scan_resume(&s, prev_len, cap);
    if (r != SCAN_DONE) goto out;
  }
  memset(&tmp, 0, sizeof tmp);
  r = request ? scan_request_line(&s, &i, &tmp)
              : scan_status_line(&s, &i, &tmp);
  if (r == SCAN_DONE) r = scan_fields(&s, &i, h->headers, cap, &count);
  if (r == SCAN_DONE) {
    tmp.headers = h->headers;
    tmp.num_headers = count;
    *h = tmp;
    return (int)i;
  }
out:
  if (r == SCAN_MORE) return len >= max_bytes ? WS_E_header_too_large : 0;
  return r;
}

int ws_http_parse_request(const char *buf, size_t len, size_t prev_len,
                          size_t max_bytes, ws_http_head *h) {
  return parse_head(buf, len, prev_len, max_bytes, h, 1);
}

int ws_http_parse_response(const char *buf, size_t len, size_t prev_len,
                           size_t max_bytes, ws_http_head *h) {
  return parse_head(buf, len, prev_len, max_bytes, h, 0);
}

/* ---------------------------------------------------------- field lookup */

int ws_str_ieq(ws_str a, const char *b) {
  size_t i;
  for (i = 0; i < a.n; i++) {
    if (b[i] == '\0' ||
        lower((unsigned char)a.p[i]) != lower((unsigned char)b[i]))
      return 0;
  }
  return b[i] == '\0';
}

const ws_header *ws_http_find(const ws_http_head *h, const char *name) {
  size_t i;
  for (i = 0; i < h->num_headers; i++) {
    if (ws_str_ieq(h->headers[i].name, name)) return &h->headers[i];
  }
  return NULL;
}

size_t ws_http_count(const ws_http_head *h, const char *name) {
  size_t i, n = 0;
  for (i = 0; i < h->num_headers; i++) {
    if (ws_str_ieq(h->headers[i].name, name)) n++;
  }
  return n;
}

int ws_http_next_element(const char **p, const char *end, ws_str *out) {
  const char *s = *p, *e;
  int quoted = 0;
  while (s < end && (is_ows(*s) || *s == ','))
    s++;
  if (s >= end) {
    *p = end;
    return 0;
  }
  /* A comma inside a quoted-string does not end the element. */
  for (e = s; e < end; e++) {
    if (quoted) {
      if (*e == '\\' && e + 1 < end) {
        e++;
      } else if (*e == '"') {
        quoted = 0;
      }
    } else if (*e == '"') {
      quoted = 1;
    } else if (*e == ',') {
      break;
    }
  }
  *p = e < end ? e + 1 : end;
  while (e > s && is_ows(e[-1]))
    e--;
  out->p = s;
  out->n = (size_t)(e - s);
  return 1;
}

int ws_http_has_token(const ws_http_head *h, const char *name,
                      const char *token) {
  size_t i;
  for (i = 0; i < h->num_headers; i++) {
    const char *p, *end;
    ws_str el;
    if (!ws_str_ieq(h->headers[i].name, name)) continue;
    p = h->headers[i].value.p;
    end = p + h->headers[i].value.n;
    while (ws_http_next_element(&p, end, &el)) {
      if (ws_str_ieq(el, token)) return 1;
    }
  }
  return 0;
}

int ws_http_field_valid(ws_str name, ws_str value) {
  size_t i;
  if (name.n == 0) return 0;
  for (i = 0; i < name.n; i++) {
    if (!is_tchar((unsigned char)name.p[i])) return 0;
  }
  for (i = 0; i < value.n; i++) {
    if (!is_text((unsigned char)value.p[i])) return 0;
  }
  return 1;
}

/* ---------------------------------------------------------------- writers */

/* An output that counts every byte and stores them only when out is set. */
typedef struct wbuf {
  char *out;
  size_t n;
} wbuf;

static void put(wbuf *w, const char *p, size_t n) {
  if (w->out && n > 0) memcpy(w->out + w->n, p, n);
  w->n += n;
}

static void put_str(wbuf *w, const char *s) {
  put(w, s, strlen(s));
}

static void put_version(wbuf *w, int version) {
  put_str(w, version == 10 ? "HTTP/1.0" : "HTTP/1.1");
}

/* Writes a non-negative decimal number, at least three digits wide as a
 * status code is. */
static void put_status(wbuf *w, int status) {
  char d[16];
  size_t n = 0;
  unsigned v = status < 0 ? 0u : (unsigned)status;
  do {
    d[sizeof d - 1 - n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0 || n < 3);
  put(w, d + sizeof d - n, n);
}

static void put_fields(wbuf *w, const ws_header *f, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    put(w, f[i].name.p, f[i].name.n);
    put(w, ": ", 2);
    put(w, f[i].value.p, f[i].value.n);
    put(w, "\r\n", 2);
  }
  put(w, "\r\n", 2);
}

size_t ws_http_write_request(char *out, size_t cap, ws_str method,
                             ws_str target, int version, const ws_header *f,
                             size_t n) {
  wbuf w;
  int pass;
  /* The first pass counts; the second writes, if the head fits. */
  for (pass = 0; pass < 2; pass++) {
    w.out = pass ? out : NULL;
    w.n = 0;
    put(&w, method.p, method.n);
    put(&w, " ", 1);
    put(&w, target.p, target.n);
    put(&w, " ", 1);
    put_version(&w, version);
    put(&w, "\r\n", 2);
    put_fields(&w, f, n);
    if (w.n > cap || out == NULL) break;
  }
  return w.n;
}

size_t ws_http_write_response(char *out, size_t cap, int status, ws_str reason,
                              int version, const ws_header *f, size_t n) {
  wbuf w;
  int pass;
  for (pass = 0; pass < 2; pass++) {
    w.out = pass ? out : NULL;
    w.n = 0;
    put_version(&w, version);
    put(&w, " ", 1);
    put_status(&w, status);
    put(&w, " ", 1);
    put(&w, reason.p, reason.n);
    put(&w, "\r\n", 2);
    put_fields(&w, f, n);
    if (w.n > cap || out == NULL) break;
  }
  return w.n;
}

const char *ws_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 305: return "Use Proxy";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 451: return "Unavailable For Legal Reasons";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "";
  }
}
