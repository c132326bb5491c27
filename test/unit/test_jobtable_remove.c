/* core/jobtable: entry lifetime and removal. The table, lookups, lists, foreach and the writer
 * and flusher queues each hold a reference; a removed entry is freed (on_release first) at the
 * last put, not before, once even when lookups race the removals; a running entry cannot be
 * removed; removal keeps the index whole; trash and purge take the folder away and a reload
 * does not find the job. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jobtable.h"

static char state_dir[64];
static const char *const admins[] = {"administrator", NULL};
static atomic_int released;
static char released_id[JOBTAB_ID_LEN + 1];

static void setup(void)
{
    snprintf(state_dir, sizeof(state_dir), "/tmp/test_jobtab_rm.XXXXXX");
    cr_assert_not_null(mkdtemp(state_dir));
    released = 0;
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state_dir);
    (void)!system(cmd);
}

static void on_release(struct jobtab_entry *e, void *userdata)
{
    (void)userdata;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

    /* The last put may come from any thread (a reader's, the flusher's). */
    (void)pthread_mutex_lock(&mu);
    snprintf(released_id, sizeof(released_id), "%s", jobtab_entry_spec(e)->id);
    (void)pthread_mutex_unlock(&mu);
    released++;
}

static struct jobtab *table(void)
{
    struct jobtab_config cfg = {
        .state_dir = state_dir, .admin_cns = admins, .on_release = on_release};
    struct jobtab *t = NULL;
    cr_assert_eq(jobtab_new(&cfg, &t), 0);
    return t;
}

/* A job of owner, ended; the caller's reference. */
static struct jobtab_entry *ended(struct jobtab *t, const char *owner)
{
    struct limits lim = {.cpu_millis = 500, .memory_bytes = 1 << 20, .pids = 10};
    struct jobtab_entry *e = NULL;
    struct jobtab_status st;

    cr_assert_eq(jobtab_add(t, owner, "", "/bin/true", NULL, 0, &lim, JOB_NET_NONE, &e), 0);
    jobtab_entry_get_status(e, &st);
    st.job.state = JOB_EXITED;
    st.job.end_ms = st.job.start_ms + 1;
    cr_assert_eq(jobtab_entry_set_status(e, &st), 0);
    return e;
}

static bool folder_exists(const char *name)
{
    char path[256];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", state_dir, name);
    return stat(path, &st) == 0;
}

TestSuite(jobtab_rm, .init = setup, .fini = teardown);

Test(jobtab_rm, removed_entry_lives_until_the_last_put)
{
    struct jobtab *t = table();
    struct jobtab_entry *e = ended(t, "alice");
    struct jobtab_entry *again = jobtab_lookup(t, jobtab_entry_spec(e)->id, "alice");
    char id[JOBTAB_ID_LEN + 1];

    cr_assert_eq(again, e);
    snprintf(id, sizeof(id), "%s", jobtab_entry_spec(e)->id);
    cr_assert_eq(jobtab_sync(t), 0); /* the queues have put theirs */
    cr_assert_eq(jobtab_remove(t, e), 0);
    cr_expect_null(jobtab_lookup(t, id, "alice"), "a removed job is not found");
    cr_expect_eq(jobtab_remove(t, e), -ENOENT, "removed twice");
    cr_expect(jobtab_entry_is_removed(e));
    cr_expect_eq(released, 0, "two references are still held");
    jobtab_entry_put(again);
    cr_expect_eq(released, 0, "one reference is still held");
    cr_expect_str_eq(jobtab_entry_spec(e)->id, id, "the entry is still readable");
    jobtab_entry_put(e);
    cr_expect_eq(released, 1, "freed at the last put, after on_release");
    cr_expect_str_eq(released_id, id);
    jobtab_free(t);
}

Test(jobtab_rm, a_running_entry_cannot_be_removed)
{
    struct jobtab *t = table();
    struct limits lim = {.cpu_millis = 500};
    struct jobtab_entry *e = NULL;

    cr_assert_eq(jobtab_add(t, "alice", "", "/bin/true", NULL, 0, &lim, JOB_NET_NONE, &e), 0);
    cr_expect_eq(jobtab_remove(t, e), -EBUSY);
    cr_expect_not(jobtab_entry_is_removed(e));
    jobtab_entry_put(e);
    cr_expect_eq(released, 0, "still in the table");
    jobtab_free(t);
}

Test(jobtab_rm, queued_records_hold_the_entry)
{
    struct jobtab *t = table();
    struct jobtab_entry *e = ended(t, "alice");
    struct jobtab_status st;

    /* A record handed to the writer: the entry must outlive it even when removed at once. */
    jobtab_entry_get_status(e, &st);
    st.output_bytes = 7;
    jobtab_entry_set_status_async(e, &st);
    cr_assert_eq(jobtab_remove(t, e), 0);
    jobtab_entry_put(e);
    cr_assert_eq(jobtab_sync(t), 0);
    cr_expect_eq(released, 1, "freed once the queues let go");
    jobtab_free(t);
}

