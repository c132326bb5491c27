/* core/spawn's pure parts: the spec blob round trip, malformed blobs, step names, messages. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/spawn.h"

static const char *const argv_ok[] = {"/bin/echo", "hello", "", "wörld", NULL};
static const char *const envp_ok[] = {"PATH=/bin", "HOME=/", NULL};

static struct spawn_spec sample(void)
{
    return (struct spawn_spec){
        .id = "0f3c2a1e-aaaa-bbbb-cccc-123456789abc",
        .path = "/bin/echo",
        .cwd = "/",
        .argv = argv_ok,
        .envp = envp_ok,
        .uid = 65534,
        .gid = 65534,
        .host_net = true,
    };
}

Test(spawn, spec_round_trip)
{
    struct spawn_spec in = sample(), *out = NULL;
    void *blob = NULL;
    size_t len = 0;

    cr_assert_eq(spawn_spec_pack(&in, &blob, &len), 0);
    cr_assert_eq(spawn_spec_parse(blob, len, &out), 0);
    cr_expect_str_eq(out->id, in.id);
    cr_expect_str_eq(out->path, in.path);
    cr_expect_str_eq(out->cwd, in.cwd);
    for (int i = 0; argv_ok[i]; i++)
        cr_expect_str_eq(out->argv[i], argv_ok[i]);
    cr_expect_null(out->argv[4]);
    cr_expect_str_eq(out->envp[0], "PATH=/bin");
    cr_expect_str_eq(out->envp[1], "HOME=/");
    cr_expect_null(out->envp[2]);
    cr_expect_eq(out->uid, 65534);
    cr_expect_eq(out->gid, 65534);
    cr_expect(out->host_net);
    free(out);
    free(blob);
}

Test(spawn, spec_empty_env_round_trips)
{
    static const char *const none[] = {NULL};
    struct spawn_spec in = sample(), *out = NULL;
    void *blob = NULL;
    size_t len = 0;

    in.envp = none;
    in.host_net = false;
    cr_assert_eq(spawn_spec_pack(&in, &blob, &len), 0);
    cr_assert_eq(spawn_spec_parse(blob, len, &out), 0);
    cr_expect_null(out->envp[0]);
    cr_expect_not(out->host_net);
    free(out);
    free(blob);
}

Test(spawn, pack_rejects_missing_fields)
{
    static const char *const no_argv[] = {NULL};
    struct spawn_spec in = sample();
    void *blob = NULL;
    size_t len = 0;

    in.path = NULL;
    cr_expect_eq(spawn_spec_pack(&in, &blob, &len), -EINVAL);
    in = sample();
    in.argv = no_argv;
    cr_expect_eq(spawn_spec_pack(&in, &blob, &len), -EINVAL);
    in = sample();
    in.envp = NULL;
    cr_expect_eq(spawn_spec_pack(&in, &blob, &len), -EINVAL);
}

Test(spawn, parse_rejects_every_truncation_and_trailing_bytes)
{
    struct spawn_spec in = sample(), *out = NULL;
    char *blob = NULL, *big;
    size_t len = 0;

    cr_assert_eq(spawn_spec_pack(&in, (void **)&blob, &len), 0);
    for (size_t n = 0; n < len; n++) {
        cr_expect_eq(spawn_spec_parse(blob, n, &out), -EBADMSG, "prefix of %zu bytes parsed", n);
    }
    big = malloc(len + 1);
    memcpy(big, blob, len);
    big[len] = 0;
    cr_expect_eq(spawn_spec_parse(big, len + 1, &out), -EBADMSG);
    free(big);
    free(blob);
}

Test(spawn, parse_rejects_corruption)
{
    struct spawn_spec in = sample(), *out = NULL;
    char *blob = NULL;
    size_t len = 0;

    cr_assert_eq(spawn_spec_pack(&in, (void **)&blob, &len), 0);
    /* Bad magic. */
    blob[0] ^= 0xff;
    cr_expect_eq(spawn_spec_parse(blob, len, &out), -EBADMSG);
    blob[0] ^= 0xff;
    /* An embedded NUL inside the id (first string, after 16 bytes of header + 4 of length). */
    blob[16 + 4 + 2] = '\0';
    cr_expect_eq(spawn_spec_parse(blob, len, &out), -EBADMSG);
    free(blob);
    /* Every single-byte flip either parses to something self-consistent or is refused: never
     * a crash (ASan watches). */
    cr_assert_eq(spawn_spec_pack(&in, (void **)&blob, &len), 0);
    for (size_t i = 0; i < len; i++) {
        blob[i] ^= 0x5a;
        if (spawn_spec_parse(blob, len, &out) == 0)
            free(out);
        blob[i] ^= 0x5a;
    }
    free(blob);
}

Test(spawn, step_names_cover_the_enum)
{
    for (int s = 0; s < SHIM_STEP__MAX; s++)
        cr_expect_str_neq(spawn_step_name(s), "unknown step", "step %d has no name", s);
    cr_expect_str_eq(spawn_step_name(SHIM_STEP__MAX), "unknown step");
    cr_expect_str_eq(spawn_step_name(-1), "unknown step");
}

Test(spawn, error_messages_in_plain_words)
{
    char buf[256];

    spawn_format_error(SHIM_STEP_EXEC, ENOENT, "/bin/nope", "/", false, false, buf, sizeof(buf));
    cr_expect_str_eq(buf, "'/bin/nope': no such file or directory");
    spawn_format_error(SHIM_STEP_EXEC, EACCES, "/etc/passwd", "/", false, true, buf, sizeof(buf));
    cr_expect_str_eq(buf, "'/etc/passwd': not executable");
    spawn_format_error(SHIM_STEP_EXEC, EACCES, "/etc", "/", true, false, buf, sizeof(buf));
    cr_expect_str_eq(buf, "'/etc': is a directory");
    spawn_format_error(SHIM_STEP_CHDIR, ENOENT, "/bin/true", "/nope", false, false, buf,
                       sizeof(buf));
    cr_expect_str_eq(buf, "working directory '/nope': No such file or directory");
    spawn_format_error(SHIM_STEP_MOUNT_PROC, EPERM, "/bin/true", "/", false, false, buf,
                       sizeof(buf));
    cr_expect_str_eq(buf, "job setup failed at step 'mount /proc': Operation not permitted");
}
