/*
 * luvws core: the WebSocket connection engine (after the opening
 * handshake). Bytes in, events out; messages in, bytes out.
 *
 * Receiving: the caller feeds every byte read from the peer to
 * ws_conn_recv(); the engine parses frames, unmasks in place, checks every
 * RFC 6455 rule, validates UTF-8 incrementally, enforces read_message_max,
 * and reports message data and control frames through callbacks. It never
 * keeps the caller's buffer: partial frame headers and control payloads are
 * kept inside the engine, message data is handed out as it arrives.
 *
 * Sending: the caller queues messages and control frames; the engine keeps
 * one ordered output queue of units (a message, a write_some part or a
 * control frame). ws_conn_out_iov() shows the bytes to write next,
 * ws_conn_out_consume() says how many were written. Control frames go ahead
 * of every unit not yet started (never inside one). A unit completes through
 * on_sent(token, status) once all its bytes were consumed, or with
 * WS_E_operation_aborted if it is dropped.
 *
 * Server frames reference the caller's payload (zero copy: the caller keeps
 * it alive until on_sent); client frames are masked into engine memory.
 *
 * Peer faults become close frames: on a protocol error the engine drops
 * every queued unit not yet started, queues a close frame with 1002, 1007
 * or 1009 (1011 when memory runs out inside a compressed message), and
 * ws_conn_recv() returns the error.
 *
 * permessage-deflate (RFC 7692), once ws_conn_set_pmd() turned it on:
 *   - Sending: a message sent with WS_SEND_COMPRESS whose first part is at
 *     least msg_size_threshold bytes is compressed; each part is deflated
 *     when it is queued (Z_SYNC_FLUSH, so a write_some part never waits
 *     for the next one), the 00 00 ff ff that ends the last part is
 *     stripped, and RSV1 is set on the first frame of the message only.
 *     Compressed frames are in engine memory, not the caller's (the
 *     caller may still free data only at on_sent, as always).
 *   - Receiving: RSV1 on the first frame of a text or binary message marks
 *     it compressed; RSV1 anywhere else, or without permessage-deflate, is
 *     bad_reserved_bits. The payload is inflated in pieces of at most
 *     16 KiB, each checked (read_message_max counts inflated bytes; text is
 *     UTF-8-checked) before on_data sees it, so a compression bomb stops
 *     at the limit (message_too_big, 1009) holding no more than one piece.
 *     Inflated pieces come without WS_DATA_INPLACE: they live in the
 *     engine's buffer only during on_data. Data that does not inflate is
 *     bad_compressed_data (close 1007: the frames are fine, their payload
 *     is not consistent with the message, as with bad UTF-8). Faults are
 *     reported in the order of the inflated bytes, however the input was
 *     split. Control frames may come between the fragments of a
 *     compressed message.
 *   - Final blocks: a deflate block with BFINAL set ends the deflate
 *     stream but not the message, nor the sliding window (RFC 7692
 *     §7.2.3.4 and §7.2.2): bytes after it decode as a new stream with the
 *     window kept, and a final block that ends the payload needs nothing
 *     more (the 00 00 ff ff is then not inflated).
 *   - Truncated messages: a message that, with 00 00 ff ff appended, does
 *     not end on a deflate block boundary (or at the end of a final block)
 *     was cut or corrupted: every conforming compressor ends one there
 *     (§7.2.1). It is bad_compressed_data, not delivered as complete:
 *     what follows it in the stream (the next message, with context
 *     takeover) could not be decoded correctly anyway. A payload that
 *     already ends on a block boundary at a byte edge (a sender that kept
 *     its 00 00 ff ff) is complete without the tail, which would only
 *     start a block that never ends. A compressed message with an empty
 *     payload is an empty message.
 *   - Window bits: we compress with our direction's negotiated bits and
 *     inflate with the peer's. zlib cannot deflate with 8 bits: it
 *     silently uses 9 (that its matches then stay within 250 bytes is an
 *     implementation detail, not a promise), so when 8 was negotiated for
 *     our direction, messages are deflated with Z_HUFFMAN_ONLY: literals
 *     only, no back-reference at all, valid for any window (about 55-65%
 *     of the size of JSON-like text, against 15-25% with matches). The
 *     peer's 8 is inflated with 9 bits (a larger window decodes a stream
 *     made with a smaller one). zlib refuses a match past the window only
 *     when the bytes it names are not in the output of the same inflate
 *     call, so a peer that breaks its negotiated window is refused or
 *     decoded correctly, depending on how its data arrives; a peer that
 *     keeps it always decodes.
 *   - Memory: zlib state exists only on a connection that uses it, made on
 *     first use (the compressor at the first compressed send, the
 *     decompressor at the first compressed message received), allocated
 *     through the engine's allocator, and freed with the engine, on
 *     abort, on failure, and for each direction once it can carry no more
 *     messages (close sent / received). With no_context_takeover for a
 *     direction, that direction's stream is freed after every message; the
 *     16 KiB inflate buffer exists only while a compressed message is
 *     being read. Measured through the allocator: with window 15 and
 *     mem_level 4 (the defaults) the compressor holds 142 KiB (its window
 *     and hash chains: 2^(bits+2) + 2^(mem_level+9) bytes, plus 6 KiB)
 *     and the decompressor 39 KiB (7 KiB of state and a 2^bits window);
 *     mem_level 8 makes the compressor 262 KiB; window 10 makes them
 *     18 KiB and 8 KiB. With context takeover an idle connection keeps
 *     what its directions used; without, it keeps nothing.
 */
