/* libFuzzer target: the client's whole command line for start/run (client_start_main: getopt_long
 * over the shared and start flags, every flag value parser, the command and its arguments, the
 * words after the command judged as runjob's flags or its own, the environment fallbacks) up to
 * the point where it would dial. The input is argv, NUL-separated;
 * "--dry-run" goes first, so a command line that parses ends in printing the request as JSON
 * (stdout, discarded) instead of a connection. Usage errors print to stderr (run.sh mutes it
 * with -close_fd_mask). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "applets/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* No context from the home directory of whoever runs the fuzzer: --context and
     * RUNJOB_CONTEXT in an input then name one that does not exist. */
    if (setenv("XDG_CONFIG_HOME", "/nonexistent/runjob-fuzz-config", 1) < 0 ||
        unsetenv("RUNJOB_CONTEXT") < 0)
        abort();
    /* The JSON of every request that parses is not worth a terminal. */
    if (!freopen("/dev/null", "w", stdout))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[MAX_ARGS + 3];
    char *buf;
    int argc = 0, r;
    bool run;

    if (size < 1)
        return 0;
    run = data[0] & 1; /* start or run: the same parser, run follows */
    buf = malloc(size);
    if (!buf)
        abort();
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    argv[argc++] = run ? "run" : "start";
    argv[argc++] = "--dry-run";
    for (char *p = buf; p < buf + size && argc < MAX_ARGS + 2; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    r = client_start_main(argc, argv, "usage\n", run);
    /* 0 (printed, or --help), 1 (out of memory), 2 (usage error): never a dial. */
    if (r < 0 || r > 2)
        abort();
    (void)fflush(stdout);
    free(buf);
    return 0;
}
