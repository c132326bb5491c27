/* core/jobtable-flush.c's flusher: a record is complete on disk (renamed) when the call that
 * wrote it returns, with no fsync on that path; the flusher then fsyncs the record and its
 * folder (and the state directory for a new folder), batching what was written meanwhile;
 * jobtab_sync waits for it and jobtab_free flushes what is left; and the record on disk never
 * goes back from an end state to a running one, whatever order concurrent writers run in.
 *
 * This binary defines fsync, fdatasync, renameat and renameat2 itself (they reach the real ones
 * through dlsym(RTLD_NEXT)), so every call libcore makes is logged with the path it was about. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/jobtable.h"
#include "test/probes.h"

/* ---- the syscall log ------------------------------------------------------------------- */

enum ev_kind { EV_FSYNC, EV_FDATASYNC, EV_RENAME };

struct ev {
    enum ev_kind kind;
    char path[256];
};

#define MAX_EVENTS 4096
static struct ev events[MAX_EVENTS];
static int n_events;
static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;

static void fd_path(int fd, char *buf, size_t len)
{
    char link[64];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, buf, len - 1);
    buf[n < 0 ? 0 : n] = '\0';
}

static void log_event(enum ev_kind kind, const char *path)
{
    (void)pthread_mutex_lock(&ev_mu);
    if (n_events < MAX_EVENTS) {
        events[n_events].kind = kind;
        snprintf(events[n_events].path, sizeof(events[0].path), "%s", path);
        n_events++;
    }
    (void)pthread_mutex_unlock(&ev_mu);
}

int fsync(int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    char p[256];

    fd_path(fd, p, sizeof(p));
    log_event(EV_FSYNC, p);
    return real(fd);
}

int fdatasync(int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    char p[256];

    fd_path(fd, p, sizeof(p));
    log_event(EV_FDATASYNC, p);
    return real(fd);
}

int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    int (*real)(int, const char *, int, const char *) =
        (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
    char dir[200], p[256];
    int r = real(olddirfd, oldpath, newdirfd, newpath);

    if (r == 0) {
        fd_path(newdirfd, dir, sizeof(dir));
        snprintf(p, sizeof(p), "%s/%s", dir, newpath);
        log_event(EV_RENAME, p);
    }
    return r;
}

/* An exchange (RENAME_EXCHANGE, every record after a job's first) puts a record in place as a
 * rename does: logged alike, under the name it lands on. */
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags)
{
    int (*real)(int, const char *, int, const char *, unsigned int) =
        (int (*)(int, const char *, int, const char *, unsigned int))dlsym(RTLD_NEXT, "renameat2");
    char dir[200], p[256];
    int r = real(olddirfd, oldpath, newdirfd, newpath, flags);

    if (r == 0) {
        fd_path(newdirfd, dir, sizeof(dir));
        snprintf(p, sizeof(p), "%s/%s", dir, newpath);
        log_event(EV_RENAME, p);
    }
    return r;
}

/* Index of the last event of that kind and path, or -1. */
static int last_event(enum ev_kind kind, const char *path)
{
    int last = -1;

    (void)pthread_mutex_lock(&ev_mu);
    for (int i = 0; i < n_events; i++)
        if (events[i].kind == kind && strcmp(events[i].path, path) == 0)
            last = i;
    (void)pthread_mutex_unlock(&ev_mu);
    return last;
}

static int count_events(enum ev_kind kind, const char *path)
{
    int n = 0;

    (void)pthread_mutex_lock(&ev_mu);
    for (int i = 0; i < n_events; i++)
        if (events[i].kind == kind && (!path || strcmp(events[i].path, path) == 0))
            n++;
    (void)pthread_mutex_unlock(&ev_mu);
    return n;
}

/* ---- fixture --------------------------------------------------------------------------- */

static char state_dir[64];
static char state_real[256]; /* as /proc/self/fd shows it */

static void setup(void)
{
    snprintf(state_dir, sizeof(state_dir), "/tmp/test_jobtab_fl.XXXXXX");
    cr_assert_not_null(mkdtemp(state_dir));
    cr_assert_not_null(realpath(state_dir, state_real));
    n_events = 0;
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir);
    (void)!system(cmd);
}

TestSuite(jobtab_flusher, .init = setup, .fini = teardown);

/* After a job's first record, each is exchanged with the one before (RENAME_EXCHANGE), which
 * status.tmp then keeps; a file system without the exchange gets plain renames, and the tests of
 * what status.tmp holds skip there. */
