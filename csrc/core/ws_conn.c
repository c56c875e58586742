/*
 * luvws core: the WebSocket connection engine (RFC 6455 after the opening
 * handshake). See ws_conn.h for the contract.
 *
 * Receiving is a three-state machine (frame header, data payload, control
 * payload). Header bytes are gathered in the engine (they may arrive one at
 * a time); data payload is unmasked in the caller's buffer and handed to
 * on_data at once; control payloads (at most 125 bytes) are gathered in the
 * engine. Every check runs as soon as the bytes it needs are there, in an
 * order that only depends on those bytes, so the same input gives the same
 * error however it is split.
 *
 * Sending keeps a singly linked queue of units. A unit is a list of
 * segments (byte ranges) and a cursor (segment, offset) at its first
 * unconsumed byte:
 *   - WS__U_BUF: one segment of engine memory right after the unit (control
 *     frames, and client messages: headers and masked payload together);
 *   - WS__U_PREBUILT: the caller's header and payload (send_prebuilt);
 *   - WS__U_FRAMED: a server message part framed on the fly: segment 2i is
 *     the header of frame i, 2i+1 its payload in the caller's memory. Every
 *     frame but the first and the last has the same header, so three
 *     headers are kept, whatever the number of frames.
 *
 * permessage-deflate (RFC 7692; the zlib mechanics are in ws_deflate.c):
 *   - sending: a compressed part is deflated at once (Z_SYNC_FLUSH) into
 *     engine memory, which the unit owns (WS__U_FRAMED over it for the
 *     server, masked into a WS__U_BUF for the client); RSV1 goes on the
 *     first frame of the message only. Parts are compressed in queue
 *     order, which is the order they go out, so the peer's window always
 *     matches ours.
 *   - receiving: the payload of a compressed message is inflated into a
 *     WS_INFLATE_CHUNK buffer, and each full buffer (and the rest at the
 *     end of the input) goes to on_data after the read_message_max and
 *     UTF-8 checks, so a message is never held whole and a compression
 *     bomb stops at the limit.
 *   - zlib state exists only on connections that use it: the compressor
 *     from the first compressed send, the decompressor from the first
 *     compressed message received, the inflate buffer only during a
 *     compressed message. With no_context_takeover for a direction, that
 *     direction's stream is freed after every message; everything is freed
 *     once the direction can carry no more messages (close sent or
 *     received, failure, abort, free).
 *
 * Callbacks may call back into the engine (send, ping, close, abort, the
 * output functions), but not ws_conn_recv or ws_conn_free.
 */
#include "ws_conn.h"

#include <string.h>

#include "ws_deflate.h"

/* Receive states. */
enum { WS__RD_HEADER, WS__RD_DATA, WS__RD_CONTROL };

/* Unit kinds. */
enum { WS__U_BUF, WS__U_PREBUILT, WS__U_FRAMED };

/* Unit flags. */
#define WS__U_STARTED 0x1 /* out_iov has shown some of its bytes */
#define WS__U_CONTROL 0x2 /* ping or pong: goes ahead of units not started */
#define WS__U_CLOSE 0x4   /* our close frame */

/* The largest control frame: header with mask key, and payload. */
#define WS__CONTROL_FRAME_MAX (2 + 4 + WS_MAX_CONTROL_PAYLOAD)

/* How many mask keys are drawn from the rng at once. */
#define WS__KEY_BATCH 64

typedef struct ws_unit ws_unit;

struct ws_unit {
  ws_unit *next; /* the next unit in the queue */
  void *token;   /* given back through on_sent; NULL is not reported */
  size_t remain; /* bytes not yet consumed */
  size_t seg;    /* segment holding the first unconsumed byte */
  size_t off;    /* offset of that byte in its segment */
  size_t nseg;   /* number of segments */
  void *owned;   /* engine memory the unit frees with itself, or NULL */
  uint8_t kind;  /* WS__U_BUF, WS__U_PREBUILT or WS__U_FRAMED */
  uint8_t flags; /* WS__U_STARTED, WS__U_CONTROL, WS__U_CLOSE */
  union {
    struct {
      const uint8_t *base; /* the frame bytes (right after the unit) */
      size_t len;          /* their number */
    } buf;                 /* WS__U_BUF */
    struct {
      const uint8_t *hdr;  /* the caller's frame header */
      size_t hdr_len;      /* its length */
      const uint8_t *data; /* the caller's payload */
      size_t len;          /* its length */
    } pre;                 /* WS__U_PREBUILT */
    struct {
      const uint8_t *data; /* the caller's payload */
      size_t len;          /* its length */
      size_t frag;         /* payload of every frame but the last */
      uint8_t hdr[3][10];  /* headers: first (or only), middle, last */
      uint8_t hlen[3];     /* their lengths */
    } fr;                  /* WS__U_FRAMED */
  } u;
};

struct ws_conn {
  const ws_allocator *alloc; /* where every allocation comes from (the
                                caller's; it outlives the engine) */
  ws_rng rng;                /* mask keys (secure_prng) and the PRNG seed */
  const ws_conn_callbacks *cb; /* the caller's callbacks (NULL ones
                                skipped; they outlive the engine) */
  void *user;                /* passed to every callback */
  uint64_t read_message_max; /* largest message received; 0 = no limit */
  uint64_t prng;             /* fast mask PRNG state; 0 until seeded */
  uint64_t rd_remain;        /* payload bytes of this frame not yet read */
  uint64_t rd_msg_size;      /* payload of this message, through this frame */
  size_t write_buffer_bytes; /* auto-fragment size */
  size_t out_pending;        /* queued bytes not yet consumed */
  size_t out_units;          /* queued units (messages, frames) */
  ws_unit *head;             /* the output queue: first unit */
  ws_unit *tail;             /* ... and last unit */
  int error;                 /* the error that failed the engine, or 0 */
  ws_utf8 utf8;              /* validator of the text message being read */
  uint16_t peer_code;        /* the peer's close code, 0 if none */
  uint8_t role;              /* WS_ROLE_CLIENT or WS_ROLE_SERVER */
  uint8_t auto_fragment;     /* split outgoing parts at write_buffer_bytes */
  uint8_t secure_prng;       /* mask keys from rng (1) or the PRNG (0) */
  uint8_t state;             /* WS_ST_* flags */
  uint8_t sending;           /* an outgoing write_some message is open */
  int8_t got_text;           /* last data message received: 1 text, 0
                                binary, -1 none yet */
  uint8_t msg_done;          /* the last data delivered ended a message */
  uint8_t rd_state;          /* WS__RD_HEADER, WS__RD_DATA, WS__RD_CONTROL */
  uint8_t rd_op;             /* opcode of the frame being read */
  uint8_t rd_fin;            /* FIN bit of the frame being read */
  uint8_t rd_masked;         /* the frame being read is masked */
  uint8_t rd_key_pos;        /* mask key index of the next payload byte */
  uint8_t rd_cont;           /* a continuation frame is expected */
  uint8_t rd_text;           /* the message being read is text */
  uint8_t rd_first;          /* its next chunk delivered is its first */
  uint8_t hdr_len;           /* bytes of hdr gathered */
  /* permessage-deflate. */
  ws_pmd_params pmd;    /* negotiated; pmd.active == 0: off */
  size_t pmd_threshold; /* smaller messages are sent uncompressed */
  ws_zdef *zdef;        /* our compressor, or NULL */
  ws_zinf *zinf;        /* the peer's decompressor, or NULL */
  uint8_t *zout;        /* inflate output, during a compressed message */
  uint8_t pmd_level;    /* compression level 0..9 */
  uint8_t pmd_mem;      /* mem_level 1..9 */
  uint8_t tx_bits;      /* window bits we compress with (8..15) */
  uint8_t rx_bits;      /* window bits the peer compresses with */
  uint8_t tx_nct;       /* our window is dropped after each message */
  uint8_t rx_nct;       /* the peer's window is dropped after each */
  uint8_t tx_deflate;   /* the outgoing message is compressed */
  uint8_t tx_reset;     /* reset zdef before it is used again */
  uint8_t rd_deflate;   /* the message being read is compressed */
  uint8_t rd_zbytes;    /* ... and payload bytes of it arrived */
  uint8_t rd_busy;      /* inside ws_conn_recv */
  uint8_t hdr[WS_MAX_FRAME_HEADER];    /* the frame header being read */
  uint8_t rd_key[4];                   /* its mask key */
  uint8_t ctl_len;                     /* bytes of ctl gathered */
  uint8_t *ctl; /* control payload (WS_MAX_CONTROL_PAYLOAD bytes, made when a
                   control frame with a payload arrives, freed after it;
                   after a close arrived, the peer's close, kept) */
};

