/* runjob context add|use|list|rm|show: named connection settings (applets/context-store.h),
 * so that a server and its certificates are one --context NAME, or none at all once current. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "applets/client.h"
#include "applets/context-store.h"
#include "applets/format.h"
#include "applets/suggest.h"
#include "core/tls.h"

static const char usage[] =
    "Usage: runjob context <command> [flags] [NAME]\n"
    "\n"
    "A context is a named set of connection settings: server, port, CA, your certificate and\n"
    "key. `context use` makes one current: every command then talks to its server with its\n"
    "certificates, from any directory. --context NAME or RUNJOB_CONTEXT=NAME picks another for\n"
    "one command. Flags and environment variables still win over the context, setting by\n"
    "setting: flags, then the environment, then the context, then the defaults.\n"
    "\n"
    "Commands:\n"
    "  add NAME [flags]     save a context (paths made absolute; the files must exist)\n"
    "  use NAME             make NAME the current context\n"
    "  list                 the contexts, the current one marked with '*' (-o json, -q: names)\n"
    "  rm NAME              remove a context (if it was current, none is current any more)\n"
    "  show [NAME]          one context's settings (default: the one in use)\n"
    "\n"
    "add's flags:\n"
    "  -H, --server-host HOST     server name or address, or HOST:PORT (localhost)\n"
    "  -P, --server-port PORT     server port (8080)\n"
    "      --certs-dir DIR        where the certificates are (certs, in this directory)\n"
    "  -u, --user NAME            use DIR/NAME-cert.pem and DIR/NAME-key.pem (client)\n"
    "      --ca-cert-path FILE    CA that signed the server (DIR/root-ca-cert.pem)\n"
    "      --client-cert-path FILE  your certificate (DIR/NAME-cert.pem)\n"
    "      --client-key-path FILE   your private key (DIR/NAME-key.pem)\n"
    "      --use                  make it the current context too\n"
    "add reads no RUNJOB_* variable: a context holds what its flags and defaults say.\n"
    "\n"
    "add's, use's and rm's flag:\n"
    "  -f, --force                add: replace a context of that name. All three: rewrite a\n"
    "                             contexts file that has bad lines without them (each named\n"
    "                             on stderr). Other commands warn of such a file and go on\n"
    "                             without a context, unless they need one\n"
    "\n"
    "list's and show's flags:\n"
    "  -o, --output FORMAT        table (default) or json\n"
    "  -q, --quiet                list: only the names, one per line\n"
    "      --context NAME         show: the context to show [RUNJOB_CONTEXT]\n"
    "  -h, --help                 this help\n"
    "\n"
    "The contexts live in $XDG_CONFIG_HOME/runjob/contexts (~/.config/runjob/contexts), a text\n"
    "file of mode 0600, rewritten whole (a temporary file renamed over it):\n"
    "  current = prod\n"
    "  [prod]\n"
    "  server-host = build.example.com\n"
    "  server-port = 8443\n"
    "  ca-cert-path = /home/alice/certs/root-ca-cert.pem\n"
    "  client-cert-path = /home/alice/certs/alice-cert.pem\n"
    "  client-key-path = /home/alice/certs/alice-key.pem\n"
    "  certs-dir = /home/alice/certs\n"
    "With a context in use, `-u NAME` takes NAME's files from its certs-dir.\n"
    "\n"
    "Examples:\n"
    "  runjob context add prod -H build.example.com:8443 --certs-dir ~/certs -u alice --use\n"
    "  runjob context add lab --server-host 10.0.0.5 --ca-cert-path ca.pem \\\n"
    "      --client-cert-path me-cert.pem --client-key-path me-key.pem\n"
    "  runjob context use lab\n"
    "  runjob list --context prod        # or: RUNJOB_CONTEXT=prod runjob list\n"
    "  runjob context list\n";

enum { OPT_CERTS_DIR = CLIENT_OPT_APPLET, OPT_USE };

struct add_flags {
    const char *certs_dir;
    bool force, use, quiet;
};

static int take_flag(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    struct add_flags *f = ctx;

    switch (opt) {
    case OPT_CERTS_DIR:
        if (!*arg)
            return client_usage_error(o, "--certs-dir is empty");
        f->certs_dir = arg;
        return CLIENT_OPT_DONE;
    case OPT_USE:
        f->use = true;
        return CLIENT_OPT_DONE;
    case 'f':
        f->force = true;
        return CLIENT_OPT_DONE;
    case 'q':
        f->quiet = true;
        return CLIENT_OPT_DONE;
    default:
        return CLIENT_OPT_OTHER;
    }
}

/* path made absolute against the working directory, as typed otherwise (no symbolic link
 * resolved: a link that is later pointed at new certificates keeps working). 0 or 2. */
