#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "applets/format.h"
#include "applets/suggest.h"
#include "core/cleanup.h"
#include "core/clock.h"
#include "core/id.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/tls.h"

/* ---- options ----------------------------------------------------------------------------- */

void client_init(struct client_opts *o, int argc, char **argv)
{
    const char *a0 = argc > 0 && argv[0] ? argv[0] : "runjob";
    const char *sp = strchr(a0, ' ');

    memset(o, 0, sizeof(*o));
    o->argv = argv;
    o->argc = argc;
    if (sp) { /* "jobctl query" */
        (void)snprintf(o->prog, sizeof(o->prog), "%.*s", (int)(sp - a0), a0);
        (void)snprintf(o->verb, sizeof(o->verb), "%s", sp + 1);
    } else {
        (void)snprintf(o->prog, sizeof(o->prog), "runjob");
        (void)snprintf(o->verb, sizeof(o->verb), "%s", a0);
    }
    optind = 0; /* full re-initialisation of getopt (glibc), for tests calling twice */
    opterr = 0; /* our own one-line messages */
}

int client_usage_error(const struct client_opts *o, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!*o->verb) /* the program's own flags (jobctl's, certs') */
        fprintf(stderr, "%s: %s (see '%s --help')\n", o->prog, msg, o->prog);
    else
        fprintf(stderr, "%s: %s: %s (see '%s %s --help')\n", o->prog, o->verb, msg, o->prog,
                o->verb);
    return 2;
}