/* ---------------------------------------------------------------- memory */

static void *ws__alloc(ws_conn *c, size_t n) {
  return c->alloc->malloc(n, c->alloc->ud);
}

static void ws__free(ws_conn *c, void *p) {
  c->alloc->free(p, c->alloc->ud);
}

/* ------------------------------------------------------------- mask keys */

/* xorshift64* step: a fast generator, not a secure one. */
static uint64_t ws__prng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545f4914f6cdd1dull;
}

/* Seeds the fast PRNG from the caller's rng once. */
static int ws__prng_seed(ws_conn *c) {
  uint8_t b[8];
  uint64_t s = 0;
  int i;

  if (c->prng != 0) return 0;
  if (!c->rng.fill || c->rng.fill(c->rng.ud, b, sizeof b) != 0)
    return WS_E_no_memory;
  for (i = 0; i < 8; i++)
    s = (s << 8) | b[i];
  c->prng = s ? s : 0x9e3779b97f4a7c15ull;
  return 0;
}

/* Fills out with n mask keys (4 bytes each). */
static int ws__keys(ws_conn *c, uint8_t *out, size_t n) {
  size_t i;
  int rv;

  if (c->secure_prng)
    return c->rng.fill(c->rng.ud, out, 4 * n) == 0 ? 0 : WS_E_no_memory;
  if ((rv = ws__prng_seed(c)) != 0) return rv;
  for (i = 0; i < n; i++) {
    uint64_t r = ws__prng_next(&c->prng);
    out[4 * i] = (uint8_t)(r >> 56);
    out[4 * i + 1] = (uint8_t)(r >> 48);
    out[4 * i + 2] = (uint8_t)(r >> 40);
    out[4 * i + 3] = (uint8_t)(r >> 32);
  }
  return 0;
}

/* ----------------------------------------------------------------- units */

/* Length of a frame header for a payload of len bytes. */
static size_t ws__hdr_size(uint64_t len, int masked) {
  size_t n = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
  return masked ? n + 4 : n;
}

/* Segment k of u. */
static ws_iov ws__unit_seg(const ws_unit *u, size_t k) {
  ws_iov s;

  switch (u->kind) {
  case WS__U_BUF:
    s.base = u->u.buf.base;
    s.len = u->u.buf.len;
    break;
  case WS__U_PREBUILT:
    if (k == 0) {
      s.base = u->u.pre.hdr;
      s.len = u->u.pre.hdr_len;
    } else {
      s.base = u->u.pre.data;
      s.len = u->u.pre.len;
    }
    break;
  default: {
    size_t i = k >> 1, last = (u->nseg >> 1) - 1;
    if (k & 1) {
      /* (No arithmetic on a NULL payload pointer: an empty message may
       * have none.) */
      s.base = i ? u->u.fr.data + i * u->u.fr.frag : u->u.fr.data;
      s.len = i == last ? u->u.fr.len - i * u->u.fr.frag : u->u.fr.frag;
    } else {
      int h = i == 0 ? 0 : i == last ? 2 : 1;
      s.base = u->u.fr.hdr[h];
      s.len = u->u.fr.hlen[h];
    }
    break;
  }
  }
  return s;
}

/* Allocates a unit with extra bytes of frame memory after it. */
static ws_unit *ws__unit_new(ws_conn *c, size_t extra, void *token) {
  ws_unit *u;

  if (extra > SIZE_MAX - sizeof(ws_unit)) return NULL;
  u = (ws_unit *)ws__alloc(c, sizeof(ws_unit) + extra);
  if (!u) return NULL;
  memset(u, 0, sizeof *u);
  u->token = token;
  return u;
}

/* Frees u and the memory it owns. */
static void ws__unit_free(ws_conn *c, ws_unit *u) {
  if (u->owned) ws__free(c, u->owned);
  ws__free(c, u);
}

/* Builds one control frame (ping, pong or close) in a new unit: payload is
 * a followed by b. */
static int ws__control_unit(ws_conn *c, int opcode, const uint8_t *a, size_t na,
                            const uint8_t *b, size_t nb, void *token,
                            ws_unit **out) {
  uint8_t key[4], *p;
  size_t h;
  int rv, client = c->role == WS_ROLE_CLIENT;
  ws_unit *u = ws__unit_new(c, WS__CONTROL_FRAME_MAX, token);

  if (!u) return WS_E_no_memory;
  if (client && (rv = ws__keys(c, key, 1)) != 0) {
    ws__free(c, u);
    return rv;
  }
  p = (uint8_t *)(u + 1);
  h = ws_frame_header_build(p, 1, 0, opcode, client ? key : NULL, na + nb);
  if (na) memcpy(p + h, a, na);
  if (nb) memcpy(p + h + na, b, nb);
  if (client) ws_mask(p + h, p + h, na + nb, key, 0);
  u->kind = WS__U_BUF;
  u->nseg = 1;
  u->u.buf.base = p;
  u->u.buf.len = h + na + nb;
  u->remain = u->u.buf.len;
  *out = u;
  return 0;
}