static void need_rename_exchange(void)
{
    const char *why = probe_rename_exchange(state_dir);

    if (why) {
        teardown(); /* a skip does not run the suite's .fini */
        cr_skip_test("%s: records are renamed into place there, none is kept", why);
    }
}

#define AN_HOUR_MS 3600000u

static struct jobtab *table(unsigned window_ms)
{
    struct jobtab_config cfg = {.state_dir = state_dir, .flush_window_ms = window_ms};
    struct jobtab *t = NULL;
    cr_assert_eq(jobtab_new(&cfg, &t), 0);
    return t;
}

static struct jobtab_entry *add(struct jobtab *t, char id[JOBTAB_ID_LEN + 1])
{
    static const char *const args[] = {"-c", "true"};
    struct limits lim = {.pids = 10};
    struct jobtab_entry *e = NULL;

    cr_assert_eq(jobtab_add(t, "alice", "", "/bin/sh", args, 2, &lim, JOB_NET_NONE, &e), 0);
    memcpy(id, jobtab_entry_spec(e)->id, JOBTAB_ID_LEN + 1);
    return e;
}

static void set_state(struct jobtab_entry *e, enum job_state s, int code)
{
    struct jobtab_status st;

    jobtab_entry_get_status(e, &st);
    st.job.state = s;
    st.job.pid = s == JOB_RUNNING ? 4242 : 0;
    st.job.exit_code = code;
    if (s != JOB_RUNNING)
        st.job.end_ms = st.job.start_ms + 1;
    cr_assert_eq(jobtab_entry_set_status(e, &st), 0);
}

static void paths(const char *id, char *dir, char *rec)
{
    snprintf(dir, 300, "%.200s/%.36s", state_real, id);
    snprintf(rec, 320, "%.200s/%.36s/status", state_real, id);
}

static enum job_state state_in(const char *id, const char *name);

/* What the folder's record says now, read as a restarted server would. */
static enum job_state state_on_disk(const char *id)
{
    return state_in(id, "status");
}

/* The state in the folder's file name (status, or status.tmp: the record before it). A read
 * counts only if the file still has that name once read: after an exchange the previous
 * record's file is status.tmp, and the next record is written into it in place, so a reader
 * that opened it as 'status' just before may see a record that is not status's yet. */
static enum job_state state_in(const char *id, const char *name)
{
    char path[320], buf[8192];
    struct jobtab_spec spec;
    struct jobtab_status st;
    struct stat by_fd, by_name;
    ssize_t n = 0;

    snprintf(path, sizeof(path), "%s/%s/%s", state_dir, id, name);
    for (int tries = 0; tries < 1000; tries++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        n = read(fd, buf, sizeof(buf) - 1);
        cr_assert_eq(fstat(fd, &by_fd), 0);
        close(fd);
        if (stat(path, &by_name) == 0 && by_name.st_ino == by_fd.st_ino)
            break;
    }
    cr_assert_eq(by_name.st_ino, by_fd.st_ino, "%s: renamed under every read", path);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
    cr_assert_eq(jobtab_record_parse(buf, &spec, &st), 0, "a complete record: %s", buf);
    cr_assert_str_eq(spec.id, id);
    jobtab_spec_clear(&spec);
    return st.job.state;
}

/* The record and its folder were fsync'd after the record's last rename. */
static void expect_durable(const char *id)
{
    char dir[300], rec[320];
    int renamed;

    paths(id, dir, rec);
    renamed = last_event(EV_RENAME, rec);
    cr_assert_geq(renamed, 0, "%s was written", rec);
    cr_expect_gt(last_event(EV_FDATASYNC, rec), renamed, "%s synced after its last rename", rec);
    cr_expect_gt(last_event(EV_FSYNC, dir), renamed, "%s synced after its last rename", dir);
}

/* ---- tests ----------------------------------------------------------------------------- */

/* The Start path (add, then RUNNING) leaves a complete record behind at once, and fsyncs
 * nothing: a kill -9 of the server right after finds it; durability comes later. */
