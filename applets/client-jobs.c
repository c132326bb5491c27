/* Naming jobs on the command line: a full id, a unique id prefix, or a name (the caller's
 * most recent job of that name), as docker takes container ids and names. Resolved against
 * the server's List, once per command however many jobs it names. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "applets/client.h"
#include "applets/format.h"
#include "core/id.h"

#define SHOWN_CANDIDATES 8

struct client_jobs {
    Runjob__V1__ListResponse *list;
    char me[256]; /* the caller's CN, once asked (names prefer the caller's own jobs) */
    bool me_known;
};

void client_jobs_free(struct client_jobs *js)
{
    if (!js)
        return;
    if (js->list)
        protobuf_c_message_free_unpacked(&js->list->base, NULL);
    free(js);
}

/* The full id in lower case when s is one (any case): true with ret filled. */
bool client_job_id_parse(const char *s, char ret[ID_LEN + 1])
{
    char low[ID_LEN + 1];

    if (strlen(s) != ID_LEN)
        return false;
    for (size_t i = 0; i <= ID_LEN; i++)
        low[i] = (char)tolower((unsigned char)s[i]);
    if (!id_is_valid(low))
        return false;
    memcpy(ret, low, sizeof(low));
    return true;
}

static int load(const struct client_opts *o, struct rpc_client *c, struct client_jobs *js)
{
    Runjob__V1__ListRequest req = RUNJOB__V1__LIST_REQUEST__INIT;
    struct rpc_error err = {0};

    if (js->list)
        return 0;
    if (rpc_client_list(c, &req, &js->list, &err) < 0)
        return client_fail(o, &err);
    return 0;
}

static const char *caller(const struct client_opts *o, struct rpc_client *c, struct client_jobs *js)
{
    Runjob__V1__PingRequest req = RUNJOB__V1__PING_REQUEST__INIT;
    Runjob__V1__PingResponse *resp = NULL;
    struct rpc_error err = {0};

    (void)o;
    if (!js->me_known && rpc_client_ping(c, &req, &resp, &err) == 0) {
        (void)snprintf(js->me, sizeof(js->me), "%s", resp->peer_cn);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        js->me_known = true;
    }
    return js->me_known ? js->me : NULL;
}

static void print_candidates(const struct client_opts *o, const char *what,
                             Runjob__V1__JobStatus *const *cands, size_t n)
{
    fprintf(stderr, "%s: %s: '%s' names %zu jobs; give more of the id:\n", o->prog, o->verb, what,
            n);
    for (size_t i = 0; i < n && i < SHOWN_CANDIDATES; i++) {
        char state[32];
        fprintf(stderr, "  %s  %s  %s%s%s\n", cands[i]->id,
                fmt_state_name(state, sizeof(state), cands[i]->state), cands[i]->owner,
                cands[i]->name[0] ? "  " : "", cands[i]->name);
    }
    if (n > SHOWN_CANDIDATES)
        fprintf(stderr, "  ... and %zu more\n", n - SHOWN_CANDIDATES);
}

int client_jobs_resolve(const struct client_opts *o, struct rpc_client *c, struct client_jobs **jsp,
                        const char *arg, char ret[ID_LEN + 1])
{
    Runjob__V1__JobStatus **cands = NULL, *named = NULL;
    struct client_jobs *js;
    size_t n = 0, n_named_owners = 0;
    const char *me;
    int r;

    if (client_job_id_parse(arg, ret))
        return 0;
    if (!*arg)
        return client_usage_error(o, "the job id is empty");
    if (!*jsp && !(*jsp = calloc(1, sizeof(**jsp))))
        return client_usage_error(o, "out of memory");
    js = *jsp;
    if ((r = load(o, c, js)))
        return r;

    /* A name: the most recent job of that name (the list is oldest first); the caller's own
     * first, when an administrator's list holds other users' jobs of that name too. */
    for (size_t i = 0; i < js->list->n_jobs; i++)
        if (strcmp(js->list->jobs[i]->name, arg) == 0) {
            if (named && strcmp(named->owner, js->list->jobs[i]->owner) != 0)
                n_named_owners++;
            named = js->list->jobs[i];
        }
    if (named && n_named_owners && (me = caller(o, c, js))) {
        Runjob__V1__JobStatus *mine = NULL;
        for (size_t i = 0; i < js->list->n_jobs; i++)
            if (strcmp(js->list->jobs[i]->name, arg) == 0 &&
                strcmp(js->list->jobs[i]->owner, me) == 0)
                mine = js->list->jobs[i];
        if (mine)
            named = mine;
        else {
            fprintf(stderr,
                    "%s: %s: '%s' is the name of other users' jobs, not yours: give the id\n",
                    o->prog, o->verb, arg);
            return CLIENT_EXIT_FAILED;
        }
    }
    if (named) {
        (void)snprintf(ret, ID_LEN + 1, "%s", named->id);
        return 0;
    }

    /* An id prefix, in any case. */
    char low[ID_LEN + 1];
    size_t len = strlen(arg);
    if (len <= ID_LEN) {
        for (size_t i = 0; i <= len; i++)
            low[i] = (char)tolower((unsigned char)arg[i]);
        cands = calloc(js->list->n_jobs + 1, sizeof(*cands));
        if (!cands)
            return client_usage_error(o, "out of memory");
        for (size_t i = 0; i < js->list->n_jobs; i++)
            if (strncmp(js->list->jobs[i]->id, low, len) == 0)
                cands[n++] = js->list->jobs[i];
    }
    if (n == 1) {
        (void)snprintf(ret, ID_LEN + 1, "%s", cands[0]->id);
        free(cands);
        return 0;
    }
    if (n > 1) {
        print_candidates(o, arg, cands, n);
        free(cands);
        return CLIENT_EXIT_FAILED;
    }
    free(cands);
    fprintf(stderr, "%s: %s: no job has the id or name '%s' (see '%s list') (NOT_FOUND)\n", o->prog,
            o->verb, arg, o->prog);
    return CLIENT_EXIT_FAILED;
}

int client_jobs_mine(const struct client_opts *o, struct rpc_client *c, struct client_jobs **jsp,
                     bool running_only, char (**ret)[ID_LEN + 1], size_t *ret_n)
{
    struct client_jobs *js;
    const char *me;
    size_t n = 0;
    int r;

    if (!*jsp && !(*jsp = calloc(1, sizeof(**jsp))))
        return client_usage_error(o, "out of memory");
    js = *jsp;
    if ((r = load(o, c, js)))
        return r;
    if (!(me = caller(o, c, js))) {
        fprintf(stderr, "%s: %s: cannot ask the server who you are\n", o->prog, o->verb);
        return CLIENT_EXIT_FAILED;
    }
    *ret = calloc(js->list->n_jobs + 1, sizeof(**ret));
    if (!*ret)
        return client_usage_error(o, "out of memory");
    for (size_t i = 0; i < js->list->n_jobs; i++) {
        const Runjob__V1__JobStatus *st = js->list->jobs[i];
        if (strcmp(st->owner, me) != 0)
            continue;
        if (running_only && st->state != RUNJOB__V1__JOB_STATE__JOB_STATE_RUNNING &&
            st->state != RUNJOB__V1__JOB_STATE__JOB_STATE_STARTING)
            continue;
        (void)snprintf((*ret)[n++], ID_LEN + 1, "%s", st->id);
    }
    *ret_n = n;
    return 0;
}