/* Appends u at the end of the queue. */
static void ws__queue_append(ws_conn *c, ws_unit *u) {
  u->next = NULL;
  if (c->tail)
    c->tail->next = u;
  else
    c->head = u;
  c->tail = u;
  c->out_pending += u->remain;
  c->out_units++;
}

/* Inserts a control unit after every started unit and every control unit
 * already waiting, and so ahead of every other unit not yet started. */
static void ws__queue_control(ws_conn *c, ws_unit *u) {
  ws_unit **pp = &c->head;

  u->flags |= WS__U_CONTROL;
  while (*pp && ((*pp)->flags & (WS__U_STARTED | WS__U_CONTROL)) != 0)
    pp = &(*pp)->next;
  u->next = *pp;
  *pp = u;
  if (!u->next) c->tail = u;
  c->out_pending += u->remain;
  c->out_units++;
}

/* Takes every unit not yet started out of the queue, except our close
 * frame (always the last unit), and returns them as a list. */
static ws_unit *ws__queue_take_unstarted(ws_conn *c) {
  ws_unit **pp = &c->head, **lp, *list, *u;

  c->tail = NULL;
  while (*pp && ((*pp)->flags & WS__U_STARTED) != 0) {
    c->tail = *pp;
    pp = &(*pp)->next;
  }
  list = *pp;
  *pp = NULL;
  for (lp = &list; *lp; lp = &(*lp)->next) {
    u = *lp;
    if (u->flags & WS__U_CLOSE) {
      /* A close already queued still goes out. */
      *lp = NULL;
      *pp = u;
      c->tail = u;
      break;
    }
    c->out_pending -= u->remain;
    c->out_units--;
  }
  return list;
}

/* Frees the units of list and reports each one's token with status. */
static void ws__complete_list(ws_conn *c, ws_unit *list, int status) {
  while (list) {
    ws_unit *u = list;
    void *token = u->token;
    list = u->next;
    ws__unit_free(c, u);
    if (token && c->cb->on_sent) c->cb->on_sent(c->user, token, status);
  }
}

/* ---------------------------------------------------- permessage-deflate */

/* Frees the compressor. */
static void ws__zdef_drop(ws_conn *c) {
  ws_zdef_free(c->zdef);
  c->zdef = NULL;
  c->tx_reset = 0;
}

/* Frees the decompressor and the inflate buffer. */
static void ws__zinf_drop(ws_conn *c) {
  ws_zinf_free(c->zinf);
  c->zinf = NULL;
  if (c->zout) ws__free(c, c->zout);
  c->zout = NULL;
}

/* Frees the zlib state of each direction that can carry no more messages.
 * Not while ws_conn_recv runs for the receiving side: on_data may still
 * look at the inflate buffer, and the inflate loop at its stream. */
static void ws__pmd_trim(ws_conn *c) {
  if (c->state & (WS_ST_FAILED | WS_ST_CLOSE_SENT)) ws__zdef_drop(c);
  if ((c->state & (WS_ST_FAILED | WS_ST_CLOSE_RECEIVED)) && !c->rd_busy)
    ws__zinf_drop(c);
}

/* -------------------------------------------------------------- failures */

/* Fails the engine with a protocol error: drops every unit not yet
 * started (but a close frame already queued), queues the close frame that
 * goes with err unless a close was already queued, and returns err. */
static int ws__fail(ws_conn *c, int err) {
  /* A message that cannot be inflated is payload data inconsistent with
   * its message (RFC 6455 §7.4.1, 1007), as bad UTF-8 is: the frames were
   * well formed, their content was not. Memory running out while a
   * message is inflated leaves the stream unusable: 1011. */
  unsigned code = err == WS_E_bad_frame_payload     ? 1007
                  : err == WS_E_bad_compressed_data ? 1007
                  : err == WS_E_message_too_big     ? 1009
                  : err == WS_E_no_memory           ? 1011
                                                    : 1002;
  uint8_t pl[2];
  ws_unit *cl = NULL, *dropped;

  if (!(c->state & WS_ST_CLOSE_SENT)) {
    pl[0] = (uint8_t)(code >> 8);
    pl[1] = (uint8_t)code;
    /* Out of memory: the failure stands, without a close frame. */
    if (ws__control_unit(c, WS_OP_CLOSE, pl, 2, NULL, 0, NULL, &cl) != 0)
      cl = NULL;
  }
  c->state |= WS_ST_FAILED;
  c->error = err;
  dropped = ws__queue_take_unstarted(c);
  if (cl) {
    cl->flags |= WS__U_CLOSE;
    ws__queue_append(c, cl);
    c->state |= WS_ST_CLOSE_SENT;
  }
  ws__complete_list(c, dropped, WS_E_operation_aborted);
  return err;
}

/* ---------------------------------------------------------------- config */

void ws_conn_config_default(ws_conn_config *cfg, int role) {
  memset(cfg, 0, sizeof *cfg);
  cfg->role = role;
  cfg->read_message_max = 16u * 1024 * 1024;
  cfg->write_buffer_bytes = 4096;
  cfg->auto_fragment = 1;
  cfg->secure_prng = 1;
  cfg->alloc = NULL;
  cfg->rng.ud = NULL;
  cfg->rng.fill = NULL;
}

static const ws_conn_callbacks ws__no_callbacks = {NULL, NULL, NULL};

ws_conn *ws_conn_new(const ws_conn_config *cfg, const ws_conn_callbacks *cb,
                     void *user) {
  const ws_allocator *a;
  ws_conn *c;

  if (!cfg || (cfg->role != WS_ROLE_CLIENT && cfg->role != WS_ROLE_SERVER))
    return NULL;
  if (cfg->write_buffer_bytes < 8) return NULL;
  if (cfg->role == WS_ROLE_CLIENT && !cfg->rng.fill) return NULL;
  a = cfg->alloc ? cfg->alloc : ws_default_allocator();
  c = (ws_conn *)a->malloc(sizeof *c, a->ud);
  if (!c) return NULL;
  memset(c, 0, sizeof *c);
  c->alloc = a;
  c->rng = cfg->rng;
  c->cb = cb ? cb : &ws__no_callbacks;
  c->user = user;
  c->read_message_max = cfg->read_message_max;
  c->write_buffer_bytes = cfg->write_buffer_bytes;
  c->role = (uint8_t)cfg->role;
  c->auto_fragment = cfg->auto_fragment != 0;
  c->secure_prng = cfg->secure_prng != 0;
  c->got_text = -1;
  c->msg_done = 1;
  c->rd_state = WS__RD_HEADER;
  if (c->role == WS_ROLE_CLIENT && !c->secure_prng && ws__prng_seed(c)) {
    a->free(c, a->ud);
    return NULL;
  }
  return c;
}