static int parse_port(const char *s, int *ret)
{
    uint64_t v;
    if (fmt_parse_uint(s, &v) < 0 || v < 1 || v > 65535)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

/* A flag as typed, for a message; escaped when o->escape. */
static const char *quote(const struct client_opts *o, const char *flag, char *buf, int cap)
{
    if (!o->escape)
        return flag;
    (void)log_json_escape(buf, cap, flag);
    return buf;
}

/* "unknown flag '--x'", with the flags of o->longopts it may have meant (a long flag that is
 * a typo of one, or an abbreviation of several). Returns 2. */
static int unknown_flag(const struct client_opts *o, const char *typed)
{
    const char *names[128];
    char q[256], word[64], hint[256] = "";
    size_t n = 0;

    if (typed[0] == '-' && typed[1] == '-' && o->longopts) {
        (void)snprintf(word, sizeof(word), "%.*s", (int)strcspn(typed + 2, "="), typed + 2);
        for (const struct option *l = o->longopts; l->name && n < ELEMENTSOF(names); l++)
            names[n++] = l->name;
        (void)suggest_text(word, names, n, "--", hint, sizeof(hint));
    }
    return client_usage_error(o, "unknown flag '%s'%s", quote(o, typed, q, sizeof(q)), hint);
}

int client_option(struct client_opts *o, int c, const char *arg, const char *usage)
{
    char q[256];

    switch (c) {
    case 'h':
        fputs(usage, stdout);
        return 0;
    case 'H':
        if (!*arg)
            return client_usage_error(o, "--server-host needs a host name or address");
        if (client_split_host_port(arg, o->host_buf, sizeof(o->host_buf), &o->host, &o->host_port) <
            0)
            return client_usage_error(o,
                                      "--server-host '%s' is not HOST, HOST:PORT or "
                                      "[ADDRESS]:PORT (port 1-65535)",
                                      arg);
        return CLIENT_OPT_DONE;
    case 'P':
        if (parse_port(arg, &o->port) < 0)
            return client_usage_error(o, "--server-port '%s' is not a port (1-65535)", arg);
        return CLIENT_OPT_DONE;
    case 'u':
        if (!*arg || strchr(arg, '/'))
            return client_usage_error(o, "--user '%s' is not a user name", arg);
        o->user = arg;
        return CLIENT_OPT_DONE;
    case 'o':
        if (strcmp(arg, "table") == 0)
            o->output = CLIENT_OUTPUT_TABLE;
        else if (strcmp(arg, "json") == 0)
            o->output = CLIENT_OUTPUT_JSON;
        else if (strcmp(arg, "wide") == 0)
            o->output = CLIENT_OUTPUT_WIDE;
        else
            return client_usage_error(o, "--output '%s' is not one of table, wide, json", arg);
        o->output_given = true;
        return CLIENT_OPT_DONE;
    case CLIENT_OPT_CA:
        o->ca_path = arg;
        return CLIENT_OPT_DONE;
    case CLIENT_OPT_CERT:
        o->cert_path = arg;
        return CLIENT_OPT_DONE;
    case CLIENT_OPT_KEY:
        o->key_path = arg;
        return CLIENT_OPT_DONE;
    case CLIENT_OPT_CONTEXT:
        if (!cstore_name_is_valid(arg))
            return client_usage_error(o,
                                      "--context '%s' is not a context name (letters, digits, "
                                      "'.', '_', '-')",
                                      arg);
        o->context = arg;
        return CLIENT_OPT_DONE;
    case ':':
        return client_usage_error(o, "flag '%s' needs a value",
                                  quote(o, o->argv[optind - 1], q, sizeof(q)));
    case '?':
        if (optopt)
            return client_usage_error(o, "unknown flag '-%s'",
                                      quote(o, (char[]){(char)optopt, '\0'}, q, sizeof(q)));
        return unknown_flag(o, o->argv[optind - 1]);
    default:
        return CLIENT_OPT_OTHER;
    }
}

int client_parse_flags(struct client_opts *o, const char *shortopts, const struct option *longopts,
                       const char *usage, client_flag_fn on_flag, void *ctx)
{
    bool in_order = shortopts[0] == '+';
    char spec[64];
    int opt, r, before;

    /* ':' (after a '+') first: a missing value comes back as ':' and gets our own message */
    (void)snprintf(spec, sizeof(spec), "%s:%s", in_order ? "+" : "", shortopts + in_order);
    o->dashdash = false;
    o->longopts = longopts;
    for (;;) {
        before = optind ? optind : 1; /* 0 asks getopt to start over, at 1 */
        opt = getopt_long(o->argc, o->argv, spec, longopts, NULL);
        if (opt == -1)
            break;
        r = on_flag ? on_flag(o, opt, optarg, ctx) : CLIENT_OPT_OTHER;
        if (r == CLIENT_OPT_OTHER)
            r = client_option(o, opt, optarg, usage);
        if (r == CLIENT_OPT_OTHER)
            r = unknown_flag(o, o->argv[optind - 1]);
        if (r != CLIENT_OPT_DONE)
            return r;
    }
    /* getopt steps over a `--` that ends the flags and stays on any other word; a `--` that is
     * a flag's value (`-A --`) was taken by an earlier call. */
    o->dashdash = optind == before + 1 && strcmp(o->argv[before], "--") == 0;
    return CLIENT_OPT_DONE;
}

enum after_kind { AFTER_OTHER, AFTER_SHORT, AFTER_LONG };

/* How w[i] reads as a flag of shortopts/longopts other than own's, as getopt_long reads it but
 * with long names only in full (after a command, `--net` is more likely the command's than an
 * abbreviation of ours); *ret_words is 2 when the flag's value is the next word of w[..n). A
 * one-letter flag without its value is the command's (`id -u`); a long one is still ours, so
 * that its missing value gets the parser's own message. */
static enum after_kind after_word(const char *shortopts, const struct option *longopts,
                                  const char *own, char **w, int n, int i, int *ret_words)
{
    const char *s = w[i];

    *ret_words = 1;
    if (s[0] != '-' || !s[1])
        return AFTER_OTHER;
    if (s[1] == '-') {
        const char *name = s + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        for (const struct option *l = longopts; l->name; l++) {
            if (strlen(l->name) != len || strncmp(l->name, name, len) != 0)
                continue;
            if (l->val > 0 && l->val < 256 && strchr(own, l->val))
                return AFTER_OTHER;
            if (l->has_arg == required_argument && !eq && i + 1 < n)
                *ret_words = 2;
            return AFTER_LONG;
        }
        return AFTER_OTHER;
    }
    for (const char *c = s + 1; *c; c++) {
        const char *p = *c == ':' || *c == '+' ? NULL : strchr(shortopts, *c);
        if (!p || strchr(own, *c))
            return AFTER_OTHER;
        if (p[1] != ':')
            continue;
        if (c[1]) /* the rest of the word is the value: -j4 */
            return AFTER_SHORT;
        if (i + 1 >= n)
            return AFTER_OTHER;
        *ret_words = 2;
        return AFTER_SHORT;
    }
    return AFTER_SHORT;
}

int client_parse_after_command(struct client_opts *o, const char *shortopts,
                               const struct option *longopts, const char *usage,
                               client_flag_fn on_flag, void *ctx, const char *own, int first,
                               int *ret_next)
{
    int end = first, other = -1, one_letter = -1, full = -1, words, r;
    char q[256], q2[256];

    while (end < o->argc && strcmp(o->argv[end], "--") != 0)
        end++;
    for (int i = first; i < end; i += words) {
        enum after_kind k = after_word(shortopts, longopts, own, o->argv, end, i, &words);
        int *seen = k == AFTER_LONG ? &full : k == AFTER_SHORT ? &one_letter : &other;
        if (*seen < 0)
            *seen = i;
    }
    if (full < 0 && (other >= 0 || one_letter < 0)) {
        /* The command's own words (a `--` among them too), or none: `/usr/bin/find -- /var`. */
        *ret_next = other >= 0 ? first : end + (end < o->argc);
        return CLIENT_OPT_DONE;
    }
    /* Refused rather than guessed: either reading may run something else than was meant. */
    if (full < 0)
        return client_usage_error(o,
                                  "'%s' after the command could be a runjob flag or the "
                                  "command's own: put runjob's flags before the command, or -- "
                                  "before the command's arguments",
                                  quote(o, o->argv[one_letter], q, sizeof(q)));
    if (other >= 0)
        return client_usage_error(o,
                                  "'%s' after the command is a runjob flag but '%s' is not: put "
                                  "runjob's flags before the command, or -- before the "
                                  "command's arguments",
                                  quote(o, o->argv[full], q, sizeof(q)),
                                  quote(o, o->argv[other], q2, sizeof(q2)));

    /* Every word is ours: the one parser takes them, from a copy of argv that ends there. */
    char **words_argv = calloc((size_t)(end - first) + 2, sizeof(*words_argv));
    char **argv = o->argv;
    int argc = o->argc;
    if (!words_argv)
        return client_usage_error(o, "out of memory");
    words_argv[0] = argv[0];
    memcpy(words_argv + 1, argv + first, (size_t)(end - first) * sizeof(*words_argv));
    o->argv = words_argv;
    o->argc = end - first + 1;
    optind = 0;
    r = client_parse_flags(o, shortopts, longopts, usage, on_flag, ctx);
    if (r == CLIENT_OPT_DONE && optind != o->argc) /* after_word and getopt disagree */
        r = client_usage_error(o, "cannot tell runjob's flags after the command from the "
                                  "command's: put them before the command");
    o->argv = argv;
    o->argc = argc;
    o->dashdash = end < argc;
    free(words_argv);
    if (r == CLIENT_OPT_DONE)
        *ret_next = end + (end < argc);
    return r;
}

int client_connect(struct client_opts *o, struct rpc_client **ret)
{
    int r = client_opts_finish(o);
    return r ? r : client_dial(o, ret);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int client_split_host_port(const char *s, char *buf, size_t cap, const char **ret_host,
                           int *ret_port)
{
    const char *colon = strrchr(s, ':'), *host = s;
    size_t hl;

    *ret_port = 0;
    if (s[0] == '[') { /* [::1]:8080, [::1] */
        const char *close = strchr(s, ']');
        if (!close || close == s + 1 || (close[1] && (close[1] != ':' || !close[2])))
            return -EINVAL;
        if (close[1] && parse_port(close + 2, ret_port) < 0)
            return -EINVAL;
        host = s + 1;
        hl = (size_t)(close - host);
    } else if (!colon || strchr(s, ':') != colon) { /* a name, or an IPv6 address: ::1 */
        *ret_host = s;
        return 0;
    } else {
        if (colon == s || parse_port(colon + 1, ret_port) < 0)
            return -EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl >= cap)
        return -ENAMETOOLONG;
    memcpy(buf, host, hl);
    buf[hl] = '\0';
    *ret_host = buf;
    return 0;
}

/* ssh's check of ~/.ssh: a directory others may write to lets them swap the contexts file
 * for one that points this user's commands at their server. */
static void check_dir_mode(const struct client_opts *o, const char *dir)
{
    struct stat st;

    if (stat(dir, &st) == 0 && (st.st_mode & 022))
        fprintf(stderr,
                "%s: %s: warning: %s is writable by others (mode %04o), who could change your "
                "contexts: chmod 700 %s\n",
                o->prog, o->verb, dir, (unsigned)(st.st_mode & 07777), dir);
}

struct salvage {
    const struct client_opts *o;
    const char *dir;
    int dropped;
};

static void report_dropped(void *ctx, int line, const char *msg)
{
    struct salvage *sv = ctx;

    fprintf(stderr, "%s: %s: %s/%s:%d: %s: dropped\n", sv->o->prog, sv->o->verb, sv->dir,
            CSTORE_FILE, line, msg);
    sv->dropped++;
}

int client_context_load(const struct client_opts *o, char *dir, size_t cap,
                        enum client_ctx_load mode, struct cstore **ret)
{
    char msg[256];
    int line, r;

    if (cstore_dir(dir, cap) < 0) {
        fprintf(stderr, "%s: %s: no place for contexts: set HOME or XDG_CONFIG_HOME\n", o->prog,
                o->verb);
        return 2;
    }
    check_dir_mode(o, dir);
    if (mode == CLIENT_CTX_SALVAGE) {
        struct salvage sv = {.o = o, .dir = dir};
        r = cstore_load_salvage(dir, ret, report_dropped, &sv);
        if (r == 0 && sv.dropped)
            fprintf(stderr, "%s: %s: %s/%s is rewritten without %s\n", o->prog, o->verb, dir,
                    CSTORE_FILE, sv.dropped == 1 ? "that line" : "those lines");
    } else {
        r = cstore_load(dir, ret, &line, msg, sizeof(msg));
    }
    if (r == -EBADMSG && mode == CLIENT_CTX_WARN) {
        fprintf(stderr, "%s: %s: warning: %s/%s:%d: %s; no context is used\n", o->prog, o->verb,
                dir, CSTORE_FILE, line, msg);
        *ret = NULL;
        return 0;
    }
    if (r == -EBADMSG)
        fprintf(stderr,
                "%s: %s: %s/%s:%d: %s ('%s context add|use|rm --force' rewrites the file "
                "without its bad lines)\n",
                o->prog, o->verb, dir, CSTORE_FILE, line, msg, o->prog);
    else if (r < 0)
        fprintf(stderr, "%s: %s: cannot read %s/%s: %s\n", o->prog, o->verb, dir, CSTORE_FILE,
                strerror(-r));
    return r < 0 ? 2 : 0;
}

const char *client_context_wanted(const struct client_opts *o, const struct cstore *s,
                                  const char **ret_from)
{
    const char *v;

    if (o->context) {
        *ret_from = "--context";
        return o->context;
    }
    if ((v = env("RUNJOB_CONTEXT"))) {
        *ret_from = "RUNJOB_CONTEXT";
        return v;
    }
    *ret_from = "the current context";
    return s ? cstore_current(s) : NULL;
}

bool client_context_active(const struct client_opts *o)
{
    _cleanup_(cstore_freep) struct cstore *s = NULL;
    char dir[PATH_MAX], msg[256];
    int line;

    if (o->context || env("RUNJOB_CONTEXT"))
        return true;
    if (cstore_dir(dir, sizeof(dir)) < 0)
        return false;
    if (cstore_load(dir, &s, &line, msg, sizeof(msg)) < 0)
        return true;
    return cstore_current(s) != NULL;
}

int client_context_unknown(const struct client_opts *o, const struct cstore *s, const char *name,
                           const char *from)
{
    char names[512];

    if (!cstore_count(s))
        return client_usage_error(o,
                                  "no context '%s' (%s): there are none yet; add one with "
                                  "'%s context add'",
                                  name, from, o->prog);
    return client_usage_error(o, "no context '%s' (%s); there are: %s", name, from,
                              cstore_names(s, names, sizeof(names)));
}

/* Copies what the wanted context sets into o->ctx_*. It is read only when something could
 * come from it: one was named, or a setting is still unset after the flags and the
 * environment (or -u needs the context's certs directory). 0, or 2 (message printed). */
static int take_context(struct client_opts *o, bool need)
{
    _cleanup_(cstore_freep) struct cstore *s = NULL;
    const struct cstore_context *c;
    const char *name, *from;
    char dir[PATH_MAX];
    int r;

    o->ctx_name[0] = '\0';
    if (!need && !o->context && !env("RUNJOB_CONTEXT"))
        return 0;
    if (!o->context && !env("RUNJOB_CONTEXT") && cstore_dir(dir, sizeof(dir)) < 0)
        return 0; /* nowhere to keep contexts, and none asked for */
    /* A damaged file stops only a command that depends on it: one that names a context, or
     * has no server but the context's. The others go on without it, warned. */
    bool named = o->context || env("RUNJOB_CONTEXT");
    if ((r = client_context_load(o, dir, sizeof(dir),
                                 named || !o->host ? CLIENT_CTX_STRICT : CLIENT_CTX_WARN, &s)))
        return r;
    if (!s || !(name = client_context_wanted(o, s, &from)))
        return 0;
    if (!(c = cstore_find(s, name)))
        return client_context_unknown(o, s, name, from);
    (void)snprintf(o->ctx_name, sizeof(o->ctx_name), "%s", c->name);
    (void)snprintf(o->ctx_host, sizeof(o->ctx_host), "%s", c->host ? c->host : "");
    o->ctx_port = c->port;
    (void)snprintf(o->ctx_ca, sizeof(o->ctx_ca), "%s", c->ca_path ? c->ca_path : "");
    (void)snprintf(o->ctx_cert, sizeof(o->ctx_cert), "%s", c->cert_path ? c->cert_path : "");
    (void)snprintf(o->ctx_key, sizeof(o->ctx_key), "%s", c->key_path ? c->key_path : "");
    (void)snprintf(o->ctx_certs_dir, sizeof(o->ctx_certs_dir), "%s",
                   c->certs_dir ? c->certs_dir : "");
    return 0;
}

static const char *or_null(const char *s)
{
    return *s ? s : NULL;
}

int client_opts_finish(struct client_opts *o)
{
    const char *v;
    int env_port = 0, env_host_port = 0, r;

    /* Each setting from its flag, its environment variable, the context, its default. */
    if (o->host_port && o->port && o->host_port != o->port)
        return client_usage_error(o, "--server-host gives port %d but --server-port %d",
                                  o->host_port, o->port);
    if (!o->port)
        o->port = o->host_port;
    if (!o->host && (v = env("RUNJOB_SERVER_HOST")) &&
        client_split_host_port(v, o->env_host_buf, sizeof(o->env_host_buf), &o->host,
                               &env_host_port) < 0)
        return client_usage_error(o,
                                  "RUNJOB_SERVER_HOST='%s' is not HOST, HOST:PORT or "
                                  "[ADDRESS]:PORT (port 1-65535)",
                                  v);
    if (!o->port && (v = env("RUNJOB_SERVER_PORT")) && parse_port(v, &env_port) < 0)
        return client_usage_error(o, "RUNJOB_SERVER_PORT='%s' is not a port (1-65535)", v);
    if (!o->port && env_port && env_host_port && env_port != env_host_port)
        return client_usage_error(o, "RUNJOB_SERVER_HOST gives port %d but RUNJOB_SERVER_PORT %d",
                                  env_host_port, env_port);
    if (!o->port)
        o->port = env_port ? env_port : env_host_port;

    const char *flag_user = o->user;
    const char *env_user = env("RUNJOB_USER");
    if (env_user && strchr(env_user, '/'))
        return client_usage_error(o, "RUNJOB_USER='%s' is not a user name", env_user);
    const char *env_ca = env("RUNJOB_CA_CERT_PATH");
    const char *env_cert = env("RUNJOB_CLIENT_CERT_PATH"), *env_key = env("RUNJOB_CLIENT_KEY_PATH");
    bool user = flag_user || env_user;
    bool need = !o->host || !o->port || (!o->ca_path && !env_ca) || (!o->cert_path && !env_cert) ||
                (!o->key_path && !env_key);
    if ((r = take_context(o, need)))
        return r;

    if (!o->host)
        o->host = *o->ctx_host ? o->ctx_host : "localhost";
    if (!o->port)
        o->port = o->ctx_port ? o->ctx_port : 8080;
    if (!o->ca_path)
        o->ca_path = env_ca;
    if (!o->ca_path)
        o->ca_path = *o->ctx_ca ? o->ctx_ca : "certs/root-ca-cert.pem";

    /* Precedence: --client-cert-path, --user, RUNJOB_CLIENT_CERT_PATH, RUNJOB_USER, the
     * context, default. A user's files are in the context's certs directory if it has one. */
    if (user) {
        const char *u = flag_user ? flag_user : env_user;
        const char *d = *o->ctx_certs_dir ? o->ctx_certs_dir : "certs";
        (void)snprintf(o->cert_buf, sizeof(o->cert_buf), "%s/%s-cert.pem", d, u);
        (void)snprintf(o->key_buf, sizeof(o->key_buf), "%s/%s-key.pem", d, u);
    }
    if (!o->cert_path)
        o->cert_path = flag_user ? o->cert_buf : env_cert;
    if (!o->cert_path)
        o->cert_path = env_user ? o->cert_buf : or_null(o->ctx_cert);
    if (!o->cert_path)
        o->cert_path = "certs/client-cert.pem";
    if (!o->key_path)
        o->key_path = flag_user ? o->key_buf : env_key;
    if (!o->key_path)
        o->key_path = env_user ? o->key_buf : or_null(o->ctx_key);
    if (!o->key_path)
        o->key_path = "certs/client-key.pem";
    return 0;
}

int client_one_arg(const struct client_opts *o, int argc, char **argv, const char *what,
                   const char **ret)
{
    if (optind >= argc)
        return client_usage_error(o, "missing the %s", what);
    if (optind + 1 < argc)
        return client_usage_error(o, "unexpected argument '%s' after the %s", argv[optind + 1],
                                  what);
    if (!*argv[optind])
        return client_usage_error(o, "the %s is empty", what);
    *ret = argv[optind];
    return 0;
}

int client_job_id_arg(const struct client_opts *o, int argc, char **argv, const char **ret)
{
    char low[ID_LEN + 1];
    int r = client_one_arg(o, argc, argv, "job id", ret);

    if (r)
        return r;
    if (client_job_id_parse(*ret, low))
        memcpy(argv[optind], low, ID_LEN);
    return 0;
}

/* ---- calls ------------------------------------------------------------------------------- */

int client_fail(const struct client_opts *o, const struct rpc_error *err)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", o->prog, o->verb, err->message, rpc_code_name(err->code));
    return CLIENT_EXIT_FAILED;
}

static void wait_for_grpc(void)
{
    rpc_client_wait_library_idle(1000);
}

int client_cert_time_check(const char *path, int64_t not_before, int64_t not_after, int64_t now,
                           char *msg, size_t cap)
{
    char day[32] = "?";
    struct tm tm;
    time_t t = (time_t)(now > not_after ? not_after : not_before);

    if (now >= not_before && now <= not_after)
        return 0;
    if (gmtime_r(&t, &tm))
        (void)strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    if (now > not_after) {
        (void)snprintf(msg, cap,
                       "client certificate %s expired on %s; make a new one with `runjob certs "
                       "--clients-only`",
                       path, day);
        return -EKEYEXPIRED;
    }
    (void)snprintf(msg, cap,
                   "client certificate %s is not valid until %s; is this machine's clock right? "
                   "(else make a new one with `runjob certs --clients-only`)",
                   path, day);
    return -EKEYREJECTED;
}

/* The client certificate's dates, before any connection: 0, or CLIENT_EXIT_FAILED (printed).
 * A certificate that cannot be read or parsed is left to rpc_client_open, which says why. */
static int check_cert_dates(const struct client_opts *o)
{
    _cleanup_free_ char *pem = NULL;
    char msg[PATH_MAX + 256];
    int64_t not_before, not_after;

    if (tls_read_pem(o->cert_path, &pem) < 0 || tls_cert_dates(pem, &not_before, &not_after) < 0)
        return 0;
    if (client_cert_time_check(o->cert_path, not_before, not_after, (int64_t)time(NULL), msg,
                               sizeof(msg)) == 0)
        return 0;
    fprintf(stderr, "%s: %s: %s\n", o->prog, o->verb, msg);
    return CLIENT_EXIT_FAILED;
}

#define PAGE_DOWN(a, pg) ((uintptr_t)(a) & ~((pg)-1))
#define PAGE_UP(a, pg)   PAGE_DOWN((uintptr_t)(a) + (pg)-1, pg)
#define HEAP_PREFAULT    (1 << 20)
#define CLIENT_STACK_MAX (1 << 20)

/* dl_iterate_phdr callback: maps in the executable's loaded segments at once, text and
 * read-only data readable, .data and .bss (from __data_start, past the RELRO part, which is
 * read-only by now) writable. */
static int prefault_segments(struct dl_phdr_info *info, size_t size, void *data)
{
    extern char __data_start[];
    uintptr_t pg = (uintptr_t)getpagesize(), d = PAGE_DOWN(__data_start, pg);
    (void)size;
    (void)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t a, w, e;

        if (ph->p_type != PT_LOAD)
            continue;
        a = PAGE_DOWN(info->dlpi_addr + ph->p_vaddr, pg);
        e = PAGE_UP(info->dlpi_addr + ph->p_vaddr + ph->p_memsz, pg);
        w = ph->p_flags & PF_W && d > a && d < e ? d : e;
        if (w > a)
            (void)madvise((void *)a, w - a, MADV_POPULATE_READ);
        if (w < e)
            (void)madvise((void *)w, e - w, MADV_POPULATE_WRITE);
    }
    return 1; /* the executable only, the first object */
}

