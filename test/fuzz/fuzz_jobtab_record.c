/* libFuzzer target: the on-disk job record parser (jobtab_record_parse), which reads every
 * <state>/<id>/status at server start: a torn, corrupted or hostile file must be refused or
 * accepted, never crash the server. An accepted record must also survive the server's own
 * rewrite (jobtab_record_format, as for a job marked LOST) and parse back to the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "core/jobtable.h"

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jobtab_spec spec, spec2;
    struct jobtab_status st, st2;
    char *text, *again = NULL;

    /* The reader gives the parser the file as a NUL-terminated string. */
    text = malloc(size + 1);
    FUZZ_CHECK(text);
    memcpy(text, data, size);
    text[size] = '\0';
    if (jobtab_record_parse(text, &spec, &st) < 0) {
        free(text);
        return 0;
    }
    FUZZ_CHECK(id_is_valid(spec.id));
    FUZZ_CHECK(spec.owner && spec.name && spec.command);
    FUZZ_CHECK(memchr(st.job.error, '\0', sizeof(st.job.error)));
    FUZZ_CHECK(jobtab_record_format(&spec, &st, &again) == 0);
    FUZZ_CHECK(jobtab_record_parse(again, &spec2, &st2) == 0);
    FUZZ_CHECK(strcmp(spec.id, spec2.id) == 0 && str_eq(spec.owner, spec2.owner) &&
               str_eq(spec.name, spec2.name) && str_eq(spec.command, spec2.command));
    FUZZ_CHECK(spec.n_args == spec2.n_args);
    for (size_t i = 0; i < spec.n_args; i++)
        FUZZ_CHECK(str_eq(spec.args[i], spec2.args[i]));
    FUZZ_CHECK(memcmp(&spec.limits, &spec2.limits, sizeof(spec.limits)) == 0);
    FUZZ_CHECK(spec.network == spec2.network && spec.created_ns == spec2.created_ns);
    FUZZ_CHECK(st.job.state == st2.job.state && st.job.exit_code == st2.job.exit_code &&
               st.job.signal == st2.job.signal && st.job.start_ms == st2.job.start_ms &&
               st.job.end_ms == st2.job.end_ms && st.job.oom_killed == st2.job.oom_killed &&
               st.job.cpu_usec == st2.job.cpu_usec &&
               st.job.memory_peak_bytes == st2.job.memory_peak_bytes &&
               st.output_bytes == st2.output_bytes && st.output_truncated == st2.output_truncated);
    FUZZ_CHECK(strcmp(st.job.error, st2.job.error) == 0);
    jobtab_spec_clear(&spec2);
    jobtab_spec_clear(&spec);
    free(again);
    free(text);
    return 0;
}
