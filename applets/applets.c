#include "applets.h"

#include <string.h>

#include "applets/suggest.h"
#include "core/rpc.h"
#include "core/tls.h"

#define APPLET(n, fn, f, h) {n, applet_##fn##_main, f, h},
static const struct applet applet_table[] = {
#include "applets.def"
    {NULL, NULL, 0, NULL}, /* sentinel: the table may be walked without its length */
};
#undef APPLET

/* Room for every applet's name in a list of candidates. */
#define ELEMENTS_MAX (sizeof(applet_table) / sizeof(applet_table[0]))

const struct applet *applet_table_get(size_t *ret_n)
{
    *ret_n = sizeof(applet_table) / sizeof(applet_table[0]) - 1;
    return applet_table;
}

const struct applet *applet_find(const char *name)
{
    for (size_t i = 0; applet_table[i].name; i++)
        if (strcmp(applet_table[i].name, name) == 0)
            return &applet_table[i];
    return NULL;
}

int applet_run(const struct applet *a, int argc, char **argv)
{
    /* Before any OpenSSL use; a failure (no memory) shows at the first real OpenSSL call. */
    (void)tls_process_init();
    return a->main(argc, argv);
}

static unsigned front_mask(const char *front)
{
    return strcmp(front, "jobmanager") == 0 ? AP_JOBMANAGER : AP_RUNJOB;
}

void applet_print_commands(FILE *f, const char *front)
{
    unsigned mask = front_mask(front);

    fprintf(f, "Usage: %s <command> [flags] [args...]\n\n", front);
    if (mask == AP_JOBMANAGER)
        fprintf(f, "The runjob server front. Commands:\n");
    else
        fprintf(f, "Run commands on a remote Linux host, isolated and limited. Commands:\n");
    for (size_t i = 0; applet_table[i].name; i++) {
        const struct applet *a = &applet_table[i];
        if (!(a->flags & mask))
            continue;
        fprintf(f, "  %-12s %s\n", a->name, a->help);
    }
    fprintf(f,
            "\nGlobal flags:\n"
            "  -h, --help    this list; '%s <command> --help' for a command's flags\n"
            "  --version     version of runjob and of the gRPC and OpenSSL it links\n"
            "  --list        every command name, one per line (used by install.sh)\n",
            front);
}

void applet_print_version(FILE *f)
{
    fprintf(f, "runjob %s (gRPC %s, %s)\n", RUNJOB_VERSION, rpc_grpc_version(),
            tls_openssl_version());
}

int applet_run_front(const char *front, int argc, char **argv)
{
    const struct applet *a;

    if (argc < 2) {
        applet_print_commands(stderr, front);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        applet_print_commands(stdout, front);
        return 0;
    }
    /* They take no argument: one given was meant for something else. */
    if (argc > 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0 ||
                     strcmp(argv[1], "--list") == 0)) {
        fprintf(stderr, "%s: unexpected argument '%s' after %s (see '%s --help')\n", front, argv[2],
                argv[1], front);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        applet_print_version(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; applet_table[i].name; i++)
            if (!(applet_table[i].flags & AP_INTERNAL))
                printf("%s\n", applet_table[i].name);
        return 0;
    }
    a = applet_find(argv[1]);
    if (!a) {
        /* What it may have meant: a command of this front, or a global flag. */
        static const char *const flags[] = {"help", "version", "list"};
        const char *names[ELEMENTS_MAX];
        char hint[256];
        size_t n = 0;
        unsigned mask = front_mask(front);
        for (size_t i = 0; applet_table[i].name && n < ELEMENTS_MAX; i++)
            if ((applet_table[i].flags & mask) && !(applet_table[i].flags & AP_INTERNAL))
                names[n++] = applet_table[i].name;
        if (argv[1][0] == '-') {
            (void)suggest_text(argv[1] + strspn(argv[1], "-"), flags,
                               sizeof(flags) / sizeof(flags[0]), "--", hint, sizeof(hint));
            fprintf(stderr, "%s: unknown flag '%s'%s (see '%s --help')\n", front, argv[1], hint,
                    front);
        } else {
            (void)suggest_text(argv[1], names, n, "", hint, sizeof(hint));
            fprintf(stderr, "%s: unknown command '%s'%s (see '%s --help')\n", front, argv[1], hint,
                    front);
        }
        return 2;
    }
    return applet_run(a, argc - 1, argv + 1);
}