void ws_conn_free(ws_conn *c) {
  if (!c) return;
  ws_conn_abort(c);
  ws__zdef_drop(c);
  ws__zinf_drop(c);
  if (c->ctl) ws__free(c, c->ctl);
  ws__free(c, c);
}

int ws_conn_reconfigure(ws_conn *c, const ws_conn_config *cfg) {
  if (c->role == WS_ROLE_CLIENT && !cfg->secure_prng) {
    int rv = ws__prng_seed(c);
    if (rv) return rv;
  }
  c->read_message_max = cfg->read_message_max;
  /* Below the minimum of 8 is taken as 8 (the binding rejects it first). */
  c->write_buffer_bytes =
      cfg->write_buffer_bytes < 8 ? 8 : cfg->write_buffer_bytes;
  c->auto_fragment = cfg->auto_fragment != 0;
  c->secure_prng = cfg->secure_prng != 0;
  return 0;
}

static int ws__bits_ok(int bits) {
  return bits >= 8 && bits <= 15;
}

int ws_conn_set_pmd(ws_conn *c, const ws_pmd_params *p,
                    const ws_pmd_config *cfg) {
  ws_pmd_config def;
  int server = c->role == WS_ROLE_SERVER;

  /* Not from a callback of ws_conn_recv: the inflate loop holds the
   * stream. */
  if (c->rd_busy) return WS_E_operation_in_progress;
  if (p && p->active) {
    if (!cfg) {
      ws_pmd_config_default(&def);
      cfg = &def;
    }
    if (!ws__bits_ok(p->server_max_window_bits) ||
        !ws__bits_ok(p->client_max_window_bits) || cfg->comp_level < 0 ||
        cfg->comp_level > 9 || cfg->mem_level < 1 || cfg->mem_level > 9)
      return WS_E_bad_extension;
  }
  ws__zdef_drop(c);
  ws__zinf_drop(c);
  memset(&c->pmd, 0, sizeof c->pmd);
  if (!p || !p->active) return 0;
  c->pmd.active = 1;
  c->pmd.server_max_window_bits = p->server_max_window_bits;
  c->pmd.client_max_window_bits = p->client_max_window_bits;
  c->pmd.server_no_context_takeover = p->server_no_context_takeover != 0;
  c->pmd.client_no_context_takeover = p->client_no_context_takeover != 0;
  c->pmd_threshold = cfg->msg_size_threshold;
  c->pmd_level = (uint8_t)cfg->comp_level;
  c->pmd_mem = (uint8_t)cfg->mem_level;
  /* Each side compresses with its own direction's parameters. */
  c->tx_bits =
      (uint8_t)(server ? p->server_max_window_bits : p->client_max_window_bits);
  c->rx_bits =
      (uint8_t)(server ? p->client_max_window_bits : p->server_max_window_bits);
  c->tx_nct = (uint8_t)(server ? c->pmd.server_no_context_takeover
                               : c->pmd.client_no_context_takeover);
  c->rx_nct = (uint8_t)(server ? c->pmd.client_no_context_takeover
                               : c->pmd.server_no_context_takeover);
  return 0;
}

void ws_conn_get_pmd(const ws_conn *c, ws_pmd_params *p) {
  *p = c->pmd;
}

/* ----------------------------------------------------------------- input */

/* Size of the header in c->hdr, whose first two bytes are there. */
static size_t ws__rd_hdr_size(const ws_conn *c) {
  size_t n = 2;
  uint8_t len7 = c->hdr[1] & 0x7f;

  if (len7 == 126) n += 2;
  if (len7 == 127) n += 8;
  if (c->hdr[1] & 0x80) n += 4;
  return n;
}

/* Checks that need only the first two header bytes. */
static int ws__rd_check_start(const ws_conn *c) {
  uint8_t b0 = c->hdr[0], b1 = c->hdr[1];
  int op = b0 & 0x0f, fin = (b0 & 0x80) != 0, masked = (b1 & 0x80) != 0;

  /* RSV1 marks a compressed message: only on its first frame, and only
   * when permessage-deflate is on (RFC 7692 §6). */
  if ((b0 & 0x30) || ((b0 & 0x40) && !(c->pmd.active && (op == WS_OP_TEXT ||
                                                         op == WS_OP_BINARY))))
    return WS_E_bad_reserved_bits;
  if ((op > WS_OP_BINARY && op < WS_OP_CLOSE) || op > WS_OP_PONG)
    return WS_E_bad_opcode;
  if (op >= WS_OP_CLOSE) {
    if (!fin) return WS_E_bad_control_fragment;
    if ((b1 & 0x7f) > WS_MAX_CONTROL_PAYLOAD) return WS_E_bad_control_size;
  }
  if (c->role == WS_ROLE_SERVER && !masked) return WS_E_bad_unmasked_frame;
  if (c->role == WS_ROLE_CLIENT && masked) return WS_E_bad_masked_frame;
  if (op == WS_OP_CONT && !c->rd_cont) return WS_E_bad_continuation;
  if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && c->rd_cont)
    return WS_E_bad_data_frame;
  return 0;
}

/* The whole header is in c->hdr: checks the length and sets up the frame.
 */
static int ws__rd_frame_start(ws_conn *c) {
  uint8_t len7 = c->hdr[1] & 0x7f;
  uint64_t len = len7, total;
  size_t pos = 2;
  int i, op = c->hdr[0] & 0x0f;

  if (len7 == 126) {
    len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
    if (len < 126) return WS_E_bad_size;
    pos = 4;
  } else if (len7 == 127) {
    len = 0;
    for (i = 0; i < 8; i++)
      len = (len << 8) | c->hdr[2 + i];
    if (len >> 63 || len <= 0xffff) return WS_E_bad_size;
    pos = 10;
  }
  c->rd_op = (uint8_t)op;
  c->rd_fin = (c->hdr[0] & 0x80) != 0;
  c->rd_masked = (c->hdr[1] & 0x80) != 0;
  if (c->rd_masked) memcpy(c->rd_key, c->hdr + pos, 4);
  c->rd_key_pos = 0;
  c->rd_remain = len;
  c->hdr_len = 0;
  if (op >= WS_OP_CLOSE) {
    c->ctl_len = 0;
    if (len > 0 && !c->ctl &&
        !(c->ctl = (uint8_t *)ws__alloc(c, WS_MAX_CONTROL_PAYLOAD)))
      return ws__fail(c, WS_E_no_memory);
    c->rd_state = WS__RD_CONTROL;
    return 0;
  }
  if (op != WS_OP_CONT) c->rd_deflate = (c->hdr[0] & 0x40) != 0;
  total = op == WS_OP_CONT ? c->rd_msg_size : 0;
  /* A compressed message is held to read_message_max as it is inflated
   * (ws__rd_zcheck): its wire size says nothing. */
  if (!c->rd_deflate) {
    if (len > UINT64_MAX - total) return WS_E_message_too_big;
    if (c->read_message_max && total + len > c->read_message_max)
      return WS_E_message_too_big;
  }
  if (op != WS_OP_CONT) {
    c->rd_text = op == WS_OP_TEXT;
    c->got_text = (int8_t)c->rd_text;
    c->rd_first = 1;
    c->rd_zbytes = 0;
    ws_utf8_reset(&c->utf8);
  }
  c->rd_msg_size = c->rd_deflate ? total : total + len;
  c->rd_cont = !c->rd_fin;
  c->rd_state = WS__RD_DATA;
  return 0;
}

