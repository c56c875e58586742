/*
 * luvws core: the default allocator, the frame header codec, masking and
 * the close code rule.
 */
#include "ws_core.h"

#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---------------------------------------------------------------- memory */

static void *ws__libc_malloc(size_t size, void *ud) {
  (void)ud;
  return malloc(size);
}

static void *ws__libc_realloc(void *ptr, size_t size, void *ud) {
  (void)ud;
  return realloc(ptr, size);
}

static void ws__libc_free(void *ptr, void *ud) {
  (void)ud;
  free(ptr);
}

const ws_allocator *ws_default_allocator(void) {
  static const ws_allocator libc_alloc = {NULL, ws__libc_malloc,
                                          ws__libc_realloc, ws__libc_free};
  return &libc_alloc;
}

/* ---------------------------------------------------------------- frames */

size_t ws_frame_header_build(uint8_t out[WS_MAX_FRAME_HEADER], int fin,
                             int rsv1, int opcode, const uint8_t *mask,
                             uint64_t len) {
  size_t n = 2;
  uint8_t mbit = mask ? 0x80 : 0x00;
  int i;

  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)(mbit | len);
  } else if (len <= 0xffff) {
    out[1] = (uint8_t)(mbit | 126);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = (uint8_t)(mbit | 127);
    for (i = 0; i < 8; i++)
      out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

/* --------------------------------------------------------------- masking */

void ws_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
             size_t offset) {
  uint8_t k[16];
  uint64_t k8;
  size_t i = 0, j;

  /* Bytes one at a time until dst is 16-byte aligned (or the data ends),
   * so the wide stores below are aligned whatever the caller's offset. */
  while (i < len && ((uintptr_t)(dst + i) & 15) != 0) {
    dst[i] = src[i] ^ key[(offset + i) & 3];
    i++;
  }
  if (len - i >= 16) {
    /* The key rotated so that k[0] applies to byte i, repeated four times:
     * in memory order, so it works for either byte order. */
    for (j = 0; j < 16; j++)
      k[j] = key[(offset + i + j) & 3];
#ifdef __SSE2__
    {
      __m128i kv = _mm_loadu_si128((const __m128i *)(const void *)k);
      for (; len - i >= 64; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i b =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
        __m128i c =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 32));
        __m128i d =
            _mm_loadu_si128((const __m128i *)(const void *)(src + i + 48));
        _mm_store_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, kv));
        _mm_store_si128((__m128i *)(void *)(dst + i + 16),
                        _mm_xor_si128(b, kv));
        _mm_store_si128((__m128i *)(void *)(dst + i + 32),
                        _mm_xor_si128(c, kv));
        _mm_store_si128((__m128i *)(void *)(dst + i + 48),
                        _mm_xor_si128(d, kv));
      }
      for (; len - i >= 16; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm_store_si128((__m128i *)(void *)(dst + i), _mm_xor_si128(a, kv));
      }
    }
#endif
    memcpy(&k8, k, 8);
    for (; len - i >= 16; i += 16) {
      uint64_t a, b;
      memcpy(&a, src + i, 8);
      memcpy(&b, src + i + 8, 8);
      a ^= k8;
      b ^= k8;
      memcpy(dst + i, &a, 8);
      memcpy(dst + i + 8, &b, 8);
    }
  }
  for (; i < len; i++)
    dst[i] = src[i] ^ key[(offset + i) & 3];
}

/* ------------------------------------------------------------ close codes */

int ws_close_code_valid(unsigned code) {
  if (code >= 1000 && code <= 1003) return 1;
  if (code >= 1007 && code <= 1014) return 1;
  return code >= 3000 && code <= 4999;
}