static int absolute(const struct client_opts *o, const char *flag, const char *path, char *buf,
                    size_t cap)
{
    char cwd[PATH_MAX];
    int n;

    if (path[0] == '/') {
        n = snprintf(buf, cap, "%s", path);
    } else {
        if (!getcwd(cwd, sizeof(cwd)))
            return client_usage_error(o, "cannot tell the working directory: %s", strerror(errno));
        while (path[0] == '.' && path[1] == '/')
            path += 2;
        n = snprintf(buf, cap, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", path);
    }
    if (n < 0 || (size_t)n >= cap)
        return client_usage_error(o, "%s '%s' is too long", flag, path);
    return 0;
}

/* An absolute path to an existing regular file, for one of add's path flags. 0 or 2. */
static int existing_file(const struct client_opts *o, const char *flag, const char *path, char *buf,
                         size_t cap)
{
    struct stat st;
    int r = absolute(o, flag, path, buf, cap);

    if (r)
        return r;
    if (stat(buf, &st) < 0)
        return client_usage_error(o, "%s '%s': %s", flag, buf, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return client_usage_error(o, "%s '%s' is not a file", flag, buf);
    if (access(buf, R_OK) < 0)
        return client_usage_error(o, "%s '%s': %s", flag, buf, strerror(errno));
    return 0;
}

/* A certificate outside its dates is saved all the same (it may be renewed in place), but
 * said at once rather than at the first command. */
static void warn_cert_dates(const struct client_opts *o, const char *path)
{
    _cleanup_free_ char *pem = NULL;
    char msg[PATH_MAX + 256];
    int64_t not_before, not_after;

    if (tls_read_pem(path, &pem) == 0 && tls_cert_dates(pem, &not_before, &not_after) == 0 &&
        client_cert_time_check(path, not_before, not_after, (int64_t)time(NULL), msg, sizeof(msg)) <
            0)
        fprintf(stderr, "%s: %s: warning: %s\n", o->prog, o->verb, msg);
}

static int save(const struct client_opts *o, const struct cstore *s, const char *dir)
{
    int r = cstore_save(s, dir);
    if (r < 0) {
        fprintf(stderr, "%s: %s: cannot write %s/%s: %s\n", o->prog, o->verb, dir, CSTORE_FILE,
                strerror(-r));
        return 1;
    }
    return 0;
}

static int do_add(struct client_opts *o, const struct add_flags *f, int argc, char **argv)
{
    _cleanup_(cstore_freep) struct cstore *s = NULL;
    char dir[PATH_MAX], certs[PATH_MAX], ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
    char file[PATH_MAX + 64];
    const char *name, *user = o->user ? o->user : "client";
    struct stat st;
    int r;

    if ((r = client_one_arg(o, argc, argv, "context name", &name)))
        return r;
    if (!cstore_name_is_valid(name))
        return client_usage_error(o, "'%s' is not a context name (letters, digits, '.', '_', '-')",
                                  name);
    if (o->host_port && o->port && o->host_port != o->port)
        return client_usage_error(o, "--server-host gives port %d but --server-port %d",
                                  o->host_port, o->port);
    if ((r = absolute(o, "--certs-dir", f->certs_dir ? f->certs_dir : "certs", certs,
                      sizeof(certs))))
        return r;
    bool have_dir = stat(certs, &st) == 0 && S_ISDIR(st.st_mode);
    if (f->certs_dir && !have_dir)
        return client_usage_error(o, "--certs-dir '%s' is not a directory", certs);

    /* The same files `-u` and the defaults name today, but of the certs directory. */
    (void)snprintf(file, sizeof(file), "%s/root-ca-cert.pem", certs);
    if ((r = existing_file(o, o->ca_path ? "--ca-cert-path" : "CA certificate",
                           o->ca_path ? o->ca_path : file, ca, sizeof(ca))))
        return r;
    (void)snprintf(file, sizeof(file), "%s/%s-cert.pem", certs, user);
    if ((r = existing_file(o, o->cert_path ? "--client-cert-path" : "client certificate",
                           o->cert_path ? o->cert_path : file, cert, sizeof(cert))))
        return r;
    (void)snprintf(file, sizeof(file), "%s/%s-key.pem", certs, user);
    if ((r = existing_file(o, o->key_path ? "--client-key-path" : "client key",
                           o->key_path ? o->key_path : file, key, sizeof(key))))
        return r;

    struct cstore_context c = {
        .name = (char *)name,
        .host = (char *)(o->host ? o->host : "localhost"),
        .port = o->port        ? o->port
                : o->host_port ? o->host_port
                               : 8080,
        .ca_path = ca,
        .cert_path = cert,
        .key_path = key,
        .certs_dir = have_dir ? certs : NULL,
    };
    warn_cert_dates(o, cert);
    if ((r = client_context_load(o, dir, sizeof(dir),
                                 f->force ? CLIENT_CTX_SALVAGE : CLIENT_CTX_STRICT, &s)))
        return r;
    r = cstore_put(s, &c, f->force);
    if (r == -EEXIST)
        return client_usage_error(o, "context '%s' exists already (--force replaces it)", name);
    if (r == -EINVAL)
        return client_usage_error(o, "a value has a line break or blanks at an end: the "
                                     "contexts file cannot keep it");
    if (r < 0)
        return client_usage_error(o, "out of memory");
    if (f->use && cstore_set_current(s, name) < 0)
        return client_usage_error(o, "out of memory");
    if ((r = save(o, s, dir)))
        return r;
    if (f->use)
        printf("context '%s' added (%s:%d), and is the current one now\n", name, c.host, c.port);
    else
        printf("context '%s' added (%s:%d); '%s context use %s' makes it the current one\n", name,
               c.host, c.port, o->prog, name);
    return 0;
}

static int do_use(struct client_opts *o, const struct add_flags *f, int argc, char **argv)
{
    _cleanup_(cstore_freep) struct cstore *s = NULL;
    const struct cstore_context *c;
    char dir[PATH_MAX];
    const char *name;
    int r;

    if ((r = client_one_arg(o, argc, argv, "context name", &name)) ||
        (r = client_context_load(o, dir, sizeof(dir),
                                 f->force ? CLIENT_CTX_SALVAGE : CLIENT_CTX_STRICT, &s)))
        return r;
    if (!(c = cstore_find(s, name)))
        return client_context_unknown(o, s, name, "the name given");
    if (cstore_set_current(s, name) < 0)
        return client_usage_error(o, "out of memory");
    if ((r = save(o, s, dir)))
        return r;
    printf("now using context '%s' (%s:%d)\n", name, c->host ? c->host : "localhost",
           c->port ? c->port : 8080);
    return 0;
}

static int do_rm(struct client_opts *o, const struct add_flags *f, int argc, char **argv)
{
    _cleanup_(cstore_freep) struct cstore *s = NULL;
    char dir[PATH_MAX];
    const char *name;
    int r;

    if ((r = client_one_arg(o, argc, argv, "context name", &name)) ||
        (r = client_context_load(o, dir, sizeof(dir),
                                 f->force ? CLIENT_CTX_SALVAGE : CLIENT_CTX_STRICT, &s)))
        return r;
    if (!cstore_find(s, name))
        return client_context_unknown(o, s, name, "the name given");
    bool was_current = cstore_remove(s, name) == 1;
    if ((r = save(o, s, dir)))
        return r;
    if (was_current)
        printf("context '%s' removed; it was the current one: no context is current now\n", name);
    else
        printf("context '%s' removed\n", name);
    return 0;
}

/* One context as a JSON object. */
static void json_context(struct strbuf *b, const struct cstore_context *c, bool current)
{
    const char *keys[] = {"ca_cert_path", "client_cert_path", "client_key_path", "certs_dir"};
    const char *vals[] = {c->ca_path, c->cert_path, c->key_path, c->certs_dir};

    (void)strbuf_puts(b, "{\"name\": ");
    jb_string(b, c->name);
    (void)strbuf_printf(b, ", \"current\": %s, \"server_host\": ", current ? "true" : "false");
    if (c->host)
        jb_string(b, c->host);
    else
        (void)strbuf_puts(b, "null");
    (void)strbuf_printf(b, ", \"server_port\": %d", c->port);
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        (void)strbuf_printf(b, ", \"%s\": ", keys[i]);
        if (vals[i])
            jb_string(b, vals[i]);
        else
            (void)strbuf_puts(b, "null");
    }
    (void)strbuf_puts(b, "}");
}

static int print_buf(const struct client_opts *o, struct strbuf *b)
{
    (void)strbuf_puts(b, "\n");
    if (strbuf_is_failed(b)) {
        fprintf(stderr, "%s: %s: out of memory\n", o->prog, o->verb);
        return 1;
    }
    fputs(strbuf_str(b), stdout);
    return 0;
}

static bool is_current(const struct cstore *s, const struct cstore_context *c)
{
    const char *cur = cstore_current(s);
    return cur && strcmp(cur, c->name) == 0;
}

static int do_list(struct client_opts *o, const struct add_flags *f, int argc, char **argv)
{
    _cleanup_(cstore_freep) struct cstore *s = NULL;
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    char dir[PATH_MAX], server[300];
    int r;

    if (optind < argc)
        return client_usage_error(o, "unexpected argument '%s'", argv[optind]);
    if ((r = client_context_load(o, dir, sizeof(dir), CLIENT_CTX_STRICT, &s)))
        return r;
    size_t n = cstore_count(s);
    if (f->quiet) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", cstore_at(s, i)->name);
        return 0;
    }
    if (o->output == CLIENT_OUTPUT_JSON) {
        if (strbuf_new(&b) < 0)
            return client_usage_error(o, "out of memory");
        (void)strbuf_puts(b, "{\"current\": ");
        if (cstore_current(s))
            jb_string(b, cstore_current(s));
        else
            (void)strbuf_puts(b, "null");
        (void)strbuf_puts(b, ", \"contexts\": [");
        for (size_t i = 0; i < n; i++) {
            if (i)
                (void)strbuf_puts(b, ", ");
            json_context(b, cstore_at(s, i), is_current(s, cstore_at(s, i)));
        }
        (void)strbuf_puts(b, "]}");
        return print_buf(o, b);
    }
    if (!n) {
        fprintf(stderr, "%s: %s: no contexts yet; add one with '%s context add NAME ...'\n",
                o->prog, o->verb, o->prog);
        return 0;
    }
    static const char *const headers[] = {"CURRENT", "NAME", "SERVER", "CERTIFICATE"};
    struct table *t = table_new(ELEMENTSOF(headers), headers);
    for (size_t i = 0; t && i < n; i++) {
        const struct cstore_context *c = cstore_at(s, i);
        (void)snprintf(server, sizeof(server), "%s:%d", c->host ? c->host : "localhost",
                       c->port ? c->port : 8080);
        const char *cells[] = {is_current(s, c) ? "*" : "", c->name, server, c->cert_path};
        if (table_add_row(t, cells, 0, NULL) < 0) {
            table_free(t);
            t = NULL;
        }
    }
    if (!t)
        return client_usage_error(o, "out of memory");
    table_print(t, stdout, client_color());
    table_free(t);
    return 0;
}

