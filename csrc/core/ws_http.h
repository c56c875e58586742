/*
 * luvws core: HTTP/1.1 upgrade heads (parse, serialize) and the WebSocket
 * opening handshake (key, accept, request and response checks, subprotocol
 * and permessage-deflate negotiation).
 *
 * The parser is in the style of picohttpparser: it allocates nothing,
 * copies nothing, fills a caller-given array of fields whose pointers point
 * into the caller's buffer, and can be called again with more bytes.
 */
#ifndef WS_HTTP_H
#define WS_HTTP_H

#include "ws_core.h"

/* ------------------------------------------------------------- HTTP heads */

typedef struct ws_header {
  ws_str name;
  ws_str value;
} ws_header;

typedef struct ws_http_head {
  ws_str method;       /* request only */
  ws_str target;       /* request only */
  int status;          /* response only */
  ws_str reason;       /* response only; may be empty */
  int version;         /* 10 for HTTP/1.0, 11 for HTTP/1.1 */
  ws_header *headers;  /* the caller's array */
  size_t num_headers;  /* in: the array's capacity; out: fields found */
} ws_http_head;

/* Default limits. */
#define WS_HTTP_MAX_HEAD_BYTES 8192
#define WS_HTTP_MAX_FIELDS 100

/* Parses an HTTP/1.x request head from buf[0..len).
 *
 * Returns the length of the head in bytes (through the empty line that ends
 * it) when buf holds a whole head; 0 when more bytes are needed; or
 *   WS_E_header_too_large  no whole head within the first max_bytes bytes,
 *                          or more fields than h->num_headers;
 *   WS_E_bad_http_head     the bytes cannot be the start of a request head
 *                          (bad request line, bad field name, a bare CR or
 *                          LF where CRLF belongs, obs-fold, control bytes);
 *   WS_E_bad_http_version  a well-formed version other than HTTP/1.0 or 1.1.
 * An error is reported as soon as the bytes given show it, even before the
 * head is complete. prev_len is the len of the previous call on the same
 * buffer (0 the first time); it only saves work. Field values have leading
 * and trailing whitespace removed. */
int ws_http_parse_request(const char *buf, size_t len, size_t prev_len,
                          size_t max_bytes, ws_http_head *h);

/* The same for a response head ("HTTP/1.1 101 Switching Protocols"). */
int ws_http_parse_response(const char *buf, size_t len, size_t prev_len,
                           size_t max_bytes, ws_http_head *h);

/* True if a and b are equal ignoring ASCII case. */
int ws_str_ieq(ws_str a, const char *b);

/* The first field named name (any case), or NULL. */
const ws_header *ws_http_find(const ws_http_head *h, const char *name);

/* Number of fields named name (any case). */
size_t ws_http_count(const ws_http_head *h, const char *name);

/* True if some field named name holds token as one element of its
 * comma-separated list (any case; elements are trimmed of whitespace). */
int ws_http_has_token(const ws_http_head *h, const char *name,
                      const char *token);

/* Steps through a comma-separated list: sets *out to the next non-empty
 * element, trimmed, advances *p, and returns 1; returns 0 at the end. */
int ws_http_next_element(const char **p, const char *end, ws_str *out);

/* True if name is an RFC 7230 token and value holds no CR, LF or NUL (and
 * no other control byte but HTAB): a field that can be written safely. */
int ws_http_field_valid(ws_str name, ws_str value);

/* Writes a request head "METHOD SP target SP HTTP/1.x CRLF fields CRLF".
 * Returns the number of bytes the head takes; writes only if that is
 * <= cap (so a first call with cap 0 sizes the buffer). Fields are written
 * in order with their names' case kept; the caller checks them with
 * ws_http_field_valid first. version is 10 or 11. */
size_t ws_http_write_request(char *out, size_t cap, ws_str method,
                             ws_str target, int version, const ws_header *f,
                             size_t n);

/* The same for a response head "HTTP/1.x SP status SP reason CRLF ...". */
size_t ws_http_write_response(char *out, size_t cap, int status,
                              ws_str reason, int version, const ws_header *f,
                              size_t n);

/* The standard reason phrase for status ("Switching Protocols"), or "". */
const char *ws_http_reason(int status);

/* -------------------------------------------------------------- handshake */

#define WS_KEY_LEN 24
#define WS_ACCEPT_LEN 28
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Writes a new Sec-WebSocket-Key (base64 of 16 random bytes) and a NUL.
 * Returns 0, or WS_E_no_memory if the rng fails. */
int ws_key_generate(const ws_rng *rng, char out[WS_KEY_LEN + 1]);

