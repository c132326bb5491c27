#include "jobtable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "jobtable-internal.h"

/* ---- folders without a record ----------------------------------------------------------- */

/* Removes a job folder that never got a record: a spare made ahead and not used (the server
 * stopped, or died, before a Start took it), or a job whose first record failed. Only the
 * files a spare holds are removed; anything else keeps the folder (rmdir fails). 0 or -errno. */
int jobtab_remove_unused_folder(int sfd, int dfd, const char *name)
{
    static const char *const files[] = {RECORD_TMP, RECORD_SPARE, OUTPUT_FILE};

    for (size_t i = 0; i < ELEMENTSOF(files); i++)
        (void)unlinkat(dfd, files[i], 0); /* ENOENT: not made (yet) */
    if (unlinkat(sfd, name, AT_REMOVEDIR) < 0)
        return -errno;
    return 0;
}

/* Keeps the id of a folder without a record for jobtab_drain_unused (best effort: without
 * memory, what was made ahead for it stays, as it would have before). */
void jobtab_remember_unused(struct jobtab *t, const char *name)
{
    char(*a)[JOBTAB_ID_LEN + 1];

    (void)pthread_mutex_lock(&t->lock);
    a = realloc(t->unused, (t->n_unused + 1) * sizeof(*a));
    if (a) {
        t->unused = a;
        /* name passed id_is_valid: exactly JOBTAB_ID_LEN bytes */
        memcpy(a[t->n_unused], name, JOBTAB_ID_LEN);
        a[t->n_unused++][JOBTAB_ID_LEN] = '\0';
    }
    (void)pthread_mutex_unlock(&t->lock);
}

void jobtab_drain_unused(struct jobtab *t, void (*fn)(const char *id, void *userdata),
                         void *userdata)
{
    char(*ids)[JOBTAB_ID_LEN + 1];
    size_t n;

    (void)pthread_mutex_lock(&t->lock);
    ids = t->unused;
    n = t->n_unused;
    t->unused = NULL;
    t->n_unused = 0;
    (void)pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; i < n; i++)
        fn(ids[i], userdata);
    free(ids);
}

/* ---- spares: job folders made ahead ------------------------------------------------------ */

int jobtab_state_path(struct jobtab *t, const char *id, char *buf, size_t len)
{
    if (snprintf(buf, len, "%s/%s", t->state_dir, id) >= (int)len)
        return -ENAMETOOLONG;
    return 0;
}

int jobtab_spare_new(struct jobtab *t, struct jobtab_spare **ret)
{
    _cleanup_free_ struct jobtab_spare *sl = calloc(1, sizeof(*sl));
    _cleanup_close_ int dfd = -1;
    char dir[PATH_MAX];
    int r;

    if (!sl)
        return -ENOMEM;
    /* Unique among the table's ids and every folder (mkdir is exclusive, so two spares never
     * share one); a clash of random 122-bit ids is only a matter of principle. */
    for (;;) {
        bool taken;
        r = jobtab_new_id(sl->id);
        if (r < 0)
            return r;
        (void)pthread_mutex_lock(&t->lock);
        taken = jobtab_find_locked(t, sl->id) != NULL;
        (void)pthread_mutex_unlock(&t->lock);
        if (taken)
            continue;
        r = jobtab_state_path(t, sl->id, dir, sizeof(dir));
        if (r < 0)
            return r;
        if (mkdir(dir, 0700) == 0)
            break;
        if (errno != EEXIST)
            return -errno;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        r = -errno;
    if (r == 0)
        r = jobtab_rec_reserve(dfd, RECORD_TMP, RECORD_RESERVE_MIN);
    if (r == 0)
        r = jobtab_rec_reserve(dfd, RECORD_SPARE, RECORD_RESERVE_MIN);
    if (r < 0) {
        if (dfd >= 0) {
            (void)unlinkat(dfd, RECORD_TMP, 0);
            (void)unlinkat(dfd, RECORD_SPARE, 0);
        }
        (void)rmdir(dir);
        return r;
    }
    *ret = TAKE_PTR(sl);
    return 0;
}

const char *jobtab_spare_id(const struct jobtab_spare *sl)
{
    return sl->id;
}

int jobtab_spare_output_path(struct jobtab *t, const struct jobtab_spare *sl, char *buf, size_t len)
{
    if (snprintf(buf, len, "%s/%s/%s", t->state_dir, sl->id, OUTPUT_FILE) >= (int)len)
        return -ENAMETOOLONG;
    return 0;
}

/* Removes the folder of an unused spare or of a job whose first record failed. */
void jobtab_remove_folder(struct jobtab *t, const char *id)
{
    _cleanup_close_ int sfd = open(t->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int dfd = -1;

    if (sfd < 0)
        return;
    dfd = openat(sfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd >= 0)
        (void)jobtab_remove_unused_folder(sfd, dfd, id); /* best effort: a restart tries again */
}

void jobtab_spare_free(struct jobtab *t, struct jobtab_spare *sl)
{
    if (!sl)
        return;
    jobtab_remove_folder(t, sl->id);
    free(sl);
}
