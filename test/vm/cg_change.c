/* Runs in the VM guest (static, no test framework): on the guest's real cgroup v2 or v1,
 * cg_create(from) then cg_change_limits(from, to) must read like cg_create(to) in every
 * readable file of the job cgroup (the same check as test/host/test_cgroup_v1.c's
 * changed_limits_equal_limits_at_creation). Works below its own root "rj-change" and removes it.
 * Prints diagnostics; exit 0 when every pair matched. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cgroup.h"
#include "core/cleanup.h"
#include "core/proc.h"
#include "test/cg_limit_pairs.h"

#define BASE "/sys/fs/cgroup"
#define ROOT "rj-change"

/* The job directories of id: <BASE>/ROOT/id on v2, <BASE>/<hier>/ROOT/id on v1 (a hierarchy
 * reached through a symlink such as cpu -> cpu,cpuacct is listed once, by its own name). */
static size_t job_dirs(const char *id, char dirs[][256], size_t max)
{
    size_t n = 0;
    struct stat st;
    snprintf(dirs[0], 256, "%s/%s/%s", BASE, ROOT, id);
    if (stat(dirs[0], &st) == 0)
        return 1;
    DIR *d = opendir(BASE);
    for (struct dirent *e; d && (e = readdir(d)) && n < max;) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.')
            continue;
        if (snprintf(dirs[n], 256, "%s/%.64s/%s/%s", BASE, e->d_name, ROOT, id) >= 256)
            continue;
        if (stat(dirs[n], &st) == 0)
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

static char *read_at(const char *dir, const char *name)
{
    char path[600];
    char *buf = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return proc_read_file_at(AT_FDCWD, path, &buf) == 0 ? buf : NULL;
}

/* A device line of a statistics file with nothing but zeros: "MAJ:MIN Read 0" (v1 blkio),
 * "MAJ:MIN rbytes=0 ..." or a bare "MAJ:MIN " (v2 io.stat leaves zero keys out). */
static bool is_zero_device_line(const char *line)
{
    unsigned maj, min;
    int off = 0;
    if (sscanf(line, "%u:%u%n", &maj, &min, &off) != 2)
        return false;
    _cleanup_free_ char *rest = strdup(line + off);
    char *save = NULL;
    for (char *t = strtok_r(rest, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        const char *eq = strchr(t, '=');
        if (strcmp(t, "0") == 0 || (eq && strcmp(eq + 1, "0") == 0))
            continue;
        if (eq || strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_") != strlen(t))
            return false;
    }
    return true;
}

/* got without its zero device lines equals want. Once a throttle rule existed for a device,
 * the kernel keeps that device's group (blkg) after the rule is removed, and the io
 * statistics list it, with nothing counted in an empty cgroup: a statistic, not a setting,
 * and nothing user space can undo. */
static bool same_but_zero_device_stats(const char *want, const char *got)
{
    _cleanup_free_ char *kept = calloc(1, strlen(got) + 1);
    size_t len = 0;
    for (const char *l = got; *l;) {
        size_t n = strcspn(l, "\n");
        char line[256];
        snprintf(line, sizeof(line), "%.*s", (int)n, l);
        if (!is_zero_device_line(line)) {
            memcpy(kept + len, l, n);
            len += n;
            if (l[n] == '\n')
                kept[len++] = '\n';
        }
        l += n + (l[n] == '\n');
    }
    return strcmp(kept, want) == 0;
}

/* Every setting in a (a file equal in a and its control c) equal in b; returns how many
 * differ, counts the settings compared into *compared. */
static int compare(const char *a, const char *b, const char *c, size_t *compared)
{
    int bad = 0;
    DIR *d = opendir(a);
    if (!d) {
        printf("cannot open %s: %s\n", a, strerror(errno));
        return 1;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_type != DT_REG || strcmp(e->d_name, "cpu.stat") == 0)
            continue; /* cpu.stat: quota periods run while a cpu limit was set, history */
        _cleanup_free_ char *va = read_at(a, e->d_name);
        _cleanup_free_ char *vb = read_at(b, e->d_name);
        _cleanup_free_ char *vc = read_at(c, e->d_name);
        if (!va || !vc || strcmp(va, vc) != 0)
            continue;
        (*compared)++;
        if (!vb || (strcmp(va, vb) != 0 && !same_but_zero_device_stats(va, vb))) {
            printf("%s/%s: '%s' at creation, '%s' after the change\n", b, e->d_name, va,
                   vb ? vb : "(unreadable)");
            bad++;
        }
    }
    closedir(d);
    return bad;
}

int main(void)
{
    struct cg_config cfg = {.root = ROOT};
    struct cg_manager *m = NULL;
    char err[256] = "";
    int bad = 0, r;

    r = cg_manager_new(&cfg, &m, err, sizeof(err));
    if (r < 0) {
        printf("cg_manager_new: %s (%s)\n", strerror(-r), err);
        return 1;
    }
    printf("cgroup %s\n", cg_mode_name(cg_manager_mode(m)));
    for (size_t k = 0; k < sizeof(cg_limit_pairs) / sizeof(cg_limit_pairs[0]); k++) {
        struct cg *fresh = NULL, *ctl = NULL, *changed = NULL;
        char df[8][256], dc[8][256], dt[8][256];
        size_t compared = 0;
        if ((r = cg_create(m, "fresh", &cg_limit_pairs[k].to, &fresh)) < 0 ||
            (r = cg_create(m, "control", &cg_limit_pairs[k].to, &ctl)) < 0 ||
            (r = cg_create(m, "changed", &cg_limit_pairs[k].from, &changed)) < 0) {
            printf("pair %zu: cg_create: %s\n", k, strerror(-r));
            bad++;
        } else if ((r = cg_change_limits(changed, &cg_limit_pairs[k].from, &cg_limit_pairs[k].to)) <
                   0) {
            printf("pair %zu: cg_change_limits: %s\n", k, strerror(-r));
            bad++;
        } else {
            size_t n = job_dirs("fresh", df, 8);
            if (n == 0 || job_dirs("control", dc, 8) != n || job_dirs("changed", dt, 8) != n) {
                printf("pair %zu: job directories not found alike\n", k);
                bad++;
            }
            for (size_t i = 0; i < n; i++)
                bad += compare(df[i], dt[i], dc[i], &compared);
            printf("pair %zu: %zu settings compared in %zu directories\n", k, compared, n);
            if (compared < 20) {
                printf("pair %zu: too few settings compared\n", k);
                bad++;
            }
        }
        struct cg *all[] = {fresh, ctl, changed};
        for (size_t i = 0; i < 3; i++) {
            if (all[i] && (r = cg_destroy(all[i], -1)) < 0) {
                printf("cg_destroy: %s\n", strerror(-r));
                bad++;
            }
            cg_free(all[i]);
        }
    }
    cg_manager_free(m);
    /* The root: v2 one directory, v1 one per hierarchy. */
    char path[300];
    snprintf(path, sizeof(path), "%s/%s", BASE, ROOT);
    (void)rmdir(path);
    DIR *d = opendir(BASE);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/%s", BASE, e->d_name, ROOT);
        (void)rmdir(path); /* ENOENT: not in that hierarchy */
    }
    if (d)
        closedir(d);
    return bad ? 1 : 0;
}
