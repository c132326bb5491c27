#pragma once
/* What every client applet shares: the connection flags and their environment variables, the
 * mTLS dial, error lines and exit codes, output formats, the start flags (start and run), and
 * following a job's output (start -f, run, stream). An applet builds its request and prints
 * its reply; everything else is here.
 *
 * Exit codes: 0 success, 255 the call failed or the server could not be reached ("<prog>:
 * <verb>: <what went wrong> (<CODE>)"; ssh's 255, apart from any code a job exits with),
 * 2 a usage error (one line, and a pointer to --help), 126 / 127 a command the server could
 * not execute / did not find (start and run, as sh and docker say it), 141 (128 + SIGPIPE)
 * when whoever read the output went away; run and start -f otherwise exit as the job did. */
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "applets/applets.h"
#include "applets/context-store.h"
#include "core/cleanup.h"
#include "core/id.h"
#include "core/rpc.h"

/* The shell's status for a process killed by SIGPIPE; we ignore the signal and see EPIPE. */
#define CLIENT_EXIT_SIGPIPE 141
/* A call that failed for a reason that is not the job's (ssh's status for its own errors). */
#define CLIENT_EXIT_FAILED 255
/* client_follow: the user typed `~.` (never an exit status: the applet says what it means) */
#define CLIENT_EXIT_DETACHED (-2)

enum client_output { CLIENT_OUTPUT_TABLE, CLIENT_OUTPUT_JSON, CLIENT_OUTPUT_WIDE };

struct client_opts {
    char prog[16]; /* "runjob", "jobctl", "runjob certs": the name in messages */
    char verb[16]; /* "start", "query", ...; "" for a program's own flags (jobctl, certs) */
    char **argv;   /* for messages about unknown flags */
    int argc;
    const struct option *longopts; /* client_parse_flags': "did you mean" for unknown flags */
    bool escape;      /* the parser's messages escape the flags they quote (\u000a), as certs' do */
    const char *host; /* NULL until set by a flag or client_opts_finish */
    int port;         /* 0 until set */
    int host_port;    /* the port of -H HOST:PORT, 0 without one */
    const char *ca_path, *cert_path, *key_path, *user;
    const char *context; /* --context NAME */
    enum client_output output;
    bool output_given; /* -o was on the command line (for verbs without formats) */
    bool dashdash;     /* with '+', client_parse_flags stopped at a `--`, which it took */
    /* client_opts_finish: the context in use ("" none) and the values taken from it */
    char ctx_name[CSTORE_NAME_MAX + 1];
    char ctx_host[256], ctx_certs_dir[PATH_MAX];
    char ctx_ca[PATH_MAX], ctx_cert[PATH_MAX], ctx_key[PATH_MAX];
    int ctx_port;
    char host_buf[256], env_host_buf[256];
    char cert_buf[PATH_MAX + 32], key_buf[PATH_MAX + 32];
};

/* Long-only option codes (shared flags); applets number their own from CLIENT_OPT_APPLET. */
enum {
    CLIENT_OPT_CA = 0x100,
    CLIENT_OPT_CERT,
    CLIENT_OPT_KEY,
    CLIENT_OPT_CONTEXT,
    CLIENT_OPT_APPLET = 0x120,
};

/* client_option() and client_flag_fn results besides an exit code. */
enum { CLIENT_OPT_DONE = -1, CLIENT_OPT_OTHER = -2 };

#define CLIENT_SHORTOPTS "hH:P:u:o:"
/* For verbs without output formats (CLIENT_USAGE_NO_OUTPUT): -o is then an unknown flag. */
#define CLIENT_SHORTOPTS_NO_OUTPUT "hH:P:u:"
/* clang-format off */
#define CLIENT_LONGOPTS_NO_OUTPUT                                                                  \
    {"help", no_argument, NULL, 'h'}, {"server-host", required_argument, NULL, 'H'},              \
        {"server-port", required_argument, NULL, 'P'}, {"user", required_argument, NULL, 'u'},     \
        {"ca-cert-path", required_argument, NULL, CLIENT_OPT_CA},                                  \
        {"client-cert-path", required_argument, NULL, CLIENT_OPT_CERT},                            \
        {"client-key-path", required_argument, NULL, CLIENT_OPT_KEY},                              \
        {"context", required_argument, NULL, CLIENT_OPT_CONTEXT}
