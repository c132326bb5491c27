/* libFuzzer target: the client's decoder of the server's stream messages (rpc_chunk_parse) on
 * arbitrary bytes. What it accepts must point inside the input, and agree with protobuf-c's
 * own decoding of an OutputChunk on every scalar field both accept. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "core/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Runjob__V1__OutputChunk *ref;
    struct rpc_chunk c;
    uint8_t *copy;

    /* An exact-size heap copy, so ASan sees a read one byte past the message. */
    copy = malloc(size ? size : 1);
    FUZZ_CHECK(copy);
    memcpy(copy, data, size);
    if (rpc_chunk_parse(copy, size, &c) < 0) {
        free(copy);
        return 0;
    }
    FUZZ_CHECK(c.data >= copy && c.len <= size && (size_t)(c.data - copy) <= size - c.len);
    /* The client writes the payload out: touch every byte of it. */
    {
        volatile uint8_t sum = 0;
        for (size_t i = 0; i < c.len; i++)
            sum ^= c.data[i];
        (void)sum;
    }
    ref = runjob__v1__output_chunk__unpack(NULL, size, copy);
    if (ref) {
        FUZZ_CHECK(ref->data.len == c.len &&
                   (!c.len || memcmp(ref->data.data, c.data, c.len) == 0));
        FUZZ_CHECK((int)ref->stream == c.stream);
        FUZZ_CHECK(ref->offset == c.offset);
        FUZZ_CHECK(ref->time_ms == c.time_ms);
        FUZZ_CHECK(!ref->final_status == !c.final_status);
        runjob__v1__output_chunk__free_unpacked(ref, NULL);
    }
    if (c.final_status)
        protobuf_c_message_free_unpacked(&c.final_status->base, NULL);
    free(copy);
    return 0;
}
