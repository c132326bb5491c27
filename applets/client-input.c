/* Our stdin into a job's (run -i, run -t, attach): a thread copying stdin into an Input call;
 * for a terminal job, our terminal in raw mode (restored on every way out), its size sent at
 * the start and on SIGWINCH, and ssh's escape: `~.` at the start of a line disconnects. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "applets/client.h"

struct client_input {
    const struct client_opts *o;
    struct rpc_input *call;
    bool tty;
    int efd, wfd; /* stop: an eventfd; SIGWINCH: a signalfd (tty only) */
    pthread_t thread;
    pthread_mutex_t mu;
    struct rpc_stream *stream; /* the output being followed: ~. cancels it */
    bool detached;
    bool thread_started;
};

/* The terminal as we found it, for every way out; one per process. */
static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;

static void restore_terminal(void)
{
    if (termios_saved) {
        (void)tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
        termios_saved = 0;
    }
}

/* A signal that ends the client where it is not blocked (attach): the terminal first. */
static void restore_and_die(int sig)
{
    restore_terminal(); /* tcsetattr is async-signal-safe */
    (void)signal(sig, SIG_DFL);
    (void)raise(sig);
}

static int raw_terminal(void)
{
    static const int fatal[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
    struct termios t;

    if (tcgetattr(STDIN_FILENO, &saved_termios) < 0)
        return -errno;
    termios_saved = 1;
    (void)atexit(restore_terminal);
    for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
        struct sigaction old;
        if (sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            (void)signal(fatal[i], restore_and_die);
    }
    t = saved_termios;
    cfmakeraw(&t);
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t) < 0)
        return -errno;
    return 0;
}

bool client_input_terminal_size(unsigned *rows, unsigned *cols)
{
    struct winsize ws;

    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0 || ws.ws_col == 0)
        return false;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return true;
}

/* ssh's escape, over what was typed: `~.` right after a newline (or at the start) detaches,
 * `~~` sends one `~`, a `~` followed by anything else goes as typed. Rewrites buf in place;
 * returns its new length, and true in *detach at `~.`. */
struct escape {
    bool line_start, tilde;
};
static size_t scan_escape(struct escape *e, char *buf, size_t n, bool *detach)
{
    size_t w = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = buf[i];

        if (e->tilde) {
            e->tilde = false;
            if (ch == '.') {
                *detach = true;
                return w;
            }
            if (ch != '~')
                buf[w++] = '~'; /* it was no escape: the tilde goes too */
            buf[w++] = ch;
            e->line_start = false;
            continue;
        }
        if (e->line_start && ch == '~') {
            e->tilde = true;
            continue;
        }
        buf[w++] = ch;
        e->line_start = ch == '\r' || ch == '\n';
    }
    return w;
}

static void input_detach(struct client_input *in)
{
    pthread_mutex_lock(&in->mu);
    in->detached = true;
    if (in->stream)
        rpc_client_stream_cancel(in->stream);
    pthread_mutex_unlock(&in->mu);
}

static void *input_main(void *arg)
{
    struct client_input *in = arg;
    struct escape esc = {.line_start = true};
    char buf[16 * 1024];
    bool eof = false;

    while (!eof) {
        struct pollfd p[3] = {{.fd = in->efd, .events = POLLIN},
                              {.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = in->wfd, .events = POLLIN}};
        ssize_t n;

        if (poll(p, in->wfd >= 0 ? 3 : 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents)
            return NULL; /* client_input_stop: the call is cancelled there */
        if (in->wfd >= 0 && p[2].revents) {
            struct signalfd_siginfo si;
            unsigned rows, cols;
            (void)!read(in->wfd, &si, sizeof(si));
            if (client_input_terminal_size(&rows, &cols) &&
                rpc_client_input_send(in->call, NULL, 0, rows, cols) < 0)
                break;
        }
        if (!p[1].revents)
            continue;
        n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) { /* EOF, or our terminal is gone (EIO): the end of input either way */
            eof = true;
            break;
        }
        if (in->tty) {
            bool detach = false;
            n = (ssize_t)scan_escape(&esc, buf, (size_t)n, &detach);
            if (n > 0 && rpc_client_input_send(in->call, buf, (size_t)n, 0, 0) < 0)
                break;
            if (detach) {
                struct rpc_error err;
                uint64_t bytes;
                /* What was typed before goes first; the job's stdin stays open. */
                (void)rpc_client_input_finish(in->call, false, 2000, &bytes, &err);
                input_detach(in);
                return NULL;
            }
            continue;
        }
        if (rpc_client_input_send(in->call, buf, (size_t)n, 0, 0) < 0)
            break;
    }
    if (eof) {
        struct rpc_error err;
        uint64_t bytes;
        /* EOF for the job: the call's end, answered once the job's stdin took everything. */
        if (rpc_client_input_finish(in->call, true, -1, &bytes, &err) < 0 &&
            err.code != RPC_CANCELLED)
            fprintf(stderr, "%s: %s: the job's stdin: %s\n", in->o->prog, in->o->verb, err.message);
    }
    return NULL;
}