static int do_show(struct client_opts *o, int argc, char **argv)
{
    _cleanup_(cstore_freep) struct cstore *s = NULL;
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    const struct cstore_context *c;
    const char *name = NULL, *from = "the name given";
    char dir[PATH_MAX];
    int r;

    if (optind + 1 < argc)
        return client_usage_error(o, "unexpected argument '%s' after the context name",
                                  argv[optind + 1]);
    if ((r = client_context_load(o, dir, sizeof(dir), CLIENT_CTX_STRICT, &s)))
        return r;
    if (optind < argc)
        name = argv[optind];
    else if (!(name = client_context_wanted(o, s, &from)))
        return client_usage_error(o,
                                  "no context is in use: name one, or make one current "
                                  "with '%s context use NAME'",
                                  o->prog);
    if (!(c = cstore_find(s, name)))
        return client_context_unknown(o, s, name, from);
    if (o->output == CLIENT_OUTPUT_JSON) {
        if (strbuf_new(&b) < 0)
            return client_usage_error(o, "out of memory");
        json_context(b, c, is_current(s, c));
        return print_buf(o, b);
    }
    printf("name:              %s%s\n", c->name, is_current(s, c) ? " (current)" : "");
    printf("server-host:       %s\n", c->host ? c->host : "-");
    printf("server-port:       %d\n", c->port);
    printf("ca-cert-path:      %s\n", c->ca_path ? c->ca_path : "-");
    printf("client-cert-path:  %s\n", c->cert_path ? c->cert_path : "-");
    printf("client-key-path:   %s\n", c->key_path ? c->key_path : "-");
    printf("certs-dir:         %s\n", c->certs_dir ? c->certs_dir : "-");
    printf("file:              %s/%s\n", dir, CSTORE_FILE);
    return 0;
}

