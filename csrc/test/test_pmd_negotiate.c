/*
 * Tests of permessage-deflate negotiation (csrc/core/ws_pmd_negotiate.c):
 * the client's offer, the server's choice and answer, and the client's
 * check of that answer.
 */
#include <string.h>

#include "tap.h"
#include "ws_http.h"

#define CAP 16

/* Parses a head written as text (a literal, or text that outlives it). */
static ws_http_head head(const char *s, ws_header *f, int request) {
  ws_http_head h;
  size_t n = strlen(s);
  int r;
  memset(&h, 0, sizeof h);
  h.headers = f;
  h.num_headers = CAP;
  r = request ? ws_http_parse_request(s, n, 0, WS_HTTP_MAX_HEAD_BYTES, &h)
              : ws_http_parse_response(s, n, 0, WS_HTTP_MAX_HEAD_BYTES, &h);
  if (r != (int)n) {
    OK(0, "test head parses: %s", s);
    h.num_headers = 0;
  }
  return h;
}

TEST(config_default) {
  ws_pmd_config c;
  memset(&c, 0x5a, sizeof c);
  ws_pmd_config_default(&c);
  IS_INT(c.server_enable, 0, "server_enable off");
  IS_INT(c.client_enable, 0, "client_enable off");
  IS_INT(c.server_max_window_bits, 15, "server_max_window_bits 15");
  IS_INT(c.client_max_window_bits, 15, "client_max_window_bits 15");
  IS_INT(c.server_no_context_takeover, 0, "server_no_context_takeover off");
  IS_INT(c.client_no_context_takeover, 0, "client_no_context_takeover off");
  IS_INT(c.comp_level, 8, "comp_level 8");
  IS_INT(c.mem_level, 4, "mem_level 4");
  IS_INT(c.msg_size_threshold, 0, "msg_size_threshold 0");
}

/* ----------------------------------------------------------------- offer */

TEST(offer) {
  ws_pmd_config c;
  char out[256];
  size_t n;
  static const char beast[] = "permessage-deflate; server_max_window_bits=15; "
                              "client_max_window_bits=15";
  static const char all[] =
      "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12"
      "; server_no_context_takeover; client_no_context_takeover";

  ws_pmd_config_default(&c);
  memset(out, '#', sizeof out);
  IS_INT(ws_pmd_offer(&c, out, sizeof out), 0, "disabled: length 0");
  IS_STR(out, "", "disabled: empty string");
  memset(out, '#', sizeof out);
  IS_INT(ws_pmd_offer(NULL, out, sizeof out), 0, "NULL config: length 0");
  IS_STR(out, "", "NULL config: empty string");

  c.client_enable = 1;
  n = ws_pmd_offer(&c, out, sizeof out);
  IS_INT(n, sizeof beast - 1, "default length");
  IS_STR(out, beast, "Beast's default offer");

  c.server_no_context_takeover = 1;
  ws_pmd_offer(&c, out, sizeof out);
  IS_STR(out,
         "permessage-deflate; server_max_window_bits=15; "
         "client_max_window_bits=15; server_no_context_takeover",
         "server_no_context_takeover appended");
  c.server_no_context_takeover = 0;
  c.client_no_context_takeover = 1;
  ws_pmd_offer(&c, out, sizeof out);
  IS_STR(out,
         "permessage-deflate; server_max_window_bits=15; "
         "client_max_window_bits=15; client_no_context_takeover",
         "client_no_context_takeover appended");

  c.server_no_context_takeover = 1;
  c.server_max_window_bits = 9;
  c.client_max_window_bits = 12;
  n = ws_pmd_offer(&c, out, sizeof out);
  IS_STR(out, all, "window bits and both flags");
  IS_INT(n, sizeof all - 1, "its length");

  /* snprintf style: the length always, the bytes only with room for the
   * NUL. */
  memset(out, '#', sizeof out);
  IS_INT(ws_pmd_offer(&c, out, 0), n, "cap 0 gives the length");
  IS_INT(ws_pmd_offer(&c, NULL, 0), n, "NULL out gives the length");
  IS_INT(ws_pmd_offer(&c, out, n), n, "cap == length gives the length");
  OK(out[0] == '#', "and writes nothing");
  IS_INT(ws_pmd_offer(&c, out, n + 1), n, "cap == length + 1");
  IS_STR(out, all, "writes the value and its NUL");
}

/* ---------------------------------------------------------------- server */

