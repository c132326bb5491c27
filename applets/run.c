/* runjob run: start a command, show its output live, exit with its exit code. */
#include "applets/client.h"

static const char usage[] =
    "Usage: runjob run [flags] <command> [args...]\n"
    "\n"
    "Run a program on the runjob server almost as if it ran here: its standard output comes to\n"
    "your standard output and its standard error to yours, as it is written, and runjob exits\n"
    "with the program's exit code (128 + the signal number when a signal killed it).\n"
    "Your standard input is not passed: the program reads /dev/null (runjob says so on stderr\n"
    "when its stdin is a pipe or a file).\n"
    "Ctrl-C stops the job (the server sends SIGTERM, then SIGKILL after its grace period);\n"
    "a second Ctrl-C kills it at once. Either way the final status is printed on stderr.\n"
    "When whoever reads the output goes away (`runjob run ... | head`), the job is stopped\n"
    "the same way and runjob exits 141 (128 + SIGPIPE), quietly, as a local program would.\n"
    "The job is tied to runjob, as ssh's remote command is to ssh: if runjob goes away without\n"
    "a word (kill -9, a lost network, noticed by keepalive within 40 s), the server stops the\n"
    "job the same way. `runjob start -f` follows a job without tying it.\n"
    "\n"
    "Exit status:\n"
    "  the job's     its exit code, or 128 + the signal that killed it\n"
    "  126           the command was found but could not be executed (not executable,\n"
    "                permission denied, a directory), as sh and docker run say it\n"
    "  127           the command was not found on the server\n"
    "  255           runjob itself failed: the server could not be reached, refused the\n"
    "                call or the connection broke (as ssh does)\n"
    "  2             a usage error (nothing was sent)\n"
    "\n" START_USAGE_AFTER_RUN "\n" START_USAGE "\n" CLIENT_USAGE "\n"
    "Examples:\n"
    "  runjob run /bin/uname -a\n"
    "  runjob run --memory 1G --cpu 2000 /usr/bin/make -C /src -j4; echo \"exit code $?\"\n"
    "  runjob run /bin/sh -c 'echo to stdout; echo to stderr >&2; exit 3'\n";

int applet_run_main(int argc, char **argv)
{
    return client_start_main(argc, argv, usage, true);
}