/* A client process took ~400 page faults, ~5-20 us of CPU apiece on the VM measured
 * (bench/RESULTS.md "Cold client"). Most are first touches of the binary's text and data
 * that TLS and gRPC need (fault-around maps only 16 pages per fault) and of the heap as it
 * grows (~160 pages for a ping). madvise(MADV_POPULATE_*) maps them in one call each, without
 * the faults: ~225 fewer, ~1.5 ms less CPU, the calls included. Linux >= 5.14; elsewhere the
 * calls fail and nothing changes. The text stays shared page cache. The heap's 1 MiB comes
 * from the heap and stays there for later allocations to reuse: the caller has set malloc's
 * mmap threshold above and its trim threshold well above that size. */
static void prefault(void)
{
    static bool done; /* a process that dials again finds it all mapped */
    uintptr_t pg = (uintptr_t)getpagesize();
    char *p;

    if (done)
        return;
    done = true;
    (void)dl_iterate_phdr(prefault_segments, NULL);
    p = malloc(HEAP_PREFAULT);
    if (p)
        (void)madvise((void *)PAGE_UP(p, pg), PAGE_DOWN(p + HEAP_PREFAULT, pg) - PAGE_UP(p, pg),
                      MADV_POPULATE_WRITE);
    free(p);
}

