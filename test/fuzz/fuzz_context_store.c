/* libFuzzer target: the contexts file (applets/context-store.c), read by every client command
 * that may take a context, and edited by hand. Whatever it holds, cstore_parse returns a store
 * or a parse error with its line; a store it returns must survive cstore_format and parse back
 * to the same text. */
#include <errno.h>
#include <string.h>

#include "applets/context-store.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cstore *s = NULL, *t = NULL;
    char *text = malloc(size + 1), *once = NULL, *twice = NULL, msg[256] = "";
    int line = 0, r;

    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    r = cstore_parse(text, &s, &line, msg, sizeof(msg));
    FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
    if (r == -EBADMSG)
        FUZZ_CHECK(line >= 1 && msg[0] && !s);
    if (r == 0) {
        FUZZ_CHECK(cstore_format(s, &once) == 0);
        FUZZ_CHECK(cstore_parse(once, &t, &line, msg, sizeof(msg)) == 0);
        FUZZ_CHECK(cstore_count(t) == cstore_count(s));
        FUZZ_CHECK(cstore_format(t, &twice) == 0);
        FUZZ_CHECK(strcmp(once, twice) == 0);
        for (size_t i = 0; i < cstore_count(s); i++)
            FUZZ_CHECK(cstore_name_is_valid(cstore_at(s, i)->name));
    }
    free(once);
    free(twice);
    cstore_free(s);
    cstore_free(t);
    free(text);
    return 0;
}
