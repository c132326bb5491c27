#pragma once
/* The server's listening socket under a flood of connections. gRPC's listener (1.51) stops for
 * good at the first accept4 failure other than EAGAIN: one EMFILE, when a flood has taken every
 * fd, and no client is ever accepted again. The accept guard sits under gRPC's accept4 (the
 * static binary links it with --wrap=accept4, core/accept-wrap.c; a dynamic one interposes the
 * symbol, core/accept-interpose.c) and keeps the listener alive:
 *   - a connection accepted into the last `reserve` fds of RLIMIT_NOFILE is closed at once, so
 *     connections never take the fds that job starts, output logs and streams need (fds are
 *     handed out lowest first: fd n means fds 0..n-1 are all in use);
 *   - when accept4 fails for want of fds (EMFILE, ENFILE), a spare fd kept for that is given up
 *     to take the pending connections off the queue and close them;
 * and in both cases the queue is drained and gRPC sees EAGAIN, so it waits for the next one.
 * The fds a flood holds come back through gRPC's handshake deadline (core/server.c): a
 * connection that has not finished its TLS handshake by then is closed. Unarmed (every process
 * but the server), the guard is accept4 itself. */
#include <stdint.h>
#include <sys/socket.h>

#define ACCEPT_GUARD_RESERVE_DEFAULT 256

/* Arms the guard against the process's RLIMIT_NOFILE as it is now. 0 or -errno. */
int accept_guard_arm(unsigned reserve);
/* Connections closed unserved since the guard was armed. */
uint64_t accept_guard_shed(void);

typedef int (*accept4_fn)(int fd, struct sockaddr *addr, socklen_t *len, int flags);
/* accept4 under the guard; real is the C library's. */
int accept_guard_accept4(accept4_fn real, int fd, struct sockaddr *addr, socklen_t *len, int flags);
