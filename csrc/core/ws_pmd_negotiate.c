/*
 * luvws core: permessage-deflate negotiation (RFC 7692 §5 and §7).
 *
 * The server follows Boost.Beast's rules (see reference/beast-websocket.md
 * §5), except that it takes the first acceptable offer of the whole
 * Sec-WebSocket-Extensions list, as RFC 7692 §5 intends offers in order of
 * preference, where Beast looks only at the first permessage-deflate
 * element. The client, where Beast adopts whatever the server answers,
 * accepts only an answer it can honour.
 */
#include "ws_http.h"

#include <string.h>

#define PMD_NAME "permessage-deflate"
#define PMD_FIELD "Sec-WebSocket-Extensions"

/* Longest value either side writes, with room to spare. */
#define PMD_MAX_VALUE 160

void ws_pmd_config_default(ws_pmd_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->server_enable = 0;
  cfg->client_enable = 0;
  cfg->server_max_window_bits = 15;
  cfg->client_max_window_bits = 15;
  cfg->server_no_context_takeover = 0;
  cfg->client_no_context_takeover = 0;
  cfg->comp_level = 8;
  cfg->mem_level = 4;
  cfg->msg_size_threshold = 0;
}

/* The option setters keep local window bits within 9..15; clamp anyway so
 * that a bad value can never reach the wire. */
static int local_bits(int v) {
  return v < 9 ? 9 : v > 15 ? 15 : v;
}

/* ------------------------------------------------------ extension syntax */

static int is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
      (c >= 'a' && c <= 'z'))
    return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ows(char c) {
  return c == ' ' || c == '\t';
}

/* The bytes of a quoted-string that need no escape (qdtext), and those a
 * backslash may escape (quoted-pair), as in RFC 9110 §5.6.4. */