static const char *const commands[] = {"add", "use", "list", "rm", "show"};

int applet_context_main(int argc, char **argv)
{
    static const struct option add_longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"server-host", required_argument, NULL, 'H'},
        {"server-port", required_argument, NULL, 'P'},
        {"user", required_argument, NULL, 'u'},
        {"ca-cert-path", required_argument, NULL, CLIENT_OPT_CA},
        {"client-cert-path", required_argument, NULL, CLIENT_OPT_CERT},
        {"client-key-path", required_argument, NULL, CLIENT_OPT_KEY},
        {"certs-dir", required_argument, NULL, OPT_CERTS_DIR},
        {"force", no_argument, NULL, 'f'},
        {"use", no_argument, NULL, OPT_USE},
        {NULL, 0, NULL, 0},
    };
    static const struct option show_longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},
        {"context", required_argument, NULL, CLIENT_OPT_CONTEXT},
        {NULL, 0, NULL, 0},
    };
    static const struct option plain_longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"force", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    struct client_opts o;
    struct add_flags f = {0};
    const char *cmd;
    int r;

    client_init(&o, argc, argv);
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    size_t i = 0;
    while (i < ELEMENTSOF(commands) && strcmp(cmd, commands[i]) != 0)
        i++;
    if (i == ELEMENTSOF(commands)) {
        char hint[128];
        (void)suggest_text(cmd, commands, ELEMENTSOF(commands), "", hint, sizeof(hint));
        return client_usage_error(&o, "unknown command '%s' (add, use, list, rm, show)%s", cmd,
                                  hint);
    }

    /* The sub-command's words, with "context <cmd>" in messages. */
    client_init(&o, argc - 1, argv + 1);
    (void)snprintf(o.verb, sizeof(o.verb), "context %s", cmd);
    bool add = strcmp(cmd, "add") == 0;
    bool shows = strcmp(cmd, "list") == 0 || strcmp(cmd, "show") == 0;
    if ((r = client_parse_flags(&o,
                                add     ? "hH:P:u:f"
                                : shows ? "ho:q"
                                        : "hf",
                                add     ? add_longopts
                                : shows ? show_longopts
                                        : plain_longopts,
                                usage, take_flag, &f)) != CLIENT_OPT_DONE)
        return r;
    if (f.quiet && strcmp(cmd, "list") != 0)
        return client_usage_error(&o, "--quiet is for 'context list'");
    if (o.context && strcmp(cmd, "show") != 0)
        return client_usage_error(&o, "--context is for 'context show'");
    argc--;
    argv++;
    if (add)
        return do_add(&o, &f, argc, argv);
    if (strcmp(cmd, "use") == 0)
        return do_use(&o, &f, argc, argv);
    if (strcmp(cmd, "rm") == 0)
        return do_rm(&o, &f, argc, argv);
    if (strcmp(cmd, "list") == 0)
        return do_list(&o, &f, argc, argv);
    return do_show(&o, argc, argv);
}
