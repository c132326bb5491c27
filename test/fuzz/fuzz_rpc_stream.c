/* libFuzzer target: a Stream request's raw bytes through the server's decode and check
 * (rpc_request_decode, RPC_M_STREAM). Body and invariants: fuzz_rpc.h. */
#include "fuzz_rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_rpc_request(RPC_M_STREAM, data, size);
}
