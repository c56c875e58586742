/*
 * The incremental UTF-8 validator: valid and invalid tables, the exact
 * byte where it fails, every split point, the fast paths (long inputs), and
 * a comparison with an independent decoder on random inputs.
 */
#include <stdint.h>
#include <stdlib.h>

#include "tap.h"
#include "ws_core.h"

/* A case: bytes, and the index of the first byte that cannot lead to valid
 * UTF-8 (-1: never fails while fed; then complete says whether it ends on
 * a character boundary). */
typedef struct {
  const char *name;
  const char *bytes;
  int len;
  int fail_at;
  int complete;
} u8case;

#define S(x) x, (int)sizeof(x) - 1

static const u8case cases[] = {
    {"empty", S(""), -1, 1},
    {"ascii", S("Hello, world"), -1, 1},
    {"nul and del", S("a\x00\x7f"), -1, 1},
    {"2-byte lowest U+0080", S("\xc2\x80"), -1, 1},
    {"2-byte highest U+07FF", S("\xdf\xbf"), -1, 1},
    {"3-byte lowest U+0800", S("\xe0\xa0\x80"), -1, 1},
    {"3-byte U+D7FF", S("\xed\x9f\xbf"), -1, 1},
    {"3-byte U+E000", S("\xee\x80\x80"), -1, 1},
    {"3-byte U+FFFD", S("\xef\xbf\xbd"), -1, 1},
    {"3-byte U+FFFF", S("\xef\xbf\xbf"), -1, 1},
    {"4-byte lowest U+10000", S("\xf0\x90\x80\x80"), -1, 1},
    {"4-byte highest U+10FFFF", S("\xf4\x8f\xbf\xbf"), -1, 1},
    {"kosme", S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), -1, 1},
    {"mixed", S("a\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80z"), -1, 1},
    /* Autobahn 6.4.x: fail at the surrogate's second byte. */
    {"autobahn 6.4 surrogate",
     S("\xce\xba\xe1\xbd\xb9\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65"
       "\x64"),
     10, 0},
    {"autobahn 6.4 above U+10FFFF",
     S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64"
       "\x69\x74\x65\x64"),
     12, 0},
    {"lone continuation 80", S("\x80"), 0, 0},
    {"lone continuation bf", S("a\xbf"), 1, 0},
    {"c0 never valid", S("\xc0\x80"), 0, 0},
    {"c1 never valid", S("\xc1\xbf"), 0, 0},
    {"f5 never valid", S("\xf5\x80\x80\x80"), 0, 0},
    {"f8 never valid", S("\xf8"), 0, 0},
    {"fe never valid", S("\xfe"), 0, 0},
    {"ff never valid", S("\xff"), 0, 0},
    {"overlong 3-byte slash", S("\xe0\x80\xaf"), 1, 0},
    {"overlong 3-byte U+07FF", S("\xe0\x9f\xbf"), 1, 0},
    {"overlong 4-byte slash", S("\xf0\x80\x80\xaf"), 1, 0},
    {"overlong 4-byte U+FFFF", S("\xf0\x8f\xbf\xbf"), 1, 0},
    {"surrogate U+D800", S("\xed\xa0\x80"), 1, 0},
    {"surrogate U+DFFF", S("\xed\xbf\xbf"), 1, 0},
    {"above U+10FFFF", S("\xf4\x90\x80\x80"), 1, 0},
    {"2-byte bad continuation", S("\xc3\x28"), 1, 0},
    {"3-byte bad third", S("\xe4\xb8\x28"), 2, 0},
    {"4-byte bad fourth", S("\xf0\x9f\x98\x28"), 3, 0},
    {"4-byte bad third", S("\xf0\x9f\xc0\x80"), 2, 0},
    {"new lead inside a character", S("\xe4\xc3\xa9"), 1, 0},
    {"truncated 2-byte", S("\xc3"), -1, 0},
    {"truncated 3-byte after 1", S("\xe4"), -1, 0},
    {"truncated 3-byte after 2", S("\xe4\xb8"), -1, 0},
    {"truncated 4-byte after 3", S("\xf0\x9f\x98"), -1, 0},
    {"truncated E0 A0", S("ab\xe0\xa0"), -1, 0},
    {"truncated F4 8F BF", S("\xf4\x8f\xbf"), -1, 0},
};

