/* libFuzzer target: an Input request's raw bytes (its first message) through the server's
 * decode and check (rpc_request_decode, RPC_M_INPUT). Body and invariants: fuzz_rpc.h. */
#include "fuzz_rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_rpc_request(RPC_M_INPUT, data, size);
}
