/* bench_tls: the TLS ceiling for the stream figure, what OpenSSL alone moves over loopback.
 *
 * One sender process writes BYTES (default 1 GiB) of zeros with SSL_write in 1 MiB calls (full
 * 16 KiB records, TLS's largest), over a TLS 1.3 connection on loopback TCP, to a reader that
 * discards them (SSL_read into 1 MiB, read-ahead on). The sender is the listening side, as
 * runjob's server is; the reader dials, like `runjob stream`. No gRPC, HTTP/2, protobuf or
 * job log: what is left is the cipher, the record layer and the sockets, one process each way,
 * the least a stream of TLS records can cost on this machine. The certificate is only for the
 * handshake (the reader does not verify it): bench/run.sh passes runjob's server pair.
 *
 * Prints one line: bytes, microseconds from the reader's connect to its last byte (the
 * handshake included), MB/s, the cipher suite, and the CPU (user + sys) of the reader and the
 * sender in ms. Asserts nothing.
 * Usage: bench_tls --cert PEM --key PEM [--bytes N] [--cipher TLS13-SUITE] */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define IO_BYTES (1024 * 1024)

static void die_ssl(const char *what)
{
    fprintf(stderr, "bench_tls: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double now_us(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double cpu_ms(const struct rusage *ru)
{
    return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1e3 +
           (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e3;
}

static SSL_CTX *ctx_new(const SSL_METHOD *m, const char *suite)
{
    SSL_CTX *ctx = SSL_CTX_new(m);

    if (!ctx)
        die_ssl("SSL_CTX_new");
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, suite))
        die_ssl("TLS 1.3 with that suite");
    return ctx;
}

/* The sender: accepts one connection and writes `total` bytes. Runs in the child. */
static int send_all(int lfd, const char *cert, const char *key, const char *suite, uint64_t total)
{
    SSL_CTX *ctx = ctx_new(TLS_server_method(), suite);
    char *buf = calloc(1, IO_BYTES);
    int fd;
    SSL *ssl;

    if (!buf)
        return 1;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die_ssl("loading the certificate and key");
    if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        perror("bench_tls: accept4");
        return 1;
    }
    ssl = SSL_new(ctx);
    if (!ssl || !SSL_set_fd(ssl, fd) || SSL_accept(ssl) != 1)
        die_ssl("the server handshake");
    for (uint64_t done = 0; done < total;) {
        int n = (int)(total - done < IO_BYTES ? total - done : IO_BYTES);
        int w = SSL_write(ssl, buf, n);
        if (w <= 0)
            die_ssl("SSL_write");
        done += (uint64_t)w;
    }
    (void)SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"cert", required_argument, NULL, 'c'},
                                             {"key", required_argument, NULL, 'k'},
                                             {"bytes", required_argument, NULL, 'b'},
                                             {"cipher", required_argument, NULL, 's'},
                                             {NULL, 0, NULL, 0}};
    const char *cert = NULL, *key = NULL, *suite = "TLS_AES_128_GCM_SHA256";
    uint64_t total = 1ull << 30, got = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    struct rusage ru_self, ru_child;
    int opt, lfd, fd, status;
    double t0, t1;
    pid_t pid;

    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'b':
            total = strtoull(optarg, NULL, 0);
            break;
        case 's':
            suite = optarg;
            break;
        default:
            return 2;
        }
    }
    if (!cert || !key || !total) {
        fprintf(stderr, "usage: bench_tls --cert PEM --key PEM [--bytes N] [--cipher SUITE]\n");
        return 2;
    }
    (void)signal(SIGPIPE, SIG_IGN);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0) {
        perror("bench_tls: listen");
        return 1;
    }
    pid = fork();
    if (pid < 0) {
        perror("bench_tls: fork");
        return 1;
    }
    if (pid == 0)
        _exit(send_all(lfd, cert, key, suite, total));
    close(lfd);

    SSL_CTX *ctx = ctx_new(TLS_client_method(), suite);
    char *buf = malloc(IO_BYTES);
    int one = 1;
    SSL *ssl;

    /* Read-ahead: one read(2) takes as many records as the socket holds, as gRPC's reads do. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    t0 = now_us();
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!buf || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("bench_tls: connect");
        return 1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ssl = SSL_new(ctx);
    if (!ssl || !SSL_set_fd(ssl, fd) || SSL_connect(ssl) != 1)
        die_ssl("the client handshake");
    while (got < total) {
        int n = SSL_read(ssl, buf, IO_BYTES);
        if (n <= 0)
            break;
        got += (uint64_t)n;
    }
    t1 = now_us();
    const char *cipher = SSL_get_cipher_name(ssl);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_tls: the sender failed\n");
        return 1;
    }
    (void)getrusage(RUSAGE_SELF, &ru_self);
    (void)getrusage(RUSAGE_CHILDREN, &ru_child);
    if (got != total) {
        fprintf(stderr, "bench_tls: read %llu of %llu bytes\n", (unsigned long long)got,
                (unsigned long long)total);
        return 1;
    }
    printf("bytes=%llu us=%.0f mbs=%.0f cipher=%s reader_cpu_ms=%.0f sender_cpu_ms=%.0f\n",
           (unsigned long long)got, t1 - t0, (double)got / (t1 - t0), cipher ? cipher : "?",
           cpu_ms(&ru_self), cpu_ms(&ru_child));
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    free(buf);
    return 0;
}