Test(jobtab_flusher, records_land_at_once_without_fsync_and_are_synced_later)
{
    struct jobtab *t = table(AN_HOUR_MS);
    char id[JOBTAB_ID_LEN + 1];
    struct jobtab_entry *e = add(t, id);

    cr_expect_eq(state_on_disk(id), JOB_STARTING);
    set_state(e, JOB_RUNNING, 0);
    cr_expect_eq(state_on_disk(id), JOB_RUNNING);
    cr_expect_eq(count_events(EV_FSYNC, NULL) + count_events(EV_FDATASYNC, NULL), 0,
                 "no fsync on the write path");
    cr_assert_eq(jobtab_sync(t), 0);
    expect_durable(id);
    cr_expect_geq(count_events(EV_FSYNC, state_real), 1, "the new folder's entry is synced");

    /* A later record needs a later sync. */
    set_state(e, JOB_EXITED, 3);
    cr_expect_eq(state_on_disk(id), JOB_EXITED);
    cr_assert_eq(jobtab_sync(t), 0);
    expect_durable(id);
    jobtab_free(t);
}

/* The flusher does not wait to be asked: with a short window, a record becomes durable with
 * nobody calling jobtab_sync. (Waits for it, up to a bound that only a broken flusher hits.) */
Test(jobtab_flusher, records_become_durable_on_their_own)
{
    struct jobtab *t = table(1);
    char id[JOBTAB_ID_LEN + 1], dir[300], rec[320];
    struct jobtab_entry *e = add(t, id);

    set_state(e, JOB_EXITED, 0);
    paths(id, dir, rec);
    for (int i = 0; i < 3000; i++) {
        int renamed = last_event(EV_RENAME, rec);
        if (last_event(EV_FSYNC, dir) > renamed && last_event(EV_FDATASYNC, rec) > renamed)
            break;
        usleep(10000);
    }
    expect_durable(id);
    jobtab_free(t);
}

/* Records written within one window are synced in one batch: the state directory (a new
 * folder in the batch) once for all of them, each record and folder once. */
Test(jobtab_flusher, one_batch_for_the_records_of_a_window)
{
    struct jobtab *t = table(AN_HOUR_MS);
    char ids[20][JOBTAB_ID_LEN + 1];

    for (int i = 0; i < 20; i++) {
        struct jobtab_entry *e = add(t, ids[i]);
        set_state(e, JOB_RUNNING, 0); /* a second record of the same job: still one sync */
    }
    cr_expect_eq(count_events(EV_FSYNC, NULL) + count_events(EV_FDATASYNC, NULL), 0);
    cr_assert_eq(jobtab_sync(t), 0);
    cr_expect_eq(count_events(EV_FSYNC, state_real), 1, "one batch: the state dir once");
    for (int i = 0; i < 20; i++) {
        char dir[300], rec[320];
        paths(ids[i], dir, rec);
        expect_durable(ids[i]);
        cr_expect_eq(count_events(EV_FDATASYNC, rec), 1);
        cr_expect_eq(count_events(EV_FSYNC, dir), 1);
    }
    cr_assert_eq(jobtab_sync(t), 0, "nothing pending: returns at once");
    cr_expect_eq(count_events(EV_FSYNC, state_real), 1);
    jobtab_free(t);
}

/* A clean shutdown (jobtab_free) makes what is still pending durable. */
Test(jobtab_flusher, free_flushes_what_is_pending)
{
    struct jobtab *t = table(AN_HOUR_MS);
    char a[JOBTAB_ID_LEN + 1], b[JOBTAB_ID_LEN + 1], c[JOBTAB_ID_LEN + 1];
    struct jobtab_entry *ea = add(t, a);

    add(t, b);
    add(t, c);
    set_state(ea, JOB_KILLED, 0);
    cr_expect_eq(count_events(EV_FSYNC, NULL) + count_events(EV_FDATASYNC, NULL), 0,
                 "the window is an hour: nothing synced yet");
    jobtab_free(t);
    expect_durable(a);
    expect_durable(b);
    expect_durable(c);

    /* and a restart reads them back */
    t = table(AN_HOUR_MS);
    cr_assert_eq(jobtab_load(t, NULL, NULL), 3);
    cr_expect_eq(state_on_disk(a), JOB_KILLED);
    cr_expect_eq(state_on_disk(b), JOB_LOST);
    jobtab_free(t); /* the LOST rewrites are flushed too */
    expect_durable(b);
    expect_durable(c);
}

/* Concurrent writers: several threads keep reporting RUNNING while one reports the end. The
 * record on disk, read over and over meanwhile, never goes from an end state back to a
 * running one, and the last record is the end. */
struct race {
    struct jobtab_entry *e;
    const char *id;
    bool async_end; /* the end through jobtab_entry_set_status_async, as the server does */
    pthread_barrier_t go;
    int done_writers;
    pthread_mutex_t mu;
};

