/* The shim pool and the jobs made ahead: the pool thread keeps shims started ahead of time
 * and moves one into each cgroup made ahead (job_spare_new), prepped for its job, so that
 * a start takes it with no cgroup move and no command process to make on its path. */
#include "job-internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cgroup.h"
#include "log.h"
#include "shimproto.h"

/* Whether a shim that waited (in the pool or a spare) is still there: one killed by
 * someone meanwhile would look like a job that started and was killed. A dead one is reaped. */
bool job_shim_alive(struct job_shim *sh)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    return waitid((idtype_t)P_PIDFD, (id_t)sh->pidfd, &si, WEXITED | WNOHANG | __WALL) == 0 &&
           si.si_pid == 0;
}

/* Pops a live pooled shim into *ret, discarding dead ones. Under r->mu. */
static bool pool_pop(struct job_runner *r, struct job_shim *ret)
{
    while (r->n_pool) {
        struct job_shim sh = r->pool[--r->n_pool];

        if (job_shim_alive(&sh)) {
            *ret = sh;
            return true;
        }
        job_shim_discard(&sh);
    }
    return false;
}

/* Takes a pooled shim (private network) into *ret and asks the pool thread to start a
 * replacement. false when the pool is off or empty. */
bool job_pool_take(struct job_runner *r, struct job_shim *ret)
{
    bool got = false;

    pthread_mutex_lock(&r->mu);
    if (r->pool_size) {
        r->pool_refill = true;
        pthread_cond_broadcast(&r->pool_cond);
        got = pool_pop(r, ret);
    }
    pthread_mutex_unlock(&r->mu);
    return got;
}

/* A spare still without a shim, or NULL. Under r->mu. */
static struct job_spare *ahead_wanting_shim(struct job_runner *r)
{
    for (struct job_spare *jc = r->ahead; jc; jc = jc->next)
        if (jc->sh.pidfd < 0 && !jc->attaching && !jc->no_shim)
            return jc;
    return NULL;
}

/* The pool thread's part of a spare: a pooled shim (or a new one) moved into its cgroup
 * and prepped for the job (its command's process then waits for the go).
 * Under r->mu, dropped meanwhile: jc->attaching keeps a start or a release waiting, so jc stays
 * valid even once taken off r->ahead. */
static void ahead_fill(struct job_runner *r, struct job_spare *jc)
{
    int cgfd = cg_get_dirfd(jc->cg);
    struct job_shim sh;
    bool pooled;
    int e = 0;

    job_shim_init(&sh);
    pooled = pool_pop(r, &sh);
    jc->attaching = true;
    pthread_mutex_unlock(&r->mu);
    if (!pooled)
        e = job_shim_spawn(r, false, cgfd, true, &sh); /* v2: straight into the cgroup */
    if (e == 0 && (pooled || cgfd < 0))
        e = job_shim_attach(r, &sh, jc->cg);
    if (e == 0)
        e = job_shim_prep(r, &sh, jc->cg, jc->uid, jc->gid);
    if (e < 0) {
        log_debug("job %s: a shim ahead in its cgroup: %s", cg_get_id(jc->cg), strerror(-e));
        job_shim_discard(&sh);
    }
    pthread_mutex_lock(&r->mu);
    jc->attaching = false;
    if (e < 0)
        jc->no_shim = true;
    else
        jc->sh = sh;
    r->pool_refill = true;
    pthread_cond_broadcast(&r->pool_cond);
}

/* The pool thread: fills spares, then tops the pool up after each take, off the event
 * thread (a clone into a new network namespace takes a millisecond or more; the event thread
 * meanwhile reaps the jobs that end). A failed clone stops it until the next take. Exits when
 * the runner quits. */
