/*
 * Tests of the opening handshake: keys, accept values, and the checks of
 * the upgrade request and response in Beast's order
 * (csrc/core/ws_handshake.c).
 */
#include <stdint.h>
#include <string.h>

#include "tap.h"
#include "ws_http.h"

#define CAP 32

/* Parses a request or response written as text (the text must outlive the
 * head, so pass literals). Fails the test if it does not parse. */
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

/* ------------------------------------------------------------------- keys */

/* A test rng that fills with start, start + 1, ... and can be told to
 * fail. */
struct counter {
  uint8_t start;
  int fail;
  int calls;
};

static int counter_fill(void *ud, uint8_t *out, size_t len) {
  struct counter *c = ud;
  size_t i;
  c->calls++;
  if (c->fail) return -1;
  for (i = 0; i < len; i++)
    out[i] = (uint8_t)(c->start + i);
  return 0;
}

TEST(key_generate) {
  struct counter c = {0, 0, 0};
  ws_rng rng = {&c, counter_fill};
  char key[WS_KEY_LEN + 1];
  IS_INT(ws_key_generate(&rng, key), 0, "returns 0");
  IS_STR(key, "AAECAwQFBgcICQoLDA0ODw==", "base64 of bytes 0..15");
  IS_INT(c.calls, 1, "one call to the rng");
  OK(ws_key_valid(key, strlen(key)), "a generated key is valid");
  c.start = 0xf0;
  IS_INT(ws_key_generate(&rng, key), 0, "returns 0 again");
  IS_STR(key, "8PHy8/T19vf4+fr7/P3+/w==", "base64 of bytes f0..ff");
  IS_INT(strlen(key), WS_KEY_LEN, "24 characters and a NUL");
  c.fail = 1;
  IS_INT(ws_key_generate(&rng, key), WS_E_no_memory, "a failing rng");
  IS_STR(key, "", "out is empty after a failure");
  IS_INT(ws_key_generate(NULL, key), WS_E_no_memory, "no rng");
}

TEST(key_valid) {
  static const char *good[] = {
      "dGhlIHNhbXBsZSBub25jZQ==", "x3JJHMbDL1EzLkh9GBhXDw==",
      "AAAAAAAAAAAAAAAAAAAAAA==", "/////////////////////w==",
      "+++++++++++++++++++++g==", "AAAAAAAAAAAAAAAAAAAAAQ=="};
  static const char *bad[] = {
      "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 characters */
      "dGhlIHNhbXBsZSBub25jZQ===", /* 25 characters */
      "dGhlIHNhbXBsZSBub25jZQ",    /* no padding */
      "dGhlIHNhbXBsZSBub25jZR==",  /* stray bits: R */
      "dGhlIHNhbXBsZSBub25jZB==",  /* stray bits: B */
      "dGhlIHNhbXBsZSBub25jZ/==",  /* stray bits: / */
      "dGhlIHNhbXBsZSBub25jZQA=",  /* 17 bytes' worth */
      "dGhlIHNhbXBsZSBub25jZQAA",  /* 18 bytes, no padding */
      "dGhlIHNhbXBsZSBub25j!Q==",  /* not base64 */
      "dGhlIHNhbXBsZSBub25j-Q==",  /* base64url is not base64 */
      "dGhlIHNhbXBsZSBub2=jZQ==",  /* padding inside */
      "dGhlIHNhbXBsZSBub25j Q==",  /* space */
      "!!",                        /* Beast accepts this one */
      ""};
  size_t i;
  for (i = 0; i < sizeof good / sizeof good[0]; i++)
    OK(ws_key_valid(good[i], strlen(good[i])), "valid: %s", good[i]);
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    OK(!ws_key_valid(bad[i], strlen(bad[i])), "invalid: '%s'", bad[i]);
  OK(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 23), "n counts, not NUL");
}

