/* runjob stream: a job's output, from the first byte (or an offset), live until it ends. */
#include <string.h>

#include "applets/client.h"
#include "applets/format.h"

static const char usage[] =
    "Usage: runjob stream [flags] <job-id>\n"
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
    "\n"
    "Stream:\n"
    "  -s, --select stdout|stderr|all   which output (default all; one by name goes to stdout)\n"
    "      --offset BYTES         start this many bytes into the selected output\n"
    "      --no-follow            print what there is now and stop\n"
    "\n" CLIENT_USAGE_NO_OUTPUT "\n"
    "Examples:\n"
    "  runjob stream 7c9e6679-7425-40de-944b-e07fc1f90ae7\n"
    "  runjob stream -s stderr --no-follow 7c9e6679-7425-40de-944b-e07fc1f90ae7 | less\n";

enum { OPT_OFFSET = CLIENT_OPT_APPLET, OPT_NO_FOLLOW };

static int take_stream_flag(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    struct follow_opts *f = ctx;

    switch (opt) {
    case OPT_NO_FOLLOW:
        f->no_follow = true;
        return CLIENT_OPT_DONE;
    case OPT_OFFSET:
        if (fmt_parse_uint(arg, &f->offset) < 0)
            return client_usage_error(o, "--offset '%s' is not a byte offset", arg);
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
                                             {NULL, 0, NULL, 0}};
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct client_opts o;
    struct follow_opts f = {.select = RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_ALL};
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS "s:", longopts, usage, take_stream_flag,
                                &f)) != CLIENT_OPT_DONE)
        return r;
    if (o.output_given) /* accepted and ignored would promise JSON that never comes */
        return client_usage_error(&o, "--output: stream prints the job's bytes as they are; it "
                                      "has no output formats");
    if ((r = client_job_id_arg(&o, argc, argv, &f.id)) || (r = client_connect(&o, &c)))
        return r;
    return client_follow(&o, c, &f);
}
