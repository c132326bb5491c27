#pragma once
/* The relay protocol between a client process and `runjob agent`, over the agent's unix socket:
 * a connection carries one exchange, in frames of a 4-byte little-endian payload length, a
 * type byte and the payload. Shared by core/rpc-client.c (the client's side) and
 * core/rpc-relay-agent.c (the agent's); not for applets.
 *
 * Every connection opens with a HELLO: the client's settings, which the agent answers YES (its
 * connection has them) or NO (it closes). A client checks once when it opens (HELLO alone), and
 * again with every call, which follows its HELLO without waiting: CALL, the request message(s),
 * END; the agent answers YES, HEADERS when the server's initial metadata come, a MSG per reply
 * message, then STATUS. The client's closing of the connection before STATUS cancels the
 * call. Each side checks the other's uid: the agent serves its own user (and root), a client
 * talks to an agent of its own user only. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum relay_type {
    RELAY_HELLO = 'H',   /* client: the settings (relay_settings) */
    RELAY_YES = 'Y',     /* agent: same settings, relay away */
    RELAY_NO = 'N',      /* agent: other settings */
    RELAY_CALL = 'C',    /* client: u8 method, i64 deadline in ms (0: none) */
    RELAY_MSG = 'M',     /* either way: one message of the call */
    RELAY_END = 'E',     /* client: no more messages (half-close) */
    RELAY_HEADERS = 'I', /* agent: the server's initial metadata keys, each NUL-terminated */
    RELAY_STATUS = 'S',  /* agent: i32 code, the details and the error string, NUL-terminated */
};

#define RELAY_HDR_BYTES  5
#define RELAY_FRAME_MAX  (17 << 20) /* above the client's 16 MiB message limit */
#define RELAY_CALL_BYTES 9
/* The settings an agent's connection and a client must share: server, CA, certificate, key. */
#define RELAY_SETTINGS_MAX 8192

struct relay_frame {
    int type;
    uint8_t *data; /* len bytes, and a NUL after them; reused by the next relay_recv */
    size_t len;
    size_t cap;
};

/* A connected socket (close-on-exec) to the agent at path, or -errno: -EPERM when what listens
 * there runs as another user (it would see the calls, and answer them in the server's place). */
int relay_connect(const char *path);
/* Writes one whole frame of type whose payload is the n pieces of iov (n <= 64); 0 or
 * -errno (-EPIPE when the other end has gone; never a SIGPIPE). */
int relay_send(int fd, int type, const struct iovec *iov, int n);
int relay_send_bytes(int fd, int type, const void *p, size_t len);
/* Reads one frame into f: 1, 0 at the end of the stream between frames, or -errno (-EBADMSG
 * for a truncated frame or one over max bytes, which is refused before any is read). */
int relay_recv_max(int fd, struct relay_frame *f, size_t max);
/* relay_recv_max up to RELAY_FRAME_MAX. */
int relay_recv(int fd, struct relay_frame *f);
void relay_frame_free(struct relay_frame *f);

/* The HELLO payload for these settings into buf: the length, or -ENAMETOOLONG. It names this
 * build (an agent of another version says NO) and each file by its path, as given (callers pass
 * them through realpath first), and by what stat(2) says of it now (device, inode, size,
 * mtime), so that a certificate renewed in place is not the agent's any more. */
int relay_settings(const char *where, const char *ca, const char *cert, const char *key,
                   char buf[RELAY_SETTINGS_MAX]);

/* CALL and STATUS payloads. Pure. */
void relay_call_encode(uint8_t buf[RELAY_CALL_BYTES], int method, int64_t deadline_ms);
int relay_call_decode(const struct relay_frame *f, int *ret_method, int64_t *ret_deadline_ms);
/* 0 with the code and pointers into f's payload, or -EBADMSG. */
int relay_status_decode(const struct relay_frame *f, int *ret_code, const char **ret_details,
                        const char **ret_error);
