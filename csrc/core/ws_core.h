/*
 * luvws core: common types, frame header codec, masking and UTF-8.
 *
 * The core is sans-I/O C11: no Lua, no libuv, no sockets, no global mutable
 * state. Memory comes from a caller-given allocator and randomness from a
 * caller-given source.
 */
#ifndef WS_CORE_H
#define WS_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "ws_errors.h"

/* ---------------------------------------------------------------- memory */

/* An allocator, in the shape of nghttp2_mem. All core allocations go
 * through one of these; ud is passed back unchanged. */
typedef struct ws_allocator {
  void *ud;
  void *(*malloc)(size_t size, void *ud);
  void *(*realloc)(void *ptr, size_t size, void *ud);
  void (*free)(void *ptr, void *ud);
} ws_allocator;

/* The libc allocator. */
const ws_allocator *ws_default_allocator(void);

/* ---------------------------------------------------------- randomness */

/* A source of random bytes. fill returns 0 on success, nonzero on failure.
 * Keys and (with secure_prng) masks are drawn from it, so it must be a
 * CSPRNG. */
typedef struct ws_rng {
  void *ud;
  int (*fill)(void *ud, uint8_t *out, size_t len);
} ws_rng;

/* --------------------------------------------------------------- strings */

/* A byte range that is not NUL-terminated. */
typedef struct ws_str {
  const char *p;
  size_t n;
} ws_str;

/* One buffer to write, in the shape of struct iovec. */
typedef struct ws_iov {
  const uint8_t *base;
  size_t len;
} ws_iov;

/* ---------------------------------------------------------------- frames */

enum ws_opcode {
  WS_OP_CONT = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA
};

#define WS_MAX_FRAME_HEADER 14
#define WS_MAX_CONTROL_PAYLOAD 125
#define WS_MAX_CLOSE_REASON 123

/* Writes a frame header (2 to 14 bytes) to out and returns its length.
 * mask is NULL for an unmasked frame, else the 4 key bytes. len uses the
 * shortest encoding. */
size_t ws_frame_header_build(uint8_t out[WS_MAX_FRAME_HEADER], int fin,
                             int rsv1, int opcode, const uint8_t *mask,
                             uint64_t len);

/* dst[i] = src[i] ^ key[(offset + i) % 4] for i < len; dst may equal src.
 * Works a word (or a vector) at a time. */
void ws_mask(uint8_t *dst, const uint8_t *src, size_t len,
             const uint8_t key[4], size_t offset);

/* True if code may appear in a close frame on the wire: 1000-1003,
 * 1007-1014 and 3000-4999. */
int ws_close_code_valid(unsigned code);

/* ----------------------------------------------------------------- UTF-8 */

/* Incremental UTF-8 validator. Zero-initialise (or ws_utf8_reset) before
 * the first byte of a message. */
typedef struct ws_utf8 {
  uint32_t state;
} ws_utf8;

void ws_utf8_reset(ws_utf8 *v);

/* Feeds n more bytes. Returns 0 while the bytes so far can still be the
 * start of valid UTF-8, or -1 at the first byte that cannot (so an overlong
 * form, a surrogate or a code point above U+10FFFF fails at the byte that
 * reveals it, not at the end). Once it has failed it stays failed. */
int ws_utf8_feed(ws_utf8 *v, const uint8_t *p, size_t n);

/* True if the bytes so far end on a character boundary (a message may end
 * here). */
int ws_utf8_complete(const ws_utf8 *v);

/* One-shot check of a whole buffer. */
int ws_utf8_valid(const uint8_t *p, size_t n);

#endif