/* Gathers header bytes from *p. Returns 0 (the header may still be
 * incomplete: c->rd_state tells) or a protocol error. */
static int ws__rd_header(ws_conn *c, uint8_t **p, size_t *len) {
  for (;;) {
    size_t need = c->hdr_len < 2 ? 2 : ws__rd_hdr_size(c);
    size_t take = need - c->hdr_len;
    int rv;

    if (take > *len) take = *len;
    memcpy(c->hdr + c->hdr_len, *p, take);
    c->hdr_len = (uint8_t)(c->hdr_len + take);
    *p += take;
    *len -= take;
    if (c->hdr_len < need) return 0;
    if (need == 2) {
      if ((rv = ws__rd_check_start(c)) != 0) return rv;
      if (ws__rd_hdr_size(c) > 2) continue;
    }
    return ws__rd_frame_start(c);
  }
}

/* Drops the control payload buffer after a ping or pong: an idle
 * connection keeps none (a close keeps it: its reason is
 * ws_conn_peer_close's). */
static int ws__rd_control_done(ws_conn *c, int rv) {
  if (c->rd_op != WS_OP_CLOSE && c->ctl) {
    ws__free(c, c->ctl);
    c->ctl = NULL;
    c->ctl_len = 0;
  }
  return rv;
}

/* A whole control frame is in c->ctl (unmasked). */
static int ws__rd_control(ws_conn *c) {
  int rv, op = c->rd_op;
  ws_unit *u = NULL, *dropped;
  /* An empty payload has no buffer; callers still get a valid pointer. */
  const uint8_t *pl = c->ctl ? c->ctl : (const uint8_t *)"";

  c->rd_state = WS__RD_HEADER;
  if (op == WS_OP_PING) {
    if (!(c->state & WS_ST_CLOSE_SENT)) {
      rv = ws__control_unit(c, WS_OP_PONG, pl, c->ctl_len, NULL, 0, NULL, &u);
      if (rv) return ws__rd_control_done(c, rv);
      ws__queue_control(c, u);
    }
  } else if (op == WS_OP_CLOSE) {
    unsigned code = 0;
    if (c->ctl_len == 1) return ws__fail(c, WS_E_bad_close_size);
    if (c->ctl_len >= 2) {
      code = ((unsigned)c->ctl[0] << 8) | c->ctl[1];
      if (!ws_close_code_valid(code)) return ws__fail(c, WS_E_bad_close_code);
      if (!ws_utf8_valid(c->ctl + 2, (size_t)c->ctl_len - 2))
        return ws__fail(c, WS_E_bad_close_payload);
    }
    c->state |= WS_ST_CLOSE_RECEIVED;
    c->peer_code = (uint16_t)code;
    if (!(c->state & WS_ST_CLOSE_SENT)) {
      /* The echo: the peer's code without its reason, 1000 for an empty
       * close. Units not started are dropped, as a closing stream fails
       * writes that did not begin. */
      uint8_t ep[2];
      unsigned echo = code ? code : 1000;
      ep[0] = (uint8_t)(echo >> 8);
      ep[1] = (uint8_t)echo;
      rv = ws__control_unit(c, WS_OP_CLOSE, ep, 2, NULL, 0, NULL, &u);
      if (rv) return rv;
      u->flags |= WS__U_CLOSE;
      dropped = ws__queue_take_unstarted(c);
      ws__queue_append(c, u);
      c->state |= WS_ST_CLOSE_SENT;
      ws__complete_list(c, dropped, WS_E_operation_aborted);
    }
  }
  rv = c->cb->on_control ? c->cb->on_control(c->user, op, pl, c->ctl_len) : 0;
  return ws__rd_control_done(c, rv);
}

/* Checks n more inflated bytes of a compressed message against
 * read_message_max and (text) UTF-8, in byte order, as they are produced
 * and before an inflate error is acted on: the fault that comes first in
 * the message wins, however the input was split. */
static int ws__rd_zcheck(ws_conn *c, const uint8_t *p, size_t n) {
  size_t ok = n;

  if (c->read_message_max) {
    /* (reconfigure may have lowered the limit below what arrived) */
    uint64_t room = c->rd_msg_size < c->read_message_max
                        ? c->read_message_max - c->rd_msg_size
                        : 0;
    if (n > room) ok = (size_t)room;
  }
  if (c->rd_text && ws_utf8_feed(&c->utf8, p, ok) != 0)
    return ws__fail(c, WS_E_bad_frame_payload);
  if (ok < n) return ws__fail(c, WS_E_message_too_big);
  c->rd_msg_size += n;
  return 0;
}

/* Hands n checked bytes of a compressed message to on_data. */
static int ws__rd_zemit(ws_conn *c, const uint8_t *p, size_t n, int fin) {
  unsigned flags;

  if (fin && c->rd_text && !ws_utf8_complete(&c->utf8))
    return ws__fail(c, WS_E_bad_frame_payload);
  flags = (c->rd_text ? WS_DATA_TEXT : 0) | (c->rd_first ? WS_DATA_FIRST : 0) |
          (fin ? WS_DATA_FIN : 0);
  c->rd_first = 0;
  c->msg_done = (uint8_t)fin;
  if (c->cb->on_data) return c->cb->on_data(c->user, p, n, flags);
  return 0;
}

/* n payload bytes of a compressed message (fin: they end it). Inflates
 * them into c->zout, handing out each full buffer, then (at the end of the
 * message) the 00 00 ff ff tail, and hands out what is left. */