/* Threads made from here on (gRPC's six, ours) get 1 MiB stacks instead of RLIMIT_STACK's
 * 8 MiB: a thread with the larger stack cost ~0.07 ms more CPU to make and end on the VM
 * measured (bench/RESULTS.md "Cold client"), and none of them needs more: macOS gives
 * secondary threads 512 KiB, and gRPC's run there with that. */
static void small_thread_stacks(void)
{
    pthread_attr_t a;

    if (pthread_attr_init(&a) != 0)
        return;
    if (pthread_attr_setstacksize(&a, CLIENT_STACK_MAX) == 0)
        (void)pthread_setattr_default_np(&a);
    (void)pthread_attr_destroy(&a);
}

int client_dial(const struct client_opts *o, struct rpc_client **ret)
{
    struct rpc_client_config cfg = {
        .host = o->host,
        .port = o->port,
        .ca_path = o->ca_path,
        .cert_path = o->cert_path,
        .key_path = o->key_path,
    };
    struct rpc_error err = {0};
    static bool hooked;
    int r;

    /* Through an agent (`runjob agent`) holding a connection with these settings, the process
     * sets up neither TLS nor gRPC: that is most of a cold client's CPU. */
    const char *agent = env("RUNJOB_AGENT_SOCK");
    if (agent && rpc_client_open_relay(&cfg, agent, ret) == 1)
        return 0;
    if ((r = check_cert_dates(o)))
        return r;
    /* One malloc arena for the whole client, before gRPC starts its threads: glibc would give
     * each of them an arena of its own (a 64 MiB reservation, its first pages faulted in) for
     * a process that makes a few calls and exits; ~0.6 ms of CPU per process (bench/RESULTS.md
     * "Cold client"). A client's threads allocate little and seldom at once. */
    (void)mallopt(M_ARENA_MAX, 1);
    /* A stream's reader holds what gRPC reads ahead of it (its BDP-sized window: 60-120 MiB at
     * the peak on loopback), in read slices of up to 4 MiB. glibc gives the top of the heap
     * back once 128 KiB lie free there, so the heap went up and down with that window: 1,000-
     * 3,800 brk calls and 40,000-150,000 page faults per GiB streamed; keeping 64 MiB, ~420 and
     * ~18,000 (the heap grows to its peak once; the peak is no higher). Setting the trim
     * threshold also pins glibc's mmap threshold at 128 KiB, so it is raised past the largest
     * read slice, which would otherwise be mmap'd afresh each time. Client CPU for a 1 GiB
     * stream from a server that keeps up: 1.6-2.5 s -> 0.7-1.0 s (bench/RESULTS.md "Stream
     * rate"). */
    (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
    (void)mallopt(M_MMAP_THRESHOLD, 8 << 20);
    prefault();
    small_thread_stacks();
    if (rpc_client_open(&cfg, ret, &err) < 0)
        return client_fail(o, &err);
    if (!hooked) /* the applet frees its client on return; exit waits for gRPC to finish */
        hooked = atexit(wait_for_grpc) == 0;
    return 0;
}

bool client_color(void)
{
    return isatty(STDOUT_FILENO) && !env("NO_COLOR");
}

int client_print_json(const ProtobufCMessage *m)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;

    if (strbuf_new(&b) == 0) {
        jb_message(b, m);
        (void)strbuf_puts(b, "\n"); /* a failure marks b: checked below */
    }
    if (!b || strbuf_is_failed(b)) {
        fprintf(stderr, "runjob: out of memory\n");
        return 1;
    }
    fputs(strbuf_str(b), stdout);
    return 0;
}

