/* core/log: the JSON escaper behind --log-format json and the audit log. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/log.h"

Test(log, json_escape_escapes_quotes_controls_and_high_bytes)
{
    char buf[64];

    cr_expect_eq(log_json_escape(buf, sizeof(buf), "a\"b\\c\n\x7f\xc3\xa9"), 31);
    cr_expect_str_eq(buf, "a\\\"b\\\\c\\u000a\\u007f\\u00c3\\u00a9");
}

Test(log, json_escape_cuts_between_escapes_never_inside_one)
{
    char buf[8];

    /* "ab" then \u00ff needs 2 + 6 = 8 bytes plus the NUL: the escape is left out whole. */
    cr_expect_eq(log_json_escape(buf, sizeof(buf), "ab\xff"), 8);
    cr_expect_str_eq(buf, "ab");
    /* nothing after a dropped escape either, even a byte that would fit */
    cr_expect_eq(log_json_escape(buf, sizeof(buf), "abc\xffz"), 10);
    cr_expect_str_eq(buf, "abc");
    cr_expect_eq(log_json_escape(buf, 1, "x"), 1);
    cr_expect_str_eq(buf, "");
}
