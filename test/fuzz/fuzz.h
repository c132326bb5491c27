#pragma once
/* What every libFuzzer target here shares: the entry point's prototype (-Wmissing-prototypes)
 * and FUZZ_CHECK, an invariant that must hold for every input (a failure aborts, so libFuzzer
 * keeps the input as a crash). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)