int client_print_jobs(const struct client_opts *o, Runjob__V1__JobStatus *const *jobs, size_t n,
                      bool list, bool owner)
{
    if (o->output == CLIENT_OUTPUT_JSON) {
        if (!list)
            return n ? client_print_json(&jobs[0]->base) : 0;
        Runjob__V1__ListResponse lr = RUNJOB__V1__LIST_RESPONSE__INIT;
        lr.jobs = (Runjob__V1__JobStatus **)jobs;
        lr.n_jobs = n;
        return client_print_json(&lr.base);
    }
    struct table *t =
        fmt_jobs_table(jobs, n, o->output == CLIENT_OUTPUT_WIDE, owner, clock_ms(CLOCK_REALTIME));
    if (!t) {
        fprintf(stderr, "%s: %s: out of memory\n", o->prog, o->verb);
        return 1;
    }
    table_print(t, stdout, client_color());
    table_free(t);
    return 0;
}

/* ---- start and run ----------------------------------------------------------------------- */

/* '+': the flags before the command end at it; the words after it are judged apart. */
#define START_ALL_SHORTOPTS "+" CLIENT_SHORTOPTS START_SHORTOPTS
static const struct option start_longopts[] = {CLIENT_LONGOPTS, START_LONGOPTS, {NULL, 0, NULL, 0}};
/* Before the command only: -i and -t after it are the command's (ls -t, sort -t). */
#define START_BEFORE_SHORTOPTS START_ALL_SHORTOPTS "it"
static const struct option start_before_longopts[] = {CLIENT_LONGOPTS,
                                                      START_LONGOPTS,
                                                      {"interactive", no_argument, NULL, 'i'},
                                                      {"tty", no_argument, NULL, 't'},
                                                      {NULL, 0, NULL, 0}};

void client_start_init(struct start_opts *s)
{
    memset(s, 0, sizeof(*s));
    runjob__v1__start_request__init(&s->req);
    runjob__v1__limits__init(&s->limits);
    s->req.limits = &s->limits;
}

void client_start_free(struct start_opts *s)
{
    free(s->args);
    s->args = NULL;
    for (size_t i = 0; i < s->n_env; i++)
        free(s->env[i]);
    free(s->env);
    s->env = NULL;
    s->n_env = s->n_env_file = 0;
}

/* One environment entry: KEY=VALUE as it is, or KEY alone with its value from here (as docker
 * does). 0, or the exit code (message printed). */
static int add_env(struct client_opts *o, struct start_opts *s, const char *what, const char *kv,
                   size_t len, bool from_file)
{
    size_t klen = 0;
    char *dup, **n;

    while (klen < len && kv[klen] != '=')
        klen++;
    if (klen == 0)
        return client_usage_error(o, "%s '%.*s' is not KEY=VALUE", what, (int)len, kv);
    if (klen == len) {
        char key[256];
        const char *v;
        if (len >= sizeof(key))
            return client_usage_error(o, "%s: the name '%.40s...' is too long", what, kv);
        memcpy(key, kv, len);
        key[len] = '\0';
        if (!(v = getenv(key)))
            return client_usage_error(o, "%s %s: %s is not set here; give %s=VALUE", what, key, key,
                                      key);
        if (asprintf(&dup, "%s=%s", key, v) < 0)
            dup = NULL;
    } else {
        dup = strndup(kv, len);
    }
    n = dup ? realloc(s->env, (s->n_env + 1) * sizeof(*n)) : NULL;
    if (!n) {
        free(dup);
        return client_usage_error(o, "out of memory");
    }
    s->env = n;
    if (from_file) { /* after the files' entries, before the flags' */
        memmove(s->env + s->n_env_file + 1, s->env + s->n_env_file,
                (s->n_env - s->n_env_file) * sizeof(*n));
        s->env[s->n_env_file++] = dup;
        s->n_env++;
    } else {
        s->env[s->n_env++] = dup;
    }
    return CLIENT_OPT_DONE;
}

/* A name a shell can give a variable: letters, digits and '_', not starting with a digit. */
static bool is_env_name(const char *p, size_t n)
{
    if (!n || isdigit((unsigned char)p[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '_')
            return false;
    return true;
}

/* --env-file: KEY=VALUE lines; '#' comments and blank lines are skipped, a trailing CR and
 * leading blanks dropped; nothing is unquoted (as docker's --env-file). KEY alone takes its
 * value from here, as docker's does. A KEY no shell could name (`export C`, `D `) is refused:
 * taken as written it would set a variable nobody can read. */
static int add_env_file(struct client_opts *o, struct start_opts *s, const char *path)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "re");
    int r = CLIENT_OPT_DONE;
    unsigned line = 0;

    if (!f)
        return client_usage_error(o, "--env-file %s: %s", path, strerror(errno));
    if (getdelim(&text, &len, '\0', f) < 0 && ferror(f)) {
        int e = errno;
        fclose(f);
        return client_usage_error(o, "--env-file %s: %s", path, strerror(e));
    }
    fclose(f);
    for (char *p = text; p && *p && r == CLIENT_OPT_DONE;) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char what[64];
        line++;
        while (n && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        if (n && p[n - 1] == '\r')
            n--;
        (void)snprintf(what, sizeof(what), "--env-file line %u:", line);
        if (!n || *p == '#') {
            p = nl ? nl + 1 : NULL;
            continue;
        }
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        if (!is_env_name(p, klen)) {
            r = client_usage_error(o,
                                   "--env-file %s line %u: '%.*s' is not a variable name "
                                   "(letters, digits and '_'; no blanks around '=')",
                                   path, line, (int)(klen > 64 ? 64 : klen), p);
            break;
        }
        if (!eq) {
            char key[256];
            (void)snprintf(key, sizeof(key), "%.*s", (int)klen, p);
            if (!getenv(key)) {
                r = client_usage_error(o,
                                       "--env-file %s line %u: %s has no '=VALUE' and is not "
                                       "set here to take its value from",
                                       path, line, key);
                break;
            }
        }
        r = add_env(o, s, what, p, n, true);
        p = nl ? nl + 1 : NULL;
    }
    return r;
}

