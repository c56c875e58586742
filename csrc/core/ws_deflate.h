/*
 * luvws core, private: zlib glue for permessage-deflate (RFC 7692).
 *
 * Raw deflate and inflate streams whose memory comes from a ws_allocator.
 * The engine (ws_conn.c) owns the policy (when to compress, limits,
 * delivery, context takeover); this file owns the zlib mechanics: sync
 * flushes, the 00 00 ff ff tail, window bits 8, final (BFINAL) blocks and
 * block boundaries.
 */
#ifndef WS_DEFLATE_H
#define WS_DEFLATE_H

#ifndef ZLIB_CONST
#define ZLIB_CONST
#endif
#include <zlib.h>

#include "ws_core.h"

/* The inflate output buffer of a connection: inflated bytes are handed to
 * on_data in pieces of at most this size. */
#define WS_INFLATE_CHUNK 16384

/* A growing output buffer in allocator memory. */
typedef struct ws_zbuf {
  uint8_t *p;
  size_t len;
  size_t cap;
} ws_zbuf;

/* A raw deflate stream. */
typedef struct ws_zdef {
  z_stream z;
  ws_allocator a; /* z.opaque points here */
} ws_zdef;

/* A raw inflate stream, fed the payload of compressed messages. */
typedef struct ws_zinf {
  z_stream z;
  ws_allocator a;      /* z.opaque points here */
  const uint8_t *rest; /* input past what avail_in (a uInt) can hold */
  size_t rest_len;     /* its length */
  uint8_t boundary;    /* the stream stands at a deflate block boundary */
  uint8_t bits;        /* ... with this many bits of its last byte unread */
  uint8_t ended;       /* a final block ended and no byte followed it */
  uint8_t pending;     /* the last call filled the output mid-block: more
                          output may come without input */
  uint8_t tail;        /* the input is the appended 00 00 ff ff */
} ws_zinf;

/* New compressor for our sending direction. bits is the negotiated window
 * (8..15); level 0..9, mem_level 1..9. zlib cannot deflate with a 256-byte
 * window (it silently uses 512, and nothing it documents keeps its matches
 * within 256 bytes), so bits 8 compresses with Z_HUFFMAN_ONLY: literals
 * only, no back-references at all, which any window decodes. NULL if out
 * of memory. */
ws_zdef *ws_zdef_new(const ws_allocator *a, int bits, int level, int mem_level);
void ws_zdef_free(ws_zdef *d);

/* Drops the sliding window: the next byte compressed refers to nothing
 * before it. */
void ws_zdef_reset(ws_zdef *d);

/* Compresses data[0..len) with Z_SYNC_FLUSH and appends the output to out
 * (grown through the allocator; on success at least 64 bytes of room were
 * reserved). With strip, the 00 00 ff ff that ends a sync flush is removed
 * (the end of a message). Returns 0 or
 * WS_E_no_memory; after a failure the stream must be reset before it is
 * used again (its window holds bytes the peer never saw). */
int ws_zdef_run(ws_zdef *d, const uint8_t *data, size_t len, int strip,
                ws_zbuf *out);

/* New decompressor for the peer's direction (bits 8..15; 8 inflates with
 * 9: a window at least as large as the sender's decodes its stream). NULL
 * if out of memory. */
ws_zinf *ws_zinf_new(const ws_allocator *a, int bits);
void ws_zinf_free(ws_zinf *f);

/* Gives more payload bytes to inflate (the memory must stay valid until
 * ws_zinf_run has consumed them or ws_zinf_drop_input is called). */
void ws_zinf_input(ws_zinf *f, const uint8_t *p, size_t n);

/* Gives the 00 00 ff ff that RFC 7692 §7.2.2 appends to every message. */
void ws_zinf_tail(ws_zinf *f);

/* Forgets input not yet consumed. */
void ws_zinf_drop_input(ws_zinf *f);

/* Inflates into out[0..cap) and sets *produced: it stops when out is full
 * or when no more output can come without more input. A final block
 * (BFINAL) ends the deflate stream: the stream restarts with its window
 * kept, so bytes after it decode as a new stream, and if they are the tail
 * alone they are not needed at all. Returns 0, WS_E_bad_compressed_data
 * (the bytes are not deflate data, or refer past the window) or
 * WS_E_no_memory. */
int ws_zinf_run(ws_zinf *f, uint8_t *out, size_t cap, size_t *produced);

/* True if the payload so far is a whole deflate stream: it ended with a
 * final block, or stands on a block boundary at the end of a byte (a
 * sender that kept the 00 00 ff ff of its flush). The tail is then not
 * needed (and would start a block that never ends). */
int ws_zinf_complete(const ws_zinf *f);

/* After the tail was inflated (or found not needed): true if the message
 * ended where a conforming compressor ends one (on a block boundary, or at
 * the end of a final block). Also readies the stream for the next
 * message. */
int ws_zinf_message_end(ws_zinf *f);

#endif
