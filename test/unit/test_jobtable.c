/* core/jobtable: ids, record format round trip, atomic rewrite, load marks running jobs LOST,
 * name uniqueness among an owner's running jobs, the running cap, authorisation. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "core/id.h"
#include "core/jobtable.h"
#include "test/probes.h"

static char state_dir[64];
static const char *const admins[] = {"administrator", NULL};

static void setup(void)
{
    snprintf(state_dir, sizeof(state_dir), "/tmp/test_jobtab.XXXXXX");
    cr_assert_not_null(mkdtemp(state_dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir);
    (void)!system(cmd);
}

/* A record after a job's first is exchanged with the one before (renameat2 RENAME_EXCHANGE),
 * which status.tmp then keeps; a file system without the exchange gets plain renames, and the
 * tests of what status.tmp holds skip there. */
static void need_rename_exchange(void)
{
    const char *why = probe_rename_exchange(state_dir);

    if (why) {
        teardown(); /* a skip does not run the suite's .fini */
        cr_skip_test("%s: records are renamed into place there, none is kept", why);
    }
}

static struct jobtab *table(unsigned cap)
{
    struct jobtab_config cfg = {
        .state_dir = state_dir, .admin_cns = admins, .max_running_per_user = cap};
    struct jobtab *t = NULL;
    cr_assert_eq(jobtab_new(&cfg, &t), 0);
    return t;
}

static struct jobtab_entry *add(struct jobtab *t, const char *owner, const char *name, int want)
{
    static const char *const args[] = {"-c", "echo hi\nthere %41 100%"};
    struct limits lim = {.cpu_millis = 500, .memory_bytes = 1 << 20, .pids = 10};
    struct jobtab_entry *e = NULL;
    int r = jobtab_add(t, owner, name, "/bin/sh", args, 2, &lim, JOB_NET_NONE, &e);
    cr_assert_eq(r, want, "jobtab_add(%s, %s) = %d, want %d", owner, name, r, want);
    return e;
}

static void finish(struct jobtab *t, struct jobtab_entry *e, int code)
{
    (void)t; /* kept so call sites read "finish in table t" */
    struct jobtab_status st;
    jobtab_entry_get_status(e, &st);
    st.job.state = JOB_EXITED;
    st.job.exit_code = code;
    st.job.end_ms = st.job.start_ms + 5;
    st.output_bytes = 42;
    cr_assert_eq(jobtab_entry_set_status(e, &st), 0);
}

TestSuite(jobtab, .init = setup, .fini = teardown);

Test(jobtab, ids_are_uuid_v4)
{
    char a[JOBTAB_ID_LEN + 1], b[JOBTAB_ID_LEN + 1];
    cr_assert_eq(jobtab_new_id(a), 0);
    cr_assert_eq(jobtab_new_id(b), 0);
    cr_expect(id_is_valid(a));
    cr_expect_str_neq(a, b);
    cr_expect_eq(a[14], '4');
    cr_expect(strchr("89ab", a[19]) != NULL);
    cr_expect_not(id_is_valid("not-a-uuid"));
    cr_expect_not(id_is_valid("0123456789abcdef0123456789abcdef0123"));
    cr_expect_not(id_is_valid("01234567-89AB-4def-8123-456789abcdef"));
    cr_expect_not(id_is_valid("01234567-89ab-4def-8123-456789abcdef0"));
    cr_expect(id_is_valid("01234567-89ab-4def-8123-456789abcdef"));
}