static void *running_writer(void *arg)
{
    struct race *r = arg;
    struct jobtab_status st;

    pthread_barrier_wait(&r->go);
    for (int i = 0; i < 300; i++) {
        jobtab_entry_get_status(r->e, &st);
        st.job.state = JOB_RUNNING;
        st.job.pid = 1000 + i;
        (void)jobtab_entry_set_status(r->e, &st);
    }
    pthread_mutex_lock(&r->mu);
    r->done_writers++;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void *end_writer(void *arg)
{
    struct race *r = arg;
    struct jobtab_status st;

    pthread_barrier_wait(&r->go);
    usleep(2000); /* somewhere among the RUNNING writes (any point will do) */
    jobtab_entry_get_status(r->e, &st);
    st.job.state = JOB_EXITED;
    st.job.exit_code = 9;
    st.job.end_ms = st.job.start_ms + 1;
    if (r->async_end)
        jobtab_entry_set_status_async(r->e, &st);
    else
        (void)jobtab_entry_set_status(r->e, &st);
    pthread_mutex_lock(&r->mu);
    r->done_writers++;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void race(bool async_end)
{
    struct jobtab *t = table(1); /* the flusher runs alongside */
    char id[JOBTAB_ID_LEN + 1];
    struct race r = {.id = id, .async_end = async_end};
    pthread_t th[4];
    bool ended = false;
    int backwards = 0, reads = 0, done;

    r.e = add(t, id);
    set_state(r.e, JOB_RUNNING, 0);
    pthread_mutex_init(&r.mu, NULL);
    pthread_barrier_init(&r.go, NULL, 5);
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, running_writer, &r);
    pthread_create(&th[3], NULL, end_writer, &r);
    pthread_barrier_wait(&r.go);
    do {
        enum job_state s;
        pthread_mutex_lock(&r.mu);
        done = r.done_writers;
        pthread_mutex_unlock(&r.mu);
        s = state_on_disk(id);
        reads++;
        if (s == JOB_EXITED)
            ended = true;
        else if (ended)
            backwards++;
    } while (done < 4);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_expect_eq(backwards, 0, "%d of %d reads went back to running after the end", backwards,
                 reads);
    cr_assert_eq(jobtab_sync(t), 0); /* an async end is written by now */
    cr_expect_eq(state_on_disk(id), JOB_EXITED);
    expect_durable(id);
    jobtab_free(t);
    pthread_barrier_destroy(&r.go);
    pthread_mutex_destroy(&r.mu);
}

Test(jobtab_flusher, status_on_disk_never_goes_backwards)
{
    race(false);
}

Test(jobtab_flusher, status_on_disk_never_goes_backwards_with_an_async_end)
{
    race(true);
}

/* set_status_async: the status is the entry's at once; the writer thread writes the record
 * by itself, right away (no window: the window here is an hour), and the flusher syncs it. */
Test(jobtab_flusher, async_status_is_seen_at_once_and_written_by_the_writer)
{
    struct jobtab *t = table(AN_HOUR_MS);
    char id[JOBTAB_ID_LEN + 1];
    struct jobtab_entry *e = add(t, id);
    struct jobtab_status st;

    set_state(e, JOB_RUNNING, 0);
    jobtab_entry_get_status(e, &st);
    st.job.state = JOB_EXITED;
    st.job.exit_code = 4;
    st.output_bytes = 77;
    jobtab_entry_set_status_async(e, &st);
    jobtab_entry_get_status(e, &st);
    cr_expect_eq(st.job.state, JOB_EXITED);
    cr_expect_eq(st.job.exit_code, 4);
    cr_expect_not(jobtab_entry_is_running(e));
    for (int i = 0; i < 3000 && state_on_disk(id) != JOB_EXITED; i++)
        usleep(10000);
    cr_expect_eq(state_on_disk(id), JOB_EXITED, "written without a jobtab_sync");
    cr_assert_eq(jobtab_sync(t), 0);
    expect_durable(id);
    jobtab_free(t);
}

/* jobtab_free writes what the writer still holds, and syncs it: a restart reads the end. */
Test(jobtab_flusher, free_writes_and_flushes_async_records)
{
    struct jobtab *t = table(AN_HOUR_MS);
    char ids[10][JOBTAB_ID_LEN + 1];
    struct jobtab_status st;

    for (int i = 0; i < 10; i++) {
        struct jobtab_entry *e = add(t, ids[i]);
        jobtab_entry_get_status(e, &st);
        st.job.state = JOB_KILLED;
        st.job.signal = 9;
        jobtab_entry_set_status_async(e, &st);
    }
    jobtab_free(t);
    t = table(AN_HOUR_MS);
    cr_assert_eq(jobtab_load(t, NULL, NULL), 10);
    for (int i = 0; i < 10; i++) {
        expect_durable(ids[i]);
        jobtab_entry_get_status(jobtab_lookup(t, ids[i], "alice"), &st);
        cr_expect_eq(st.job.state, JOB_KILLED, "%s: not LOST", ids[i]);
    }
    jobtab_free(t);
}

static void set_state_async(struct jobtab_entry *e, enum job_state s, int code)
{
    struct jobtab_status st;

    jobtab_entry_get_status(e, &st);
    st.job.state = s;
    st.job.exit_code = code;
    jobtab_entry_set_status_async(e, &st);
}

/* A running job's record waits in the writer's queue (WRITER_LINGER_MS): a job that ends
 * meanwhile has only its end written, a job still running has its RUNNING record written when
 * the wait is over, and jobtab_sync writes a waiting record at once. */
Test(jobtab_flusher, a_running_record_waits_and_an_end_overtakes_it)
{
    need_rename_exchange();

    struct jobtab *t = table(1);
    char a[JOBTAB_ID_LEN + 1], b[JOBTAB_ID_LEN + 1], c[JOBTAB_ID_LEN + 1];
    struct jobtab_entry *ea = add(t, a), *eb = add(t, b), *ec = add(t, c);
    struct timespec t0, t1;
    int i;

    (void)clock_gettime(CLOCK_MONOTONIC, &t0);
    set_state_async(ea, JOB_RUNNING, 0);
    set_state_async(eb, JOB_RUNNING, 0);
    set_state_async(ec, JOB_RUNNING, 0);
    cr_expect_eq(state_on_disk(a), JOB_STARTING, "the RUNNING record waits");
    set_state_async(eb, JOB_EXITED, 5);
    for (i = 0; i < 3000 && state_on_disk(b) != JOB_EXITED; i++)
        usleep(1000);
    cr_expect_eq(state_on_disk(b), JOB_EXITED, "an end is written at once");
    cr_expect_eq(state_in(b, "status.tmp"), JOB_STARTING, "RUNNING was never written");
    (void)clock_gettime(CLOCK_MONOTONIC, &t1);
    if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 <
        JOBTAB_RUNNING_LINGER_MS - 50) /* else a's wait may be over: nothing to tell */
        cr_expect_eq(state_on_disk(a), JOB_STARTING, "the end overtook a's waiting record");

    cr_assert_eq(jobtab_sync(t), 0);
    cr_expect_eq(state_on_disk(a), JOB_RUNNING, "jobtab_sync writes a waiting record");
    expect_durable(a);

    for (i = 0; i < 3000 && state_on_disk(c) != JOB_RUNNING; i++)
        usleep(10000);
    cr_expect_eq(state_on_disk(c), JOB_RUNNING, "written once its wait is over");
    jobtab_free(t);
}

