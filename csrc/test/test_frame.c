/*
 * Frame header codec, masking and close codes: RFC 6455 §5.7 examples byte
 * for byte, every length encoding, and ws_mask against a byte-wise
 * reference at every alignment, key offset and length.
 */
#include <stdint.h>
#include <stdlib.h>

#include "tap.h"
#include "ws_conn.h"
#include "ws_core.h"

static const uint8_t hello[] = {'H', 'e', 'l', 'l', 'o'};
static const uint8_t key_rfc[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Header followed by (masked) payload, as one frame. */
static size_t build_frame(uint8_t *out, int fin, int op, const uint8_t *key,
                          const uint8_t *p, size_t n) {
  size_t h = ws_frame_header_build(out, fin, 0, op, key, n);
  if (key)
    ws_mask(out + h, p, n, key, 0);
  else
    memcpy(out + h, p, n);
  return h + n;
}

TEST(rfc_single_unmasked) {
  static const uint8_t want[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  uint8_t out[32];
  size_t n = build_frame(out, 1, WS_OP_TEXT, NULL, hello, 5);
  IS_MEM(out, n, want, sizeof want, "unmasked text Hello");
}

TEST(rfc_single_masked) {
  static const uint8_t want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  uint8_t out[32];
  size_t n = build_frame(out, 1, WS_OP_TEXT, key_rfc, hello, 5);
  IS_MEM(out, n, want, sizeof want, "masked text Hello, key 37 fa 21 3d");
  /* Unmasking is the same operation. */
  ws_mask(out + 6, out + 6, 5, key_rfc, 0);
  IS_MEM(out + 6, 5, hello, 5, "unmasking gives Hello back");
}

TEST(rfc_fragmented) {
  static const uint8_t want1[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
  static const uint8_t want2[] = {0x80, 0x02, 0x6c, 0x6f};
  uint8_t out[32];
  size_t n = build_frame(out, 0, WS_OP_TEXT, NULL, hello, 3);
  IS_MEM(out, n, want1, sizeof want1, "first fragment Hel");
  n = build_frame(out, 1, WS_OP_CONT, NULL, hello + 3, 2);
  IS_MEM(out, n, want2, sizeof want2, "last fragment lo");
}

TEST(rfc_ping_pong) {
  static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  static const uint8_t pong[] = {0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  static const uint8_t mpong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                  0x7f, 0x9f, 0x4d, 0x51, 0x58};
  uint8_t out[32];
  size_t n = build_frame(out, 1, WS_OP_PING, NULL, hello, 5);
  IS_MEM(out, n, ping, sizeof ping, "unmasked ping Hello");
  n = build_frame(out, 1, WS_OP_PONG, NULL, hello, 5);
  IS_MEM(out, n, pong, sizeof pong, "unmasked pong Hello");
  n = build_frame(out, 1, WS_OP_PONG, key_rfc, hello, 5);
  IS_MEM(out, n, mpong, sizeof mpong, "masked pong Hello");
}

TEST(rfc_lengths) {
  static const uint8_t h256[] = {0x82, 0x7e, 0x01, 0x00};
  static const uint8_t h64k[] = {0x82, 0x7f, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x01, 0x00, 0x00};
  uint8_t out[WS_MAX_FRAME_HEADER];
  size_t n = ws_frame_header_build(out, 1, 0, WS_OP_BINARY, NULL, 256);
  IS_MEM(out, n, h256, sizeof h256, "256-byte binary header");
  n = ws_frame_header_build(out, 1, 0, WS_OP_BINARY, NULL, 65536);
  IS_MEM(out, n, h64k, sizeof h64k, "65536-byte binary header");
}

TEST(header_encodings) {
  static const struct {
    uint64_t len;
    size_t hlen;
    uint8_t b1;
  } t[] = {{0, 2, 0},
           {1, 2, 1},
           {125, 2, 125},
           {126, 4, 126},
           {127, 4, 126},
           {65535, 4, 126},
           {65536, 10, 127},
           {0xffffffffull, 10, 127},
           {0x7fffffffffffffffull, 10, 127}};
  uint8_t out[WS_MAX_FRAME_HEADER], m[4] = {1, 2, 3, 4};
  size_t i, n;
  int j;

  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    uint64_t got = 0;
    n = ws_frame_header_build(out, 1, 0, WS_OP_BINARY, NULL, t[i].len);
    IS_INT(n, t[i].hlen, "len %llu: header of %zu bytes",
           (unsigned long long)t[i].len, t[i].hlen);
    IS_INT(out[1], t[i].b1, "len %llu: second byte",
           (unsigned long long)t[i].len);
    if (n == 2) got = out[1];
    if (n == 4) got = ((uint64_t)out[2] << 8) | out[3];
    if (n == 10)
      for (j = 0; j < 8; j++)
        got = (got << 8) | out[2 + j];
    IS_INT(got, t[i].len, "len %llu: decodes back",
           (unsigned long long)t[i].len);
    n = ws_frame_header_build(out, 1, 0, WS_OP_BINARY, m, t[i].len);
    OK(n == t[i].hlen + 4 && (out[1] & 0x80) &&
           memcmp(out + t[i].hlen, m, 4) == 0,
       "len %llu: masked header has the key after the length",
       (unsigned long long)t[i].len);
  }
  n = ws_frame_header_build(out, 0, 1, WS_OP_TEXT, NULL, 3);
  IS_INT(out[0], 0x41, "rsv1 without fin");
  n = ws_frame_header_build(out, 1, 1, WS_OP_BINARY, NULL, 3);
  IS_INT(out[0], 0xc2, "fin, rsv1, binary");
  n = ws_frame_server_message(out, WS_OP_TEXT, 0, 5);
  OK(n == 2 && out[0] == 0x81 && out[1] == 0x05,
     "ws_frame_server_message: fin, unmasked");
  n = ws_frame_server_message(out, WS_OP_BINARY, 1, 70000);
  OK(n == 10 && out[0] == 0xc2 && out[1] == 0x7f,
     "ws_frame_server_message: rsv1, 64-bit length");
}

static void mask_ref(uint8_t *dst, const uint8_t *src, size_t len,
                     const uint8_t key[4], size_t offset) {
  size_t i;
  for (i = 0; i < len; i++)
    dst[i] = src[i] ^ key[(offset + i) % 4];
}

TEST(mask_reference) {
  static const uint8_t key[4] = {0xa5, 0x3c, 0x0f, 0xf1};
  uint8_t src[256], buf[256 + 32], want[256], inplace[256 + 32];
  size_t align, off, len, i;
  int bad_copy = 0, bad_inplace = 0, bad_guard = 0;

  for (i = 0; i < sizeof src; i++)
    src[i] = (uint8_t)(i * 7 + 3);
  for (align = 0; align < 16; align++)
    for (off = 0; off < 8; off++)
      for (len = 0; len <= 67; len++) {
        mask_ref(want, src, len, key, off);
        memset(buf, 0xee, sizeof buf);
        ws_mask(buf + align, src, len, key, off);
        if (memcmp(buf + align, want, len) != 0) bad_copy++;
        for (i = 0; i < align; i++)
          bad_guard += buf[i] != 0xee;
        for (i = align + len; i < sizeof buf; i++)
          bad_guard += buf[i] != 0xee;
        memset(inplace, 0xee, sizeof inplace);
        memcpy(inplace + align, src, len);
        ws_mask(inplace + align, inplace + align, len, key, off);
        if (memcmp(inplace + align, want, len) != 0) bad_inplace++;
      }
  IS_INT(bad_copy, 0, "every alignment, key offset and length 0..67");
  IS_INT(bad_inplace, 0, "the same in place");
  IS_INT(bad_guard, 0, "no byte outside the range is written");
}

TEST(mask_large) {
  static const uint8_t key[4] = {0x01, 0x80, 0x7f, 0xff};
  size_t n = 100003, i, off;
  uint8_t *src = malloc(n + 16), *a = malloc(n + 16), *b = malloc(n + 16);
  int bad = 0;

  for (i = 0; i < n + 16; i++)
    src[i] = (uint8_t)(i ^ (i >> 8));
  for (off = 0; off < 4; off++)
    for (i = 0; i < 16; i += 5) {
      mask_ref(a, src + i, n, key, off);
      ws_mask(b + (15 - i), src + i, n, key, off);
      bad += memcmp(a, b + (15 - i), n) != 0;
    }
  IS_INT(bad, 0, "100003 bytes, unaligned source and destination");
  free(src);
  free(a);
  free(b);
}

TEST(close_codes) {
  static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                   1009, 1010, 1011, 1012, 1013, 1014,
                                   3000, 3999, 4000, 4999};
  static const unsigned invalid[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                     1016, 1100, 2000, 2999, 5000, 6000, 65535};
  size_t i;
  int bad = 0;

  for (i = 0; i < sizeof valid / sizeof valid[0]; i++)
    bad += !ws_close_code_valid(valid[i]);
  IS_INT(bad, 0, "1000-1003, 1007-1014, 3000-4999 are valid");
  bad = 0;
  for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
    bad += ws_close_code_valid(invalid[i]);
  IS_INT(bad, 0, "0, 1004-1006, 1015-2999 and >= 5000 are not");
}

TEST(default_allocator) {
  const ws_allocator *a = ws_default_allocator();
  void *p = a->malloc(16, a->ud);
  OK(p != NULL, "malloc");
  p = a->realloc(p, 4096, a->ud);
  OK(p != NULL, "realloc");
  a->free(p, a->ud);
  OK(a == ws_default_allocator(), "the same allocator each time");
}

int main(void) {
  RUN(rfc_single_unmasked);
  RUN(rfc_single_masked);
  RUN(rfc_fragmented);
  RUN(rfc_ping_pong);
  RUN(rfc_lengths);
  RUN(header_encodings);
  RUN(mask_reference);
  RUN(mask_large);
  RUN(close_codes);
  RUN(default_allocator);
  return tap_done();
}