static int ws__rd_inflate(ws_conn *c, const uint8_t *p, size_t n, int fin) {
  size_t have = 0, got;
  int rv, tail = 0;

  if (n) c->rd_zbytes = 1;
  if (!c->rd_zbytes) {
    /* A compressed message with no payload at all: empty. The stream is
     * left alone (the tail alone is not a whole block). */
    return ws__rd_zemit(c, (const uint8_t *)"", 0, fin);
  }
  if (!c->zinf && !(c->zinf = ws_zinf_new(c->alloc, c->rx_bits)))
    return ws__fail(c, WS_E_no_memory);
  if (!c->zout && !(c->zout = (uint8_t *)ws__alloc(c, WS_INFLATE_CHUNK)))
    return ws__fail(c, WS_E_no_memory);
  ws_zinf_input(c->zinf, p, n);
  for (;;) {
    rv = ws_zinf_run(c->zinf, c->zout + have, WS_INFLATE_CHUNK - have, &got);
    if (got) {
      int e = ws__rd_zcheck(c, c->zout + have, got);
      if (e) return e;
      have += got;
    }
    if (rv) return ws__fail(c, rv);
    if (have == WS_INFLATE_CHUNK) {
      rv = ws__rd_zemit(c, c->zout, have, 0);
      have = 0;
      if (rv || (c->state & WS_ST_FAILED)) {
        /* on_data's error, or an abort from it: the input is the
         * caller's and is not looked at again. */
        if (c->zinf) ws_zinf_drop_input(c->zinf);
        return rv ? rv : c->error;
      }
      continue;
    }
    /* Out of input: at the end of the message, the tail, unless the
     * payload is a whole deflate stream already. */
    if (!fin || tail) break;
    tail = 1;
    if (ws_zinf_complete(c->zinf)) break;
    ws_zinf_tail(c->zinf);
  }
  if (fin) {
    if (!ws_zinf_message_end(c->zinf))
      return ws__fail(c, WS_E_bad_compressed_data);
    c->rd_zbytes = 0;
    if (c->rx_nct) {
      /* The peer starts every message afresh: nothing to keep. */
      ws_zinf_free(c->zinf);
      c->zinf = NULL;
    }
  } else if (have == 0) {
    return 0;
  }
  rv = ws__rd_zemit(c, c->zout, have, fin);
  if (fin && c->zout) {
    /* Between messages a connection holds no inflate buffer. */
    ws__free(c, c->zout);
    c->zout = NULL;
  }
  return rv;
}

static int ws__recv(ws_conn *c, uint8_t *data, size_t len) {
  for (;;) {
    int rv;

    if (c->state & WS_ST_FAILED) return c->error;
    if (c->state & WS_ST_CLOSE_RECEIVED) return 0;
    if (c->rd_state == WS__RD_HEADER) {
      if (len == 0) return 0;
      if ((rv = ws__rd_header(c, &data, &len)) != 0) return ws__fail(c, rv);
      if (c->rd_state == WS__RD_HEADER) return 0;
      /* A frame with no payload completes below with no more input. */
    }
    if (c->rd_state == WS__RD_DATA) {
      size_t n = c->rd_remain < len ? (size_t)c->rd_remain : len;
      uint8_t *chunk = data;
      int fin;
      unsigned flags;

      if (n == 0 && c->rd_remain != 0) return 0;
      if (c->rd_masked) {
        ws_mask(chunk, chunk, n, c->rd_key, c->rd_key_pos);
        c->rd_key_pos = (uint8_t)((c->rd_key_pos + n) & 3);
      }
      c->rd_remain -= n;
      data += n;
      len -= n;
      fin = c->rd_fin && c->rd_remain == 0;
      if (c->rd_deflate) {
        if (c->rd_remain == 0) c->rd_state = WS__RD_HEADER;
        if (n == 0 && !fin) continue;
        if ((rv = ws__rd_inflate(c, chunk, n, fin)) != 0) return rv;
        continue;
      }
      if (c->rd_text && (ws_utf8_feed(&c->utf8, chunk, n) != 0 ||
                         (fin && !ws_utf8_complete(&c->utf8))))
        return ws__fail(c, WS_E_bad_frame_payload);
      if (c->rd_remain == 0) c->rd_state = WS__RD_HEADER;
      /* Empty chunks are only reported when they end a message. */
      if (n == 0 && !fin) continue;
      flags = (c->rd_text ? WS_DATA_TEXT : 0) |
              (c->rd_first ? WS_DATA_FIRST : 0) | (fin ? WS_DATA_FIN : 0) |
              WS_DATA_INPLACE;
      c->rd_first = 0;
      c->msg_done = (uint8_t)fin;
      if (c->cb->on_data && (rv = c->cb->on_data(c->user, chunk, n, flags)))
        return rv;
    } else {
      size_t n = c->rd_remain < len ? (size_t)c->rd_remain : len;

      if (n) memcpy(c->ctl + c->ctl_len, data, n);
      c->ctl_len = (uint8_t)(c->ctl_len + n);
      c->rd_remain -= n;
      data += n;
      len -= n;
      if (c->rd_remain != 0) return 0;
      if (c->rd_masked) ws_mask(c->ctl, c->ctl, c->ctl_len, c->rd_key, 0);
      if ((rv = ws__rd_control(c)) != 0) return rv;
    }
  }
}

int ws_conn_recv(ws_conn *c, uint8_t *data, size_t len) {
  int rv;

  c->rd_busy = 1;
  rv = ws__recv(c, data, len);
  c->rd_busy = 0;
  ws__pmd_trim(c);
  return rv;
}

/* ---------------------------------------------------------------- output */

/* Checks shared by everything the caller queues. */
static int ws__can_send(const ws_conn *c) {
  if (c->state & (WS_ST_FAILED | WS_ST_CLOSE_SENT))
    return WS_E_operation_aborted;
  return 0;
}

/* Client: the part framed and masked into one unit (rsv1 on its first
 * frame). */
static int ws__client_part(ws_conn *c, int op, int fin, int rsv1,
                           const uint8_t *data, size_t len, size_t frag,
                           size_t nframes, void *token, ws_unit **out) {
  uint8_t keys[4 * WS__KEY_BATCH], *p;
  size_t total = len, last = len - (nframes - 1) * frag, i, h;
  ws_unit *u;
  int rv;

  /* Every frame but the last has the same header size. */
  for (i = 0; i < 2; i++) {
    size_t count = i == 0 ? nframes - 1 : 1;
    size_t hs = ws__hdr_size(i == 0 ? frag : last, 1);
    if (count && hs > (SIZE_MAX - total) / count) return WS_E_no_memory;
    total += hs * count;
  }
  if (!(u = ws__unit_new(c, total, token))) return WS_E_no_memory;
  p = (uint8_t *)(u + 1);
  for (i = 0; i < nframes; i++) {
    size_t plen = i + 1 == nframes ? last : frag;
    const uint8_t *key = keys + 4 * (i % WS__KEY_BATCH);
    if (i % WS__KEY_BATCH == 0) {
      size_t nk = nframes - i < WS__KEY_BATCH ? nframes - i : WS__KEY_BATCH;
      if ((rv = ws__keys(c, keys, nk)) != 0) {
        ws__free(c, u);
        return rv;
      }
    }
    h = ws_frame_header_build(p, fin && i + 1 == nframes, rsv1 && i == 0,
                              i == 0 ? op : WS_OP_CONT, key, plen);
    p += h;
    if (plen) ws_mask(p, data + i * frag, plen, key, 0);
    p += plen;
  }
  u->kind = WS__U_BUF;
  u->nseg = 1;
  u->u.buf.base = (uint8_t *)(u + 1);
  u->u.buf.len = total;
  u->remain = total;
  *out = u;
  return 0;
}