#define CLIENT_LONGOPTS CLIENT_LONGOPTS_NO_OUTPUT, {"output", required_argument, NULL, 'o'}
/* clang-format on */

/* clang-format off */
#define CLIENT_USAGE_CONNECTION                                                                    \
    "Connection (each setting from the first of: its flag, its environment variable in\n"           \
    "brackets, the context, the default in parentheses):\n"                                       \
    "  -H, --server-host HOST     server name or address, or HOST:PORT, [ADDRESS]:PORT\n"        \
    "                             (localhost) [RUNJOB_SERVER_HOST]\n"                            \
    "  -P, --server-port PORT     server port (8080) [RUNJOB_SERVER_PORT]\n"                      \
    "  -u, --user NAME            use NAME-cert.pem and NAME-key.pem of certs/ (or of the\n"     \
    "                             context's certs directory) [RUNJOB_USER]\n"                    \
    "      --ca-cert-path FILE    CA that signed the server (certs/root-ca-cert.pem)\n"           \
    "                             [RUNJOB_CA_CERT_PATH]\n"                                        \
    "      --client-cert-path FILE  your certificate (certs/client-cert.pem)\n"                   \
    "                             [RUNJOB_CLIENT_CERT_PATH]\n"                                    \
    "      --client-key-path FILE   your private key (certs/client-key.pem)\n"                    \
    "                             [RUNJOB_CLIENT_KEY_PATH]\n"                                     \
    "      --context NAME         the saved settings to use (runjob context) [RUNJOB_CONTEXT];\n" \
    "                             without either, the current context, if there is one\n"
#define CLIENT_USAGE_HELP "  -h, --help                 this help\n"
/* The usage of the shared flags; _NO_OUTPUT for verbs without output formats (stream). */
#define CLIENT_USAGE                                                                               \
    CLIENT_USAGE_CONNECTION                                                                        \
    "  -o, --output FORMAT        table (default), wide or json\n"                                \
    CLIENT_USAGE_HELP
#define CLIENT_USAGE_NO_OUTPUT CLIENT_USAGE_CONNECTION CLIENT_USAGE_HELP
/* clang-format on */

/* Zeroes o, takes prog and verb from argv[0] ("start", or "jobctl query" when called by the
 * jobctl personality) and resets getopt (optind = 0, opterr = 0). */
void client_init(struct client_opts *o, int argc, char **argv);
/* Handles the shared flags, --help (prints usage, returns 0), unknown flags and missing values
 * (returns 2). CLIENT_OPT_DONE: consumed; CLIENT_OPT_OTHER: not one of these. */
int client_option(struct client_opts *o, int c, const char *arg, const char *usage);
/* Prints "<prog>: <verb>: <message> (see '<prog> <verb> --help')" to stderr, or
 * "<prog>: <message> (see '<prog> --help')" without a verb; returns 2. */