void *job_pool_thread(void *arg)
{
    struct job_runner *r = arg;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        struct job_spare *jc = NULL;
        struct job_shim sh;
        int e;

        while (!r->quit && !(jc = ahead_wanting_shim(r)) &&
               !(r->pool_refill && r->n_pool < r->pool_size)) {
            r->pool_refill = false;
            pthread_cond_wait(&r->pool_cond, &r->mu);
        }
        if (r->quit)
            break;
        if (jc) {
            ahead_fill(r, jc);
            continue;
        }
        pthread_mutex_unlock(&r->mu);
        e = job_shim_spawn(r, false, -1, true, &sh);
        pthread_mutex_lock(&r->mu);
        if (e < 0) {
            log_debug("job runner: starting a shim ahead of time: %s", strerror(-e));
            r->pool_refill = false;
            continue;
        }
        if (r->quit || r->n_pool >= r->pool_size) {
            pthread_mutex_unlock(&r->mu);
            job_shim_discard(&sh);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        r->pool[r->n_pool++] = sh;
    }
    pthread_mutex_unlock(&r->mu);
    job_template_stop(r);
    return NULL;
}

/* Takes jc off the runner's list (waiting for the pool thread if it is moving a shim in) and
 * frees it: its cgroup is returned, its shim (if any) put in *ret_sh. */
struct cg *job_spare_take(struct job_spare *jc, struct job_shim *ret_sh, struct limits *ret_lim)
{
    struct job_runner *r = jc->r;
    struct cg *cg = jc->cg;

    pthread_mutex_lock(&r->mu);
    for (struct job_spare **p = &r->ahead; *p; p = &(*p)->next)
        if (*p == jc) {
            *p = jc->next;
            break;
        }
    while (jc->attaching)
        pthread_cond_wait(&r->pool_cond, &r->mu);
    pthread_mutex_unlock(&r->mu);
    *ret_sh = jc->sh;
    *ret_lim = jc->limits;
    free(jc);
    return cg;
}

void job_spare_discard_all(struct job_runner *r)
{
    for (struct job_spare *jc = r->ahead; jc; jc = jc->next) {
        log_warn("job %s: its spare outlived the job runner", cg_get_id(jc->cg));
        job_shim_discard(&jc->sh);
    }
}

int job_spare_new(struct job_runner *r, const struct job_spare_spec *a, struct job_spare **ret)
{
    struct job_spare *jc;
    int e;

    *ret = NULL;
    if (!a->id || strlen(a->id) > SHIMPROTO_ID_MAX)
        return -EINVAL;
    jc = calloc(1, sizeof(*jc));
    if (!jc)
        return -ENOMEM;
    jc->limits = a->limits;
    e = cg_create(r->cgm, a->id, &jc->limits, &jc->cg);
    if (e < 0) {
        free(jc);
        return e;
    }
    jc->r = r;
    jc->uid = a->uid;
    jc->gid = a->gid;
    job_shim_init(&jc->sh);
    pthread_mutex_lock(&r->mu);
    jc->next = r->ahead;
    r->ahead = jc;
    pthread_cond_broadcast(&r->pool_cond); /* the pool thread, if any, moves a shim in */
    pthread_mutex_unlock(&r->mu);
    *ret = jc;
    return 0;
}

/* Removes a cgroup made ahead that no job ran in, and kills the shim that waited in it. */
void job_spare_drop(struct cg *cg, struct job_shim *sh)
{
    job_shim_discard(sh);
    if (!cg)
        return;
    /* Nothing ever ran in it: this is a few rmdirs. */
    int e = cg_destroy(cg, KILL_TIMEOUT_MS);
    if (e < 0)
        log_debug("job %s: removing its cgroup made ahead: %s", cg_get_id(cg), strerror(-e));
    cg_free(cg);
}

void job_spare_free(struct job_spare *jc)
{
    struct job_shim sh;

    if (!jc)
        return;
    struct limits lim;
    struct cg *cg = job_spare_take(jc, &sh, &lim);
    job_spare_drop(cg, &sh);
}