struct srv_case {
  const char *what;
  int local_s, local_c, local_snct, local_cnct; /* local config */
  const char *field; /* Sec-WebSocket-Extensions value, or NULL */
  int active;        /* expected outcome */
  int s_bits, c_bits, snct, cnct;
  const char *resp;
};

#define D 15, 15, 0, 0 /* the default local config */
#define NO 0, 0, 0, 0, 0, ""
#define PMD "permessage-deflate"
#define PMD_OK(resp) 1, 15, 15, 0, 0, resp

static const struct srv_case srv[] = {
    {"no offer", D, NULL, NO},
    {"empty field", D, "", NO},
    {"bare offer", D, PMD, PMD_OK(PMD)},
    {"Beast's offer", D,
     PMD "; server_max_window_bits=15; client_max_window_bits=15",
     PMD_OK(PMD "; client_max_window_bits=15")},
    {"client_max_window_bits without value", D, PMD "; client_max_window_bits",
     PMD_OK(PMD)},
    {"name in any case", D, "PerMessage-Deflate", PMD_OK(PMD)},
    {"param names in any case", D,
     PMD "; Server_No_Context_Takeover; CLIENT_MAX_WINDOW_BITS", 1, 15, 15, 1,
     0, PMD "; server_no_context_takeover"},
    {"whitespace around ; and =", D,
     PMD " ;\tserver_max_window_bits = 10 ; client_max_window_bits", 1, 10, 15,
     0, 0, PMD "; server_max_window_bits=10"},
    {"server bits lowered by the offer", D, PMD "; server_max_window_bits=10",
     1, 10, 15, 0, 0, PMD "; server_max_window_bits=10"},
    {"server bits: the smaller of offer and local", 11, 15, 0, 0,
     PMD "; server_max_window_bits=13", 1, 11, 15, 0, 0,
     PMD "; server_max_window_bits=11"},
    {"server bits: local when not offered", 12, 15, 0, 0, PMD, 1, 12, 15, 0, 0,
     PMD "; server_max_window_bits=12"},
    {"server bits 8: declined (Beast answers 9, above the offer)", D,
     PMD "; server_max_window_bits=8", NO},
    {"server bits 8: declined, the next offer taken", D,
     PMD "; server_max_window_bits=8, " PMD "; server_max_window_bits=9", 1, 9,
     15, 0, 0, PMD "; server_max_window_bits=9"},
    {"server bits 8 with a low local limit: still declined", 9, 15, 0, 0,
     PMD "; server_max_window_bits=8", NO},
    {"server bits 15 are not written", D, PMD "; server_max_window_bits=15",
     PMD_OK(PMD)},
    {"client bits: the smaller of offer and local", 15, 12, 0, 0,
     PMD "; client_max_window_bits=14", 1, 15, 12, 0, 0,
     PMD "; client_max_window_bits=12"},
    {"client bits: the offer's when smaller", D,
     PMD "; client_max_window_bits=10", 1, 15, 10, 0, 0,
     PMD "; client_max_window_bits=10"},
    {"client bits 8 stay 8 (the client deflates)", D,
     PMD "; client_max_window_bits=8", 1, 15, 8, 0, 0,
     PMD "; client_max_window_bits=8"},
    {"client bits without value: local when below 15", 15, 10, 0, 0,
     PMD "; client_max_window_bits", 1, 15, 10, 0, 0,
     PMD "; client_max_window_bits=10"},
    {"client bits not offered but local below 15: declined", 15, 10, 0, 0, PMD,
     NO},
    {"quoted value", D, PMD "; server_max_window_bits=\"10\"", 1, 10, 15, 0, 0,
     PMD "; server_max_window_bits=10"},
    {"quoted value with escapes", D, PMD "; client_max_window_bits=\"1\\1\"", 1,
     15, 11, 0, 0, PMD "; client_max_window_bits=11"},
    {"flags from the offer", D,
     PMD "; client_no_context_takeover; server_no_context_takeover", 1, 15, 15,
     1, 1, PMD "; server_no_context_takeover; client_no_context_takeover"},
    {"flags from the local config", 15, 15, 1, 1, PMD, 1, 15, 15, 1, 1,
     PMD "; server_no_context_takeover; client_no_context_takeover"},
    {"every parameter, in Beast's order", 12, 12, 0, 1,
     PMD "; client_max_window_bits=10; server_max_window_bits=9; "
         "server_no_context_takeover",
     1, 9, 10, 1, 1,
     PMD "; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=10"},
    /* Offers that are declined. */
    {"unknown parameter", D, PMD "; x=1", NO},
    {"parameter of another extension", D, PMD "; max_window_bits=10", NO},
    {"duplicate server bits", D,
     PMD "; server_max_window_bits=10; server_max_window_bits=10", NO},
    {"duplicate client bits", D,
     PMD "; client_max_window_bits; client_max_window_bits", NO},
    {"duplicate flag", D,
     PMD "; server_no_context_takeover; server_no_context_takeover", NO},
    {"duplicate client flag", D,
     PMD "; client_no_context_takeover; client_no_context_takeover", NO},
    {"server bits without value", D, PMD "; server_max_window_bits", NO},
    {"server bits 7", D, PMD "; server_max_window_bits=7", NO},
    {"server bits 16", D, PMD "; server_max_window_bits=16", NO},
    {"server bits 08", D, PMD "; server_max_window_bits=08", NO},
    {"server bits 0", D, PMD "; server_max_window_bits=0", NO},
    {"server bits 100", D, PMD "; server_max_window_bits=100", NO},
    {"server bits abc", D, PMD "; server_max_window_bits=abc", NO},
    {"client bits 7", D, PMD "; client_max_window_bits=7", NO},
    {"client bits 16", D, PMD "; client_max_window_bits=16", NO},
    {"quoted empty", D, PMD "; client_max_window_bits=\"\"", NO},
    {"quoted with a space", D, PMD "; client_max_window_bits=\"1 0\"", NO},
    {"unterminated quote", D, PMD "; client_max_window_bits=\"10", NO},
    {"value on server_no_context_takeover", D,
     PMD "; server_no_context_takeover=1", NO},
    {"value on client_no_context_takeover", D,
     PMD "; client_no_context_takeover=\"\"", NO},
    {"trailing ;", D, PMD ";", NO},
    {"empty parameter name", D, PMD "; =1", NO},
    {"missing ;", D, PMD " server_no_context_takeover", NO},
    {"value with no name", D, PMD "=1", NO},
    {"= without value", D, PMD "; server_max_window_bits=", NO},
    {"bad byte after a value", D, PMD "; server_max_window_bits=10 x", NO},
    {"not permessage-deflate", D, "x-webkit-deflate-frame", NO},
    {"a longer name", D, PMD "x", NO},
    /* The first acceptable offer wins. */
    {"a bad offer, then a good one", D,
     PMD "; server_max_window_bits=16, " PMD "; server_max_window_bits=12", 1,
     12, 15, 0, 0, PMD "; server_max_window_bits=12"},
    {"offer needing client bits, then one with them", 15, 11, 0, 0,
     PMD ", " PMD "; client_max_window_bits", 1, 15, 11, 0, 0,
     PMD "; client_max_window_bits=11"},
    {"two good offers: the first", D,
     PMD "; server_max_window_bits=10, " PMD "; server_max_window_bits=11", 1,
     10, 15, 0, 0, PMD "; server_max_window_bits=10"},
    {"other extensions are skipped", D,
     "foo; bar=\"a,b\", x-webkit-deflate-frame, " PMD
     "; client_no_context_takeover",
     1, 15, 15, 0, 1, PMD "; client_no_context_takeover"},
    {"empty elements are skipped", D, " , ," PMD ",", PMD_OK(PMD)},
};