#ifndef WS_CONN_H
#define WS_CONN_H

#include "ws_core.h"
#include "ws_http.h"

typedef struct ws_conn ws_conn;

enum ws_role { WS_ROLE_CLIENT = 0, WS_ROLE_SERVER = 1 };

/* Flags of on_data. */
#define WS_DATA_TEXT 0x1  /* the message is text (else binary) */
#define WS_DATA_FIRST 0x2 /* first chunk of a message */
#define WS_DATA_FIN 0x4   /* last chunk of a message: it is complete */
/* data lies in the buffer given to ws_conn_recv (unmasked in place) and
 * stays valid as long as the caller keeps that buffer; without it (inflated
 * data, in the engine's buffer) it is valid only during the call. */
#define WS_DATA_INPLACE 0x8

/* Flags of ws_conn_send. */
#define WS_SEND_FIN 0x1      /* this call ends the message */
#define WS_SEND_COMPRESS 0x2 /* compress if permessage-deflate is active */

typedef struct ws_conn_config {
  int role;                  /* WS_ROLE_CLIENT or WS_ROLE_SERVER */
  uint64_t read_message_max; /* bytes after inflation; 0 = no limit;
                                default 16 MiB */
  size_t write_buffer_bytes; /* auto-fragment size, >= 8; default 4096 */
  int auto_fragment;         /* default 1 */
  int secure_prng;           /* masks from rng (1) or a fast PRNG seeded
                                from it (0); default 1 */
  const ws_allocator *alloc; /* NULL = libc */
  ws_rng rng;                /* required for the client role */
} ws_conn_config;

typedef struct ws_conn_callbacks {
  /* Message payload, unmasked (and inflated), in order, as it arrives.
   * flags: WS_DATA_TEXT, WS_DATA_FIRST, WS_DATA_FIN, WS_DATA_INPLACE. len
   * may be 0 (an empty message is one call with FIRST|FIN). Text has been
   * validated up to the end of this chunk. data is valid only during the
   * call, unless WS_DATA_INPLACE says it is in the caller's buffer. Return
   * 0, or a negative error to make ws_conn_recv stop and return it. */
  int (*on_data)(void *user, const uint8_t *data, size_t len,
                 unsigned flags);

  /* A ping, pong or close frame arrived and was checked. For a close,
   * payload is the whole close payload (code and reason); use
   * ws_conn_peer_close() for the parsed parts. The engine has already
   * queued the automatic reply (the pong for a ping, the echo for a close)
   * when this is called. Return 0 or a negative error. */
  int (*on_control)(void *user, int opcode, const uint8_t *payload,
                    size_t len);

  /* A queued unit completed: status 0 when all its bytes were consumed,
   * WS_E_operation_aborted when it was dropped. token is what was given
   * when it was queued (automatic replies have token NULL and are not
   * reported). */
  void (*on_sent)(void *user, void *token, int status);
} ws_conn_callbacks;

void ws_conn_config_default(ws_conn_config *cfg, int role);

/* Creates an engine. Returns NULL if out of memory or cfg is invalid.
 * cfg->alloc and cb are kept by pointer: they must outlive the engine
 * (static ones usually do). */
ws_conn *ws_conn_new(const ws_conn_config *cfg, const ws_conn_callbacks *cb,
                     void *user);

/* Frees the engine. Every unit still queued completes with
 * WS_E_operation_aborted first. */
void ws_conn_free(ws_conn *c);