/* Feeds all of b in one call to a fresh validator. */
static int feed_all(const uint8_t *b, size_t n, int *complete) {
  ws_utf8 v;
  int rv;
  ws_utf8_reset(&v);
  rv = ws_utf8_feed(&v, b, n);
  *complete = ws_utf8_complete(&v);
  return rv;
}

/* The index of the byte at which byte-by-byte feeding first fails, or -1;
 * also checks that the validator stays failed. */
static int fail_index_bytewise(const uint8_t *b, size_t n, int *complete,
                               int *stays_failed) {
  ws_utf8 v = {0};
  size_t i;
  int at = -1;
  *stays_failed = 1;
  for (i = 0; i < n; i++)
    if (ws_utf8_feed(&v, b + i, 1) != 0 && at < 0) at = (int)i;
  if (at >= 0) {
    static const uint8_t a = 'a';
    *stays_failed = ws_utf8_feed(&v, &a, 1) != 0 && !ws_utf8_complete(&v);
  }
  *complete = ws_utf8_complete(&v);
  return at;
}

/* Checks one buffer against its expectations in many feed shapes. */
static int check_buffer(const uint8_t *b, size_t n, int fail_at, int complete,
                        const char *name) {
  int c, sf, rv, at, ok = 1;
  size_t i, j;

  at = fail_index_bytewise(b, n, &c, &sf);
  if (at != fail_at) {
    printf("# %s: byte-wise fails at %d, want %d\n", name, at, fail_at);
    ok = 0;
  }
  if (!sf) {
    printf("# %s: does not stay failed\n", name);
    ok = 0;
  }
  if (fail_at < 0 && c != complete) {
    printf("# %s: byte-wise complete %d, want %d\n", name, c, complete);
    ok = 0;
  }
  rv = feed_all(b, n, &c);
  if ((rv != 0) != (fail_at >= 0) || (fail_at < 0 && c != complete)) {
    printf("# %s: one call gives %d/%d\n", name, rv, c);
    ok = 0;
  }
  if ((ws_utf8_valid(b, n) != 0) != (fail_at < 0 && complete)) {
    printf("# %s: ws_utf8_valid wrong\n", name);
    ok = 0;
  }
  if (fail_at >= 0) {
    /* One call with every byte up to the bad one: still fine; one more
     * byte: failed. This checks the fast paths fail at the same place. */
    if (feed_all(b, (size_t)fail_at, &c) != 0 ||
        feed_all(b, (size_t)fail_at + 1, &c) == 0) {
      printf("# %s: prefix feeding does not fail at %d\n", name, fail_at);
      ok = 0;
    }
  }
  /* Every split into two calls, and every split into three. */
  for (i = 0; i <= n; i++) {
    ws_utf8 v = {0};
    int r1 = ws_utf8_feed(&v, b, i);
    int r2 = ws_utf8_feed(&v, b + i, n - i);
    int want_fail = fail_at >= 0;
    if ((r1 != 0) != (fail_at >= 0 && (size_t)fail_at < i) ||
        ((r1 | r2) != 0) != want_fail ||
        (!want_fail && ws_utf8_complete(&v) != complete)) {
      printf("# %s: split at %zu wrong\n", name, i);
      ok = 0;
      break;
    }
    for (j = i; j <= n && n <= 32; j++) {
      ws_utf8 w = {0};
      int f = ws_utf8_feed(&w, b, i);
      f |= ws_utf8_feed(&w, b + i, j - i);
      f |= ws_utf8_feed(&w, b + j, n - j);
      if ((f != 0) != want_fail ||
          (!want_fail && ws_utf8_complete(&w) != complete)) {
        printf("# %s: split at %zu,%zu wrong\n", name, i, j);
        ok = 0;
        break;
      }
    }
  }
  return ok;
}