int client_input_start(const struct client_opts *o, struct rpc_client *c, const char *id, bool tty,
                       bool just_started, struct client_input **ret)
{
    struct client_input *in = calloc(1, sizeof(*in));
    struct rpc_error err = {0};
    unsigned rows = 0, cols = 0;
    sigset_t set;

    if (!in) {
        fprintf(stderr, "%s: %s: out of memory\n", o->prog, o->verb);
        return CLIENT_EXIT_FAILED;
    }
    in->o = o;
    in->tty = tty;
    in->efd = eventfd(0, EFD_CLOEXEC);
    in->wfd = -1;
    pthread_mutex_init(&in->mu, NULL);
    if (tty) {
        (void)client_input_terminal_size(&rows, &cols);
        /* Blocked in every thread by client_block_signals: only this fd sees it. */
        sigemptyset(&set);
        sigaddset(&set, SIGWINCH);
        in->wfd = signalfd(-1, &set, SFD_CLOEXEC);
    }
    if (rpc_client_input_open(c, id, rows, cols, &in->call, &err) < 0) {
        client_input_stop(in);
        if (just_started && err.code == RPC_FAILED_PRECONDITION) {
            *ret = NULL; /* it ended already: its output and exit code are still to follow */
            return 0;
        }
        return client_fail(o, &err);
    }
    if (tty && raw_terminal() < 0) {
        fprintf(stderr, "%s: %s: cannot put the terminal in raw mode: %s\n", o->prog, o->verb,
                strerror(errno));
        client_input_stop(in);
        return CLIENT_EXIT_FAILED;
    }
    if (in->efd < 0 || pthread_create(&in->thread, NULL, input_main, in) != 0) {
        restore_terminal();
        fprintf(stderr, "%s: %s: cannot start passing stdin\n", o->prog, o->verb);
        client_input_stop(in);
        return CLIENT_EXIT_FAILED;
    }
    in->thread_started = true;
    *ret = in;
    return 0;
}

void client_input_follow_hook(void *arg, struct rpc_stream *s)
{
    struct client_input *in = arg;

    pthread_mutex_lock(&in->mu);
    in->stream = s;
    if (s && in->detached)
        rpc_client_stream_cancel(s);
    pthread_mutex_unlock(&in->mu);
}

bool client_input_detached(struct client_input *in)
{
    bool d;

    pthread_mutex_lock(&in->mu);
    d = in->detached;
    pthread_mutex_unlock(&in->mu);
    return d;
}

void client_input_stop(struct client_input *in)
{
    uint64_t one = 1;

    if (!in)
        return;
    restore_terminal();
    if (in->thread_started) {
        /* The thread may be blocked in a send the server holds back: cancel it too. */
        (void)!write(in->efd, &one, sizeof(one));
        rpc_client_input_cancel(in->call);
        (void)pthread_join(in->thread, NULL);
    }
    rpc_client_input_free(in->call);
    if (in->efd >= 0)
        (void)close(in->efd);
    if (in->wfd >= 0)
        (void)close(in->wfd);
    pthread_mutex_destroy(&in->mu);
    free(in);
}