Test(jobtab, record_round_trip)
{
    char *args[] = {"a b", "line1\nline2", "100%", "", "\x01\x7f\xc3\xa9"};
    struct jobtab_spec spec = {.owner = "al=ice",
                               .name = "n%ame\t",
                               .command = "/bin/echo",
                               .args = args,
                               .n_args = 5,
                               .limits = {1, 2, 3, 4, 5, 6, 7},
                               .network = JOB_NET_HOST,
                               .created_ns = 1700000000000123456u,
                               .workdir = "/srv/w d\n",
                               .timeout_ms = 90000};
    struct jobtab_status st = {.output_bytes = 99, .output_truncated = true};
    struct jobtab_spec back;
    struct jobtab_status st2;
    char *text = NULL;

    strcpy(spec.id, "01234567-89ab-4def-8123-456789abcdef");
    st.job.state = JOB_KILLED;
    st.job.signal = 9;
    st.job.exit_code = -1;
    st.job.oom_killed = true;
    st.job.timed_out = true;
    st.job.start_ms = 1700000000000;
    st.job.end_ms = 1700000000123;
    st.job.cpu_usec = 123456;
    st.job.memory_peak_bytes = 1 << 30;
    strcpy(st.job.error, "x\ny=%");
    cr_assert_eq(jobtab_record_format(&spec, &st, &text), 0);
    cr_assert_eq(jobtab_record_parse(text, &back, &st2), 0);
    cr_expect_str_eq(back.id, spec.id);
    cr_expect_str_eq(back.owner, "al=ice");
    cr_expect_str_eq(back.name, "n%ame\t");
    cr_expect_str_eq(back.command, "/bin/echo");
    cr_assert_eq(back.n_args, 5);
    for (int i = 0; i < 5; i++)
        cr_expect_str_eq(back.args[i], args[i]);
    cr_expect_eq(memcmp(&back.limits, &spec.limits, sizeof(spec.limits)), 0);
    cr_expect_eq(back.network, JOB_NET_HOST);
    cr_expect_eq(back.created_ns, 1700000000000123456u);
    cr_expect_str_eq(back.workdir, "/srv/w d\n");
    cr_expect_eq(back.timeout_ms, 90000);
    cr_expect(st2.job.timed_out);
    cr_expect_eq(st2.job.state, JOB_KILLED);
    cr_expect_eq(st2.job.signal, 9);
    cr_expect_eq(st2.job.exit_code, -1);
    cr_expect(st2.job.oom_killed);
    cr_expect_eq(st2.job.start_ms, st.job.start_ms);
    cr_expect_eq(st2.job.end_ms, st.job.end_ms);
    cr_expect_eq(st2.job.cpu_usec, 123456);
    cr_expect_eq(st2.job.memory_peak_bytes, 1u << 30);
    cr_expect_str_eq(st2.job.error, "x\ny=%");
    cr_expect_eq(st2.output_bytes, 99);
    cr_expect(st2.output_truncated);
    jobtab_spec_clear(&back);
    free(text);
}