/* Writes an unmasked header (at most 10 bytes) to dst; returns its length.
 */
static uint8_t ws__server_hdr(uint8_t dst[10], int fin, int rsv1, int op,
                              uint64_t len) {
  uint8_t h[WS_MAX_FRAME_HEADER];
  size_t n = ws_frame_header_build(h, fin, rsv1, op, NULL, len);

  memcpy(dst, h, n);
  return (uint8_t)n;
}

/* Server: the part framed on the fly over data (the caller's, or engine
 * memory the caller of this function then hands to the unit); rsv1 on its
 * first frame. */
static int ws__server_part(ws_conn *c, int op, int fin, int rsv1,
                           const uint8_t *data, size_t len, size_t frag,
                           size_t nframes, void *token, ws_unit **out) {
  size_t last = len - (nframes - 1) * frag, total;
  ws_unit *u;

  if (nframes > (SIZE_MAX / 2)) return WS_E_no_memory;
  if (!(u = ws__unit_new(c, 0, token))) return WS_E_no_memory;
  u->kind = WS__U_FRAMED;
  u->nseg = 2 * nframes;
  u->u.fr.data = data;
  u->u.fr.len = len;
  u->u.fr.frag = frag;
  if (nframes == 1) {
    u->u.fr.hlen[0] = ws__server_hdr(u->u.fr.hdr[0], fin, rsv1, op, len);
    total = u->u.fr.hlen[0];
  } else {
    u->u.fr.hlen[0] = ws__server_hdr(u->u.fr.hdr[0], 0, rsv1, op, frag);
    u->u.fr.hlen[1] = ws__server_hdr(u->u.fr.hdr[1], 0, 0, WS_OP_CONT, frag);
    u->u.fr.hlen[2] = ws__server_hdr(u->u.fr.hdr[2], fin, 0, WS_OP_CONT, last);
    total = u->u.fr.hlen[0] + u->u.fr.hlen[2];
    if (nframes - 2 > (SIZE_MAX - total) / u->u.fr.hlen[1]) goto too_big;
    total += (nframes - 2) * u->u.fr.hlen[1];
  }
  if (len > SIZE_MAX - total) goto too_big;
  u->remain = total + len;
  *out = u;
  return 0;
too_big:
  ws__free(c, u);
  return WS_E_no_memory;
}

/* Frames len bytes of a part: pieces of write_buffer_bytes with
 * auto_fragment. Server frames point at data; client frames copy it. */
static int ws__frame_part(ws_conn *c, int op, int fin, int rsv1,
                          const uint8_t *data, size_t len, void *token,
                          ws_unit **u) {
  size_t frag, nframes;

  if (c->auto_fragment && len > c->write_buffer_bytes) {
    frag = c->write_buffer_bytes;
    nframes = len / frag + (len % frag != 0);
  } else {
    frag = len;
    nframes = 1;
  }
  if (c->role == WS_ROLE_CLIENT)
    return ws__client_part(c, op, fin, rsv1, data, len, frag, nframes, token,
                           u);
  return ws__server_part(c, op, fin, rsv1, data, len, frag, nframes, token, u);
}

/* A part of a compressed message: deflated with a sync flush into engine
 * memory (the tail stripped at the end of the message), then framed, RSV1
 * on the message's first frame. */
static int ws__deflate_part(ws_conn *c, int op, int fin, const uint8_t *data,
                            size_t len, void *token, ws_unit **u) {
  ws_zbuf b = {NULL, 0, 0};
  int rv, first = op != WS_OP_CONT;

  if (!c->zdef) {
    c->zdef = ws_zdef_new(c->alloc, c->tx_bits, c->pmd_level, c->pmd_mem);
    if (!c->zdef) return WS_E_no_memory;
    c->tx_reset = 0;
  } else if (c->tx_reset) {
    ws_zdef_reset(c->zdef);
    c->tx_reset = 0;
  }
  if ((rv = ws_zdef_run(c->zdef, data, len, fin, &b)) != 0) goto fail;
  if (fin && b.len == 0) {
    /* A last part with no output (a sync flush right after another writes
     * nothing, so the message so far ends with a whole 00 00 00 ff ff):
     * one 0x00 byte, the header of an empty stored block that the peer's
     * 00 00 ff ff completes. Without it, the peer's 00 00 ff ff would
     * start a stored block that never ends. ws_zdef_run always leaves
     * room. */
    b.p[b.len++] = 0x00;
  }
  if (b.len > 0 && b.cap > b.len) {
    /* Give back the room reserved for incompressible data. */
    void *p = c->alloc->realloc(b.p, b.len, c->alloc->ud);
    if (p) {
      b.p = (uint8_t *)p;
      b.cap = b.len;
    }
  }
  rv = ws__frame_part(c, op, fin, first, b.p, b.len, token, u);
  if (rv) goto fail;
  if (c->role == WS_ROLE_CLIENT) {
    ws__free(c, b.p); /* masked into the unit */
  } else {
    (*u)->owned = b.p;
  }
  if (fin && c->tx_nct) {
    /* Each message starts afresh: nothing to keep between messages. */
    ws__zdef_drop(c);
  }
  return 0;
fail:
  if (b.p) ws__free(c, b.p);
  /* The stream may have taken in bytes the peer will never see. */
  c->tx_reset = 1;
  return rv;
}

int ws_conn_send(ws_conn *c, int opcode, const uint8_t *data, size_t len,
                 unsigned flags, void *token) {
  int rv, op, fin = (flags & WS_SEND_FIN) != 0;
  ws_unit *u;

  if ((rv = ws__can_send(c)) != 0) return rv;
  if (c->sending) {
    op = WS_OP_CONT;
  } else {
    /* Not in the contract's list: a wrong opcode is the caller's bug. */
    if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) return WS_E_bad_opcode;
    op = opcode;
    /* Decided once per message, on its first part (as Beast does). */
    c->tx_deflate = c->pmd.active && (flags & WS_SEND_COMPRESS) != 0 &&
                    len >= c->pmd_threshold;
  }
  if (c->tx_deflate)
    rv = ws__deflate_part(c, op, fin, data, len, token, &u);
  else
    rv = ws__frame_part(c, op, fin, 0, data, len, token, &u);
  if (rv) return rv;
  ws__queue_append(c, u);
  c->sending = !fin;
  return 0;
}

static int ws__ping_pong(ws_conn *c, int op, const uint8_t *payload, size_t len,
                         void *token) {
  ws_unit *u;
  int rv;

  if (len > WS_MAX_CONTROL_PAYLOAD) return WS_E_bad_control_size;
  if ((rv = ws__can_send(c)) != 0) return rv;
  rv = ws__control_unit(c, op, payload, len, NULL, 0, token, &u);
  if (rv) return rv;
  ws__queue_control(c, u);
  return 0;
}

