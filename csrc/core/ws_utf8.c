/*
 * luvws core: incremental UTF-8 validation (RFC 3629).
 *
 * The state is 0 on a character boundary, WS__UTF8_FAIL once a byte was
 * seen that cannot be part of valid UTF-8, and otherwise describes the next
 * byte the current character needs:
 *   bits 0-7    how many more bytes the character needs (1 to 3);
 *   bits 8-15   the smallest value the next byte may take;
 *   bits 16-23  the largest value the next byte may take.
 * Only the second byte of a character has a range narrower than 80..BF: that
 * is where overlong forms (E0 80, F0 80), surrogates (ED A0) and code points
 * above U+10FFFF (F4 90) show, so they fail at the byte that reveals them.
 *
 * Where SSE2 is there (every x86-64), whole 16-byte blocks are checked at
 * once with byte comparisons: each byte must be a continuation byte exactly
 * when one of the three bytes before it starts a character that needs it,
 * and the pairs that reveal overlongs, surrogates and code points above
 * U+10FFFF, and the bytes never valid (C0, C1, F5-FF), are tested against
 * the byte before. No byte depends on the result for the one before, so
 * there is no chain of dependent loads. Runs of ASCII go 64 bytes at a
 * time. When a block has an error, or at the end, the byte-wise state
 * machine takes over from the last character boundary: it finds the exact
 * byte that fails, and keeps the state of a character split between calls.
 * Without SSE2, a table-driven step validates a whole character at a time.
 */
#include "ws_core.h"

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define WS__UTF8_FAIL 0xffffffffu

/* Per lead byte: bits 0-7 the character's length (0 = never valid as a
 * first byte), bits 8-15 and 16-23 the range of the second byte, bit 24 set
 * if the third byte must be a continuation byte, bit 25 the same for the
 * fourth. An ASCII byte has length 1 and a second-byte range of 00..FF so
 * that the whole-character step needs no special case for it. */
#define L1 0x00ff0001u /* 00..7F */
#define XX 0x00000000u /* 80..C1, F5..FF */
#define L2 0x00bf8002u /* C2..DF: 80..BF */
#define E0 0x01bfa003u /* E0: A0..BF (no overlongs) */
#define L3 0x01bf8003u /* E1..EC, EE..EF: 80..BF */
#define ED 0x019f8003u /* ED: 80..9F (no surrogates) */
#define F0 0x03bf9004u /* F0: 90..BF (no overlongs) */
#define L4 0x03bf8004u /* F1..F3: 80..BF */
#define F4 0x038f8004u /* F4: 80..8F (nothing above U+10FFFF) */
#define R4(x) x, x, x, x
#define R16(x) R4(x), R4(x), R4(x), R4(x)

/* clang-format off */
static const uint32_t ws__utf8_lead[256] = {
    /* 00..7F */
    R16(L1), R16(L1), R16(L1), R16(L1), R16(L1), R16(L1), R16(L1), R16(L1),
    /* 80..BF */
    R16(XX), R16(XX), R16(XX), R16(XX),
    /* C0..DF */
    XX, XX, L2, L2, R4(L2), R4(L2), R4(L2), R16(L2),
    /* E0..EF */
    E0, L3, L3, L3, R4(L3), R4(L3), L3, ED, L3, L3,
    /* F0..FF */
    F0, L4, L4, L4, F4, XX, XX, XX, R4(XX), R4(XX)};
/* clang-format on */

#undef L1
#undef XX
#undef L2
#undef E0
#undef L3
#undef ED
#undef F0
#undef L4
#undef F4
#undef R4
#undef R16

/* Range 80..BF, the one every continuation byte after the second has. */
#define WS__UTF8_CONT_RANGE 0x00bf8000u