/* After an exchange status.tmp is the previous status, and the next record is written into it in
 * place: that waits until the exchange is durable (else a power loss could bring the old names
 * back and tear the only record). The second record needs no such sync (it goes into the spare
 * room), the third does, once per record while the flusher has not caught up. */
Test(jobtab_flusher, an_overwrite_in_place_waits_for_the_last_exchange_to_be_durable)
{
    need_rename_exchange();

    struct jobtab *t = table(AN_HOUR_MS);
    char id[JOBTAB_ID_LEN + 1], dir[300], rec[320];
    struct jobtab_entry *e = add(t, id);
    int fsync_at, renamed_at;

    paths(id, dir, rec);
    set_state(e, JOB_RUNNING, 0);
    cr_expect_eq(count_events(EV_FSYNC, dir) + count_events(EV_FDATASYNC, rec), 0,
                 "the second record goes into room of its own");
    set_state(e, JOB_EXITED, 3);
    cr_expect_eq(count_events(EV_FSYNC, dir), 1, "the third waited for one sync");
    fsync_at = last_event(EV_FSYNC, dir);
    renamed_at = last_event(EV_RENAME, rec);
    cr_expect_lt(fsync_at, renamed_at, "the sync came before the third record's exchange");
    cr_expect_lt(last_event(EV_FDATASYNC, rec), renamed_at);
    cr_expect_eq(state_on_disk(id), JOB_EXITED);
    cr_expect_eq(state_in(id, "status.tmp"), JOB_RUNNING, "the previous record kept");
    cr_assert_eq(jobtab_sync(t), 0);
    expect_durable(id);
    jobtab_free(t);
}
