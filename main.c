/* runjob: one binary, many front doors. Dispatch only: see applets/applets.c. */
#include <libgen.h>
#include <string.h>

#include "applets/applets.h"

int main(int argc, char **argv)
{
    char *self = argc > 0 && argv[0] ? basename(argv[0]) : "runjob";
    const struct applet *a = applet_find(self);

    /* Symlinked under an applet's own name (busybox style): run it directly. */
    if (a)
        return applet_run(a, argc, argv);
    /* jobmanager is the server front; anything else (runjob, runjob-0.1, a.out) the client. */
    if (strcmp(self, "jobmanager") == 0)
        return applet_run_front("jobmanager", argc, argv);
    return applet_run_front("runjob", argc, argv);
}
