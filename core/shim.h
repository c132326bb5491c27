#pragma once
/* The shim: PID 1 of a job's namespaces (ARCHITECTURE.md "Process tree of one job"), started by
 * the server (core/spawn.h) with the fds and argv core/shimproto.h gives, and the shim template
 * that forks pooled shims. This is the process's side of core/shimproto.h; the server's is the
 * job runner's (core/job-start.c). Both run in a single-threaded process of their own. */
#include <stdbool.h>

/* Runs this process as a shim: builds the seccomp filter, sets its namespaces up, waits for the
 * prep, starts the command's process (in its own process group, as the job user with no
 * capabilities, no_new_privs and the filter), forwards stop signals to that group, reaps every
 * zombie and reports how the command ended. A failed step is reported to the server and
 * _exit(127)s. Never returns. */
__attribute__((noreturn)) void shim_run(bool host_net);
/* Runs this process as the shim template: builds the seccomp filter once, then forks one shim
 * per request on its control socket until that closes. The process's exit status: 0 at EOF, 1
 * if the filter could not be built or the server went away mid-request. */
int shim_run_template(void);