int client_usage_error(const struct client_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* An applet's own flags: CLIENT_OPT_DONE when opt was one and is taken, CLIENT_OPT_OTHER when
 * it is not the applet's, else an exit code (client_usage_error). */
typedef int (*client_flag_fn)(struct client_opts *o, int opt, const char *arg, void *ctx);
/* The one flag parser of the client applets, jobctl and certs: getopt_long over o->argv with
 * shortopts and longopts (with CLIENT_SHORTOPTS and CLIENT_LONGOPTS where the applet takes the
 * shared flags). Each flag goes first to on_flag (NULL: none), which may so take over a shared
 * one (jobctl's -u), then to client_option. A leading '+' in shortopts stops at the first
 * argument that is not a flag (start and run's command, jobctl's verb). Returns
 * CLIENT_OPT_DONE when the applet goes on (optind at the first positional argument), else the
 * exit code: 0 after --help, 2 after a usage error (message printed). */
int client_parse_flags(struct client_opts *o, const char *shortopts, const struct option *longopts,
                       const char *usage, client_flag_fn on_flag, void *ctx);
/* The words after a command, o->argv[first..] up to the first `--`, for a verb whose flags may
 * come after its command too (start and run). They are the applet's flags when every one of
 * them is a flag of shortopts/longopts or a flag's value and at least one is a long flag
 * written in full; those are then parsed as client_parse_flags parses them. They are the
 * command's when none is such a flag, or when some are one-letter flags among words that are
 * not. Anything else is refused with one line that names `--`: a long flag among the
 * command's words, or only one-letter flags (`-A /tmp`), which the command may take too.
 * own lists the one-letter flags that after a command are always the command's (and, by
 * their codes, their long names). Returns CLIENT_OPT_DONE with *ret_next at the command's first
 * word (past the `--` when it came right after the applet's flags or the command), else the
 * exit code (0 after --help, 2 after a usage error). */
int client_parse_after_command(struct client_opts *o, const char *shortopts,
                               const struct option *longopts, const char *usage,
                               client_flag_fn on_flag, void *ctx, const char *own, int first,
                               int *ret_next);
/* Fills what flags left unset from the environment, then the context (--context, else
 * RUNJOB_CONTEXT, else the current one: applets/context-store.h), then the defaults. 0, or 2
 * on a bad environment value, an unknown context, an unreadable contexts file or a port given
 * two ways that differ (message printed). */
int client_opts_finish(struct client_opts *o);
/* HOST, HOST:PORT, [ADDRESS]:PORT or a bare IPv6 address (more than one ':'): *ret_host (in
 * buf when a port was split off) and *ret_port (0 without one). -EINVAL for an empty host or
 * a port not in 1-65535, -ENAMETOOLONG. */
int client_split_host_port(const char *s, char *buf, size_t cap, const char **ret_host,
                           int *ret_port);
/* How client_context_load takes a file with a bad line: STRICT fails, WARN warns and gives
 * no store (*ret NULL), SALVAGE reports each bad line as dropped and keeps the rest. */
enum client_ctx_load { CLIENT_CTX_STRICT, CLIENT_CTX_WARN, CLIENT_CTX_SALVAGE };
/* The contexts: 0 with *ret (an empty store when the file does not exist) and the file's
 * directory in dir, or 2 with the message printed (no directory for it, unreadable file,
 * parse error with its line, as mode says). Warns when the directory is writable by others. */
int client_context_load(const struct client_opts *o, char *dir, size_t cap,
                        enum client_ctx_load mode, struct cstore **ret);
/* The context asked for: --context, else RUNJOB_CONTEXT, else the current one; NULL for none.
 * *ret_from names where it came from, for messages. */
const char *client_context_wanted(const struct client_opts *o, const struct cstore *s,
                                  const char **ret_from);
/* Whether client_opts_finish will take settings from a context: one is named (--context,
 * RUNJOB_CONTEXT) or one is current. True too when the contexts file cannot be read, so that
 * client_opts_finish gets to say why. Prints nothing. */
bool client_context_active(const struct client_opts *o);
/* Prints that context name (asked for by from) does not exist, with the names there are;
 * returns 2. */
int client_context_unknown(const struct client_opts *o, const struct cstore *s, const char *name,
                           const char *from);
/* client_opts_finish, then client_dial: 0 with *ret, or the exit code (message printed). */
int client_connect(struct client_opts *o, struct rpc_client **ret);
/* Exactly one positional argument (what names it in the message): 0 with *ret, or 2. */
int client_one_arg(const struct client_opts *o, int argc, char **argv, const char *what,
                   const char **ret);
/* The one positional argument as a job id: a UUID in any case is lower-cased (in argv), as
 * the server wants it; anything else is passed as typed, for the server to judge. 0 or 2. */
int client_job_id_arg(const struct client_opts *o, int argc, char **argv, const char **ret);
/* Whether the client certificate at path, valid from not_before to not_after (epoch seconds),
 * may be used at now: 0, or -EKEYEXPIRED (expired) / -EKEYREJECTED (not valid yet) with the
 * one line that says so, and what to do, in msg. */
int client_cert_time_check(const char *path, int64_t not_before, int64_t not_after, int64_t now,
                           char *msg, size_t cap);
/* Opens the mTLS channel: 0, or CLIENT_EXIT_FAILED with the error printed. The client's own
 * certificate's dates are checked first (client_cert_time_check): the server's refusal of an
 * expired certificate comes back as a bare handshake failure. */
int client_dial(const struct client_opts *o, struct rpc_client **ret);
/* Prints "<prog>: <verb>: <message> (<CODE>)" to stderr; returns CLIENT_EXIT_FAILED. */
int client_fail(const struct client_opts *o, const struct rpc_error *err);
/* True when stdout is a terminal and NO_COLOR is unset or empty. */
bool client_color(void);
/* Prints a message as one JSON document (plus newline) on stdout. 0, or 1 on out of memory. */
int client_print_json(const ProtobufCMessage *m);
/* Prints jobs in o->output form (json prints {"jobs":[...]} when list is true, else the one
 * job's object). owner adds the OWNER column to tables. Returns 0 or 1. */
int client_print_jobs(const struct client_opts *o, Runjob__V1__JobStatus *const *jobs, size_t n,
                      bool list, bool owner);

/* ---- naming jobs (client-jobs.c) ---- */

/* What the server's List said, fetched once per command when a name or prefix needs it. */
struct client_jobs;
void client_jobs_free(struct client_jobs *js); /* NULL-safe */
/* s as a full job id (a UUID in any case), lower-cased into ret as the server wants it: true,
 * or false with ret untouched. Pure. */
bool client_job_id_parse(const char *s, char ret[ID_LEN + 1]);
/* The job that arg names, its id into ret: a full id (any case; no call to the server), else
 * the caller's most recent job named arg, else the one job whose id starts with arg (any
 * case). *jsp caches the List between calls (NULL at first; free with client_jobs_free).
 * 0, or the exit code with one line printed: 255 when nothing or several jobs match (they are
 * listed), 2 for an empty arg. */
int client_jobs_resolve(const struct client_opts *o, struct rpc_client *c, struct client_jobs **jsp,
                        const char *arg, char ret[ID_LEN + 1]);
/* The ids of the caller's own jobs (running or starting ones only, with running_only), oldest
 * first, in a new array (free it). 0, or the exit code with one line printed. */
int client_jobs_mine(const struct client_opts *o, struct rpc_client *c, struct client_jobs **jsp,
                     bool running_only, char (**ret)[ID_LEN + 1], size_t *ret_n);

static inline void client_jobs_freep(struct client_jobs **js)
{
    client_jobs_free(*js);
}

/* ---- start and run ---- */

struct start_opts {
    Runjob__V1__StartRequest req;
    Runjob__V1__Limits limits;
    char **args; /* -A values, then the positional ones (pointers into argv) */
    size_t n_args;
    char **env; /* KEY=VALUE, owned: --env-file's first, then --env's (the server lets a later
                   KEY win) */
    size_t n_env, n_env_file;
    bool follow;
    bool dry_run;
    bool interactive, tty; /* run -i / -t: our stdin (and terminal) to the job */
    Runjob__V1__TerminalSize terminal_size;
    const char *limit_args[7]; /* the limit flags' values as typed, START_OPT_CPU order */
};

#define START_SHORTOPTS "j:A:c:f"
enum {
    START_OPT_CPU = CLIENT_OPT_APPLET,
    START_OPT_MEMORY,
    START_OPT_RIOPS,
    START_OPT_WIOPS,
    START_OPT_RBPS,
    START_OPT_WBPS,
    START_OPT_PIDS,
    START_OPT_NETWORK,
    START_OPT_DRY_RUN,
    START_OPT_ENV,
    START_OPT_ENV_FILE,
    START_OPT_WORKDIR,
    START_OPT_TIMEOUT,
};
/* clang-format off */
#define START_LONGOPTS                                                                             \
    {"name", required_argument, NULL, 'j'}, {"command-args", required_argument, NULL, 'A'},       \
        {"command", required_argument, NULL, 'c'}, {"follow", no_argument, NULL, 'f'},             \
        {"cpu", required_argument, NULL, START_OPT_CPU},                                           \
        {"memory", required_argument, NULL, START_OPT_MEMORY},                                     \
        {"riops", required_argument, NULL, START_OPT_RIOPS},                                       \
        {"wiops", required_argument, NULL, START_OPT_WIOPS},                                       \
        {"rbps", required_argument, NULL, START_OPT_RBPS},                                         \
        {"wbps", required_argument, NULL, START_OPT_WBPS},                                         \
        {"pids", required_argument, NULL, START_OPT_PIDS},                                         \
        {"network", required_argument, NULL, START_OPT_NETWORK},                                   \
        {"dry-run", no_argument, NULL, START_OPT_DRY_RUN},                                         \
        {"env", required_argument, NULL, START_OPT_ENV},                                           \
        {"env-file", required_argument, NULL, START_OPT_ENV_FILE},                                 \
        {"workdir", required_argument, NULL, START_OPT_WORKDIR},                                   \
        {"timeout", required_argument, NULL, START_OPT_TIMEOUT}
/* clang-format on */

/* The server's limits (core/rpc.h), spelled into the help from their constants. */
#define START_STR_(x) #x
#define START_STR(x)  START_STR_(x)

/* clang-format off */
#define START_USAGE                                                                                \
    "Job:\n"                                                                                       \
    "  -j, --name NAME            a name for the job, unique among your running jobs\n"          \
    "  -c, --command PATH         the program (instead of the first argument)\n"                 \
    "  -A, --command-args ARG     one more argument for the program (repeatable; with those\n"    \
    "                             after the command: at most " START_STR(RPC_MAX_ARGS)               \
    ", 128 KiB in all)\n"                                                                          \
    "      --cpu MILLIS           CPU limit in thousandths of a CPU (1000 = one CPU)\n"          \
    "      --memory BYTES         memory limit: 512M (K, M, G = x1024; KB, MB, GB = x1000)\n"    \
    "      --riops N, --wiops N   disk read / write operations per second\n"                     \
    "      --rbps BYTES, --wbps BYTES  disk read / write bytes per second (10M)\n"               \
    "      --pids N               most processes and threads the job may have\n"                 \
    "      --network none|host    no network but loopback (default), or the host's\n"            \
    "      --env KEY=VALUE        an environment variable (repeatable; KEY alone takes its\n"    \
    "                             value from here); the job's default environment is only\n"     \
    "                             PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:\n"     \
    "                             /sbin:/bin and HOME=/; --env adds to it or replaces\n"         \
    "      --env-file FILE        KEY=VALUE lines, before the --env flags, which win: '#'\n"     \
    "                             comments and blank lines skipped, leading blanks dropped,\n" \
    "                             VALUE as written (no quotes removed), KEY alone takes its\n"  \
    "                             value from here, as docker's --env-file does\n"               \
    "      --workdir DIR          start the command in DIR (absolute, as the job sees it; /)\n" \
    "      --timeout DURATION     stop the job that long after it starts (30s, 2h; with the\n"   \
    "                             server's stop signal and grace); status says timed out\n"     \
    "      --dry-run              print the request as JSON and send nothing\n"
/* clang-format on */

/* Where runjob's flags end, as client_parse_after_command decides it, for start's and run's
 * --help (verb: "start" or "run"). */
/* clang-format off */
#define START_USAGE_AFTER(verb)                                                                    \
    "What follows the command is either its own flags and arguments or runjob's flags, and\n"      \
    "runjob does not guess between the two:\n"                                                     \
    "  - the command's:  runjob " verb " /bin/ls -l /tmp\n"                                        \
    "                    runjob " verb " /usr/bin/make -C /src -j4\n"                              \
    "  - runjob's, when every word is a runjob flag or a flag's value and one at least is a\n"     \
    "    flag written in full:\n"                                                                  \
    "      runjob " verb " /usr/bin/echo -A \"hello world\" --server-host=localhost\n"             \
    "  - refused: a runjob flag written in full among the command's words, or nothing but\n"       \
    "    runjob's one-letter flags (`/bin/ls -A /tmp`: ls has a -A too). Put runjob's flags\n"     \
    "    before the command, or `--` before the command's words.\n"                                \
    "`--` ends runjob's flags and is not passed on: `runjob " verb " /bin/echo -- -n hi` runs\n"   \
    "echo -n hi (write `--` twice to pass one); a `--` among the command's words is theirs.\n"     \
    "-c and -h (--command, --help) after the command are the command's: /bin/sh -c 'exit 3'.\n"
/* clang-format on */
#define START_USAGE_AFTER_START START_USAGE_AFTER("start")
#define START_USAGE_AFTER_RUN   START_USAGE_AFTER("run")

/* Sets up s (limits attached, no follow). */
void client_start_init(struct start_opts *s);
/* A client_flag_fn for the start flags (ctx: the struct start_opts). */
int client_start_option(struct client_opts *o, int c, const char *arg, void *ctx);
/* Takes the command and its arguments from argv[optind..], and the start flags among the words
 * after the command when they are runjob's (client_parse_after_command; none after a `--` that
 * ended the flags before the command): 0, or 2 when there is no command, it is not an absolute
 * path, or the words after it are neither clearly runjob's nor clearly its own. */
int client_start_finish(struct client_opts *o, struct start_opts *s, int argc, char **argv);
void client_start_free(struct start_opts *s);

/* ---- following output ---- */

struct follow_opts {
    const char *id;
    int select; /* RUNJOB__V1__OUTPUT_SELECT__... */
    uint64_t offset;
    bool no_follow;
    bool stop_on_signal;        /* run: Ctrl-C stops the job (a second Ctrl-C kills it) */
    bool detach_on_signal;      /* attach: SIGINT, SIGTERM or SIGHUP end the follow alone */
    bool exit_code;             /* return the job's exit code rather than 0 */
    bool tie;                   /* run: the server stops the job if this client goes away */
    int64_t since_ms;           /* > 0: skip output received before this time (epoch ms) */
    bool timestamps;            /* each line with the time the server received it (RFC 3339) */
    struct client_input *input; /* our stdin goes to the job: `~.` ends the follow, quietly */
};

/* ---- stream --tail (client-tail.c) ---- */

/* Where the last `lines` lines of buf[0..len) begin (a newline that ends buf ends the last
 * line): 1 with *ret set; 0 when buf holds fewer lines (*ret 0). lines 0: *ret = len. Pure. */
int client_tail_lines(const uint8_t *buf, size_t len, uint64_t lines, size_t *ret);
/* The offset at which the last `lines` lines of f's job's selected output begin now (0 lines:
 * its end, to follow from now): 0 with *ret, or the exit code (message printed). */
int client_tail_offset(const struct client_opts *o, struct rpc_client *c,
                       const struct follow_opts *f, uint64_t lines, uint64_t *ret);

/* ---- stdin into a job (client-input.c) ---- */

struct client_input;
/* Starts copying our stdin into job id's (an Input call on a thread of its own); tty: our
 * terminal goes into raw mode until client_input_stop (or exit, or a fatal signal), its size
 * goes with every SIGWINCH (blocked by client_block_signals), and `~.` typed at the start of a
 * line detaches (client_input_detached; the followed output is cancelled). EOF on our stdin
 * ends the job's. just_started: the job was started by this client with input, so a stdin
 * already closed (FAILED_PRECONDITION: a short job can end before the Input call claims it)
 * is no error: *ret is NULL, nothing is passed, and the caller follows the output as usual.
 * 0, or the exit code with the error printed. */
int client_input_start(const struct client_opts *o, struct rpc_client *c, const char *id, bool tty,
                       bool just_started, struct client_input **ret);
/* Restores the terminal, ends the thread (and the call: the job's stdin stays open unless our
 * EOF closed it). NULL-safe. */
void client_input_stop(struct client_input *in);
/* client_follow tells it the stream it follows (NULL when done), for `~.` to cancel. */
void client_input_follow_hook(void *arg, struct rpc_stream *s);
bool client_input_detached(struct client_input *in);
/* Our terminal's size (stdin's): true with *rows and *cols. */
bool client_input_terminal_size(unsigned *rows, unsigned *cols);

/* Blocks SIGINT, SIGTERM and SIGHUP in this thread (call before client_dial, so gRPC's threads
 * inherit the mask) for a later client_follow with stop_on_signal. */
void client_block_signals(void);
/* Copies a job's output to stdout/stderr until the stream ends (one stream selected by name
 * goes to stdout). Returns the exit code for the applet: 0 (or the job's exit code with
 * f->exit_code), CLIENT_EXIT_FAILED after a failure (printed), or
 * CLIENT_EXIT_SIGPIPE when stdout or stderr is a pipe nobody reads any more (with
 * stop_on_signal the job is stopped first, as it would die by SIGPIPE if it ran here). */
int client_follow(const struct client_opts *o, struct rpc_client *c, const struct follow_opts *f);

/* start and run share everything but the end: run follows the output and exits with the job's
 * exit code. The whole verb: parse argv with the start flags, dial, start, print. */
int client_start_main(int argc, char **argv, const char *usage, bool run);

static inline void rpc_client_freep(struct rpc_client **c)
{
    rpc_client_free(*c);
}

static inline void rpc_client_stream_freep(struct rpc_stream **s)
{
    rpc_client_stream_free(*s);
}