static const struct srv_case srv_fields = {
    "offers across two fields",       D, NULL, 1, 10, 15, 0, 0,
    PMD "; server_max_window_bits=10"};

static void check_server(const struct srv_case *c, const ws_http_head *h) {
  ws_pmd_config cfg;
  ws_pmd_params p;
  char resp[256];
  size_t len = 12345;
  ws_pmd_config_default(&cfg);
  cfg.server_enable = 1;
  cfg.server_max_window_bits = c->local_s;
  cfg.client_max_window_bits = c->local_c;
  cfg.server_no_context_takeover = c->local_snct;
  cfg.client_no_context_takeover = c->local_cnct;
  memset(&p, 0x5a, sizeof p);
  memset(resp, '#', sizeof resp);
  IS_INT(ws_pmd_server_negotiate(&cfg, h, &p, resp, sizeof resp, &len), 0,
         "%s: returns 0", c->what);
  IS_INT(p.active, c->active, "%s: active", c->what);
  IS_STR(resp, c->resp, "%s: answer", c->what);
  IS_INT(len, strlen(c->resp), "%s: answer length", c->what);
  if (c->active) {
    OK(p.server_max_window_bits == c->s_bits &&
           p.client_max_window_bits == c->c_bits &&
           p.server_no_context_takeover == c->snct &&
           p.client_no_context_takeover == c->cnct,
       "%s: params %d %d %d %d (want %d %d %d %d)", c->what,
       p.server_max_window_bits, p.client_max_window_bits,
       p.server_no_context_takeover, p.client_no_context_takeover, c->s_bits,
       c->c_bits, c->snct, c->cnct);
  } else {
    OK(p.server_max_window_bits == 0 && p.client_max_window_bits == 0 &&
           p.server_no_context_takeover == 0 &&
           p.client_no_context_takeover == 0,
       "%s: params zeroed", c->what);
  }
}