TEST(table) {
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const u8case *t = &cases[i];
    OK(check_buffer((const uint8_t *)t->bytes, (size_t)t->len, t->fail_at,
                    t->complete, t->name),
       "%s", t->name);
  }
}

/* The same cases after long valid prefixes (so the fast paths run into
 * them), and followed by a long valid tail. */
TEST(table_in_context) {
  static const char *prefixes[] = {
      "The quick brown fox jumps over the lazy dog, again and again. ",
      "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xb8\x96\xe7\x95"
      "\x8c \xf0\x9f\x98\x80 \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 "
      "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf",
      "x",
      "0123456789012345678",
  };
  static const char tail[] =
      "\xe4\xb8\xad\xe6\x96\x87 and more ascii text after it, long enough.";
  uint8_t buf[512];
  size_t i, k;
  int bad = 0;

  for (k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++)
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      const u8case *t = &cases[i];
      size_t pl = strlen(prefixes[k]), n = pl;
      int fail_at = t->fail_at >= 0 ? (int)pl + t->fail_at : -1;
      memcpy(buf, prefixes[k], pl);
      memcpy(buf + n, t->bytes, (size_t)t->len);
      n += (size_t)t->len;
      bad += !check_buffer(buf, n, fail_at, t->complete, t->name);
      if (t->complete || t->fail_at >= 0) {
        /* With a valid tail: a truncated case then fails at the tail's
         * first byte, which is not a continuation byte. */
        memcpy(buf + n, tail, sizeof tail - 1);
        bad += !check_buffer(buf, n + sizeof tail - 1, fail_at, 1, t->name);
      }
    }
  IS_INT(bad, 0, "every case after long prefixes and before a long tail");
}

/* An independent decoder: decodes code points and checks them, reporting
 * the first byte that cannot lead to valid UTF-8 (-1 when none; *complete
 * says whether the input ends on a boundary). */
static int ref_fail(const uint8_t *b, size_t n, int *complete) {
  size_t i = 0;
  *complete = 1;
  while (i < n) {
    uint32_t cp, min;
    size_t len, j;
    uint8_t c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return (int)i;
    }
    for (j = 0; j < len; j++) {
      uint32_t lo, hi, a, z;
      size_t k;
      if (j > 0) {
        if (i + j >= n) {
          *complete = 0;
          return -1;
        }
        if ((b[i + j] & 0xc0) != 0x80) return (int)(i + j);
        cp = (cp << 6) | (b[i + j] & 0x3f);
      }
      /* Can some completion of the bytes so far be a valid code point:
       * at least min, at most U+10FFFF, not a surrogate? */
      lo = cp, hi = cp;
      for (k = j + 1; k < len; k++) {
        lo <<= 6;
        hi = (hi << 6) | 0x3f;
      }
      a = lo > min ? lo : min;
      z = hi < 0x10ffff ? hi : 0x10ffff;
      if (a > z || (a >= 0xd800 && z <= 0xdfff)) return (int)(i + j);
    }
    i += len;
  }
  return -1;
}

