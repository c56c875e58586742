/* bench/raw_echo.c: a raw libuv TCP echo server, the physical limit that the
 * WebSocket servers are compared with. `raw_echo PORT [HOST]`.
 *
 * Every read goes into one shared buffer and is written straight back with
 * uv_try_write; only what the kernel does not take is copied into a write
 * request, and the connection stops reading until that write completes, so
 * a slow reader gets TCP backpressure instead of an unbounded queue.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include <uv.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define READ_BUF (256 * 1024)

typedef struct {
  uv_tcp_t tcp;
  uv_write_t wreq;
  char *pending; /* bytes the kernel did not take, owned by wreq */
} client_t;

static uv_loop_t *loop;
static uv_tcp_t server;
static char rbuf[READ_BUF];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h;
  (void)suggested;
  *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_closed(uv_handle_t *h) {
  client_t *c = h->data;
  if (!c->pending) free(c); /* else freed by on_write (cancelled) */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void on_write(uv_write_t *req, int status) {
  client_t *c = req->data;
  free(c->pending);
  c->pending = NULL;
  if (uv_is_closing((uv_handle_t *)&c->tcp)) {
    free(c);
    return;
  }
  if (status < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  client_t *c = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  uv_buf_t out = uv_buf_init(b->base, (unsigned)nread);
  int n = uv_try_write(s, &out, 1);
  if (n == nread) return;
  if (n < 0 && n != UV_EAGAIN) {
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  if (n < 0) n = 0;
  size_t rest = (size_t)nread - (size_t)n;
  c->pending = malloc(rest);
  if (!c->pending) {
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  memcpy(c->pending, b->base + n, rest);
  out = uv_buf_init(c->pending, (unsigned)rest);
  uv_read_stop(s);
  if (uv_write(&c->wreq, s, &out, 1, on_write) < 0) {
    free(c->pending);
    c->pending = NULL;
    uv_close((uv_handle_t *)s, on_closed);
  }
}

static void on_connection(uv_stream_t *srv, int status) {
  if (status < 0) return;
  client_t *c = calloc(1, sizeof *c);
  if (!c) return;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  c->wreq.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: raw_echo PORT [HOST]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  const char *host = argc > 2 ? argv[2] : "127.0.0.1";
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  loop = uv_default_loop();
  struct sockaddr_in addr;
  if (uv_ip4_addr(host, port, &addr) != 0) {
    fprintf(stderr, "raw_echo: bad address %s\n", host);
    return 2;
  }
  uv_tcp_init(loop, &server);
  int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&server, 4096, on_connection);
  if (r < 0) {
    fprintf(stderr, "raw_echo: listen on %s:%d: %s\n", host, port, uv_strerror(r));
    return 1;
  }
  printf("raw_echo listening on %s:%d\n", host, port);
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
