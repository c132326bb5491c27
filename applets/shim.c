/* runjob shim (also `jobmanager run-job`): internal. The door of core/shim.h: PID 1 of a job's
 * namespaces, or with --template the shim template, as the job server starts them. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "applets.h"
#include "core/shim.h"
#include "core/shimproto.h"

int applet_shim_main(int argc, char **argv)
{
    bool tmpl = argc == 3 && strcmp(argv[2], SHIMPROTO_TEMPLATE_ARG) == 0 &&
                strcmp(argv[1], SHIMPROTO_NET_NONE) == 0;
    const char *self = argc > 0 && argv[0] ? argv[0] : "shim", *slash = strrchr(self, '/');

    if (slash) /* a busybox-style link: /usr/local/bin/run-job */
        self = slash + 1;
    /* jobmanager --help lists run-job, so its --help answers like any listed command's; the
     * server never passes --help, so this cannot stand in the way of a job. */
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s: internal command: PID 1 of each job's namespaces, started by the job server "
               "(jobmanager serve) for every job; not for direct use\n",
               strcmp(self, "run-job") == 0 ? "jobmanager run-job" : "runjob shim");
        return 0;
    }

    /* Started by hand, without the server's fds: say so instead of doing anything. */
    if (fcntl(SHIMPROTO_FD_SYNC, F_GETFD) < 0 || fcntl(SHIMPROTO_FD_STATUS, F_GETFD) < 0 ||
        (argc != 2 && !tmpl) ||
        (strcmp(argv[1], SHIMPROTO_NET_NONE) != 0 && strcmp(argv[1], SHIMPROTO_NET_HOST) != 0)) {
        fprintf(stderr, "runjob shim: internal command, started by the job server only\n");
        return 2;
    }
    if (tmpl)
        return shim_run_template();
    shim_run(strcmp(argv[1], SHIMPROTO_NET_HOST) == 0); /* argv[0] is "shim" */
}
