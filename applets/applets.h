#pragma once
/* The applet table: every front door of the one runjob binary. */
#include <stdio.h>

/* Which front lists an applet in its --help. Internal applets are callable, but not a user's
 * commands: never in --list or the completion scripts, and in a front's --help only when they
 * carry its flag (jobmanager lists run-job: serve and run-job are its documented commands). */
enum applet_flags {
    AP_RUNJOB = 1 << 0,     /* listed by `runjob --help` */
    AP_JOBMANAGER = 1 << 1, /* listed by `jobmanager --help` */
    AP_INTERNAL = 1 << 2,   /* not in --list or completion (the shim, the jobctl personality) */
};

typedef int (*applet_main_fn)(int argc, char **argv);

struct applet {
    const char *name;
    applet_main_fn main;
    unsigned flags;
    const char *help; /* one line for the command list */
};

#define APPLET(name, fn, flags, help) int applet_##fn##_main(int argc, char **argv);
#include "applets.def"
#undef APPLET

/* The applet called name, or NULL. */
const struct applet *applet_find(const char *name);
/* The whole table and its length (for --list, --help and the sortedness test). */
const struct applet *applet_table_get(size_t *ret_n);
/* Prints "Usage: <front> <command> ..." and the commands visible in that front. */
void applet_print_commands(FILE *f, const char *front);
/* Prints "runjob <version> (gRPC <v>, <OpenSSL v>)". */
void applet_print_version(FILE *f);
/* Runs applet a: the process-wide set-up every applet shares (tls_process_init), then a->main. */
int applet_run(const struct applet *a, int argc, char **argv);
/* Runs the binary as front `front` (runjob / jobmanager) with argv[0] the front name. */
int applet_run_front(const char *front, int argc, char **argv);