TEST(server_table) {
  static char text[sizeof srv / sizeof srv[0]][512];
  size_t i;
  for (i = 0; i < sizeof srv / sizeof srv[0]; i++) {
    ws_header f[CAP];
    ws_http_head h;
    if (srv[i].field) {
      snprintf(text[i], sizeof text[i],
               "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: %s\r\n\r\n",
               srv[i].field);
    } else {
      snprintf(text[i], sizeof text[i], "GET / HTTP/1.1\r\n\r\n");
    }
    h = head(text[i], f, 1);
    check_server(&srv[i], &h);
  }
}

TEST(server_misc) {
  ws_header f[CAP];
  ws_http_head h = head("GET / HTTP/1.1\r\n"
                        "sec-websocket-extensions: foo\r\n"
                        "X: y\r\n"
                        "Sec-WebSocket-Extensions: " PMD
                        "; server_max_window_bits=10\r\n\r\n",
                        f, 1);
  ws_http_head one = head("GET / HTTP/1.1\r\nSec-WebSocket-Extensions: " PMD
                          "; server_no_context_takeover\r\n\r\n",
                          f + 8, 1);
  ws_pmd_config cfg;
  ws_pmd_params p;
  char resp[64];
  size_t len;
  check_server(&srv_fields, &h);

  ws_pmd_config_default(&cfg);
  memset(resp, '#', sizeof resp);
  ws_pmd_server_negotiate(&cfg, &one, &p, resp, sizeof resp, &len);
  IS_INT(p.active, 0, "server_enable off declines");
  IS_STR(resp, "", "and answers nothing");
  IS_INT(len, 0, "of length 0");
  ws_pmd_server_negotiate(NULL, &one, &p, resp, sizeof resp, &len);
  IS_INT(p.active, 0, "a NULL config declines");

  cfg.server_enable = 1;
  memset(resp, '#', sizeof resp);
  ws_pmd_server_negotiate(&cfg, &one, &p, resp, 10, &len);
  IS_INT(p.active, 1, "a short buffer still negotiates");
  IS_INT(len, strlen(PMD "; server_no_context_takeover"),
         "and gives the length needed");
  OK(resp[0] == '#', "but writes nothing");
  ws_pmd_server_negotiate(&cfg, &one, &p, resp, len, &len);
  OK(resp[0] == '#', "no room for the NUL: nothing written");
  ws_pmd_server_negotiate(&cfg, &one, &p, resp, len + 1, &len);
  IS_STR(resp, PMD "; server_no_context_takeover", "room for it: written");
  IS_INT(ws_pmd_server_negotiate(&cfg, &one, &p, NULL, 0, NULL), 0,
         "resp and resp_len may be NULL");
  IS_INT(p.active, 1, "and it still negotiates");
}

/* ---------------------------------------------------------------- client */

struct cli_case {
  const char *what;
  int enable, local_s, local_c, local_snct, local_cnct;
  const char *field; /* NULL: no field */
  int err, active, s_bits, c_bits, snct, cnct;
};

#define CD 1, 15, 15, 0, 0
#define BAD WS_E_bad_extension, 0, 0, 0, 0, 0