Test(jobtab, record_parse_refuses_garbage)
{
    struct jobtab_spec s;
    struct jobtab_status st;
    const char *bad[] = {
        "",
        "id=01234567-89ab-4def-8123-456789abcdef\nowner=a\ncommand=/x\n", /* no state */
        "id=01234567-89ab-4def-8123-456789abcdef\nowner=a\ncommand=/x\nstate=RUNNING", /* torn */
        "id=nope\nowner=a\ncommand=/x\nstate=RUNNING\n",
        "id=01234567-89ab-4def-8123-456789abcdef\nowner=a\ncommand=/x\nstate=BOGUS\n",
        "id=01234567-89ab-4def-8123-456789abcdef\nowner=a%zz\ncommand=/x\nstate=EXITED\n",
        "id=01234567-89ab-4def-8123-456789abcdef\nowner=a%00\ncommand=/x\nstate=EXITED\n",
        "id=01234567-89ab-4def-8123-456789abcdef\nowner=a\ncommand=/x\nstate=EXITED\npids=-1\n",
        "id=01234567-89ab-4def-8123-456789abcdef\nowner=a\nowner=b\ncommand=/x\nstate=EXITED\n",
        "version=2\nid=01234567-89ab-4def-8123-456789abcdef\nowner=a\ncommand=/x\nstate=EXITED\n",
        "garbage\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(jobtab_record_parse(bad[i], &s, &st), -EBADMSG, "case %zu", i);
    cr_expect_eq(jobtab_record_parse("id=01234567-89ab-4def-8123-456789abcdef\nowner=a\n"
                                     "command=/x\nstate=EXITED\nfuture_key=1\n",
                                     &s, &st),
                 0);
    jobtab_spec_clear(&s);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    cr_assert_not_null(d);
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

Test(jobtab, persistence_round_trip_and_atomic_rewrite)
{
    need_rename_exchange();

    struct jobtab *t = table(0);
    struct jobtab_entry *e1 = add(t, "alice", "one", 0);
    struct jobtab_entry *e2 = add(t, "bob", "", 0);
    struct jobtab_entry *e3 = add(t, "alice", "three", 0);
    char id1[40], id2[40], id3[40], dir[256], path[512];
    struct jobtab_status st;
    int n;

    strcpy(id1, jobtab_entry_spec(e1)->id);
    strcpy(id2, jobtab_entry_spec(e2)->id);
    strcpy(id3, jobtab_entry_spec(e3)->id);
    finish(t, e1, 3);
    finish(t, e1, 4); /* a rewrite replaces, never appends */
    st = (struct jobtab_status){0};
    jobtab_entry_get_status(e2, &st);
    st.job.state = JOB_RUNNING;
    st.job.pid = 1234;
    cr_assert_eq(jobtab_entry_set_status(e2, &st), 0);
    snprintf(dir, sizeof(dir), "%s/%s", state_dir, id1);
    cr_expect_eq(count_files(dir), 2, "'status' and the previous record, nothing else");
    cr_assert_eq(jobtab_entry_output_path(t, e1, path, sizeof(path)), 0);
    cr_expect(strstr(path, id1) && strstr(path, "/output"));
    jobtab_free(t);

    t = table(0);
    n = jobtab_load(t, NULL, NULL);
    cr_assert_eq(n, 3);
    e1 = jobtab_lookup(t, id1, "alice");
    cr_assert_not_null(e1);
    jobtab_entry_get_status(e1, &st);
    cr_expect_eq(st.job.state, JOB_EXITED);
    cr_expect_eq(st.job.exit_code, 4);
    cr_expect_eq(st.output_bytes, 42);
    cr_expect_str_eq(jobtab_entry_spec(e1)->name, "one");
    cr_expect_str_eq(jobtab_entry_spec(e1)->args[1], "echo hi\nthere %41 100%");
    cr_expect_eq(jobtab_entry_spec(e1)->limits.cpu_millis, 500);
    cr_expect_null(jobtab_entry_job(e1));
    e2 = jobtab_lookup(t, id2, "bob");
    cr_assert_not_null(e2);
    jobtab_entry_get_status(e2, &st);
    cr_expect_eq(st.job.state, JOB_LOST);
    cr_expect_eq(st.job.pid, 0);
    cr_expect_str_eq(st.job.error, "server restarted while the job was running");
    cr_expect_neq(st.job.end_ms, 0);
    e3 = jobtab_lookup(t, id3, "alice");
    cr_assert_not_null(e3);
    jobtab_entry_get_status(e3, &st);
    cr_expect_eq(st.job.state, JOB_LOST, "a STARTING job is LOST too");
    jobtab_free(t);

    /* The LOST state was written back: a second restart loads it as LOST, not as running. */
    t = table(0);
    cr_assert_eq(jobtab_load(t, NULL, NULL), 3);
    jobtab_entry_get_status(jobtab_lookup(t, id2, "bob"), &st);
    cr_expect_eq(st.job.state, JOB_LOST);
    jobtab_free(t);
}

/* A table loaded from the state directory, which holds one job, alice's job id: the table,
 * with *ret_e that job and *ret_st its status. */
static struct jobtab *reload_one(const char *id, struct jobtab_entry **ret_e,
                                 struct jobtab_status *ret_st)
{
    struct jobtab *t = table(0);

    cr_assert_eq(jobtab_load(t, NULL, NULL), 1);
    *ret_e = jobtab_lookup(t, id, "alice");
    cr_assert_not_null(*ret_e);
    jobtab_entry_get_status(*ret_e, ret_st);
    return t;
}

/* A running job's folder keeps room for its next record (status.tmp, allocated ahead), so that
 * its final record lands even when the disk fills up meanwhile; an ended job's folder holds
 * only its record. */
Test(jobtab, running_job_keeps_room_for_its_next_record)
{
    need_rename_exchange();

    struct jobtab *t = table(0);
    struct jobtab_entry *e = add(t, "alice", "", 0);
    struct jobtab_status st;
    char id[40], dir[256], tmp[512], rec[512];
    struct stat sb;

    strcpy(id, jobtab_entry_spec(e)->id);
    snprintf(dir, sizeof(dir), "%s/%s", state_dir, jobtab_entry_spec(e)->id);
    snprintf(tmp, sizeof(tmp), "%s/status.tmp", dir);
    snprintf(rec, sizeof(rec), "%s/status", dir);
    cr_assert_eq(stat(tmp, &sb), 0, "a STARTING job has its reserve");
    cr_expect_geq(sb.st_blocks * 512, 4096, "allocated, not sparse");
    jobtab_entry_get_status(e, &st);
    st.job.state = JOB_RUNNING;
    cr_assert_eq(jobtab_entry_set_status(e, &st), 0);
    cr_assert_eq(stat(tmp, &sb), 0, "a RUNNING job has its reserve");
    cr_assert_eq(stat(rec, &sb), 0);
    cr_expect_lt(sb.st_size, 4096, "the record itself is cut to its length");
    finish(t, e, 5);
    cr_expect_eq(count_files(dir), 2, "an ended job keeps 'status' and the previous record");
    cr_assert_eq(stat(tmp, &sb), 0);
    cr_expect_leq(sb.st_blocks * 512, 4096, "the previous record without its room");
    cr_expect_gt(sb.st_size, 0, "the previous record itself");
    jobtab_free(t);

    t = reload_one(id, &e, &st);
    cr_expect_eq(st.job.state, JOB_EXITED);
    cr_expect_eq(st.job.exit_code, 5);
    jobtab_free(t);
}

/* A machine crash can make a record's rename durable before its data: a torn 'status' is
 * replaced by the previous record, which status.tmp keeps; with neither readable the folder is
 * skipped. */
Test(jobtab, torn_record_falls_back_to_the_previous_one)
{
    need_rename_exchange();

    struct jobtab *t = table(0);
    struct jobtab_entry *e = add(t, "alice", "torn", 0);
    struct jobtab_status st;
    char id[40], rec[512], tmp[512];
    FILE *f;

    strcpy(id, jobtab_entry_spec(e)->id);
    snprintf(rec, sizeof(rec), "%s/%s/status", state_dir, id);
    snprintf(tmp, sizeof(tmp), "%s/%s/status.tmp", state_dir, id);
    jobtab_entry_get_status(e, &st);
    st.job.state = JOB_RUNNING;
    st.job.start_ms = 1234567;
    cr_assert_eq(jobtab_entry_set_status(e, &st), 0);
    finish(t, e, 7);
    jobtab_free(t);

    f = fopen(rec, "w"); /* the final record, torn mid-line */
    cr_assert_not_null(f);
    fputs("version=1\nid=", f);
    fclose(f);
    t = reload_one(id, &e, &st);
    cr_expect_eq(st.job.state, JOB_LOST, "the previous record was RUNNING: the job is LOST");
    cr_expect_eq(st.job.start_ms, 1234567);
    cr_expect_str_eq(jobtab_entry_spec(e)->name, "torn");
    jobtab_free(t);
    {
        /* The previous record became status again, and the LOST one was written over it: the
         * torn file is gone, status parses on its own. */
        char buf[8192];
        struct jobtab_spec spec;
        struct jobtab_status rst;
        ssize_t n;
        int fd = open(rec, O_RDONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        cr_assert_gt(n, 0);
        buf[n] = '\0';
        cr_assert_eq(jobtab_record_parse(buf, &spec, &rst), 0, "status is whole: %s", buf);
        cr_expect_eq(rst.job.state, JOB_LOST);
        jobtab_spec_clear(&spec);
    }

    cr_assert_eq(truncate(rec, 3), 0);
    cr_assert_eq(truncate(tmp, 5), 0);
    t = table(0);
    cr_expect_eq(jobtab_load(t, NULL, NULL), 0, "neither record readable: skipped");
    jobtab_free(t);
}

/* On ext4 the state directory is marked as the top of independent hierarchies (chattr +T), so
 * that job folders are spread over block groups; elsewhere nothing is asked of the file system.
 * The mark is best effort (a refusal is only logged), so these tests also skip where ext4 itself
 * refuses it: asked on a directory of their own next to the state directory. */
static void skip_unless_ext4(void)
{
    struct statfs sf;
    char probe[96];
    int fd, flags = 0, r = -1;

    cr_assert_eq(statfs(state_dir, &sf), 0);
    if (sf.f_type != EXT4_SUPER_MAGIC) {
        teardown(); /* a skip does not run the suite's .fini */
        cr_skip_test("%s is not on ext4", state_dir);
    }
    snprintf(probe, sizeof(probe), "%s.topdir.XXXXXX", state_dir);
    cr_assert_not_null(mkdtemp(probe));
    fd = open(probe, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags |= FS_TOPDIR_FL;
        r = ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    int err = errno;
    if (fd >= 0)
        close(fd);
    (void)rmdir(probe);
    if (r < 0) {
        teardown(); /* a skip does not run the suite's .fini */
        cr_skip_test("ext4 at %s refuses chattr +T here (%s)", state_dir, strerror(err));
    }
}

/* The state directory's inode flags (chattr), once a table has opened it. */
static int state_dir_flags_after_open(void)
{
    struct jobtab *t = table(0);
    int fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), flags = 0;

    cr_assert_geq(fd, 0);
    cr_assert_eq(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
    close(fd);
    jobtab_free(t);
    return flags;
}

Test(jobtab, state_directory_is_a_top_directory_on_ext4)
{
    skip_unless_ext4();
    cr_expect(state_dir_flags_after_open() & FS_TOPDIR_FL, "chattr +T on the state directory");
}

/* A --state-dir that holds anything but job folders is shared: its attributes stay. */
Test(jobtab, shared_state_directory_is_left_alone)
{
    char other[128];
    int fd;

    skip_unless_ext4();
    snprintf(other, sizeof(other), "%s/someone-else.txt", state_dir);
    fd = open(other, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_expect_not(state_dir_flags_after_open() & FS_TOPDIR_FL,
                  "a shared directory keeps its attributes");
}

static int lost_seen;
static void on_loaded(struct jobtab_entry *e, bool was_running, void *ud)
{
    (void)e;
    (void)ud;
    lost_seen += was_running;
}

Test(jobtab, load_reports_lost_skips_junk_and_sorts)
{
    struct jobtab *t = table(0);
    struct jobtab_entry *a = add(t, "alice", "", 0);
    struct jobtab_entry *b = add(t, "alice", "", 0);
    struct jobtab_entry **list;
    size_t n;
    char junk[256], ida[40];
    FILE *f;

    strcpy(ida, jobtab_entry_spec(a)->id);
    finish(t, b, 0);
    jobtab_free(t);
    snprintf(junk, sizeof(junk), "%s/not-a-job", state_dir);
    mkdir(junk, 0700);
    snprintf(junk, sizeof(junk), "%s/01234567-89ab-4def-8123-456789abcdef", state_dir);
    mkdir(junk, 0700);
    strcat(junk, "/status");
    f = fopen(junk, "w");
    fputs("id=01234567-89ab-4def-8123-456789abcdef\nowner=x\n", f); /* torn */
    fclose(f);

    t = table(0);
    lost_seen = 0;
    cr_assert_eq(jobtab_load(t, on_loaded, NULL), 2);
    cr_expect_eq(lost_seen, 1);
    cr_assert_eq(jobtab_list(t, "alice", &list, &n), 0);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(jobtab_entry_spec(list[0])->id, ida, "oldest first");
    free(list);
    jobtab_free(t);
}

/* Jobs made within one millisecond (records are written without waiting for the disk, so that
 * is common) load back in the order they were made. */
Test(jobtab, load_keeps_the_order_of_jobs_made_within_one_ms)
{
    struct jobtab *t = table(0);
    char ids[30][40];
    struct jobtab_entry **list;
    size_t n;

    for (int i = 0; i < 30; i++)
        strcpy(ids[i], jobtab_entry_spec(add(t, "alice", "", 0))->id);
    jobtab_free(t);
    t = table(0);
    cr_assert_eq(jobtab_load(t, NULL, NULL), 30);
    cr_assert_eq(jobtab_list(t, "alice", &list, &n), 0);
    cr_assert_eq(n, 30);
    for (int i = 0; i < 30; i++)
        cr_expect_str_eq(jobtab_entry_spec(list[i])->id, ids[i], "job %d in its place", i);
    free(list);
    jobtab_free(t);
}

Test(jobtab, name_unique_among_owners_running_jobs)
{
    struct jobtab *t = table(0);
    struct jobtab_entry *e = add(t, "alice", "build", 0);

    add(t, "alice", "build", -EEXIST);
    add(t, "bob", "build", 0); /* another owner may use the name */
    add(t, "alice", "", 0);    /* unnamed jobs never clash */
    add(t, "alice", "", 0);
    finish(t, e, 0);
    add(t, "alice", "build", 0); /* free again once the first ended */
    jobtab_free(t);
}

Test(jobtab, running_cap_per_user)
{
    struct jobtab *t = table(2);
    struct jobtab_entry *e = add(t, "alice", "", 0);

    add(t, "alice", "", 0);
    add(t, "alice", "", -EUSERS);
    add(t, "bob", "", 0);
    finish(t, e, 0);
    add(t, "alice", "", 0);
    jobtab_free(t);
}

Test(jobtab, end_state_is_never_overwritten_by_running)
{
    struct jobtab *t = table(0);
    struct jobtab_entry *e = add(t, "alice", "x", 0);
    struct jobtab_status st;

    finish(t, e, 7);
    jobtab_entry_get_status(e, &st);
    st.job.state = JOB_RUNNING;
    st.job.pid = 99;
    cr_assert_eq(jobtab_entry_set_status(e, &st), 0);
    jobtab_entry_get_status(e, &st);
    cr_expect_eq(st.job.state, JOB_EXITED);
    cr_expect_eq(st.job.exit_code, 7);
    cr_expect_not(jobtab_entry_is_running(e));
    jobtab_free(t);
}

Test(jobtab, authorisation)
{
    struct jobtab *t = table(0);
    struct jobtab_entry *a = add(t, "alice", "", 0);
    struct jobtab_entry *b = add(t, "bob", "", 0);
    struct jobtab_entry **list;
    size_t n;
    const char *ida = jobtab_entry_spec(a)->id;

    cr_expect_eq(jobtab_lookup(t, ida, "alice"), a);
    cr_expect_null(jobtab_lookup(t, ida, "bob"), "another user's job is invisible");
    cr_expect_null(jobtab_lookup(t, "01234567-89ab-4def-8123-456789abcdef", "alice"));
    cr_expect_eq(jobtab_lookup(t, ida, "administrator"), a);
    cr_expect(jobtab_is_admin(t, "administrator"));
    cr_expect_not(jobtab_is_admin(t, "Administrator"));
    cr_expect_not(jobtab_is_admin(t, "alice"));
    cr_expect(jobtab_may_access(t, b, "bob"));
    cr_expect_not(jobtab_may_access(t, b, "alice"));

    cr_assert_eq(jobtab_list(t, "alice", &list, &n), 0);
    cr_expect_eq(n, 1);
    cr_expect_eq(list[0], a);
    free(list);
    cr_assert_eq(jobtab_list(t, "administrator", &list, &n), 0);
    cr_expect_eq(n, 2);
    free(list);
    cr_assert_eq(jobtab_list(t, "carol", &list, &n), 0);
    cr_expect_eq(n, 0);
    free(list);
    jobtab_free(t);
}

static bool exists(const char *dir, const char *name)
{
    char p[512];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &sb) == 0;
}

/* A spare is a folder made ahead with room for two records: adding a job in it writes only its
 * record; the spare becomes the running job's next reserve; an ended job keeps only 'status'. */
Test(jobtab, slot_folder_made_ahead_holds_the_job)
{
    need_rename_exchange();

    static const char *const args[] = {"-c", "true"};
    struct limits lim = {0};
    struct jobtab *t = table(0);
    struct jobtab_spare *sl = NULL;
    struct jobtab_entry *e = NULL;
    char dir[256], id[40], out[512], want[512];
    struct stat sb;

    cr_assert_eq(jobtab_spare_new(t, &sl), 0);
    strcpy(id, jobtab_spare_id(sl));
    cr_assert(id_is_valid(id));
    snprintf(dir, sizeof(dir), "%s/%s", state_dir, id);
    cr_expect(exists(dir, "status.tmp") && exists(dir, "status.spare"), "two records' room");
    cr_expect_not(exists(dir, "status"), "no record yet");
    cr_assert_eq(jobtab_spare_output_path(t, sl, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "%s/output", dir);
    cr_expect_str_eq(out, want);

    cr_assert_eq(jobtab_add_in(t, &sl, "alice", "", "/bin/sh", args, 2, &lim, JOB_NET_NONE, &e), 0);
    cr_expect_null(sl, "the spare was taken");
    cr_expect_str_eq(jobtab_entry_spec(e)->id, id, "the job has the spare's id");
    cr_expect(exists(dir, "status"));
    cr_expect(exists(dir, "status.tmp"), "a STARTING job has its reserve");
    cr_expect_not(exists(dir, "status.spare"), "the spare became the reserve");
    snprintf(want, sizeof(want), "%s/status.tmp", dir);
    cr_assert_eq(stat(want, &sb), 0);
    cr_expect_geq(sb.st_blocks * 512, 4096, "allocated, not sparse");
    finish(t, e, 0);
    cr_expect_eq(count_files(dir), 2, "an ended job keeps 'status' and the previous record");
    cr_expect_not(exists(dir, "status.spare"));
    jobtab_free(t);

    t = table(0);
    cr_assert_eq(jobtab_load(t, NULL, NULL), 1);
    cr_expect_not_null(jobtab_lookup(t, id, "alice"));
    jobtab_free(t);
}

/* A spare's reserves are one block each; a first record too long to leave its successor room in
 * the spare (long arguments) grows the spare, so that the final record still needs no new
 * blocks: it lands on a full disk. */
Test(jobtab, long_first_record_grows_the_room_for_the_next)
{
    need_rename_exchange();

    static char big[6000];
    const char *args[] = {"-c", big};
    struct limits lim = {0};
    struct jobtab *t = table(0);
    struct jobtab_spare *sl = NULL;
    struct jobtab_entry *e = NULL;
    char tmp[512], rec[512];
    struct stat sr, st;

    memset(big, 'x', sizeof(big) - 1);
    cr_assert_eq(jobtab_spare_new(t, &sl), 0);
    snprintf(tmp, sizeof(tmp), "%s/%s/status.tmp", state_dir, jobtab_spare_id(sl));
    snprintf(rec, sizeof(rec), "%s/%s/status", state_dir, jobtab_spare_id(sl));
    cr_assert_eq(stat(tmp, &st), 0);
    cr_expect_eq(st.st_blocks * 512, 4096, "a spare's reserve is one block");
    cr_assert_eq(jobtab_add_in(t, &sl, "alice", "", "/bin/sh", args, 2, &lim, JOB_NET_NONE, &e), 0);
    cr_assert_eq(stat(rec, &sr), 0);
    cr_assert_eq(stat(tmp, &st), 0);
    cr_expect_gt(sr.st_size, 6000);
    cr_expect_geq(st.st_blocks * 512, sr.st_size + 1024, "room for a longer final record");
    finish(t, e, 0);
    cr_assert_eq(stat(tmp, &st), 0);
    cr_assert_eq(stat(rec, &sr), 0);
    cr_expect_leq(sr.st_blocks * 512, (sr.st_size + 4095) / 4096 * 4096, "the end gave room back");
    cr_expect_leq(st.st_blocks * 512, (st.st_size + 4095) / 4096 * 4096, "so did the previous one");
    jobtab_free(t);
}

/* A Start refused for its name (or the cap) leaves the spare with the caller, still usable; a
 * spare nobody took is removed by jobtab_spare_free, or at the next load (a server that died). */
Test(jobtab, unused_slots_are_removed)
{
    static const char *const args[] = {"-c", "true"};
    struct limits lim = {0};
    struct jobtab *t = table(0);
    struct jobtab_spare *a = NULL, *b = NULL;
    struct jobtab_entry *e = NULL;
    char dir_a[256], dir_b[256], out[512];
    FILE *f;

    add(t, "alice", "web", 0);
    cr_assert_eq(jobtab_spare_new(t, &a), 0);
    cr_assert_eq(jobtab_spare_new(t, &b), 0);
    cr_expect_str_neq(jobtab_spare_id(a), jobtab_spare_id(b));
    snprintf(dir_a, sizeof(dir_a), "%s/%s", state_dir, jobtab_spare_id(a));
    snprintf(dir_b, sizeof(dir_b), "%s/%s", state_dir, jobtab_spare_id(b));
    cr_assert_eq(jobtab_add_in(t, &a, "alice", "web", "/bin/sh", args, 2, &lim, JOB_NET_NONE, &e),
                 -EEXIST);
    cr_assert_not_null(a, "a refused Start leaves the spare to the caller");
    /* The caller may have made the output log in it. */
    cr_assert_eq(jobtab_spare_output_path(t, a, out, sizeof(out)), 0);
    f = fopen(out, "w");
    cr_assert_not_null(f);
    fclose(f);
    jobtab_spare_free(t, a);
    cr_expect_eq(access(dir_a, F_OK), -1, "an unused spare's folder is removed");
    cr_assert_eq(jobtab_spare_output_path(t, b, out, sizeof(out)), 0);
    f = fopen(out, "w");
    fclose(f);
    jobtab_free(t); /* b left behind, as by a server killed with -9 */
    free(b);        /* only the memory: the folder stays */
    cr_expect_eq(access(dir_b, F_OK), 0);

    t = table(0);
    cr_assert_eq(jobtab_load(t, NULL, NULL), 1, "the spare is no job");
    cr_expect_eq(access(dir_b, F_OK), -1, "a spare left by a dead server is removed at load");
    jobtab_free(t);
}

struct drained {
    char ids[4][40];
    int n;
};

static void collect(const char *id, void *userdata)
{
    struct drained *d = userdata;
    cr_assert_lt(d->n, 4);
    snprintf(d->ids[d->n++], sizeof(d->ids[0]), "%s", id);
}

/* The ids of spares a dead server left (folders without a record) are handed out once, after
 * load, so that the server can remove what else it made ahead for them (their cgroups); a
 * folder load could not remove (a stray file in it) is no job either. Jobs are never listed. */
Test(jobtab, unused_slot_ids_are_handed_out_once)
{
    struct jobtab *t = table(0);
    struct jobtab_spare *a = NULL, *b = NULL;
    char id_a[40], id_b[40], p[512];
    struct drained d = {0};
    FILE *f;

    struct jobtab_entry *e = add(t, "alice", "", 0);
    char id_job[40];
    snprintf(id_job, sizeof(id_job), "%s", jobtab_entry_spec(e)->id);
    cr_assert_eq(jobtab_spare_new(t, &a), 0);
    cr_assert_eq(jobtab_spare_new(t, &b), 0);
    snprintf(id_a, sizeof(id_a), "%s", jobtab_spare_id(a));
    snprintf(id_b, sizeof(id_b), "%s", jobtab_spare_id(b));
    snprintf(p, sizeof(p), "%s/%s/stray", state_dir, id_b);
    f = fopen(p, "w");
    cr_assert_not_null(f);
    fclose(f);
    jobtab_drain_unused(t, collect, &d);
    cr_expect_eq(d.n, 0, "a fresh table has none");
    jobtab_free(t); /* a and b left behind, as by a server killed with -9 */
    free(a);
    free(b);

    t = table(0);
    cr_assert_eq(jobtab_load(t, NULL, NULL), 1);
    jobtab_drain_unused(t, collect, &d);
    cr_assert_eq(d.n, 2, "both spares, the job not");
    bool got_a = strcmp(d.ids[0], id_a) == 0 || strcmp(d.ids[1], id_a) == 0;
    bool got_b = strcmp(d.ids[0], id_b) == 0 || strcmp(d.ids[1], id_b) == 0;
    cr_expect(got_a && got_b, "got %s %s, want %s %s", d.ids[0], d.ids[1], id_a, id_b);
    snprintf(p, sizeof(p), "%s/%s", state_dir, id_b);
    cr_expect_eq(access(p, F_OK), 0, "a folder with a stray file stays");
    d.n = 0;
    jobtab_drain_unused(t, collect, &d);
    cr_expect_eq(d.n, 0, "handed out once");
    jobtab_free(t);
}
