/* The relay protocol's frames (core/rpc-relay-internal.h): socket I/O and payload codecs, no
 * gRPC, so that a client process that relays through an agent never sets gRPC up. */
#include "rpc-relay-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"

int relay_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        if (errno != EINTR)
            return -errno;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    if (cred.uid != geteuid())
        return -EPERM;
    return TAKE_FD(fd);
}

int relay_send(int fd, int type, const struct iovec *iov, int n)
{
    struct iovec v[65];
    uint8_t hdr[RELAY_HDR_BYTES];
    size_t len = 0;
    int nv = 0;

    if (n < 0 || n > 64)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    if (len > RELAY_FRAME_MAX)
        return -EMSGSIZE;
    for (int i = 0; i < 4; i++)
        hdr[i] = (uint8_t)(len >> (8 * i));
    hdr[4] = (uint8_t)type;
    v[nv++] = (struct iovec){hdr, sizeof(hdr)};
    for (int i = 0; i < n; i++)
        if (iov[i].iov_len)
            v[nv++] = iov[i];
    /* sendmsg, not writev: MSG_NOSIGNAL, so a vanished peer is -EPIPE, not a SIGPIPE. */
    struct msghdr mh = {.msg_iov = v, .msg_iovlen = (size_t)nv};
    while (mh.msg_iovlen) {
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        while (mh.msg_iovlen && (size_t)k >= mh.msg_iov[0].iov_len) {
            k -= (ssize_t)mh.msg_iov[0].iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (mh.msg_iovlen) {
            mh.msg_iov[0].iov_base = (uint8_t *)mh.msg_iov[0].iov_base + k;
            mh.msg_iov[0].iov_len -= (size_t)k;
        }
    }
    return 0;
}

int relay_send_bytes(int fd, int type, const void *p, size_t len)
{
    struct iovec v = {(void *)p, len};
    return relay_send(fd, type, &v, 1);
}

/* Reads exactly n bytes: n, fewer at the end of the stream, or -errno. */
static ssize_t read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t k = read(fd, p + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

int relay_recv(int fd, struct relay_frame *f)
{
    return relay_recv_max(fd, f, RELAY_FRAME_MAX);
}

int relay_recv_max(int fd, struct relay_frame *f, size_t max)
{
    uint8_t hdr[RELAY_HDR_BYTES];
    ssize_t k = read_full(fd, hdr, sizeof(hdr));
    size_t len = 0;

    if (k <= 0)
        return (int)k;
    if (k < (ssize_t)sizeof(hdr))
        return -EBADMSG;
    for (int i = 0; i < 4; i++)
        len |= (size_t)hdr[i] << (8 * i);
    if (len > max)
        return -EBADMSG;
    if (len + 1 > f->cap) {
        uint8_t *p = realloc(f->data, len + 1);
        if (!p)
            return -ENOMEM;
        f->data = p;
        f->cap = len + 1;
    }
    k = read_full(fd, f->data, len);
    if (k < 0)
        return (int)k;
    if ((size_t)k < len)
        return -EBADMSG;
    f->data[len] = '\0';
    f->len = len;
    f->type = hdr[4];
    return 1;
}

void relay_frame_free(struct relay_frame *f)
{
    free(f->data);
    *f = (struct relay_frame){0};
}

/* "DEV:INO:SIZE:MTIME" of path, or "-" when it cannot be looked at. */
static void file_identity(const char *path, char *buf, size_t cap)
{
    struct stat st;

    if (stat(path, &st) < 0)
        (void)snprintf(buf, cap, "-");
    else
        (void)snprintf(buf, cap, "%ju:%ju:%jd:%jd.%09ld", (uintmax_t)st.st_dev,
                       (uintmax_t)st.st_ino, (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec,
                       st.st_mtim.tv_nsec);
}

int relay_settings(const char *where, const char *ca, const char *cert, const char *key,
                   char buf[RELAY_SETTINGS_MAX])
{
    char ica[96], icert[96], ikey[96];
    int n;

    file_identity(ca, ica, sizeof(ica));
    file_identity(cert, icert, sizeof(icert));
    file_identity(key, ikey, sizeof(ikey));
    n = snprintf(buf, RELAY_SETTINGS_MAX,
                 "runjob-relay-2 " RUNJOB_VERSION "\n%s\n%s %s\n%s %s\n%s %s\n", where, ca, ica,
                 cert, icert, key, ikey);
    return n < 0 || n >= RELAY_SETTINGS_MAX ? -ENAMETOOLONG : n;
}

void relay_call_encode(uint8_t buf[RELAY_CALL_BYTES], int method, int64_t deadline_ms)
{
    buf[0] = (uint8_t)method;
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (uint8_t)((uint64_t)deadline_ms >> (8 * i));
}

int relay_call_decode(const struct relay_frame *f, int *ret_method, int64_t *ret_deadline_ms)
{
    uint64_t d = 0;

    if (f->type != RELAY_CALL || f->len != RELAY_CALL_BYTES)
        return -EBADMSG;
    for (int i = 0; i < 8; i++)
        d |= (uint64_t)f->data[1 + i] << (8 * i);
    *ret_method = f->data[0];
    *ret_deadline_ms = (int64_t)d;
    return 0;
}

int relay_status_decode(const struct relay_frame *f, int *ret_code, const char **ret_details,
                        const char **ret_error)
{
    const char *d, *e, *end = (const char *)f->data + f->len;
    uint32_t c = 0;

    if (f->type != RELAY_STATUS || f->len < 6)
        return -EBADMSG;
    for (int i = 0; i < 4; i++)
        c |= (uint32_t)f->data[i] << (8 * i);
    d = (const char *)f->data + 4;
    e = memchr(d, '\0', (size_t)(end - d));
    if (!e || e + 1 >= end || !memchr(e + 1, '\0', (size_t)(end - e - 1)))
        return -EBADMSG;
    *ret_code = (int)c;
    *ret_details = d;
    *ret_error = e + 1;
    return 0;
}
