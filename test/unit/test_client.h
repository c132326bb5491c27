/* Shared by test_client.c and test_client_flags.c: checks of JSON documents through python3. */
#pragma once
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Validates JSON with python3 -m json.tool. */
static inline bool json_valid(const char *doc)
{
    FILE *p = popen("python3 -m json.tool >/dev/null 2>&1", "w");
    cr_assert_not_null(p);
    fputs(doc, p);
    return pclose(p) == 0;
}

/* Runs a python expression over the JSON document; true when it prints "ok". */
static inline bool json_check(const char *doc, const char *expr)
{
    char path[] = "/tmp/runjob-test-json.XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
    close(fd);
    char cmd[2048];
    (void)snprintf(cmd, sizeof(cmd),
                   "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
                   "print(\"ok\" if (%s) else \"no\")' %s",
                   expr, path);
    FILE *p = popen(cmd, "r");
    char buf[16] = "";
    cr_assert_not_null(p);
    (void)!fgets(buf, sizeof(buf), p);
    pclose(p);
    unlink(path);
    return strncmp(buf, "ok", 2) == 0;
}