/* A small deterministic generator for the random tests. */
static uint32_t rnd(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

TEST(random_against_reference) {
  static const uint8_t pick[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
                                 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1,
                                 0xf3, 0xf4, 0xf5, 0xff};
  static const char *chars[] = {"a",
                                " ",
                                "\xc3\xa9",
                                "\xd0\x96",
                                "\xe4\xb8\xad",
                                "\xed\x9f\xbf",
                                "\xef\xbf\xbd",
                                "\xf0\x9f\x98\x80",
                                "\xf4\x8f\xbf\xbf"};
  uint64_t s = 42;
  uint8_t buf[200];
  int iter, bad = 0, valid_seen = 0;

  for (iter = 0; iter < 100000; iter++) {
    size_t n = 0, target = rnd(&s) % 120;
    int want_complete, want_at, corrupt = (int)(rnd(&s) % 3);
    /* Mostly valid text with a few random bytes (at random places). */
    while (n < target) {
      const char *ch = chars[rnd(&s) % (sizeof chars / sizeof chars[0])];
      size_t l = strlen(ch);
      memcpy(buf + n, ch, l);
      n += l;
    }
    while (corrupt-- > 0 && n > 0) {
      uint32_t r = rnd(&s);
      buf[r % n] =
          (r >> 16) & 1 ? pick[(r >> 8) % sizeof pick] : (uint8_t)(r >> 8);
    }
    if (rnd(&s) % 4 == 0 && n > 0) n -= rnd(&s) % (n < 4 ? n : 4);
    want_at = ref_fail(buf, n, &want_complete);
    valid_seen += want_at < 0 && want_complete;
    if (!check_buffer(buf, n, want_at, want_complete, "random")) {
      size_t i;
      printf("# input:");
      for (i = 0; i < n; i++)
        printf(" %02x", buf[i]);
      printf("\n");
      if (++bad > 5) break;
    }
  }
  IS_INT(bad, 0, "100000 random inputs agree with a code-point decoder");
  OK(valid_seen > 5000, "many of them valid (%d)", valid_seen);
}

/* Every 1-, 2-, 3-byte sequence and many 4-byte ones, exhaustively against
 * the reference. */
TEST(exhaustive_short) {
  uint8_t b[4];
  uint32_t x;
  int bad = 0;

  for (x = 0; x < (1u << 24); x++) {
    int wc, wa, c, sf, at;
    b[0] = (uint8_t)(x >> 16);
    b[1] = (uint8_t)(x >> 8);
    b[2] = (uint8_t)x;
    wa = ref_fail(b, 3, &wc);
    at = fail_index_bytewise(b, 3, &c, &sf);
    if (at != wa || (wa < 0 && c != wc)) bad++;
  }
  IS_INT(bad, 0, "all 2^24 three-byte inputs agree with the reference");
  bad = 0;
  for (x = 0; x < (1u << 24); x++) {
    int wc, wa, c, sf, at;
    b[0] = (uint8_t)(0xf0 + ((x >> 22) & 3) * 2 + ((x >> 21) & 1));
    b[1] = (uint8_t)(x >> 13);
    b[2] = (uint8_t)(x >> 5);
    b[3] = (uint8_t)(0x78 + (x & 0x1f) * 4);
    wa = ref_fail(b, 4, &wc);
    at = fail_index_bytewise(b, 4, &c, &sf);
    if (at != wa || (wa < 0 && c != wc)) bad++;
  }
  IS_INT(bad, 0, "2^24 four-byte inputs led by F0-F7 agree");
}

TEST(long_valid) {
  size_t n = 1 << 20, i = 0;
  uint8_t *b = malloc(n + 8);
  ws_utf8 v = {0};
  int rv = 0;

  while (i + 4 <= n) {
    static const char *mix[] = {"abcdefgh", "\xc3\xa9", "\xe4\xb8\xad",
                                "\xf0\x9f\x98\x80"};
    const char *m = mix[(i / 7) % 4];
    size_t l = strlen(m);
    memcpy(b + i, m, l);
    i += l;
  }
  while (i < n)
    b[i++] = 'z';
  OK(ws_utf8_valid(b, n), "1 MiB of mixed text in one call");
  for (i = 0; i < n; i += 4093)
    rv |= ws_utf8_feed(&v, b + i, i + 4093 <= n ? 4093 : n - i);
  OK(rv == 0 && ws_utf8_complete(&v), "the same in 4093-byte pieces");
  b[n / 2] = 0xff;
  OK(!ws_utf8_valid(b, n), "one bad byte in the middle is found");
  free(b);
}

int main(void) {
  RUN(table);
  RUN(table_in_context);
  RUN(random_against_reference);
  RUN(exhaustive_short);
  RUN(long_valid);
  return tap_done();
}
