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