TEST(accept_compute) {
  char acc[WS_ACCEPT_LEN + 1];
  IS_INT(ws_accept_compute("dGhlIHNhbXBsZSBub25jZQ==", 24, acc), 0, "rc");
  IS_STR(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 §1.3 example");
  IS_INT(ws_accept_compute("x3JJHMbDL1EzLkh9GBhXDw==", 24, acc), 0, "rc");
  IS_STR(acc, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=", "second known pair");
  IS_INT(ws_accept_compute("dGhlIHNhbXBsZSBub25jZQ==xyz", 24, acc), 0, "rc");
  IS_STR(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "only n bytes of the key");
  IS_INT(ws_accept_compute("", 0, acc), 0, "empty key");
  /* SHA-1 of the GUID alone, base64. */
  IS_STR(acc, "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=", "accept of an empty key");
  IS_INT(strlen(acc), WS_ACCEPT_LEN, "28 characters and a NUL");
}

/* ---------------------------------------------------------------- server */

#define REQ_LINE "GET /chat HTTP/1.1\r\n"
#define R_HOST "Host: server.example.com\r\n"
#define R_UPG "Upgrade: websocket\r\n"
#define R_CONN "Connection: Upgrade\r\n"
#define R_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define R_VER "Sec-WebSocket-Version: 13\r\n"
#define END "\r\n"

struct req_case {
  const char *s;
  int err;
  const char *what;
};

TEST(server_check) {
  static const struct req_case c[] = {
      {REQ_LINE R_HOST R_UPG R_CONN R_KEY R_VER END, 0, "the RFC request"},
      {"GET / HTTP/1.1\r\nhost: a\r\nupgrade: WebSocket\r\n"
       "connection: keep-alive, UPGRADE\r\n"
       "sec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
       "sec-websocket-version: 13\r\n\r\n",
       0, "names and tokens in any case"},
      {REQ_LINE "Host:\r\n" R_UPG R_CONN R_KEY R_VER END, 0,
       "an empty Host passes, as in Beast"},
      {REQ_LINE R_HOST R_UPG
       "Connection: keep-alive\r\nConnection: upgrade\r\n" R_KEY R_VER END,
       0, "upgrade token in a second Connection field"},
      {REQ_LINE R_HOST "Upgrade: h2c, websocket\r\n" R_CONN R_KEY R_VER END, 0,
       "websocket among other protocols"},
      /* One failure each. */
      {"GET /chat HTTP/1.0\r\n" R_HOST R_UPG R_CONN R_KEY R_VER END,
       WS_E_bad_http_version, "HTTP/1.0"},
      {"POST /chat HTTP/1.1\r\n" R_HOST R_UPG R_CONN R_KEY R_VER END,
       WS_E_bad_method, "POST"},
      {"get /chat HTTP/1.1\r\n" R_HOST R_UPG R_CONN R_KEY R_VER END,
       WS_E_bad_method, "lower-case get (methods are case-sensitive)"},
      {REQ_LINE R_UPG R_CONN R_KEY R_VER END, WS_E_no_host, "no Host"},
      {REQ_LINE R_HOST R_UPG R_KEY R_VER END, WS_E_no_connection,
       "no Connection"},
      {REQ_LINE R_HOST R_UPG "Connection: keep-alive\r\n" R_KEY R_VER END,
       WS_E_no_connection_upgrade, "Connection without upgrade"},
      {REQ_LINE R_HOST R_UPG "Connection: upgrades\r\n" R_KEY R_VER END,
       WS_E_no_connection_upgrade, "Connection: upgrades"},
      {REQ_LINE R_HOST R_CONN R_KEY R_VER END, WS_E_no_upgrade, "no Upgrade"},
      {REQ_LINE R_HOST "Upgrade: h2c\r\n" R_CONN R_KEY R_VER END,
       WS_E_no_upgrade_websocket, "Upgrade: h2c"},
      {REQ_LINE R_HOST "Upgrade: websocket/13\r\n" R_CONN R_KEY R_VER END,
       WS_E_no_upgrade_websocket, "Upgrade: websocket/13"},
      {REQ_LINE R_HOST R_UPG R_CONN R_VER END, WS_E_no_sec_key, "no key"},
      {REQ_LINE R_HOST R_UPG R_CONN "Sec-WebSocket-Key: !!\r\n" R_VER END,
       WS_E_bad_sec_key, "key !! (Beast accepts it)"},
      {REQ_LINE R_HOST R_UPG R_CONN
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n" R_VER END,
       WS_E_bad_sec_key, "key with stray bits"},
      {REQ_LINE R_HOST R_UPG R_CONN "Sec-WebSocket-Key:\r\n" R_VER END,
       WS_E_bad_sec_key, "empty key"},
      {REQ_LINE R_HOST R_UPG R_CONN R_KEY R_KEY R_VER END, WS_E_bad_sec_key,
       "two keys"},
      {REQ_LINE R_HOST R_UPG R_CONN R_KEY END, WS_E_no_sec_version,
       "no version"},
      {REQ_LINE R_HOST R_UPG R_CONN R_KEY "Sec-WebSocket-Version: 8\r\n" END,
       WS_E_bad_sec_version, "version 8"},
      {REQ_LINE R_HOST R_UPG R_CONN R_KEY
       "Sec-WebSocket-Version: 13, 8\r\n" END,
       WS_E_bad_sec_version, "version list"},
      {REQ_LINE R_HOST R_UPG R_CONN R_KEY "Sec-WebSocket-Version: 013\r\n" END,
       WS_E_bad_sec_version, "version 013"},
      {REQ_LINE R_HOST R_UPG R_CONN R_KEY R_VER R_VER END, WS_E_bad_sec_version,
       "two versions"},
      /* Several failures: the first in Beast's order wins. */
      {"POST / HTTP/1.0\r\n\r\n", WS_E_bad_http_version,
       "version before method"},
      {"POST / HTTP/1.1\r\n\r\n", WS_E_bad_method, "method before Host"},
      {"GET / HTTP/1.1\r\n\r\n", WS_E_no_host, "Host before Connection"},
      {REQ_LINE R_HOST END, WS_E_no_connection, "Connection before Upgrade"},
      {REQ_LINE R_HOST "Connection: close\r\n" END, WS_E_no_connection_upgrade,
       "upgrade token before Upgrade"},
      {REQ_LINE R_HOST R_CONN END, WS_E_no_upgrade, "Upgrade before key"},
      {REQ_LINE R_HOST R_CONN "Upgrade: x\r\n" END, WS_E_no_upgrade_websocket,
       "websocket token before key"},
      {REQ_LINE R_HOST R_CONN R_UPG END, WS_E_no_sec_key, "key before version"},
      {REQ_LINE R_HOST R_CONN R_UPG "Sec-WebSocket-Key: x\r\n"
                                    "Sec-WebSocket-Version: 8\r\n" END,
       WS_E_bad_sec_key, "bad key before bad version"},
  };
  size_t i;
  for (i = 0; i < sizeof c / sizeof c[0]; i++) {
    ws_header f[CAP];
    ws_http_head h = head(c[i].s, f, 1);
    int r = ws_server_check_request(&h);
    IS_INT(r, c[i].err, "%s: %s", c[i].what,
           c[i].err ? ws_err_name(c[i].err) : "ok");
  }
}

TEST(server_error_status) {
  IS_INT(ws_server_error_status(WS_E_bad_sec_version), 426,
         "bad_sec_version answers 426");
  IS_INT(ws_server_error_status(WS_E_bad_sec_key), 400, "bad_sec_key 400");
  IS_INT(ws_server_error_status(WS_E_no_host), 400, "no_host 400");
  IS_INT(ws_server_error_status(WS_E_bad_http_version), 400,
         "bad_http_version 400");
}

/* ---------------------------------------------------------------- client */

#define RES_LINE "HTTP/1.1 101 Switching Protocols\r\n"
#define S_UPG "Upgrade: websocket\r\n"
#define S_CONN "Connection: Upgrade\r\n"
#define S_ACC "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

static const char rfc_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

struct res_case {
  const char *s;
  int err;
  const char *chosen;
  const char *what;
};

TEST(client_check) {
  static const ws_str offered[] = {{"superchat", 9}, {"chat", 4}};
  static const struct res_case c[] = {
      {RES_LINE S_UPG S_CONN S_ACC END, 0, "", "the RFC response"},
      {"HTTP/1.1 101 \r\nupgrade: WEBSOCKET\r\nconnection: upgrade\r\n"
       "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
       0, "", "names and tokens in any case, empty reason"},
      {RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol: chat\r\n" END, 0,
       "chat", "an offered subprotocol"},
      {RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol: superchat\r\n" END,
       0, "superchat", "the other offered subprotocol"},
      /* One failure each. */
      {"HTTP/1.1 403 Forbidden\r\n" S_UPG S_CONN S_ACC END,
       WS_E_upgrade_declined, "", "403"},
      {"HTTP/1.1 200 OK\r\n\r\n", WS_E_upgrade_declined, "", "200"},
      {"HTTP/1.0 101 Switching Protocols\r\n" S_UPG S_CONN S_ACC END,
       WS_E_bad_http_version, "", "HTTP/1.0"},
      {RES_LINE S_UPG S_ACC END, WS_E_no_connection, "", "no Connection"},
      {RES_LINE S_UPG "Connection: close\r\n" S_ACC END,
       WS_E_no_connection_upgrade, "", "Connection: close"},
      {RES_LINE S_CONN S_ACC END, WS_E_no_upgrade, "", "no Upgrade"},
      {RES_LINE "Upgrade: h2c\r\n" S_CONN S_ACC END, WS_E_no_upgrade_websocket,
       "", "Upgrade: h2c"},
      {RES_LINE S_UPG S_CONN END, WS_E_no_sec_accept, "", "no accept"},
      {RES_LINE S_UPG S_CONN
       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n" END,
       WS_E_bad_sec_accept, "", "accept one character short"},
      {RES_LINE S_UPG S_CONN
       "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n" END,
       WS_E_bad_sec_accept, "", "accept in another case"},
      {RES_LINE S_UPG S_CONN S_ACC S_ACC END, WS_E_bad_sec_accept, "",
       "two accept fields"},
      {RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol: other\r\n" END,
       WS_E_bad_subprotocol, "", "a subprotocol not offered"},
      {RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol: Chat\r\n" END,
       WS_E_bad_subprotocol, "", "subprotocols are case-sensitive"},
      {RES_LINE S_UPG S_CONN S_ACC
       "Sec-WebSocket-Protocol: chat, superchat\r\n" END,
       WS_E_bad_subprotocol, "", "a list of subprotocols"},
      {RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol: chat\r\n"
                                   "Sec-WebSocket-Protocol: chat\r\n" END,
       WS_E_bad_subprotocol, "", "two subprotocol fields"},
      {RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol:\r\n" END,
       WS_E_bad_subprotocol, "", "an empty subprotocol"},
      {RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol: cha\r\n" END,
       WS_E_bad_subprotocol, "", "a prefix of an offered one"},
      /* Several failures: the first in Beast's order wins. */
      {"HTTP/1.0 403 Forbidden\r\n\r\n", WS_E_upgrade_declined, "",
       "status before version"},
      {"HTTP/1.0 101 X\r\n\r\n", WS_E_bad_http_version, "",
       "version before Connection"},
      {RES_LINE END, WS_E_no_connection, "", "Connection before Upgrade"},
      {RES_LINE "Connection: x\r\n" END, WS_E_no_connection_upgrade, "",
       "upgrade token before Upgrade"},
      {RES_LINE S_CONN "Upgrade: x\r\n" END, WS_E_no_upgrade_websocket, "",
       "websocket token before accept"},
      {RES_LINE S_UPG S_CONN "Sec-WebSocket-Protocol: x\r\n" END,
       WS_E_no_sec_accept, "", "accept before subprotocol"},
      {RES_LINE S_UPG S_CONN "Sec-WebSocket-Accept: x\r\n"
                             "Sec-WebSocket-Protocol: x\r\n" END,
       WS_E_bad_sec_accept, "", "bad accept before bad subprotocol"},
  };
  size_t i;
  for (i = 0; i < sizeof c / sizeof c[0]; i++) {
    ws_header f[CAP];
    ws_http_head h = head(c[i].s, f, 0);
    ws_str chosen = {"junk", 4};
    int r = ws_client_check_response(&h, rfc_accept, offered, 2, &chosen);
    IS_INT(r, c[i].err, "%s: %s", c[i].what,
           c[i].err ? ws_err_name(c[i].err) : "ok");
    IS_MEM(chosen.p, chosen.n, c[i].chosen, strlen(c[i].chosen),
           "%s: chosen is '%s'", c[i].what, c[i].chosen);
  }
}

TEST(client_subprotocol_offers) {
  ws_header f[CAP];
  ws_http_head h = head(
      RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol: chat\r\n" END, f, 0);
  ws_http_head none = head(RES_LINE S_UPG S_CONN S_ACC END, f + 8, 0);
  static const ws_str one[] = {{"chat", 4}};
  static const ws_str empty[] = {{"", 0}};
  char blank[WS_ACCEPT_LEN + 1] = "";
  ws_str chosen;
  IS_INT(ws_client_check_response(&h, rfc_accept, NULL, 0, &chosen),
         WS_E_bad_subprotocol, "a subprotocol when none was offered");
  IS_INT(ws_client_check_response(&h, rfc_accept, one, 1, &chosen), 0,
         "the only one offered");
  OK(chosen.p == h.headers[3].value.p, "chosen points at the field value");
  IS_INT(ws_client_check_response(&h, rfc_accept, one, 1, NULL), 0,
         "chosen may be NULL");
  IS_INT(ws_client_check_response(&none, rfc_accept, one, 1, &chosen), 0,
         "the server may choose none");
  IS_INT(chosen.n, 0, "chosen is empty then");
  IS_INT(ws_client_check_response(&none, rfc_accept, NULL, 0, &chosen), 0,
         "none offered, none chosen");
  h = head(RES_LINE S_UPG S_CONN S_ACC "Sec-WebSocket-Protocol:\r\n" END, f, 0);
  IS_INT(ws_client_check_response(&h, rfc_accept, empty, 1, &chosen),
         WS_E_bad_subprotocol, "an empty offer never matches");
  IS_INT(ws_client_check_response(&none, blank, NULL, 0, &chosen),
         WS_E_bad_sec_accept, "an empty expected accept matches nothing");
}

TEST(client_check_accept_roundtrip) {
  /* The accept a server computes for a generated key is what the client
   * expects. */
  struct counter c = {7, 0, 0};
  ws_rng rng = {&c, counter_fill};
  char key[WS_KEY_LEN + 1], acc[WS_ACCEPT_LEN + 1];
  char res[256];
  ws_header f[CAP];
  ws_http_head h;
  ws_header out[3] = {{{"Upgrade", 7}, {"websocket", 9}},
                      {{"Connection", 10}, {"Upgrade", 7}},
                      {{"Sec-WebSocket-Accept", 20}, {NULL, WS_ACCEPT_LEN}}};
  size_t n;
  IS_INT(ws_key_generate(&rng, key), 0, "key");
  IS_INT(ws_accept_compute(key, WS_KEY_LEN, acc), 0, "accept");
  out[2].value.p = acc;
  n = ws_http_write_response(res, sizeof res - 1, 101,
                             (ws_str){"Switching Protocols", 19}, 11, out, 3);
  res[n] = '\0';
  h = head(res, f, 0);
  IS_INT(ws_client_check_response(&h, acc, NULL, 0, NULL), 0,
         "a written 101 passes the client check");
}

int main(void) {
  RUN(key_generate);
  RUN(key_valid);
  RUN(accept_compute);
  RUN(server_check);
  RUN(server_error_status);
  RUN(client_check);
  RUN(client_subprotocol_offers);
  RUN(client_check_accept_roundtrip);
  return tap_done();
}
