/*
 * luvws core: the one list of error names.
 *
 * Every error the library reports has a stable name (a Lua string), a message
 * that says what went wrong and, where it helps, what to do, and a condition
 * (handshake_failed, protocol_violation or none). The list below generates
 * the enum, ws_err_name(), ws_strerror() and ws_err_condition(); the Lua
 * binding builds ws.errors from it.
 *
 * The names of Beast's websocket::error values are kept exactly; the others
 * are luvws's own (see DESIGN.md, "Error values").
 */
#ifndef WS_ERRORS_H
#define WS_ERRORS_H

enum ws_condition {
  WS_COND_NONE = 0,
  WS_COND_HANDSHAKE = 1, /* handshake_failed */
  WS_COND_PROTOCOL = 2   /* protocol_violation */
};

/* X(name, condition, message) */
#define WS_ERROR_MAP(X)                                                       \
  /* Beast's websocket::error names. */                                      \
  X(closed, NONE, "the WebSocket stream was closed cleanly at both ends")     \
  X(buffer_overflow, NONE, "the data did not fit in the buffer given")        \
  X(partial_deflate_block, NONE,                                              \
    "the compressor produced an incomplete deflate block")                   \
  X(message_too_big, NONE,                                                    \
    "the message is larger than read_message_max; raise the option if the "  \
    "peer is trusted")                                                        \
  X(bad_http_version, HANDSHAKE, "the upgrade was not HTTP/1.1")              \
  X(bad_method, HANDSHAKE, "the upgrade request method was not GET")          \
  X(no_host, HANDSHAKE, "the upgrade request has no Host field")              \
  X(no_connection, HANDSHAKE, "the upgrade has no Connection field")          \
  X(no_connection_upgrade, HANDSHAKE,                                         \
    "the Connection field does not contain the upgrade token")               \
  X(no_upgrade, HANDSHAKE, "the upgrade has no Upgrade field")                \
  X(no_upgrade_websocket, HANDSHAKE,                                          \
    "the Upgrade field does not contain the websocket token")                \
  X(no_sec_key, HANDSHAKE, "the upgrade request has no Sec-WebSocket-Key")    \
  X(bad_sec_key, HANDSHAKE,                                                   \
    "the Sec-WebSocket-Key is not the base64 form of 16 bytes")              \
  X(no_sec_version, HANDSHAKE,                                                \
    "the upgrade request has no Sec-WebSocket-Version")                      \
  X(bad_sec_version, HANDSHAKE,                                               \
    "the Sec-WebSocket-Version is not 13, the only version supported")       \
  X(no_sec_accept, HANDSHAKE, "the upgrade response has no Sec-WebSocket-Accept") \
  X(bad_sec_accept, HANDSHAKE,                                                \
    "the Sec-WebSocket-Accept does not match the key that was sent")         \
  X(upgrade_declined, HANDSHAKE,                                              \
    "the server declined the upgrade; its status, headers and body are in "  \
    "the response table")                                                     \
  X(bad_opcode, PROTOCOL, "a frame had a reserved opcode")                    \
  X(bad_data_frame, PROTOCOL,                                                 \
    "a new data frame arrived while a fragmented message was unfinished")    \
  X(bad_continuation, PROTOCOL,                                               \
    "a continuation frame arrived with no message to continue")              \
  X(bad_reserved_bits, PROTOCOL,                                              \
    "a frame had reserved bits set that no extension allows")                \
  X(bad_control_fragment, PROTOCOL, "a control frame was fragmented")         \
  X(bad_control_size, PROTOCOL,                                               \
    "a control frame carried more than 125 bytes")                           \
  X(bad_unmasked_frame, PROTOCOL, "a client frame was not masked")            \
  X(bad_masked_frame, PROTOCOL, "a server frame was masked")                  \
  X(bad_size, PROTOCOL, "a frame length was not in its shortest form or "     \
                        "had the top bit set")                               \
  X(bad_frame_payload, PROTOCOL, "a text message was not valid UTF-8")        \
  X(bad_close_code, PROTOCOL, "a close frame carried a code not valid on "    \
                              "the wire")                                    \
  X(bad_close_size, PROTOCOL, "a close frame carried exactly one byte")       \
  X(bad_close_payload, PROTOCOL, "a close reason was not valid UTF-8")        \
  /* luvws names. */                                                          \
  X(operation_aborted, NONE,                                                  \
    "the stream closed or failed before the operation could finish")         \
  X(operation_in_progress, NONE,                                              \
    "an operation of this kind is already pending on the stream")            \
  X(timeout, NONE, "the handshake, idle or close timeout ran out")            \
  X(queue_full, NONE,                                                         \
    "the write queue already holds max_queued_bytes; wait for writes to "    \
    "complete (buffered_amount) before writing more")                        \
  X(bad_decorator, HANDSHAKE,                                                 \
    "a decorator raised an error or changed an upgrade field")              \
  X(bad_subprotocol, HANDSHAKE,                                               \
    "the server chose a subprotocol the client did not offer")               \
  X(bad_extension, HANDSHAKE,                                                 \
    "the server answered an extension or parameter the client did not "      \
    "offer")                                                                  \
  X(header_too_large, HANDSHAKE,                                              \
    "the HTTP upgrade head is larger than max_header_bytes")                 \
  X(bad_http_head, HANDSHAKE, "the HTTP upgrade head is malformed")           \
  X(bad_compressed_data, PROTOCOL,                                            \
    "a compressed message could not be inflated")                            \
  X(no_memory, NONE, "out of memory")                                         \
  X(tls_unknown_ca, NONE,                                                     \
    "the peer's certificate is not signed by a trusted CA; pass its CA as "  \
    "the ca option")                                                          \
  X(tls_cert_expired, NONE,                                                   \
    "the peer's certificate has expired or is not yet valid")                \
  X(tls_hostname_mismatch, NONE,                                              \
    "the peer's certificate is not valid for the host name that was "        \
    "connected to")                                                           \
  X(tls_bad_certificate, NONE,                                                \
    "the peer's certificate is malformed, missing or rejected")              \
  X(tls_protocol_version, NONE,                                               \
    "the peers share no TLS version; check min_version on both sides")      \
  X(tls_handshake_failed, NONE,                                               \
    "the TLS handshake failed (no shared cipher, or a malformed message)")   \
  X(tls_bad_record, NONE,                                                     \
    "a TLS record was corrupt, or the bytes were not TLS at all (plain HTTP " \
    "to a TLS port?)")                                                        \
  X(tls_alert, NONE, "the peer sent a fatal TLS alert")

enum ws_error {
  WS_OK = 0,
  WS__ERROR_BASE = -1000,
#define WS__ENUM(name, cond, msg) WS_E_##name,
  WS_ERROR_MAP(WS__ENUM)
#undef WS__ENUM
  WS__ERROR_END
};

/* The stable name of err ("bad_close_code"), or NULL if err is not one. */
const char *ws_err_name(int err);

/* A message for err that a user can act on, or NULL if err is not one. */
const char *ws_strerror(int err);

/* WS_COND_HANDSHAKE, WS_COND_PROTOCOL or WS_COND_NONE. */
int ws_err_condition(int err);

/* The condition's name ("handshake_failed"), or NULL for WS_COND_NONE. */
const char *ws_condition_name(int cond);

/* Calls fn for every error in the list, in order. */
void ws_err_foreach(void (*fn)(void *ud, int err), void *ud);

#endif