static int add_arg(struct start_opts *s, char *a)
{
    char **n = realloc(s->args, (s->n_args + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    s->args = n;
    s->args[s->n_args++] = a;
    return 0;
}

static int limit_value(struct client_opts *o, const char *flag, const char *arg, bool size,
                       uint64_t *ret)
{
    int r = size ? fmt_parse_size(arg, ret) : fmt_parse_uint(arg, ret);
    if (r == -ERANGE)
        return client_usage_error(o, "--%s '%s' is too large", flag, arg);
    if (r < 0)
        return client_usage_error(o, "--%s '%s' is not %s", flag, arg,
                                  size ? "a size (like 4096, 512K, 512M, 2G)" : "a whole number");
    if (*ret == 0) /* on the wire 0 means "the server's default": say so rather than send it */
        return client_usage_error(o,
                                  "--%s '%s': a limit must be above 0 (leave the flag out "
                                  "for the server's default)",
                                  flag, arg);
    return CLIENT_OPT_DONE;
}

/* The server judges limits in the wire's words ("limits.memory_bytes=107374182400 is above the
 * server's maximum 4294967296"); say it in the flag's, with the value as typed and sizes in
 * the units of the help ("--memory 100G is above the server's maximum 4GiB"). */
static void limit_in_flag_words(const struct start_opts *s, struct rpc_error *err)
{
    /* In START_OPT_CPU order, the order of start_opts.limit_args. */
    static const struct {
        const char *field, *flag;
        bool size;
    } limits[] = {{"cpu_millis", "cpu", false}, {"memory_bytes", "memory", true},
                  {"io_riops", "riops", false}, {"io_wiops", "wiops", false},
                  {"io_rbps", "rbps", true},    {"io_wbps", "wbps", true},
                  {"pids", "pids", false}};
    char field[32], rest[256] = "", bound_s[32];
    unsigned long long asked, bound;
    const char *typed;
    bool above;
    int n = 0, k;

    if (err->code != RPC_INVALID_ARGUMENT ||
        sscanf(err->message, "limits.%31[a-z_]=%llu is %n", field, &asked, &n) != 2 || !n)
        return;
    if (sscanf(err->message + n, "above the server's maximum %llu", &bound) == 1)
        above = true;
    else if (sscanf(err->message + n, "below the minimum %llu %255[^\n]", &bound, rest) >= 1)
        above = false;
    else
        return;
    for (k = 0; k < (int)ELEMENTSOF(limits) && strcmp(limits[k].field, field) != 0; k++)
        ;
    if (k == (int)ELEMENTSOF(limits) || !(typed = s->limit_args[k]))
        return;
    if (limits[k].size)
        (void)fmt_bytes(bound_s, sizeof(bound_s), bound);
    else if (k == 0) /* cpu: millis, and in CPUs */
        (void)snprintf(bound_s, sizeof(bound_s), "%llum (%.3g CPU%s)", bound, (double)bound / 1000,
                       bound == 1000 ? "" : "s");
    else
        (void)snprintf(bound_s, sizeof(bound_s), "%llu", bound);
    if (above)
        (void)snprintf(err->message, sizeof(err->message),
                       "--%s %s is above the server's maximum %s", limits[k].flag, typed, bound_s);
    else
        (void)snprintf(err->message, sizeof(err->message), "--%s %s is below the minimum %s%s%s",
                       limits[k].flag, typed, bound_s, rest[0] ? " " : "", rest);
}

int client_start_option(struct client_opts *o, int c, const char *arg, void *ctx)
{
    struct start_opts *s = ctx;
    Runjob__V1__Limits *l = &s->limits;

    if (c >= START_OPT_CPU && c <= START_OPT_PIDS)
        s->limit_args[c - START_OPT_CPU] = arg;
    switch (c) {
    case 'j':
        if (!*arg)
            return client_usage_error(o, "--name is empty");
        s->req.name = (char *)arg;
        return CLIENT_OPT_DONE;
    case 'A':
        if (add_arg(s, (char *)arg) < 0)
            return client_usage_error(o, "out of memory");
        return CLIENT_OPT_DONE;
    case 'c':
        s->req.command = (char *)arg;
        return CLIENT_OPT_DONE;
    case 'f':
        s->follow = true;
        return CLIENT_OPT_DONE;
    case START_OPT_CPU:
        if (fmt_parse_cpu(arg, &l->cpu_millis) < 0)
            return client_usage_error(o, "--cpu '%s' is not a number of millis (500 = half a CPU)",
                                      arg);
        if (l->cpu_millis == 0)
            return client_usage_error(o,
                                      "--cpu '%s': a limit must be above 0 (leave the flag "
                                      "out for the server's default)",
                                      arg);
        return CLIENT_OPT_DONE;
    case START_OPT_MEMORY:
        return limit_value(o, "memory", arg, true, &l->memory_bytes);
    case START_OPT_RIOPS:
        return limit_value(o, "riops", arg, false, &l->io_riops);
    case START_OPT_WIOPS:
        return limit_value(o, "wiops", arg, false, &l->io_wiops);
    case START_OPT_RBPS:
        return limit_value(o, "rbps", arg, true, &l->io_rbps);
    case START_OPT_WBPS:
        return limit_value(o, "wbps", arg, true, &l->io_wbps);
    case START_OPT_PIDS:
        return limit_value(o, "pids", arg, false, &l->pids);
    case START_OPT_NETWORK:
        if (strcmp(arg, "none") == 0)
            s->req.network = RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_NONE;
        else if (strcmp(arg, "host") == 0)
            s->req.network = RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST;
        else
            return client_usage_error(o, "--network '%s' is not none or host", arg);
        return CLIENT_OPT_DONE;
    case START_OPT_DRY_RUN:
        s->dry_run = true;
        return CLIENT_OPT_DONE;
    case START_OPT_ENV:
        return add_env(o, s, "--env", arg, strlen(arg), false);
    case START_OPT_ENV_FILE:
        return add_env_file(o, s, arg);
    case START_OPT_WORKDIR:
        if (arg[0] != '/')
            return client_usage_error(o, "--workdir '%s' is not an absolute path", arg);
        s->req.workdir = (char *)arg;
        return CLIENT_OPT_DONE;
    case 'i':
        s->interactive = true;
        if (s->req.input != RUNJOB__V1__INPUT_MODE__INPUT_MODE_TTY)
            s->req.input = RUNJOB__V1__INPUT_MODE__INPUT_MODE_PIPE;
        return CLIENT_OPT_DONE;
    case 't': {
        unsigned rows, cols;
        s->tty = true;
        s->req.input = RUNJOB__V1__INPUT_MODE__INPUT_MODE_TTY;
        if (client_input_terminal_size(&rows, &cols)) {
            runjob__v1__terminal_size__init(&s->terminal_size);
            s->terminal_size.rows = rows;
            s->terminal_size.cols = cols;
            s->req.terminal_size = &s->terminal_size;
        }
        return CLIENT_OPT_DONE;
    }
    case START_OPT_TIMEOUT: {
        int64_t ms;
        if (fmt_parse_duration(arg, &ms) < 0 || ms <= 0)
            return client_usage_error(o, "--timeout '%s' is not a duration above 0 (30s, 2h)", arg);
        s->req.timeout_millis = (uint64_t)ms;
        return CLIENT_OPT_DONE;
    }
    default:
        return CLIENT_OPT_OTHER;
    }
}

int client_start_finish(struct client_opts *o, struct start_opts *s, int argc, char **argv)
{
    int i = optind, r;

    if (!s->req.command || !*s->req.command) {
        if (i >= argc)
            return client_usage_error(o, "missing the command to run (an absolute path, like "
                                         "/bin/ls)");
        s->req.command = argv[i++];
    }
    /* `start /bin/ls -l /tmp` and `start /usr/bin/echo -A hi --server-host=h` both: the rule
     * is START_USAGE_AFTER's. After a `--` before the command, everything is the command's. */
    if (!o->dashdash) {
        r = client_parse_after_command(o, START_ALL_SHORTOPTS, start_longopts, "",
                                       client_start_option, s, "ch", i, &i);
        if (r != CLIENT_OPT_DONE)
            return r;
    }
    for (; i < argc; i++)
        if (add_arg(s, argv[i]) < 0)
            return client_usage_error(o, "out of memory");
    if (!*s->req.command)
        return client_usage_error(o, "the command is empty (an absolute path, like /bin/ls)");
    if (s->req.command[0] != '/' && !strchr(s->req.command, '/'))
        return client_usage_error(o, "the command '%s' is not an absolute path (try /bin/%s)",
                                  s->req.command, s->req.command);
    if (s->req.command[0] != '/')
        return client_usage_error(o,
                                  "the command '%s' is not an absolute path (the server "
                                  "does not know your working directory)",
                                  s->req.command);
    /* A terminal's programs need its type, as ssh -t sends it: TERM from here, first, so that
     * --env-file and --env override it. */
    if (s->tty && getenv("TERM") && *getenv("TERM")) {
        char **n = realloc(s->env, (s->n_env + 1) * sizeof(*n));
        char *term = NULL;
        if (!n || asprintf(&term, "TERM=%s", getenv("TERM")) < 0) {
            if (n)
                s->env = n;
            return client_usage_error(o, "out of memory");
        }
        s->env = n;
        memmove(s->env + 1, s->env, s->n_env * sizeof(*n));
        s->env[0] = term;
        s->n_env++;
        s->n_env_file++;
    }
    s->req.args = s->args;
    s->req.n_args = s->n_args;
    s->req.env = s->env;
    s->req.n_env = s->n_env;
    return 0;
}

/* ---- following output -------------------------------------------------------------------- */

void client_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGWINCH); /* a terminal job's size: client-input.c's signalfd */
    (void)pthread_sigmask(SIG_BLOCK, &set, NULL);
}

