#include "ws_errors.h"

#include <stddef.h>

struct ws__err_info {
  const char *name;
  const char *message;
  int condition;
};

static const struct ws__err_info ws__errs[] = {
#define WS__ROW(name, cond, msg) {#name, msg, WS_COND_##cond},
    WS_ERROR_MAP(WS__ROW)
#undef WS__ROW
};

static const struct ws__err_info *ws__lookup(int err) {
  if (err <= WS__ERROR_BASE || err >= WS__ERROR_END) return NULL;
  return &ws__errs[err - WS__ERROR_BASE - 1];
}

const char *ws_err_name(int err) {
  const struct ws__err_info *e = ws__lookup(err);
  return e ? e->name : NULL;
}

const char *ws_strerror(int err) {
  const struct ws__err_info *e = ws__lookup(err);
  return e ? e->message : NULL;
}

int ws_err_condition(int err) {
  const struct ws__err_info *e = ws__lookup(err);
  return e ? e->condition : WS_COND_NONE;
}

const char *ws_condition_name(int cond) {
  switch (cond) {
  case WS_COND_HANDSHAKE: return "handshake_failed";
  case WS_COND_PROTOCOL: return "protocol_violation";
  default: return NULL;
  }
}

void ws_err_foreach(void (*fn)(void *ud, int err), void *ud) {
  int e;
  for (e = WS__ERROR_BASE + 1; e < WS__ERROR_END; e++) fn(ud, e);
}