/* One byte through the state machine. */
static uint32_t ws__utf8_step(uint32_t s, uint8_t b) {
  uint32_t e, rest;

  if (s == 0) {
    e = ws__utf8_lead[b];
    if ((e & 0xff) == 0) return WS__UTF8_FAIL;
    if ((e & 0xff) == 1) return 0;
    return (e & 0x00ffff00u) | ((e & 0xff) - 1);
  }
  if (b < ((s >> 8) & 0xff) || b > ((s >> 16) & 0xff)) return WS__UTF8_FAIL;
  rest = (s & 0xff) - 1;
  return rest ? (WS__UTF8_CONT_RANGE | rest) : 0;
}

#ifdef __SSE2__

/* The block b with the last k bytes of the block before it shifted in:
 * byte i is the byte k places before byte i of b. */
#define WS__PREV(b, prev, k)                                                   \
  _mm_or_si128(_mm_slli_si128(b, k), _mm_srli_si128(prev, 16 - (k)))

/* True if a character starting in the last three bytes of the 16 at p
 * needs bytes after them. */
static int ws__utf8_open_end(const uint8_t *p) {
  return p[15] >= 0xc0 || p[14] >= 0xe0 || p[13] >= 0xf0;
}

/* Validates 16-byte blocks from a character boundary. Returns a point up
 * to which every byte is valid and which is a character boundary: the end
 * of the blocks (less a character they cut), or the last boundary before a
 * block with an error. */
static const uint8_t *ws__utf8_fast(const uint8_t *p, const uint8_t *end) {
  const __m128i flip = _mm_set1_epi8((char)0x80);
  __m128i prev = _mm_setzero_si128();
  const uint8_t *start = p;

  while (end - p >= 16) {
    __m128i b, u, must, cont, err, p1, u1;
    /* A run of ASCII after a complete character: 64 bytes at a time. */
    if (end - p >= 64 && (p == start || !ws__utf8_open_end(p - 16))) {
      const uint8_t *q = p;
      while (end - q >= 64) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)q);
        __m128i y = _mm_loadu_si128((const __m128i *)(const void *)(q + 16));
        __m128i z = _mm_loadu_si128((const __m128i *)(const void *)(q + 32));
        __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(q + 48));
        if (_mm_movemask_epi8(
                _mm_or_si128(_mm_or_si128(x, y), _mm_or_si128(z, w))) != 0)
          break;
        q += 64;
      }
      if (q != p) {
        p = q;
        prev = _mm_loadu_si128((const __m128i *)(const void *)(p - 16));
        continue;
      }
    }
    b = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (_mm_movemask_epi8(b) == 0 &&
        (p == start || !ws__utf8_open_end(p - 16))) {
      prev = b;
      p += 16;
      continue;
    }
    /* With the top bit flipped, signed comparisons order bytes as
     * unsigned: 80..BF become 00..3F, C0..FF become 40..7F, ASCII is
     * negative. */
    u = _mm_xor_si128(b, flip);
    p1 = WS__PREV(b, prev, 1);
    u1 = _mm_xor_si128(p1, flip);
    /* A continuation byte is needed after a lead byte (C0..FF), two after
     * E0..FF, three after F0..FF. */
    must = _mm_cmpgt_epi8(u1, _mm_set1_epi8(0x3f));
    must = _mm_or_si128(
        must, _mm_cmpgt_epi8(_mm_xor_si128(WS__PREV(b, prev, 2), flip),
                             _mm_set1_epi8(0x5f)));
    must = _mm_or_si128(
        must, _mm_cmpgt_epi8(_mm_xor_si128(WS__PREV(b, prev, 3), flip),
                             _mm_set1_epi8(0x6f)));
    /* Continuation bytes are the signed values below (char)0xc0. */
    cont = _mm_cmplt_epi8(b, _mm_set1_epi8((char)0xc0));
    err = _mm_xor_si128(must, cont);
    /* C0, C1 and F5..FF are never valid. */
    err = _mm_or_si128(
        err, _mm_cmpeq_epi8(_mm_and_si128(b, _mm_set1_epi8((char)0xfe)),
                            _mm_set1_epi8((char)0xc0)));
    err = _mm_or_si128(err, _mm_cmpgt_epi8(u, _mm_set1_epi8(0x74)));
    /* Second bytes: E0 needs A0..BF, ED 80..9F, F0 90..BF, F4 80..8F. */
    err = _mm_or_si128(
        err, _mm_and_si128(_mm_cmpeq_epi8(p1, _mm_set1_epi8((char)0xe0)),
                           _mm_cmplt_epi8(u, _mm_set1_epi8(0x20))));
    err = _mm_or_si128(
        err, _mm_and_si128(_mm_cmpeq_epi8(p1, _mm_set1_epi8((char)0xed)),
                           _mm_cmpgt_epi8(u, _mm_set1_epi8(0x1f))));
    err = _mm_or_si128(
        err, _mm_and_si128(_mm_cmpeq_epi8(p1, _mm_set1_epi8((char)0xf0)),
                           _mm_cmplt_epi8(u, _mm_set1_epi8(0x10))));
    err = _mm_or_si128(
        err, _mm_and_si128(_mm_cmpeq_epi8(p1, _mm_set1_epi8((char)0xf4)),
                           _mm_cmpgt_epi8(u, _mm_set1_epi8(0x0f))));
    if (_mm_movemask_epi8(err) != 0) break;
    prev = b;
    p += 16;
  }
  /* Back up to the start of a character that p may cut (or that the
   * failing block may have begun inside). */
  if (p - start >= 1 && p[-1] >= 0xc0) return p - 1;
  if (p - start >= 2 && p[-2] >= 0xe0) return p - 2;
  if (p - start >= 3 && p[-3] >= 0xf0) return p - 3;
  return p;
}