static int is_qdtext(unsigned char c) {
  return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
         (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

static int is_qpair(unsigned char c) {
  return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
}

/* One extension parameter: name [ "=" ( token / quoted-string ) ]. For a
 * quoted-string, value is what lies between the quotes, still escaped. */
typedef struct ext_param {
  ws_str name;
  ws_str value;
  int has_value;
  int quoted;
} ext_param;

/* Splits an element of the list (RFC 6455 §9.1: extension-token *( ";"
 * extension-param )) at the end of its name. Returns 0 if it does not start
 * with a token. */
static int ext_name(ws_str el, ws_str *name, const char **rest) {
  size_t i = 0;
  while (i < el.n && is_tchar((unsigned char)el.p[i]))
    i++;
  if (i == 0) return 0;
  name->p = el.p;
  name->n = i;
  *rest = el.p + i;
  return 1;
}

/* Reads the next "; param" from *p. Returns 1 with *out set, 0 at the end,
 * or -1 if the bytes are not a parameter list. */
static int ext_next_param(const char **p, const char *end, ext_param *out) {
  const char *s = *p, *start;
  while (s < end && is_ows(*s))
    s++;
  if (s == end) return 0;
  if (*s != ';') return -1;
  s++;
  while (s < end && is_ows(*s))
    s++;
  start = s;
  while (s < end && is_tchar((unsigned char)*s))
    s++;
  if (s == start) return -1;
  out->name.p = start;
  out->name.n = (size_t)(s - start);
  out->value.p = s;
  out->value.n = 0;
  out->has_value = 0;
  out->quoted = 0;
  while (s < end && is_ows(*s))
    s++;
  if (s < end && *s == '=') {
    s++;
    while (s < end && is_ows(*s))
      s++;
    if (s < end && *s == '"') {
      start = ++s;
      for (;;) {
        if (s == end) return -1;
        if (*s == '"') break;
        if (*s == '\\') {
          if (++s == end || !is_qpair((unsigned char)*s)) return -1;
        } else if (!is_qdtext((unsigned char)*s)) {
          return -1;
        }
        s++;
      }
      out->value.p = start;
      out->value.n = (size_t)(s - start);
      out->quoted = 1;
      s++;
    } else {
      start = s;
      while (s < end && is_tchar((unsigned char)*s))
        s++;
      if (s == start) return -1;
      out->value.p = start;
      out->value.n = (size_t)(s - start);
    }
    out->has_value = 1;
  }
  *p = s;
  return 1;
}

/* The window bits a parameter gives: a decimal number from 8 to 15 with no
 * leading zero (RFC 7692 §7.1.2), after unescaping a quoted-string; -1 for
 * anything else. */
static int param_bits(const ext_param *pp) {
  const char *s = pp->value.p, *e = s + pp->value.n;
  char d[2];
  size_t n = 0;
  for (; s < e; s++) {
    char c = *s;
    /* ext_next_param made sure an escape is never the last byte. */
    if (pp->quoted && c == '\\') c = *++s;
    if (n == 2) return -1;
    d[n++] = c;
  }
  if (n == 1 && (d[0] == '8' || d[0] == '9')) return d[0] - '0';
  if (n == 2 && d[0] == '1' && d[1] >= '0' && d[1] <= '5')
    return 10 + (d[1] - '0');
  return -1;
}

/* The parameters of one permessage-deflate element. */
typedef struct pmd_offer {
  int server_bits; /* 0: absent; else 8..15 */
  int client_bits; /* 0: absent; -1: present without a value; else 8..15 */
  int server_nct;  /* server_no_context_takeover present */
  int client_nct;  /* client_no_context_takeover present */
} pmd_offer;

/* Reads the parameters of a permessage-deflate element, from just after its
 * name. Returns 0, or -1 for what makes an offer declined (RFC 7692 §7:
 * unknown or repeated parameters, bad values, a value where none belongs,
 * no value where one is needed). In a response (response != 0)
 * client_max_window_bits needs a value too. */
static int read_params(const char *p, const char *end, int response,
                       pmd_offer *o) {
  ext_param pp;
  int r, bits;
  memset(o, 0, sizeof *o);
  while ((r = ext_next_param(&p, end, &pp)) == 1) {
    if (ws_str_ieq(pp.name, "server_max_window_bits")) {
      if (o->server_bits != 0 || !pp.has_value) return -1;
      if ((bits = param_bits(&pp)) < 0) return -1;
      o->server_bits = bits;
    } else if (ws_str_ieq(pp.name, "client_max_window_bits")) {
      if (o->client_bits != 0) return -1;
      if (pp.has_value) {
        if ((bits = param_bits(&pp)) < 0) return -1;
        o->client_bits = bits;
      } else {
        if (response) return -1;
        o->client_bits = -1;
      }
    } else if (ws_str_ieq(pp.name, "server_no_context_takeover")) {
      if (o->server_nct || pp.has_value) return -1;
      o->server_nct = 1;
    } else if (ws_str_ieq(pp.name, "client_no_context_takeover")) {
      if (o->client_nct || pp.has_value) return -1;
      o->client_nct = 1;
    } else {
      return -1;
    }
  }
  return r;
}

/* --------------------------------------------------------- value writing */

/* A value under construction; n never passes PMD_MAX_VALUE - 1. */
typedef struct vbuf {
  char s[PMD_MAX_VALUE];
  size_t n;
} vbuf;

static void vput(vbuf *v, const char *s) {
  size_t n = strlen(s);
  if (v->n + n >= sizeof v->s) n = sizeof v->s - 1 - v->n;
  memcpy(v->s + v->n, s, n);
  v->n += n;
}

static void vput_bits(vbuf *v, const char *name, int bits) {
  char d[3];
  vput(v, "; ");
  vput(v, name);
  vput(v, "=");
  if (bits >= 10) {
    d[0] = '1';
    d[1] = (char)('0' + bits - 10);
    d[2] = '\0';
  } else {
    d[0] = (char)('0' + bits);
    d[1] = '\0';
  }
  vput(v, d);
}

/* Copies v to out with a NUL if it fits in cap; returns its length. */
static size_t vout(const vbuf *v, char *out, size_t cap) {
  if (out != NULL && v->n < cap) {
    memcpy(out, v->s, v->n);
    out[v->n] = '\0';
  }
  return v->n;
}

/* ----------------------------------------------------------------- client */

size_t ws_pmd_offer(const ws_pmd_config *cfg, char *out, size_t cap) {
  vbuf v;
  v.n = 0;
  if (cfg != NULL && cfg->client_enable) {
    vput(&v, PMD_NAME);
    vput_bits(&v, "server_max_window_bits",
              local_bits(cfg->server_max_window_bits));
    vput_bits(&v, "client_max_window_bits",
              local_bits(cfg->client_max_window_bits));
    if (cfg->server_no_context_takeover)
      vput(&v, "; server_no_context_takeover");
    if (cfg->client_no_context_takeover)
      vput(&v, "; client_no_context_takeover");
  }
  return vout(&v, out, cap);
}

int ws_pmd_client_accept(const ws_pmd_config *cfg, const ws_http_head *res,
                         ws_pmd_params *out) {
  size_t i, nel = 0;
  ws_str el, first = {NULL, 0}, name;
  const char *rest;
  pmd_offer o;
  int local_s, local_c, server_bits;
  memset(out, 0, sizeof *out);
  if (!ws_http_find(res, PMD_FIELD)) return 0;
  if (cfg == NULL || !cfg->client_enable) return WS_E_bad_extension;
  for (i = 0; i < res->num_headers; i++) {
    const char *p, *end;
    if (!ws_str_ieq(res->headers[i].name, PMD_FIELD)) continue;
    p = res->headers[i].value.p;
    end = p + res->headers[i].value.n;
    while (ws_http_next_element(&p, end, &el)) {
      if (nel++ == 0) first = el;
    }
  }
  /* We offered one extension, so the answer names exactly that one. */
  if (nel != 1) return WS_E_bad_extension;
  if (!ext_name(first, &name, &rest) || !ws_str_ieq(name, PMD_NAME))
    return WS_E_bad_extension;
  if (read_params(rest, first.p + first.n, 1, &o) != 0)
    return WS_E_bad_extension;
  local_s = local_bits(cfg->server_max_window_bits);
  local_c = local_bits(cfg->client_max_window_bits);
  /* The offer named server_max_window_bits (and server_no_context_takeover
   * if set); RFC 7692 §7.1.1.1 and §7.1.2.1: the server accepts them by
   * answering them, so an absent one is an offer the server did not
   * accept. Without the parameter the server may use 15 bits. */
  server_bits = o.server_bits ? o.server_bits : 15;
  if (server_bits > local_s) return WS_E_bad_extension;
  if (cfg->server_no_context_takeover && !o.server_nct)
    return WS_E_bad_extension;
  /* The offer always names client_max_window_bits; the answer may lower
   * it (RFC 7692 §7.1.2.2), even to 8: zlib cannot deflate with a 256-byte
   * window, so the engine then compresses with literals only (see
   * ws_conn.h), which any window decodes. */
  if (o.client_bits != 0 && o.client_bits > local_c) return WS_E_bad_extension;
  out->active = 1;
  out->server_max_window_bits = server_bits;
  out->client_max_window_bits = o.client_bits ? o.client_bits : local_c;
  out->server_no_context_takeover = o.server_nct;
  /* Dropping our own context more often than asked is always safe. */
  out->client_no_context_takeover =
      o.client_nct || cfg->client_no_context_takeover;
  return 0;
}

/* ----------------------------------------------------------------- server */

/* Beast's pmd_negotiate for one offer: fills p and v and returns 1, or
 * returns 0 when the offer must be declined. */
static int negotiate(const ws_pmd_config *cfg, const pmd_offer *o,
                     ws_pmd_params *p, vbuf *v) {
  int local_s = local_bits(cfg->server_max_window_bits);
  int local_c = local_bits(cfg->client_max_window_bits);
  memset(p, 0, sizeof *p);
  v->n = 0;
  vput(v, PMD_NAME);
  p->server_no_context_takeover =
      o->server_nct || cfg->server_no_context_takeover != 0;
  if (p->server_no_context_takeover) vput(v, "; server_no_context_takeover");
  p->client_no_context_takeover =
      o->client_nct || cfg->client_no_context_takeover != 0;
  if (p->client_no_context_takeover) vput(v, "; client_no_context_takeover");
  /* Beast answers an offer of 8 with 9, as zlib cannot deflate with a
   * 256-byte window; but the answer must not exceed the offer (RFC 7692
   * §7.1.2.1), so such an offer is declined instead, and the next one, if
   * any, is tried. (Deflating with literals only would honour 8 too, at a
   * poor ratio; a client that asks for 8 gets its other offers first.) */
  if (o->server_bits == 8) return 0;
  p->server_max_window_bits = o->server_bits != 0 && o->server_bits < local_s
                                  ? o->server_bits
                                  : local_s;
  if (p->server_max_window_bits < 15)
    vput_bits(v, "server_max_window_bits", p->server_max_window_bits);
  switch (o->client_bits) {
  case -1:
    /* Offered without a value: the server picks. */
    p->client_max_window_bits = local_c;
    if (local_c < 15) vput_bits(v, "client_max_window_bits", local_c);
    break;
  case 0:
    /* Not offered: the answer may not name it (RFC 7692 §7.1.2.2), so the
     * client will use up to 15 bits, which a lower local limit refuses. */
    if (local_c != 15) return 0;
    p->client_max_window_bits = 15;
    break;
  default:
    p->client_max_window_bits =
        o->client_bits < local_c ? o->client_bits : local_c;
    vput_bits(v, "client_max_window_bits", p->client_max_window_bits);
    break;
  }
  p->active = 1;
  return 1;
}

int ws_pmd_server_negotiate(const ws_pmd_config *cfg, const ws_http_head *req,
                            ws_pmd_params *out, char *resp, size_t cap,
                            size_t *resp_len) {
  size_t i, n;
  vbuf v;
  int found = 0;
  memset(out, 0, sizeof *out);
  v.n = 0;
  for (i = 0;
       !found && cfg != NULL && cfg->server_enable && i < req->num_headers;
       i++) {
    const char *p, *end;
    ws_str el, name;
    if (!ws_str_ieq(req->headers[i].name, PMD_FIELD)) continue;
    p = req->headers[i].value.p;
    end = p + req->headers[i].value.n;
    while (!found && ws_http_next_element(&p, end, &el)) {
      const char *rest;
      pmd_offer o;
      if (!ext_name(el, &name, &rest) || !ws_str_ieq(name, PMD_NAME)) continue;
      if (read_params(rest, el.p + el.n, 0, &o) != 0) continue;
      found = negotiate(cfg, &o, out, &v);
    }
  }
  if (!found) {
    memset(out, 0, sizeof *out);
    v.n = 0;
  }
  n = vout(&v, resp, cap);
  if (resp_len) *resp_len = n;
  return 0;
}
