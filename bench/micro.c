/*
 * Micro-benchmark of the core's hot loops against memcpy, on the same
 * 1 MiB buffers in one run: ws_mask (aligned, unaligned, in place) and
 * ws_utf8_feed (ASCII, mixed UTF-8 text). Prints GB/s and the ratio to
 * memcpy.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ws_core.h"

#define BUF_BYTES (1u << 20)
#define TARGET_SECONDS 0.5

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What a benchmarked loop works on. */
typedef struct {
  uint8_t *dst;       /* output buffer */
  const uint8_t *src; /* input buffer */
  size_t len;         /* bytes per call */
  size_t offset;      /* mask key offset */
  unsigned sink;      /* keeps results alive */
} job;

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

static void run_memcpy(job *j) {
  memcpy(j->dst, j->src, j->len);
  j->sink += j->dst[j->len / 2];
}

static void run_mask(job *j) {
  ws_mask(j->dst, j->src, j->len, key, j->offset);
  j->sink += j->dst[j->len / 2];
}

static void run_utf8(job *j) {
  ws_utf8 v = {0};
  j->sink += (unsigned)ws_utf8_feed(&v, j->src, j->len);
  j->sink += (unsigned)ws_utf8_complete(&v);
}

/* How many calls of fn take about t seconds. */
static long calibrate(void (*fn)(job *), job *j, double t) {
  long iters = 1, i;
  double t0;
  for (i = 0; i < 4; i++)
    fn(j); /* warm up */
  for (;;) {
    t0 = now();
    for (i = 0; i < iters; i++)
      fn(j);
    if (now() - t0 > t) return iters;
    iters *= 2;
  }
}