#undef WS__PREV

#else

/* Validates whole characters from a boundary while at least 20 bytes
 * remain (each step reads up to 4 bytes, a block up to 19 past its start).
 * Returns where it stopped: on a boundary, either near the end or at the
 * first byte of a character that is not valid (the state machine then finds
 * the exact byte). */
static const uint8_t *ws__utf8_fast(const uint8_t *p, const uint8_t *end) {
  while (end - p >= 20) {
    const uint8_t *stop;
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    if (((a | b) & 0x8080808080808080ull) == 0) {
      p += 16;
      continue;
    }
    stop = p + 16;
    do {
      uint32_t e = ws__utf8_lead[p[0]];
      uint32_t len = e & 0xff;
      uint32_t lo = (e >> 8) & 0xff, span = ((e >> 16) & 0xff) - lo;
      /* Each term is nonzero when its rule is broken. */
      uint32_t bad = (uint32_t)(len == 0);
      bad |= (uint32_t)((uint8_t)(p[1] - lo) > span);
      bad |= ((e >> 24) & 1) & (uint32_t)((p[2] & 0xc0) != 0x80);
      bad |= ((e >> 25) & 1) & (uint32_t)((p[3] & 0xc0) != 0x80);
      if (bad) return p;
      p += len;
    } while (p < stop);
  }
  return p;
}

#endif

void ws_utf8_reset(ws_utf8 *v) {
  v->state = 0;
}

int ws_utf8_feed(ws_utf8 *v, const uint8_t *p, size_t n) {
  const uint8_t *end = p + n;
  uint32_t s = v->state;

  if (s == WS__UTF8_FAIL) return -1;
  /* Finish a character begun in an earlier call. */
  while (s != 0 && p < end) {
    s = ws__utf8_step(s, *p++);
    if (s == WS__UTF8_FAIL) goto fail;
  }
  if (p < end) {
    p = ws__utf8_fast(p, end);
    /* The rest (a tail shorter than a block, or from the boundary before
     * a block with an error) byte by byte. */
    while (p < end) {
      s = ws__utf8_step(s, *p++);
      if (s == WS__UTF8_FAIL) goto fail;
    }
  }
  v->state = s;
  return 0;
fail:
  v->state = WS__UTF8_FAIL;
  return -1;
}

int ws_utf8_complete(const ws_utf8 *v) {
  return v->state == 0;
}

int ws_utf8_valid(const uint8_t *p, size_t n) {
  ws_utf8 v = {0};
  return ws_utf8_feed(&v, p, n) == 0 && ws_utf8_complete(&v);
}
