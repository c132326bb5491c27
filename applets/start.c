/* runjob start: start a command on the server and print its job id. */
#include "applets/client.h"

static const char usage[] =
    "Usage: runjob start [flags] <command> [args...]\n"
    "\n"
    "Start a program on the runjob server, isolated from everything else there and held to\n"
    "limits, and print the id of the new job. The command is an absolute path on the server.\n"
    "\n" START_USAGE_AFTER_START "\n" START_USAGE
    "  -f, --follow               also show the output as it comes (like `runjob run`)\n"
    "  -i, --interactive          the job's stdin takes input: `runjob attach` writes to it;\n"
    "                             with -f your stdin goes to it, as with `runjob run -i`\n"
    "                             (before the command only; without it stdin is /dev/null)\n"
    "  -t, --tty                  the job gets a terminal of its own (stdin, stdout and stderr,\n"
    "                             sized as yours): `runjob attach` types into it; with -f\n"
    "                             yours does, as with `runjob run -t`, and `~.` detaches\n"
    "\n" CLIENT_USAGE "\n"
    "Examples:\n"
    "  runjob start /bin/ls -l /tmp\n"
    "      prints an id like 7c9e6679-7425-40de-944b-e07fc1f90ae7; then\n"
    "      `runjob stream <id>` shows the listing and `runjob status <id>` how it ended\n"
    "  runjob start -j logs --memory 256M /usr/bin/find -- /var -name '*.log'\n"
    "  runjob start --user alice --cpu 500 /bin/sleep 600\n"
    "  runjob start -t -j shell /bin/bash; runjob attach shell\n";

int applet_start_main(int argc, char **argv)
{
    return client_start_main(argc, argv, usage, false);
}
