/*
 * libFuzzer target: a server engine fed what a client sends (masked
 * frames), with sends, control frames and writes in between. See
 * fuzz_conn.h for the input layout and the invariants.
 */
#include "fuzz_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fz_run(WS_ROLE_SERVER, data, size);
}