struct stopper {
    pthread_t thread;
    bool started;
    const struct client_opts *o;
    struct rpc_client *c;
    const char *id;
    int64_t grace;
};

struct sigwatch {
    const struct client_opts *o;
    struct rpc_client *c;
    const char *id;
    int sfd, efd;
    struct stopper stoppers[2];
    int interrupted;      /* number of stops asked */
    struct rpc_stream *s; /* detach: the stream a signal cancels */
    bool detach;          /* a signal detaches instead of stopping the job */
    atomic_bool detached; /* it did */
};

/* Stop RPC (grace 0: the server's default); waits for the job to end. Errors are printed,
 * except "not found" (already gone: the stream or the status tells the end). */
static void stop_job(const struct client_opts *o, struct rpc_client *c, const char *id,
                     int64_t grace)
{
    Runjob__V1__StopRequest req = RUNJOB__V1__STOP_REQUEST__INIT;
    Runjob__V1__JobStatus *status = NULL;
    struct rpc_error err = {0};

    req.id = (char *)id;
    req.grace_millis = grace;
    if (rpc_client_stop(c, &req, &status, &err) < 0) {
        if (err.code != RPC_NOT_FOUND)
            (void)client_fail(o, &err);
        return;
    }
    protobuf_c_message_free_unpacked(&status->base, NULL);
}

static void *stopper_main(void *arg)
{
    struct stopper *st = arg;

    stop_job(st->o, st->c, st->id, st->grace);
    return NULL;
}

/* Waits for SIGINT/SIGTERM/SIGHUP on a signalfd while the main thread reads the stream: the
 * first stops the job with the server's grace period, the second kills it at once. */