int ws_conn_ping(ws_conn *c, const uint8_t *payload, size_t len, void *token) {
  return ws__ping_pong(c, WS_OP_PING, payload, len, token);
}

int ws_conn_pong(ws_conn *c, const uint8_t *payload, size_t len, void *token) {
  return ws__ping_pong(c, WS_OP_PONG, payload, len, token);
}

int ws_conn_close(ws_conn *c, unsigned code, const char *reason,
                  size_t reason_len, void *token) {
  uint8_t pl[2];
  ws_unit *u;
  int rv;

  /* A reason needs a code to go with it. */
  if (code == 0 ? reason_len != 0 : !ws_close_code_valid(code))
    return WS_E_bad_close_code;
  if (reason_len > WS_MAX_CLOSE_REASON) return WS_E_bad_close_size;
  if (reason_len && !ws_utf8_valid((const uint8_t *)reason, reason_len))
    return WS_E_bad_close_payload;
  if ((rv = ws__can_send(c)) != 0) return rv;
  pl[0] = (uint8_t)(code >> 8);
  pl[1] = (uint8_t)code;
  rv = ws__control_unit(c, WS_OP_CLOSE, pl, code ? 2 : 0,
                        (const uint8_t *)reason, reason_len, token, &u);
  if (rv) return rv;
  u->flags |= WS__U_CLOSE;
  ws__queue_append(c, u);
  c->state |= WS_ST_CLOSE_SENT;
  ws__pmd_trim(c);
  return 0;
}

void ws_conn_abort(ws_conn *c) {
  ws_unit *list = c->head;

  c->state |= WS_ST_FAILED;
  if (!c->error) c->error = WS_E_operation_aborted;
  c->head = c->tail = NULL;
  c->out_pending = 0;
  c->out_units = 0;
  ws__complete_list(c, list, WS_E_operation_aborted);
  ws__pmd_trim(c);
}

size_t ws_conn_out_iov(ws_conn *c, ws_iov *iov, size_t max) {
  size_t n = 0, k;
  ws_unit *u;

  for (u = c->head; u && n < max; u = u->next) {
    u->flags |= WS__U_STARTED;
    for (k = u->seg; k < u->nseg && n < max; k++) {
      ws_iov s = ws__unit_seg(u, k);
      if (k == u->seg && u->off) {
        s.base += u->off;
        s.len -= u->off;
      }
      if (s.len) iov[n++] = s;
    }
  }
  return n;
}

void ws_conn_out_consume(ws_conn *c, size_t n) {
  while (n > 0 && c->head) {
    ws_unit *u = c->head;
    void *token;

    u->flags |= WS__U_STARTED;
    if (n < u->remain) {
      /* Move the cursor n bytes on, within this unit. */
      u->remain -= n;
      c->out_pending -= n;
      while (n > 0) {
        size_t left = ws__unit_seg(u, u->seg).len - u->off;
        if (n < left) {
          u->off += n;
          break;
        }
        n -= left;
        u->seg++;
        u->off = 0;
      }
      return;
    }
    n -= u->remain;
    c->out_pending -= u->remain;
    c->out_units--;
    c->head = u->next;
    if (!c->head) c->tail = NULL;
    if (u->flags & WS__U_CLOSE) c->state |= WS_ST_CLOSE_WRITTEN;
    token = u->token;
    ws__unit_free(c, u);
    if (token && c->cb->on_sent) c->cb->on_sent(c->user, token, 0);
  }
}

size_t ws_conn_out_pending(const ws_conn *c) {
  return c->out_pending;
}

size_t ws_conn_out_units(const ws_conn *c) {
  return c->out_units;
}

/* ----------------------------------------------------------------- state */

unsigned ws_conn_state(const ws_conn *c) {
  return c->state;
}

unsigned ws_conn_peer_close(const ws_conn *c, const char **reason,
                            size_t *reason_len) {
  int has = c->peer_code != 0;

  if (reason) *reason = has ? (const char *)c->ctl + 2 : "";
  if (reason_len) *reason_len = has ? (size_t)c->ctl_len - 2 : 0;
  return c->peer_code;
}

int ws_conn_error(const ws_conn *c) {
  return c->error;
}

int ws_conn_got_text(const ws_conn *c) {
  return c->got_text;
}

int ws_conn_is_message_done(const ws_conn *c) {
  return c->msg_done;
}

int ws_conn_sending_message(const ws_conn *c) {
  return c->sending;
}

/* ------------------------------------------------------- shared frames */

size_t ws_frame_server_message(uint8_t hdr[WS_MAX_FRAME_HEADER], int opcode,
                               int rsv1, uint64_t len) {
  return ws_frame_header_build(hdr, 1, rsv1, opcode, NULL, len);
}

int ws_conn_prebuilt_direct(ws_conn *c, const uint8_t *frame, size_t len) {
  uint8_t b0 = len ? frame[0] : 0;
  if (ws__can_send(c) != 0 || c->role != WS_ROLE_SERVER || c->sending ||
      c->head != NULL)
    return 0;
  if ((b0 & 0x30) || ((b0 & 0x40) && !c->pmd.active)) return 0;
  if (b0 & 0x40) c->tx_reset = 1;
  return 1;
}

int ws_conn_send_prebuilt(ws_conn *c, const uint8_t *hdr, size_t hdr_len,
                          const uint8_t *payload, size_t len, void *token) {
  ws_unit *u;
  int rv;
  uint8_t b0 = hdr_len ? hdr[0] : len ? payload[0] : 0;

  if ((rv = ws__can_send(c)) != 0) return rv;
  /* Not in the contract's list: a client must mask, so it cannot send
   * frames built once for many connections. */
  if (c->role != WS_ROLE_SERVER) return WS_E_bad_unmasked_frame;
  if (c->sending) return WS_E_operation_in_progress;
  /* RSV1 only where permessage-deflate was negotiated; RSV2 and RSV3
   * nowhere. */
  if ((b0 & 0x30) || ((b0 & 0x40) && !c->pmd.active)) return WS_E_bad_extension;
  if (len > SIZE_MAX - hdr_len) return WS_E_no_memory;
  if (!(u = ws__unit_new(c, 0, token))) return WS_E_no_memory;
  u->kind = WS__U_PREBUILT;
  u->nseg = 2;
  u->u.pre.hdr = hdr;
  u->u.pre.hdr_len = hdr_len;
  u->u.pre.data = payload;
  u->u.pre.len = len;
  u->remain = hdr_len + len;
  ws__queue_append(c, u);
  /* The peer's window now holds this message, ours does not: our next
   * compressed message must not refer back past it. */
  if (b0 & 0x40) c->tx_reset = 1;
  return 0;
}