/* GB/s (10^9 bytes) of iters calls of fn. */
static double rate(void (*fn)(job *), job *j, long iters) {
  double t0 = now();
  long i;
  for (i = 0; i < iters; i++)
    fn(j);
  return (double)j->len * (double)iters / (now() - t0) / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#define ROUNDS 10

/* A result: the subject's and memcpy's median GB/s and the median of the
 * per-round ratios. */
typedef struct {
  double gbs, memcpy_gbs, ratio;
} result;

/* Times fn against memcpy of the same length, round by round (each round
 * both, back to back, about TARGET_SECONDS / ROUNDS for fn), so that a
 * change in machine speed moves both alike. */
static result measure(void (*fn)(job *), job *j, job *mj) {
  double g[ROUNDS], m[ROUNDS], r[ROUNDS];
  long it = calibrate(fn, j, TARGET_SECONDS / ROUNDS / 4) * 4;
  long itm = calibrate(run_memcpy, mj, TARGET_SECONDS / ROUNDS / 4) * 4;
  result res;
  int k;
  for (k = 0; k < ROUNDS; k++) {
    m[k] = rate(run_memcpy, mj, itm);
    g[k] = rate(fn, j, it);
    r[k] = g[k] / m[k];
  }
  qsort(g, ROUNDS, sizeof g[0], cmp_double);
  qsort(m, ROUNDS, sizeof m[0], cmp_double);
  qsort(r, ROUNDS, sizeof r[0], cmp_double);
  res.gbs = (g[ROUNDS / 2 - 1] + g[ROUNDS / 2]) / 2;
  res.memcpy_gbs = (m[ROUNDS / 2 - 1] + m[ROUNDS / 2]) / 2;
  res.ratio = (r[ROUNDS / 2 - 1] + r[ROUNDS / 2]) / 2;
  return res;
}

static void report(const char *name, result r) {
  printf("%-28s %8.2f %10.2f %10.2f\n", name, r.gbs, r.memcpy_gbs, r.ratio);
}

/* Fills b with n bytes of mixed text: English, French, German, Russian,
 * Greek, Chinese, Japanese, Korean, Arabic, Hindi and emoji, repeated and
 * cut on a character boundary. Returns the length used. */
static size_t fill_mixed(uint8_t *b, size_t n) {
  static const char *text[] = {
      "The quick brown fox jumps over the lazy dog. ",
      "Voix ambigu\xc3\xab d'un c\xc5\x93ur qui au z\xc3\xa9phyr "
      "pr\xc3\xa9"
      "f\xc3\xa8re les jattes de kiwis. ",
      "Falsches \xc3\x9c"
      "ben von Xylophonmusik qu\xc3\xa4lt jeden "
      "gr\xc3\xb6\xc3\x9f"
      "eren Zwerg. ",
      "\xd0\xa1\xd1\x8a\xd0\xb5\xd1\x88\xd1\x8c \xd0\xb6\xd0\xb5 \xd0\xb5"
      "\xd1\x89\xd1\x91 \xd1\x8d\xd1\x82\xd0\xb8\xd1\x85 \xd0\xbc\xd1\x8f"
      "\xd0\xb3\xd0\xba\xd0\xb8\xd1\x85 \xd1\x84\xd1\x80\xd0\xb0\xd0\xbd"
      "\xd1\x86\xd1\x83\xd0\xb7\xd1\x81\xd0\xba\xd0\xb8\xd1\x85 \xd0\xb1"
      "\xd1\x83\xd0\xbb\xd0\xbe\xd0\xba. ",
      "\xce\x93\xce\xb1\xce\xb6\xce\xad\xce\xb5\xcf\x82 \xce\xba\xce\xb1"
      "\xe1\xbd\xb6 \xce\xbc\xcf\x85\xcf\x81\xcf\x84\xce\xb9\xe1\xbd\xb2"
      "\xcf\x82. ",
      "\xe6\x88\x91\xe8\x83\xbd\xe5\x90\x9e\xe4\xb8\x8b\xe7\x8e\xbb\xe7"
      "\x92\x83\xe8\x80\x8c\xe4\xb8\x8d\xe4\xbc\xa4\xe8\xba\xab\xe4\xbd"
      "\x93\xe3\x80\x82",
      "\xe3\x81\x84\xe3\x82\x8d\xe3\x81\xaf\xe3\x81\xab\xe3\x81\xbb\xe3"
      "\x81\xb8\xe3\x81\xa8 \xe3\x81\xa1\xe3\x82\x8a\xe3\x81\xac\xe3\x82"
      "\x8b\xe3\x82\x92\xe3\x80\x82",
      "\xed\x82\xa4\xec\x8a\xa4\xec\x9d\x98 \xea\xb3\xa0\xec\x9c\xa0"
      "\xec\xa1\xb0\xea\xb1\xb4\xec\x9d\x80. ",
      "\xd9\x86\xd8\xb5 \xd8\xad\xd9\x83\xd9\x8a\xd9\x85 \xd9\x84\xd9\x87"
      " \xd8\xb3\xd8\xb1 \xd9\x82\xd8\xa7\xd8\xb7\xd8\xb9. ",
      "\xe0\xa4\x8b\xe0\xa4\xb7\xe0\xa4\xbf\xe0\xa4\xaf\xe0\xa5\x8b\xe0"
      "\xa4\x82 \xe0\xa4\x95\xe0\xa5\x8b. ",
      "GG \xf0\x9f\x98\x80\xf0\x9f\x8e\xae\xf0\x9f\x9a\x80 ok! ",
  };
  size_t pos = 0, k = 0;
  for (;;) {
    const char *t = text[k++ % (sizeof text / sizeof text[0])];
    size_t l = strlen(t);
    if (pos + l > n) break;
    memcpy(b + pos, t, l);
    pos += l;
  }
  return pos;
}

int main(void) {
  uint8_t *src = malloc(BUF_BYTES + 64), *dst = malloc(BUF_BYTES + 64);
  uint8_t *ascii = malloc(BUF_BYTES), *mixed = malloc(BUF_BYTES);
  size_t i, mixed_len, counts[5] = {0};
  job j, mj;
  unsigned sink = 0;

  if (!src || !dst || !ascii || !mixed) return 1;
  for (i = 0; i < BUF_BYTES + 64; i++)
    src[i] = (uint8_t)(i * 131 + 7);
  memset(dst, 0, BUF_BYTES + 64);
  for (i = 0; i < BUF_BYTES; i++)
    ascii[i] = (uint8_t)(' ' + i % 95);
  mixed_len = fill_mixed(mixed, BUF_BYTES);
  for (i = 0; i < mixed_len; i++) {
    uint8_t c = mixed[i];
    if (c < 0x80)
      counts[1]++;
    else if (c >= 0xf0)
      counts[4]++;
    else if (c >= 0xe0)
      counts[3]++;
    else if (c >= 0xc0)
      counts[2]++;
  }
  if (!ws_utf8_valid(mixed, mixed_len) || !ws_utf8_valid(ascii, BUF_BYTES)) {
    fprintf(stderr, "micro: test text is not valid UTF-8\n");
    return 1;
  }

  printf("buffers of %u bytes; mixed text: %zu bytes, %zu chars of 1 byte, "
         "%zu of 2, %zu of 3, %zu of 4\n",
         BUF_BYTES, mixed_len, counts[1], counts[2], counts[3], counts[4]);
  printf("medians of %d rounds, each timing memcpy and the loop back to "
         "back\n",
         ROUNDS);
  printf("%-28s %8s %10s %10s\n", "loop", "GB/s", "memcpy", "x memcpy");

  memset(&mj, 0, sizeof mj);
  mj.dst = dst;
  mj.src = src;
  mj.len = BUF_BYTES;
  memset(&j, 0, sizeof j);
  j.dst = dst;
  j.src = src;
  j.len = BUF_BYTES;
  report("memcpy", measure(run_memcpy, &j, &mj));
  report("ws_mask aligned", measure(run_mask, &j, &mj));
  j.dst = dst + 1;
  j.src = src + 3;
  j.offset = 1;
  report("ws_mask unaligned (+1/+3)", measure(run_mask, &j, &mj));
  j.dst = src + 5;
  j.src = src + 5;
  report("ws_mask in place (+5)", measure(run_mask, &j, &mj));
  sink += j.sink;

  memset(&j, 0, sizeof j);
  j.src = ascii;
  j.len = BUF_BYTES;
  report("ws_utf8_feed ASCII", measure(run_utf8, &j, &mj));
  j.src = mixed;
  j.len = mixed_len;
  mj.len = mixed_len;
  report("ws_utf8_feed mixed UTF-8", measure(run_utf8, &j, &mj));
  sink += j.sink + mj.sink;

  printf("targets: ws_mask >= 0.5x memcpy, ASCII >= 0.5x memcpy, "
         "mixed >= 1 GB/s (sink %u)\n",
         sink & 1);
  free(src);
  free(dst);
  free(ascii);
  free(mixed);
  return 0;
}
