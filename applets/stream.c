/* runjob stream: a job's output, from the first byte (or an offset), live until it ends. */
#include <string.h>

#include "applets/client.h"
#include "applets/format.h"
#include "core/clock.h"

static const char usage[] =
    "Usage: runjob stream [flags] <job>\n"
    "\n"
    "Print a job's output from its first byte: what it wrote to stdout goes to your stdout,\n"
    "what it wrote to stderr to your stderr. One output selected by name (-s stdout, -s stderr)\n"
    "goes to your stdout, whichever it is, so that `-s stderr ID | less` shows it.\n"
    "While the job runs, keep printing as it writes, until it ends. Any number of people may\n"
    "stream the same job at once, at any time.\n"
    "Each stream keeps its own order. Between them (--select all) the order is the one in which\n"
    "the server read them: stdout and stderr are two pipes, so a line the job wrote to stderr\n"
    "may come before an earlier line it wrote to stdout.\n"
    "If the reader of the output goes away (`| head`), stream exits 141 (128 + SIGPIPE),\n"
    "quietly; the job goes on.\n"
    "Where the server dropped output past its cap, a note on stderr says so: where bytes were\n"
    "left out, and at the end when it kept only the first part (\"output truncated\").\n"
    "The job is its id, a unique prefix of the id, or a name: your most recent job of that\n"
    "name.\n"
    "\n"
    "Stream:\n"
    "  -s, --select stdout|stderr|all   which output (default all; one by name goes to stdout)\n"
    "      --offset BYTES         start this many bytes into the selected output\n"
    "      --no-follow            print what there is now and stop\n"
    "      --tail N               begin with the last N lines (0: only what comes from now)\n"
    "      --since DURATION       only output received in the last DURATION (10m, 1h30m)\n"
    "  -t, --timestamps           begin each line with the time the server received it\n"
    "                             (RFC 3339, UTC, milliseconds)\n"
    "\n" CLIENT_USAGE_NO_OUTPUT "\n"
    "Examples:\n"
    "  runjob stream 7c9e6679-7425-40de-944b-e07fc1f90ae7\n"
    "  runjob stream -s stderr --no-follow 7c9e6679-7425-40de-944b-e07fc1f90ae7 | less\n"
    "  runjob stream --tail 20 -t backup        (the last 20 lines, then live, timed)\n";

enum { OPT_OFFSET = CLIENT_OPT_APPLET, OPT_NO_FOLLOW, OPT_TAIL, OPT_SINCE };

struct stream_flags {
    struct follow_opts f;
    bool tail, offset_given;
    uint64_t tail_lines;
};

static int take_stream_flag(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    struct stream_flags *sf = ctx;
    struct follow_opts *f = &sf->f;
    int64_t ms;

    switch (opt) {
    case OPT_TAIL:
        if (fmt_parse_uint(arg, &sf->tail_lines) < 0)
            return client_usage_error(o, "--tail '%s' is not a number of lines", arg);
        sf->tail = true;
        return CLIENT_OPT_DONE;
    case OPT_SINCE:
        if (fmt_parse_duration(arg, &ms) < 0)
            return client_usage_error(o, "--since '%s' is not a duration (like 10m, 1h30m)", arg);
        f->since_ms = clock_ms(CLOCK_REALTIME) - ms;
        return CLIENT_OPT_DONE;
    case 't':
        f->timestamps = true;
        return CLIENT_OPT_DONE;
    case OPT_NO_FOLLOW:
        f->no_follow = true;
        return CLIENT_OPT_DONE;
    case OPT_OFFSET:
        if (fmt_parse_uint(arg, &f->offset) < 0)
            return client_usage_error(o, "--offset '%s' is not a byte offset", arg);
        sf->offset_given = true;
        return CLIENT_OPT_DONE;
    case 's':
        if (strcmp(arg, "stdout") == 0)
            f->select = RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDOUT;
        else if (strcmp(arg, "stderr") == 0)
            f->select = RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDERR;
        else if (strcmp(arg, "all") == 0)
            f->select = RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_ALL;
        else
            return client_usage_error(o, "--select '%s' is not stdout, stderr or all", arg);
        return CLIENT_OPT_DONE;
    default:
        return CLIENT_OPT_OTHER;
    }
}

int applet_stream_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS,
                                             {"select", required_argument, NULL, 's'},
                                             {"offset", required_argument, NULL, OPT_OFFSET},
                                             {"no-follow", no_argument, NULL, OPT_NO_FOLLOW},
                                             {"tail", required_argument, NULL, OPT_TAIL},
                                             {"since", required_argument, NULL, OPT_SINCE},
                                             {"timestamps", no_argument, NULL, 't'},
                                             {NULL, 0, NULL, 0}};
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct client_opts o;
    struct stream_flags sf = {.f.select = RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_ALL};
    _cleanup_(client_jobs_freep) struct client_jobs *js = NULL;
    char id[ID_LEN + 1];
    const char *arg;
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS "s:t", longopts, usage, take_stream_flag,
                                &sf)) != CLIENT_OPT_DONE)
        return r;
    if (sf.tail && sf.offset_given)
        return client_usage_error(&o, "--tail and --offset both say where to begin: give one");
    if (o.output_given) /* accepted and ignored would promise JSON that never comes */
        return client_usage_error(&o, "--output: stream prints the job's bytes as they are; it "
                                      "has no output formats");
    if ((r = client_one_arg(&o, argc, argv, "job id or name", &arg)) ||
        (r = client_connect(&o, &c)) || (r = client_jobs_resolve(&o, c, &js, arg, id)))
        return r;
    sf.f.id = id;
    if (sf.tail && (r = client_tail_offset(&o, c, &sf.f, sf.tail_lines, &sf.f.offset)))
        return r;
    return client_follow(&o, c, &sf.f);
}
