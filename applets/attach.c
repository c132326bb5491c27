/* runjob attach: join a running job started with -i or -t: our stdin to its, its output to us. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "applets/client.h"

static const char usage[] =
    "Usage: runjob attach [flags] <job>\n"
    "\n"
    "Join a running job that was started with input (`runjob start -i` or `-t`): what you\n"
    "type goes to the job's stdin and its output comes to you from now on (`runjob stream`\n"
    "shows what came before). A terminal job (-t) needs a terminal here: yours goes into raw\n"
    "mode, Ctrl-C and Ctrl-Z go to the job as the characters they are, your window size\n"
    "follows, and `~.` typed at the start of a line detaches, leaving the job running (`~~`\n"
    "sends one `~`). Without a terminal job, EOF on your stdin (Ctrl-D) closes the job's stdin;\n"
    "Ctrl-C detaches. SIGINT, SIGTERM and SIGHUP detach with either kind.\n"
    "\n"
    "One writer at a time: attaching to a job whose stdin has a writer fails\n"
    "(FAILED_PRECONDITION); reading its output has no such limit. The job's owner and\n"
    "administrators may attach; the server's log names who wrote to a job's stdin.\n"
    "\n"
    "Exit status: the job's exit code when it ends while attached (128 + a signal), 0 after\n"
    "`~.`, 255 when the server could not be reached or refused (as ssh).\n"
    "\n"
    "A job is its id, a unique prefix of the id, or a name (your most recent job of that name).\n"
    "\n" CLIENT_USAGE_NO_OUTPUT "\n"
    "Examples:\n"
    "  id=$(runjob start -t /bin/bash); runjob attach $id\n"
    "  runjob attach shell\n";

int applet_attach_main(int argc, char **argv)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS_NO_OUTPUT, {NULL, 0, NULL, 0}};
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    _cleanup_(client_jobs_freep) struct client_jobs *js = NULL;
    Runjob__V1__StatusRequest sreq = RUNJOB__V1__STATUS_REQUEST__INIT;
    Runjob__V1__JobStatus *st = NULL;
    struct client_input *in = NULL;
    struct rpc_error err = {0};
    struct client_opts o;
    char id[ID_LEN + 1];
    const char *arg;
    bool tty;
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS_NO_OUTPUT, longopts, usage, NULL, NULL)) !=
        CLIENT_OPT_DONE)
        return r;
    if ((r = client_one_arg(&o, argc, argv, "job id", &arg)) != 0)
        return r;
    client_block_signals();
    if ((r = client_connect(&o, &c)) || (r = client_jobs_resolve(&o, c, &js, arg, id)))
        return r;
    sreq.id = id;
    if (rpc_client_status(c, &sreq, &st, &err) < 0)
        return client_fail(&o, &err);
    tty = st->input == RUNJOB__V1__INPUT_MODE__INPUT_MODE_TTY;
    r = 0;
    if (st->input == RUNJOB__V1__INPUT_MODE__INPUT_MODE_NONE) {
        fprintf(stderr, "%s: %s: job %s takes no input (start it with -i or -t to attach)\n",
                o.prog, o.verb, id);
        r = CLIENT_EXIT_FAILED;
    } else if (!st->is_running) {
        fprintf(stderr, "%s: %s: job %s has ended (`runjob stream %s` shows its output)\n", o.prog,
                o.verb, id, id);
        r = CLIENT_EXIT_FAILED;
    } else if (tty && !isatty(STDIN_FILENO)) {
        r = client_usage_error(&o, "job %s has a terminal, and stdin here is not one", id);
    }
    protobuf_c_message_free_unpacked(&st->base, NULL);
    if (r)
        return r;

    struct follow_opts f = {.id = id, .exit_code = true, .detach_on_signal = true};
    /* From now on: a terminal's screen is redrawn by its program (Ctrl-L), a pipe's reader
     * has `runjob stream` for the past. */
    if ((r = client_tail_offset(&o, c, &f, 0, &f.offset)) != 0)
        return r;
    if ((r = client_input_start(&o, c, id, tty, false, &in)) != 0)
        return r;
    if (tty)
        fprintf(stderr, "%s: attached to job %s; ~. detaches\r\n", o.prog, id);
    f.input = in;
    r = client_follow(&o, c, &f);
    client_input_stop(in);
    if (r == CLIENT_EXIT_DETACHED) {
        fprintf(stderr, "%s: detached from job %s (it goes on)\n", o.prog, id);
        r = 0;
    }
    return r;
}