/* Changes limits after creation (read_message_max, write_buffer_bytes,
 * auto_fragment, secure_prng); role, alloc and rng are kept. Returns 0 or
 * WS_E_no_memory. */
int ws_conn_reconfigure(ws_conn *c, const ws_conn_config *cfg);

/* Turns permessage-deflate on with the negotiated params (after the
 * handshake, before any frame); inactive params (or p NULL) turn it off.
 * cfg gives comp_level, mem_level and msg_size_threshold (NULL: the
 * defaults of ws_pmd_config_default). Allocates nothing (zlib state comes
 * on first use). Returns 0, WS_E_bad_extension if the params cannot be
 * used (window bits outside 8..15, comp_level outside 0..9, mem_level
 * outside 1..9), or WS_E_operation_in_progress when called from a
 * callback of ws_conn_recv. */
int ws_conn_set_pmd(ws_conn *c, const ws_pmd_params *p,
                    const ws_pmd_config *cfg);

/* The negotiated permessage-deflate params (active == 0 when off). */
void ws_conn_get_pmd(const ws_conn *c, ws_pmd_params *p);

/* ---------------------------------------------------------------- input */

/* Feeds len received bytes (unmasked in place, so data is writable).
 * Returns 0 when all were processed, or a negative error:
 *   - a protocol error (bad_opcode, ..., bad_close_payload,
 *     message_too_big, bad_compressed_data): the failing close frame is
 *     queued and the engine is failed; later calls return the same error;
 *   - WS_E_no_memory;
 *   - an error returned by a callback (passed through; the engine state
 *     stays consistent and later bytes may be fed again, but the rest of
 *     this buffer is not processed, which a compressed message in
 *     progress cannot recover from).
 * After a close frame arrived, later bytes are ignored (returns 0). */
int ws_conn_recv(ws_conn *c, uint8_t *data, size_t len);

/* --------------------------------------------------------------- output */

/* Queues message data. The first call of a message uses opcode
 * (WS_OP_TEXT or WS_OP_BINARY); while a message is unfinished (a previous
 * call without WS_SEND_FIN) later calls send continuation frames and
 * opcode is ignored. With auto_fragment, the data is split into frames of
 * at most write_buffer_bytes payload. token comes back in on_sent. The
 * caller keeps data alive and unchanged until on_sent(token) (the server
 * role sends it without copying). Returns 0, or
 *   WS_E_operation_aborted  a close was sent, or the engine failed;
 *   WS_E_no_memory. */
int ws_conn_send(ws_conn *c, int opcode, const uint8_t *data, size_t len,
                 unsigned flags, void *token);

/* Queues a ping or pong (payload <= 125 bytes, copied). Control frames go
 * ahead of every unit not yet started. Returns 0,
 * WS_E_bad_control_size, WS_E_operation_aborted (close sent, or failed) or
 * WS_E_no_memory. */
int ws_conn_ping(ws_conn *c, const uint8_t *payload, size_t len,
                 void *token);
int ws_conn_pong(ws_conn *c, const uint8_t *payload, size_t len,
                 void *token);

/* Queues a close frame after everything already queued. code 0 sends an
 * empty close payload; otherwise code must be valid on the wire and
 * reason (UTF-8, <= 123 bytes) follows it. After this, ws_conn_send,
 * ping and pong fail with WS_E_operation_aborted. Returns 0,
 * WS_E_bad_close_code, WS_E_bad_close_size (reason too long),
 * WS_E_bad_close_payload (reason not UTF-8), WS_E_operation_aborted (a
 * close was already sent) or WS_E_no_memory. */
int ws_conn_close(ws_conn *c, unsigned code, const char *reason,
                  size_t reason_len, void *token);

/* Fails the engine from outside (a transport error or timeout): every
 * queued unit, also a started one, completes with WS_E_operation_aborted,
 * and nothing more is sent or received. Safe to call more than once. */
void ws_conn_abort(ws_conn *c);

/* Fills up to max iovecs with the bytes to write next, starting at the
 * first byte not yet consumed, and returns how many it filled (0 when the
 * queue is empty). The units they cover count as started. The memory stays
 * valid until those bytes are consumed or the engine is aborted or freed. */
size_t ws_conn_out_iov(ws_conn *c, ws_iov *iov, size_t max);

/* Says that n more bytes (counted from the first unconsumed byte) were
 * written. Completes units whose bytes are all consumed (on_sent). */
void ws_conn_out_consume(ws_conn *c, size_t n);

/* Bytes queued and not yet consumed (buffered_amount). */
size_t ws_conn_out_pending(const ws_conn *c);

