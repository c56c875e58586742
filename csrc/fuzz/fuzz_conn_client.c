/*
 * libFuzzer target: a client engine fed what a server sends (unmasked
 * frames), with sends, control frames and writes in between. See
 * fuzz_conn.h for the input layout and the invariants.
 */
#include "fuzz_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fz_run(WS_ROLE_CLIENT, data, size);
}