Test(jobtab_rm, removal_keeps_the_others_findable)
{
    struct jobtab *t = table();
    struct jobtab_entry *e[300];
    size_t n = 0;
    struct jobtab_entry **list = NULL;

    for (size_t i = 0; i < 300; i++)
        e[i] = ended(t, i % 2 ? "alice" : "bob");
    for (size_t i = 0; i < 300; i += 3)
        cr_assert_eq(jobtab_remove(t, e[i]), 0);
    for (size_t i = 0; i < 300; i++) {
        struct jobtab_entry *f = jobtab_lookup(t, jobtab_entry_spec(e[i])->id, "administrator");
        if (i % 3 == 0)
            cr_expect_null(f, "removed %zu", i);
        else
            cr_expect_eq(f, e[i], "entry %zu is still found", i);
        jobtab_entry_put(f);
    }
    cr_assert_eq(jobtab_list(t, "administrator", &list, &n), 0);
    cr_expect_eq(n, 200);
    for (size_t i = 1; i < n; i++) /* oldest first, still */
        cr_expect_lt(jobtab_entry_spec(list[i - 1])->created_ns,
                     jobtab_entry_spec(list[i])->created_ns);
    jobtab_entries_put(list, n);
    for (size_t i = 0; i < 300; i++)
        jobtab_entry_put(e[i]);
    cr_assert_eq(jobtab_sync(t), 0); /* the flusher's queue lets go of the last records */
    cr_expect_eq(released, 100);
    jobtab_free(t);
}

Test(jobtab_rm, trash_and_purge_take_the_folder_away)
{
    struct jobtab *t = table();
    struct jobtab_entry *e = ended(t, "alice"), *kept = ended(t, "alice");
    char id[JOBTAB_ID_LEN + 1], trash[64];
    int n;

    snprintf(id, sizeof(id), "%s", jobtab_entry_spec(e)->id);
    snprintf(trash, sizeof(trash), ".rm-%s", id);
    cr_assert(folder_exists(id));
    cr_assert_eq(jobtab_remove(t, e), 0);
    cr_assert_eq(jobtab_entry_trash(e), 0);
    cr_expect_not(folder_exists(id));
    cr_expect(folder_exists(trash), "renamed, to be deleted");
    jobtab_entry_put(e);
    jobtab_entry_put(kept);
    jobtab_free(t);

    t = table(); /* a restart before the purge: the job stays gone */
    n = jobtab_load(t, NULL, NULL);
    cr_expect_eq(n, 1, "only the job kept is loaded");
    cr_expect_eq(jobtab_purge(t), 1);
    cr_expect_not(folder_exists(trash));
    cr_expect_eq(jobtab_purge(t), 0);
    jobtab_free(t);
}

#define RACE_JOBS 200

struct race {
    struct jobtab *t;
    char ids[RACE_JOBS][JOBTAB_ID_LEN + 1];
    atomic_bool stop;
};

/* Looks jobs up, reads them and lists them while they are being removed. */
static void *race_reader(void *arg)
{
    struct race *rc = arg;
    unsigned i = 0;

    while (!atomic_load(&rc->stop)) {
        struct jobtab_entry *e = jobtab_lookup(rc->t, rc->ids[i++ % RACE_JOBS], "alice");
        struct jobtab_entry **list = NULL;
        struct jobtab_status st;
        size_t n = 0;

        if (e) {
            jobtab_entry_get_status(e, &st);
            cr_assert_eq(st.job.state, JOB_EXITED);
            jobtab_entry_put(e);
        }
        if (i % 16 == 0 && jobtab_list(rc->t, "administrator", &list, &n) == 0)
            jobtab_entries_put(list, n);
    }
    return NULL;
}

Test(jobtab_rm, lookups_racing_removals_free_each_entry_once)
{
    struct race rc = {.t = table()};
    struct jobtab_entry *e[RACE_JOBS];
    pthread_t th[4];

    for (size_t i = 0; i < RACE_JOBS; i++) {
        e[i] = ended(rc.t, "alice");
        snprintf(rc.ids[i], sizeof(rc.ids[i]), "%s", jobtab_entry_spec(e[i])->id);
    }
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, race_reader, &rc), 0);
    for (size_t i = 0; i < RACE_JOBS; i++) {
        cr_assert_eq(jobtab_remove(rc.t, e[i]), 0);
        jobtab_entry_put(e[i]);
    }
    atomic_store(&rc.stop, true);
    for (size_t i = 0; i < 4; i++)
        (void)pthread_join(th[i], NULL);
    cr_assert_eq(jobtab_sync(rc.t), 0);
    cr_expect_eq(atomic_load(&released), RACE_JOBS, "each removed entry freed once");
    jobtab_free(rc.t);
}