static const struct cli_case cli[] = {
    {"no extension answered", CD, NULL, 0, 0, 0, 0, 0, 0},
    {"bare answer", CD, PMD, 0, 1, 15, 15, 0, 0},
    {"Beast's answer to Beast's offer", CD, PMD "; client_max_window_bits=15",
     0, 1, 15, 15, 0, 0},
    {"name in any case", CD, "PERMESSAGE-DEFLATE", 0, 1, 15, 15, 0, 0},
    {"lowered server bits", CD, PMD "; server_max_window_bits=10", 0, 1, 10, 15,
     0, 0},
    {"server bits 8", CD, PMD "; server_max_window_bits=8", 0, 1, 8, 15, 0, 0},
    {"server bits equal to the offer", 1, 11, 15, 0, 0,
     PMD "; server_max_window_bits=11", 0, 1, 11, 15, 0, 0},
    {"lowered client bits", CD, PMD "; client_max_window_bits=9", 0, 1, 15, 9,
     0, 0},
    {"client bits 8 (the engine deflates with literals only)", CD,
     PMD "; client_max_window_bits=8", 0, 1, 15, 8, 0, 0},
    {"client bits absent: the offered limit", 1, 15, 12, 0, 0, PMD, 0, 1, 15,
     12, 0, 0},
    {"quoted value", CD, PMD "; server_max_window_bits=\"12\"", 0, 1, 12, 15, 0,
     0},
    {"whitespace", CD, PMD " ; client_max_window_bits = 10 ", 0, 1, 15, 10, 0,
     0},
    {"server flag", CD, PMD "; server_no_context_takeover", 0, 1, 15, 15, 1, 0},
    {"client flag", CD, PMD "; client_no_context_takeover", 0, 1, 15, 15, 0, 1},
    {"local client flag is kept", 1, 15, 15, 0, 1, PMD, 0, 1, 15, 15, 0, 1},
    {"offered server flag answered", 1, 15, 15, 1, 0,
     PMD "; server_no_context_takeover", 0, 1, 15, 15, 1, 0},
    {"everything", 1, 12, 12, 1, 1,
     PMD "; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=10",
     0, 1, 9, 10, 1, 1},
    /* Answers the client cannot honour. */
    {"disabled client, any extension", 0, 15, 15, 0, 0, PMD, BAD},
    {"disabled client, empty field", 0, 15, 15, 0, 0, "", BAD},
    {"empty field", CD, "", BAD},
    {"only commas", CD, " , ", BAD},
    {"another extension", CD, "x-webkit-deflate-frame", BAD},
    {"two extensions", CD, PMD ", " PMD, BAD},
    {"pmd and another", CD, PMD ", foo", BAD},
    {"server bits above the offer", 1, 10, 15, 0, 0,
     PMD "; server_max_window_bits=12", BAD},
    {"server bits absent when 10 were offered", 1, 10, 15, 0, 0, PMD, BAD},
    {"server bits without value", CD, PMD "; server_max_window_bits", BAD},
    {"server bits 7", CD, PMD "; server_max_window_bits=7", BAD},
    {"server bits 16", CD, PMD "; server_max_window_bits=16", BAD},
    {"client bits above the offer", 1, 15, 10, 0, 0,
     PMD "; client_max_window_bits=11", BAD},
    {"client bits without value", CD, PMD "; client_max_window_bits", BAD},
    {"offered server flag not answered", 1, 15, 15, 1, 0, PMD, BAD},
    {"unknown parameter", CD, PMD "; foo", BAD},
    {"duplicate parameter", CD,
     PMD "; client_no_context_takeover; client_no_context_takeover", BAD},
    {"duplicate bits", CD,
     PMD "; server_max_window_bits=10; server_max_window_bits=10", BAD},
    {"value on a flag", CD, PMD "; server_no_context_takeover=1", BAD},
    {"malformed parameters", CD, PMD "; ; x", BAD},
    {"trailing ;", CD, PMD ";", BAD},
};

static void check_client(const struct cli_case *c, const ws_http_head *h) {
  ws_pmd_config cfg;
  ws_pmd_params p;
  int r;
  ws_pmd_config_default(&cfg);
  cfg.client_enable = c->enable;
  cfg.server_max_window_bits = c->local_s;
  cfg.client_max_window_bits = c->local_c;
  cfg.server_no_context_takeover = c->local_snct;
  cfg.client_no_context_takeover = c->local_cnct;
  memset(&p, 0x5a, sizeof p);
  r = ws_pmd_client_accept(&cfg, h, &p);
  IS_INT(r, c->err, "%s: %s", c->what, r ? ws_err_name(r) : "ok");
  IS_INT(p.active, c->active, "%s: active", c->what);
  OK(p.server_max_window_bits == c->s_bits &&
         p.client_max_window_bits == c->c_bits &&
         p.server_no_context_takeover == c->snct &&
         p.client_no_context_takeover == c->cnct,
     "%s: params %d %d %d %d (want %d %d %d %d)", c->what,
     p.server_max_window_bits, p.client_max_window_bits,
     p.server_no_context_takeover, p.client_no_context_takeover, c->s_bits,
     c->c_bits, c->snct, c->cnct);
}