static void *sigwatch_main(void *arg)
{
    struct sigwatch *w = arg;
    struct pollfd pfd[2] = {{.fd = w->sfd, .events = POLLIN}, {.fd = w->efd, .events = POLLIN}};

    for (;;) {
        struct signalfd_siginfo si;
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (pfd[1].revents)
            return NULL;
        if (read(w->sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
            continue;
        if (w->detach) {
            atomic_store(&w->detached, true);
            rpc_client_stream_cancel(w->s);
            return NULL;
        }
        if (w->interrupted >= 2)
            continue;
        struct stopper *st = &w->stoppers[w->interrupted];
        st->o = w->o;
        st->c = w->c;
        st->id = w->id;
        st->grace = w->interrupted == 0 ? 0 : -1;
        if (w->interrupted == 0)
            fprintf(stderr, "%s: %s: stopping job %s (press Ctrl-C again to kill it now)\n",
                    w->o->prog, w->o->verb, w->id);
        else
            fprintf(stderr, "%s: %s: killing job %s\n", w->o->prog, w->o->verb, w->id);
        w->interrupted++;
        st->started = pthread_create(&st->thread, NULL, stopper_main, st) == 0;
    }
}

static void print_final(const struct client_opts *o, const char *id,
                        const Runjob__V1__JobStatus *st)
{
    char word[600], dur[32] = "";

    fmt_status_word(word, sizeof(word), st);
    if (st->start_time_ms > 0 && st->end_time_ms >= st->start_time_ms)
        fmt_duration(dur, sizeof(dur), st->end_time_ms - st->start_time_ms);
    fprintf(stderr, "%s: %s: job %s %s%s%s\n", o->prog, o->verb, id, word, *dur ? " after " : "",
            dur);
}

/* Writes a chunk with each line that begins in it prefixed by the chunk's receive time;
 * *at_start says whether the stream's previous chunk ended its line. 0 or -errno. */
static int write_stamped(int fd, const uint8_t *p, size_t len, int64_t time_ms, bool *at_start)
{
    char stamp[40];
    struct tm tm;
    time_t sec = (time_t)(time_ms / 1000);
    size_t n;
    int r;

    (void)gmtime_r(&sec, &tm);
    n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    (void)snprintf(stamp + n, sizeof(stamp) - n, ".%03dZ ", (int)(time_ms % 1000));
    while (len) {
        const uint8_t *nl = memchr(p, '\n', len);
        size_t line = nl ? (size_t)(nl - p) + 1 : len;
        if (*at_start && (r = proc_write_fd(fd, stamp, strlen(stamp))) < 0)
            return r;
        if ((r = proc_write_fd(fd, p, line)) < 0)
            return r;
        *at_start = nl != NULL;
        p += line;
        len -= line;
    }
    return 0;
}

int client_follow(const struct client_opts *o, struct rpc_client *c, const struct follow_opts *f)
{
    bool line_start[2] = {true, true}; /* --timestamps: stdout's and stderr's */
    uint64_t next_offset = f->offset;  /* where the next chunk should begin: a jump is a gap */
    Runjob__V1__StreamRequest req = RUNJOB__V1__STREAM_REQUEST__INIT;
    Runjob__V1__JobStatus *last = NULL;
    struct rpc_stream *s = NULL;
    struct rpc_error err = {0};
    struct sigwatch w = {.o = o, .c = c, .id = f->id, .sfd = -1, .efd = -1};
    pthread_t watcher;
    bool watching = false, out_ok = true, err_ok = true, piped = false;
    int r, ret = 0;

    /* A closed stdout (`| head`) is an EPIPE from write, never a fatal SIGPIPE. */
    (void)signal(SIGPIPE, SIG_IGN);
    req.id = (char *)f->id;
    req.select = f->select;
    req.offset = f->offset;
    req.no_follow = f->no_follow;
    req.stop_on_disconnect = f->tie;
    if (rpc_client_stream_open(c, &req, &s, &err) < 0)
        return client_fail(o, &err);
    if (f->input)
        client_input_follow_hook(f->input, s);

    if (f->stop_on_signal || f->detach_on_signal) {
        sigset_t set;
        w.s = s;
        w.detach = f->detach_on_signal;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        w.sfd = signalfd(-1, &set, SFD_CLOEXEC);
        w.efd = eventfd(0, EFD_CLOEXEC);
        if (w.sfd >= 0 && w.efd >= 0)
            watching = pthread_create(&watcher, NULL, sigwatch_main, &w) == 0;
        if (!watching)
            fprintf(stderr, "%s: %s: cannot watch for Ctrl-C, ignoring\n", o->prog, o->verb);
    }

    for (;;) {
        struct rpc_chunk ch;
        r = rpc_client_stream_next(s, &ch, &err);
        if (r < 0 && (atomic_load(&w.detached) || (f->input && client_input_detached(f->input)))) {
            ret = CLIENT_EXIT_DETACHED;
            break;
        }
        if (r < 0) {
            ret = client_fail(o, &err);
            break;
        }
        if (r == 0)
            break;
        if (ch.final_status) {
            /* Keep our own copy: the chunk's is freed by the next call. */
            size_t n = runjob__v1__job_status__get_packed_size(ch.final_status);
            uint8_t *buf = malloc(n ? n : 1);
            if (last)
                protobuf_c_message_free_unpacked(&last->base, NULL);
            last = NULL;
            if (buf) {
                runjob__v1__job_status__pack(ch.final_status, buf);
                last = runjob__v1__job_status__unpack(NULL, n, buf);
                free(buf);
            }
        }
        if (!ch.len)
            continue;
        if (ch.offset > next_offset)
            fprintf(stderr,
                    "%s: %s: job %s: %" PRIu64 " bytes of its output were dropped here (past its "
                    "cap the server keeps the first and the newest parts)\n",
                    o->prog, o->verb, f->id, ch.offset - next_offset);
        next_offset = ch.offset + ch.len;
        /* One stream asked for by name (stream -s stderr) is what was asked for: it goes to
         * stdout, so that `| less` shows it. Both (--select all) go where the job wrote them. */
        bool to_err = ch.stream == RUNJOB__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDERR &&
                      f->select != RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDERR;
        bool *ok = to_err ? &err_ok : &out_ok;
        if (!*ok)
            continue;
        if (f->since_ms > 0 && ch.time_ms && ch.time_ms < f->since_ms)
            continue;
        if (f->timestamps)
            r = write_stamped(
                to_err ? STDERR_FILENO : STDOUT_FILENO, ch.data, ch.len, ch.time_ms,
                &line_start[ch.stream == RUNJOB__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDERR]);
        else
            r = proc_write_fd(to_err ? STDERR_FILENO : STDOUT_FILENO, ch.data, ch.len);
        if (r == -EPIPE) {
            /* Nobody reads any more (`| head`): end as a local pipeline would, by SIGPIPE. */
            piped = true;
            rpc_client_stream_cancel(s);
            break;
        }
        if (r < 0) {
            *ok = false;
            fprintf(stderr, "%s: %s: cannot write the job's %s: %s\n", o->prog, o->verb,
                    to_err ? "stderr" : "stdout", strerror(-r));
            /* A plain stream is done; run keeps going for the exit code. */
            if (!f->stop_on_signal) {
                ret = CLIENT_EXIT_FAILED;
                rpc_client_stream_cancel(s);
                break;
            }
        }
    }
    if (f->input)
        client_input_follow_hook(f->input, NULL);

    if (watching) {
        uint64_t one = 1;
        (void)!write(w.efd, &one, sizeof(one));
        (void)pthread_join(watcher, NULL);
        for (int i = 0; i < 2; i++)
            if (w.stoppers[i].started)
                (void)pthread_join(w.stoppers[i].thread, NULL);
    }
    rpc_client_stream_free(s); /* after the watcher, which may cancel it */
    if (w.sfd >= 0)
        close(w.sfd);
    if (w.efd >= 0)
        close(w.efd);

    if (piped) {
        /* run and start -f own the job: nobody wants its output, so it goes too (a local
         * `yes | head` ends the same way). A plain stream only watches: the job goes on.
         * No final status line: a pipeline's user expects silence. */
        if (f->stop_on_signal && !w.interrupted)
            stop_job(o, c, f->id, 0);
        if (last)
            protobuf_c_message_free_unpacked(&last->base, NULL);
        return CLIENT_EXIT_SIGPIPE;
    }
    /* A plain stream (not attach, whose stdin is the job's) asks too, for the note below. */
    bool plain = !f->exit_code && !f->input;
    if (ret == 0 && (f->exit_code || plain) && !last) {
        /* The stream ended without the final status (it was not following): ask for it. */
        Runjob__V1__StatusRequest sreq = RUNJOB__V1__STATUS_REQUEST__INIT;
        sreq.id = (char *)f->id;
        if (rpc_client_status(c, &sreq, &last, &err) < 0 && f->exit_code)
            ret = client_fail(o, &err);
    }
    /* Only run and start -f speak about the end: a plain stream's stderr is the job's. */
    if (ret == 0 && last && f->exit_code &&
        (w.interrupted || last->state == RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED ||
         last->state == RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START ||
         last->state == RUNJOB__V1__JOB_STATE__JOB_STATE_LOST))
        print_final(o, f->id, last);
    /* Otherwise the missing tail of the output would go unnoticed, by a stream's reader too. */
    if (ret == 0 && last && (f->exit_code || plain) && last->usage && last->usage->output_truncated)
        fprintf(stderr,
                "%s: %s: job %s: output truncated: the server kept only the first %" PRIu64
                " bytes (its cap, or its disk is full)\n",
                o->prog, o->verb, f->id, (uint64_t)last->usage->output_bytes);
    if (ret == 0 && last && f->exit_code)
        ret = fmt_job_exit_code(last);
    if (last)
        protobuf_c_message_free_unpacked(&last->base, NULL);
    return ret;
}

/* ---- the start and run verbs ------------------------------------------------------------- */

_Static_assert(RPC_MAX_ARGS_BYTES == 128 * 1024, "START_USAGE says 128 KiB");

/* run looks like a local command, but the job's stdin is /dev/null: say so when we were given
 * input that would be lost (a pipe, or a file with something in it; a terminal or /dev/null
 * is the usual case and needs no word). */
static void note_stdin(const struct client_opts *o)
{
    struct stat st;

    if (fstat(STDIN_FILENO, &st) < 0)
        return;
    if (S_ISFIFO(st.st_mode) || (S_ISREG(st.st_mode) && st.st_size > 0))
        fprintf(stderr, "%s: note: stdin is not passed to the job (it reads /dev/null)\n", o->prog);
}

int client_start_main(int argc, char **argv, const char *usage, bool run)
{
    struct client_opts o;
    struct start_opts s;
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    Runjob__V1__Job *job = NULL;
    struct rpc_error err = {0};
    int r;

    client_init(&o, argc, argv);
    client_start_init(&s);
    /* The flags before the command; client_start_finish judges the words after it. */
    if ((r = client_parse_flags(&o, START_BEFORE_SHORTOPTS, start_before_longopts, usage,
                                client_start_option, &s)) != CLIENT_OPT_DONE)
        goto out;
    if ((r = client_start_finish(&o, &s, argc, argv)) != 0 || (r = client_opts_finish(&o)) != 0)
        goto out;
    bool follow = run || s.follow;
    /* Followed, a job with input takes ours, as run -i's does: there is nobody else to give
     * it any while we wait for its end (without -f, `runjob attach` does later). */
    bool pass_input = follow && (s.interactive || s.tty);
    /* As ssh refuses a terminal it cannot have, and docker's "the input device is not a TTY". */
    if (follow && s.tty && !isatty(STDIN_FILENO)) {
        r = client_usage_error(&o,
                               "-t needs a terminal on stdin, and stdin is not one (-i passes a "
                               "pipe or a file)");
        goto out;
    }
    if (s.dry_run) {
        r = client_print_json(&s.req.base);
        goto out;
    }
    if (follow && !pass_input)
        note_stdin(&o);
    if (follow)
        client_block_signals();
    if ((r = client_dial(&o, &c)) != 0)
        goto out;
    if (rpc_client_start(c, &s.req, &job, &err) < 0) {
        limit_in_flag_words(&s, &err);
        r = client_fail(&o, &err);
        /* The command itself could not be run: 127 not found, 126 not executable (sh's). */
        if (err.code == RPC_FAILED_PRECONDITION && strstr(err.message, "could not start: "))
            r = fmt_start_error_exit_code(err.message);
        goto out;
    }
    if (!follow) {
        r = o.output == CLIENT_OUTPUT_JSON ? client_print_json(&job->base)
                                           : (printf("%s\n", job->id), 0);
    } else {
        if (!run)
            fprintf(stderr, "%s\n", job->id);
        struct follow_opts f = {
            .id = job->id, .stop_on_signal = true, .exit_code = true, .tie = run};
        struct client_input *in = NULL;
        (void)fflush(stdout);
        if (pass_input && (r = client_input_start(&o, c, job->id, s.tty, true, &in)) != 0) {
            stop_job(&o, c, job->id, 0); /* it would wait for input that never comes */
            goto done;
        }
        f.input = in;
        r = client_follow(&o, c, &f);
        client_input_stop(in);
        if (r == CLIENT_EXIT_DETACHED && run) {
            /* The job is tied to this client: the server stops it as we go. */
            fprintf(stderr, "%s: %s: disconnected (~.): the server stops job %s\n", o.prog, o.verb,
                    job->id);
            r = CLIENT_EXIT_FAILED;
        } else if (r == CLIENT_EXIT_DETACHED) {
            /* start -f does not tie the job: it goes on, as after attach's `~.`. */
            fprintf(stderr, "%s: %s: detached from job %s (it goes on)\n", o.prog, o.verb, job->id);
            r = 0;
        }
    }
done:
    protobuf_c_message_free_unpacked(&job->base, NULL);
out:
    client_start_free(&s);
    return r;
}