/* True if key is the base64 of exactly 16 bytes (24 characters, "=="
 * padding, and no bits set past the 16th byte). */
int ws_key_valid(const char *key, size_t n);

/* Writes the Sec-WebSocket-Accept for key (base64 of the SHA-1 of key and
 * WS_GUID, computed with wolfCrypt) and a NUL. Returns 0 or
 * WS_E_no_memory. */
int ws_accept_compute(const char *key, size_t n,
                      char out[WS_ACCEPT_LEN + 1]);

/* Server: checks an upgrade request in Beast's order and returns the first
 * failure or 0: bad_http_version, bad_method, no_host, no_connection,
 * no_connection_upgrade, no_upgrade, no_upgrade_websocket, no_sec_key,
 * bad_sec_key (luvws: must be base64 of 16 bytes), no_sec_version,
 * bad_sec_version. */
int ws_server_check_request(const ws_http_head *req);

/* Server: the status that answers a failed check: 426 for bad_sec_version
 * (the response then carries "Sec-WebSocket-Version: 13"), else 400. The
 * body is ws_strerror(err). */
int ws_server_error_status(int err);

/* Client: checks an upgrade response in Beast's order and returns the
 * first failure or 0: upgrade_declined (any status but 101),
 * bad_http_version, no_connection, no_connection_upgrade, no_upgrade,
 * no_upgrade_websocket, no_sec_accept, bad_sec_accept (accept is what
 * ws_accept_compute gave for the key that was sent). Then luvws's own
 * check: bad_subprotocol if the response names a subprotocol that is not
 * one of offered[0..noffered), names more than one, or names one when none
 * was offered. *chosen gets the chosen subprotocol (empty if none). */
int ws_client_check_response(const ws_http_head *res,
                             const char accept[WS_ACCEPT_LEN + 1],
                             const ws_str *offered, size_t noffered,
                             ws_str *chosen);

/* ------------------------------------------------- permessage-deflate */

/* Local settings, with Beast's names and defaults (see
 * ws_pmd_config_default). */
typedef struct ws_pmd_config {
  int server_enable;              /* offer/accept as server; default 0 */
  int client_enable;              /* offer as client; default 0 */
  int server_max_window_bits;     /* 9..15, default 15 */
  int client_max_window_bits;     /* 9..15, default 15 */
  int server_no_context_takeover; /* default 0 */
  int client_no_context_takeover; /* default 0 */
  int comp_level;                 /* 0..9, default 8 */
  int mem_level;                  /* 1..9, default 4 */
  size_t msg_size_threshold;      /* default 0 */
} ws_pmd_config;

/* What was negotiated. */
typedef struct ws_pmd_params {
  int active;
  int server_max_window_bits;
  int client_max_window_bits;
  int server_no_context_takeover;
  int client_no_context_takeover;
} ws_pmd_params;

void ws_pmd_config_default(ws_pmd_config *cfg);

/* Client: writes the Sec-WebSocket-Extensions value to offer ("" when
 * client_enable is off), snprintf-style: returns the length needed and
 * writes (with a NUL) only if it fits in cap. Beast's shape:
 * "permessage-deflate; server_max_window_bits=15; client_max_window_bits=15"
 * plus the no_context_takeover flags that are set. */
size_t ws_pmd_offer(const ws_pmd_config *cfg, char *out, size_t cap);

/* Client: checks every Sec-WebSocket-Extensions field of the response
 * against the offer. Returns 0 with out->active set when the server
 * accepted, 0 with out->active == 0 when it answered no extension, or
 * WS_E_bad_extension when it answered an extension or a parameter that was
 * not offered, or a value that cannot be honoured (cfg NULL or client_enable
 * off: any extension at all is bad_extension). client_max_window_bits=8 is
 * accepted: the engine then compresses with literals only (ws_conn.h). */
int ws_pmd_client_accept(const ws_pmd_config *cfg, const ws_http_head *res,
                         ws_pmd_params *out);

/* Server: takes the first acceptable permessage-deflate offer of the
 * request (Beast's rules: bad or unknown parameters decline that offer;
 * unlike Beast, an offer of server_max_window_bits=8 is declined rather
 * than answered with 9, which RFC 7692 §7.1.2.1 forbids) and
 * writes the response value into resp (snprintf-style, *resp_len = length
 * needed). Returns 0; out->active is 0 when compression is declined
 * (server_enable off, no offer, or no acceptable one), and then resp is "". */
int ws_pmd_server_negotiate(const ws_pmd_config *cfg, const ws_http_head *req,
                            ws_pmd_params *out, char *resp, size_t cap,
                            size_t *resp_len);

#endif