TEST(client_table) {
  static char text[sizeof cli / sizeof cli[0]][512];
  size_t i;
  for (i = 0; i < sizeof cli / sizeof cli[0]; i++) {
    ws_header f[CAP];
    ws_http_head h;
    if (cli[i].field) {
      snprintf(text[i], sizeof text[i],
               "HTTP/1.1 101 Switching Protocols\r\n"
               "Sec-WebSocket-Extensions: %s\r\n\r\n",
               cli[i].field);
    } else {
      snprintf(text[i], sizeof text[i], "HTTP/1.1 101 X\r\nA: b\r\n\r\n");
    }
    h = head(text[i], f, 0);
    check_client(&cli[i], &h);
  }
}

TEST(client_misc) {
  ws_header f[CAP];
  ws_http_head two = head("HTTP/1.1 101 X\r\n"
                          "Sec-WebSocket-Extensions: " PMD "\r\n"
                          "sec-websocket-extensions: " PMD "\r\n\r\n",
                          f, 0);
  ws_http_head none = head("HTTP/1.1 101 X\r\n\r\n", f + 8, 0);
  ws_pmd_params p;
  ws_pmd_config cfg;
  ws_pmd_config_default(&cfg);
  cfg.client_enable = 1;
  IS_INT(ws_pmd_client_accept(&cfg, &two, &p), WS_E_bad_extension,
         "one extension in each of two fields");
  IS_INT(ws_pmd_client_accept(NULL, &two, &p), WS_E_bad_extension,
         "NULL config and an answer");
  IS_INT(ws_pmd_client_accept(NULL, &none, &p), 0, "NULL config, no answer");
  IS_INT(p.active, 0, "inactive");
}

/* The server's answer to the client's own offer passes the client's check
 * with the same parameters, for every combination of local settings. */
TEST(offer_answer_agree) {
  int sb, cb, flags, bad = 0, n = 0;
  for (sb = 9; sb <= 15; sb += 3) {
    for (cb = 9; cb <= 15; cb += 3) {
      for (flags = 0; flags < 16; flags++) {
        ws_pmd_config cc, sc;
        ws_pmd_params sp, cp;
        char offer[160], answer[160], req[400], res[400];
        ws_header f1[CAP], f2[CAP];
        ws_http_head h;
        size_t len;
        ws_pmd_config_default(&cc);
        ws_pmd_config_default(&sc);
        cc.client_enable = sc.server_enable = 1;
        cc.server_max_window_bits = sb;
        cc.client_max_window_bits = cb;
        sc.server_max_window_bits = 24 - sb;
        sc.client_max_window_bits = 24 - cb;
        cc.server_no_context_takeover = flags & 1;
        cc.client_no_context_takeover = (flags >> 1) & 1;
        sc.server_no_context_takeover = (flags >> 2) & 1;
        sc.client_no_context_takeover = (flags >> 3) & 1;
        ws_pmd_offer(&cc, offer, sizeof offer);
        snprintf(req, sizeof req,
                 "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: %s\r\n\r\n",
                 offer);
        h = head(req, f1, 1);
        ws_pmd_server_negotiate(&sc, &h, &sp, answer, sizeof answer, &len);
        snprintf(res, sizeof res,
                 "HTTP/1.1 101 X\r\nSec-WebSocket-Extensions: %s\r\n\r\n",
                 answer);
        h = head(res, f2, 0);
        n++;
        if (!sp.active || ws_pmd_client_accept(&cc, &h, &cp) != 0 ||
            memcmp(&sp, &cp, sizeof sp) != 0) {
          bad++;
          printf("# offer '%s' answer '%s'\n", offer, answer);
        }
      }
    }
  }
  IS_INT(bad, 0, "all %d combinations agree", n);
}

int main(void) {
  RUN(config_default);
  RUN(offer);
  RUN(server_table);
  RUN(server_misc);
  RUN(client_table);
  RUN(client_misc);
  RUN(offer_answer_agree);
  return tap_done();
}