/* Units (messages, parts, frames) queued and not yet completed: with
 * out_pending, a bound on the memory the queue holds. */
size_t ws_conn_out_units(const ws_conn *c);

/* ---------------------------------------------------------------- state */

#define WS_ST_CLOSE_SENT 0x1     /* our close frame is queued */
#define WS_ST_CLOSE_WRITTEN 0x2  /* ... and all its bytes were consumed */
#define WS_ST_CLOSE_RECEIVED 0x4 /* the peer's close frame arrived */
#define WS_ST_FAILED 0x8         /* a protocol error or ws_conn_abort */

/* A mask of WS_ST_* flags. The stream is open while it is 0. */
unsigned ws_conn_state(const ws_conn *c);

/* The peer's close: code (0 if the frame had no payload, or none has
 * arrived) and reason (valid until the engine is freed). */
unsigned ws_conn_peer_close(const ws_conn *c, const char **reason,
                            size_t *reason_len);

/* The error that failed the engine, or 0. */
int ws_conn_error(const ws_conn *c);

/* True if the last data frame received was text (got_text), binary
 * (got_binary: !got_text once a frame arrived); -1 before any. */
int ws_conn_got_text(const ws_conn *c);

/* True if the last byte of message data delivered ended a message. */
int ws_conn_is_message_done(const ws_conn *c);

/* True if a fragmented outgoing message is unfinished (write_some without
 * fin). */
int ws_conn_sending_message(const ws_conn *c);

/* ------------------------------------------------------- shared frames */

/* Builds the header of one unmasked (server) frame carrying a whole
 * message (fin set; rsv1 set when the payload is already deflated), for a
 * message published to many connections: writes it to hdr and returns its
 * length. */
size_t ws_frame_server_message(uint8_t hdr[WS_MAX_FRAME_HEADER], int opcode,
                               int rsv1, uint64_t len);

/* Compresses a whole message for permessage-deflate from a fresh context
 * (a new raw deflate stream, Z_SYNC_FLUSH, 00 00 ff ff stripped), so the
 * same bytes can be sent to every connection whose peer inflates with at
 * least window_bits bits (the server's direction: server_max_window_bits
 * of ws_conn_get_pmd), with or without context takeover: the message
 * refers to nothing before it. window_bits 8..15 (8 compresses with
 * literals only, see above), level 0..9, mem_level 1..9. On success *out
 * (allocated through a, NULL for libc; free it with a) holds *out_len
 * bytes, never 0 (an empty message is one 0x00 byte). Returns 0,
 * WS_E_no_memory, or WS_E_bad_extension for parameters out of range.
 * With ws_frame_server_message(hdr, opcode, 1, out_len) and
 * ws_conn_send_prebuilt it makes a shared compressed frame. */
int ws_pmd_compress_message(const ws_allocator *a, int window_bits, int level,
                            int mem_level, const uint8_t *data, size_t len,
                            uint8_t **out, size_t *out_len);

/* Server role: queues a whole message already framed by
 * ws_frame_server_message (hdr and payload are sent as they are, without
 * copying; the caller keeps both alive until on_sent(token)). The frame
 * may have RSV1 set (a message from ws_pmd_compress_message) only when
 * permessage-deflate is active on this connection, and the caller groups
 * recipients so that its window bits fit (the engine cannot check them);
 * after one, the connection's own compressor starts its next message
 * afresh, since the peer's window now holds a message ours does not.
 * Returns 0, WS_E_operation_in_progress (a write_some message is
 * unfinished, so a new message cannot start), WS_E_operation_aborted,
 * WS_E_bad_extension (RSV1 without permessage-deflate, or RSV2/RSV3) or
 * WS_E_no_memory. hdr_len may be 0 with the whole frame in payload. */
int ws_conn_send_prebuilt(ws_conn *c, const uint8_t *hdr, size_t hdr_len,
                          const uint8_t *payload, size_t len, void *token);

/* Server role: returns 1 if the whole prebuilt frame (as for
 * ws_conn_send_prebuilt) may be written by the caller directly, ahead of
 * the engine: the output queue is empty, no write_some message is
 * unfinished, the connection is open, and the frame's reserved bits are
 * allowed. The engine then counts the message as sent (for a compressed
 * one, its own compressor starts afresh). The caller must write every
 * byte, in order, before anything the engine queues later. Returns 0
 * otherwise (queue it with ws_conn_send_prebuilt). */
int ws_conn_prebuilt_direct(ws_conn *c, const uint8_t *frame, size_t len);

#endif
