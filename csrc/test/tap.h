/*
 * A small TAP producer for the C tests (run under prove).
 *
 *   TEST(name) { ... OK(cond, "what"); IS_INT(a, b, "what"); ... }
 *   int main(void) { RUN(name); ...; return tap_done(); }
 */
#ifndef LUVWS_TAP_H
#define LUVWS_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap__n, tap__failed;
static const char *tap__test = "";

static int tap__ok(int cond, const char *file, int line, const char *fmt,
                   ...) {
  va_list ap;
  tap__n++;
  if (!cond) tap__failed++;
  printf("%sok %d - %s: ", cond ? "" : "not ", tap__n, tap__test);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  if (!cond) printf("#   failed at %s:%d\n", file, line);
  fflush(stdout);
  return cond;
}

#define OK(cond, ...) tap__ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define IS_INT(got, want, ...)                                              \
  do {                                                                      \
    long long tap__g = (long long)(got), tap__w = (long long)(want);        \
    if (!OK(tap__g == tap__w, __VA_ARGS__))                                  \
      printf("#   got %lld, want %lld\n", tap__g, tap__w);                  \
  } while (0)
#define IS_MEM(got, got_len, want, want_len, ...)                           \
  do {                                                                      \
    size_t tap__gl = (size_t)(got_len), tap__wl = (size_t)(want_len);       \
    if (!OK(tap__gl == tap__wl && memcmp((got), (want), tap__wl) == 0,      \
            __VA_ARGS__))                                                   \
      printf("#   lengths: got %zu, want %zu\n", tap__gl, tap__wl);         \
  } while (0)
#define IS_STR(got, want, ...)                                              \
  do {                                                                      \
    const char *tap__gs = (got), *tap__ws = (want);                         \
    if (!OK(tap__gs && tap__ws && strcmp(tap__gs, tap__ws) == 0,            \
            __VA_ARGS__))                                                   \
      printf("#   got \"%s\", want \"%s\"\n", tap__gs ? tap__gs : "(null)", \
             tap__ws ? tap__ws : "(null)");                                 \
  } while (0)

#define TEST(name) static void test_##name(void)
#define RUN(name)                                                           \
  do {                                                                      \
    tap__test = #name;                                                      \
    test_##name();                                                          \
  } while (0)

static int tap_done(void) {
  printf("1..%d\n", tap__n);
  return tap__failed ? 1 : 0;
}

#endif
