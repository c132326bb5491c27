/* core/strbuf: appends, growth past the first allocation, printf of any length, the sticky
 * allocation failure and handing the text away. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

Test(strbuf, starts_empty_and_appends)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;

    cr_assert_eq(strbuf_new(&b), 0);
    cr_expect_str_eq(strbuf_str(b), "");
    cr_expect_eq(strbuf_len(b), 0);
    cr_expect_eq(strbuf_puts(b, "key"), 0);
    cr_expect_eq(strbuf_putn(b, "=value\nignored", 7), 0);
    cr_expect_eq(strbuf_printf(b, "n=%d %s\n", -42, "x"), 0);
    cr_expect_str_eq(strbuf_str(b), "key=value\nn=-42 x\n");
    cr_expect_eq(strbuf_len(b), strlen("key=value\nn=-42 x\n"));
    cr_expect_not(strbuf_is_failed(b));
}

Test(strbuf, grows_by_small_appends_and_keeps_every_byte)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    size_t n = 100000;

    cr_assert_eq(strbuf_new(&b), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(strbuf_putn(b, &"0123456789"[i % 10], 1), 0);
    cr_assert_eq(strbuf_len(b), n);
    cr_expect_eq(strlen(strbuf_str(b)), n, "NUL-terminated after every growth");
    for (size_t i = 0; i < n; i++)
        if (strbuf_str(b)[i] != (char)('0' + i % 10))
            cr_assert_fail("byte %zu is '%c'", i, strbuf_str(b)[i]);
}

Test(strbuf, one_append_larger_than_a_doubling)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    _cleanup_free_ char *big = malloc(5000);

    cr_assert_not_null(big);
    memset(big, 'z', 5000);
    cr_assert_eq(strbuf_new(&b), 0);
    cr_expect_eq(strbuf_puts(b, "a"), 0);
    cr_expect_eq(strbuf_putn(b, big, 5000), 0);
    cr_expect_eq(strbuf_puts(b, "b"), 0);
    cr_assert_eq(strbuf_len(b), 5002);
    cr_expect_eq(strbuf_str(b)[0], 'a');
    cr_expect_eq(strbuf_str(b)[5000], 'z');
    cr_expect_str_eq(strbuf_str(b) + 5001, "b");
}

Test(strbuf, printf_longer_than_the_free_room_is_not_cut)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    char want[1200];

    memset(want, 'q', sizeof(want) - 1);
    want[sizeof(want) - 1] = '\0';
    cr_assert_eq(strbuf_new(&b), 0);
    /* the first print fits the first allocation, the second cannot fit what is left */
    cr_expect_eq(strbuf_printf(b, "%s", "head:"), 0);
    cr_expect_eq(strbuf_printf(b, "%s|%zu", want, sizeof(want) - 1), 0);
    cr_assert_eq(strbuf_len(b), 5 + 1199 + 1 + 4);
    cr_expect_eq(strncmp(strbuf_str(b), "head:", 5), 0);
    cr_expect_eq(strncmp(strbuf_str(b) + 5, want, 1199), 0);
    cr_expect_str_eq(strbuf_str(b) + 5 + 1199, "|1199");
    /* and an empty print changes nothing */
    cr_expect_eq(strbuf_printf(b, "%s", ""), 0);
    cr_expect_eq(strbuf_len(b), 5 + 1199 + 1 + 4);
}

Test(strbuf, allocation_failure_is_sticky_and_reported_once_at_the_end)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    char *s = (char *)0x1;

    cr_assert_eq(strbuf_new(&b), 0);
    cr_assert_eq(strbuf_puts(b, "kept"), 0);
    /* a size no allocation can hold: fails before touching the (bogus) source */
    cr_expect_eq(strbuf_putn(b, "x", SIZE_MAX), -ENOMEM);
    cr_expect(strbuf_is_failed(b));
    cr_expect_eq(strbuf_puts(b, "more"), -ENOMEM);
    cr_expect_eq(strbuf_printf(b, "%d", 1), -ENOMEM);
    cr_expect_str_eq(strbuf_str(b), "kept", "what was there stays readable");
    cr_expect_eq(strbuf_len(b), 4);
    cr_expect_eq(strbuf_detach(b, &s), -ENOMEM);
    cr_expect_eq(s, (char *)0x1, "ret_str written on failure");
}

Test(strbuf, detach_hands_the_text_over_and_empties_the_buffer)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    _cleanup_free_ char *s1 = NULL, *s2 = NULL, *s3 = NULL;

    cr_assert_eq(strbuf_new(&b), 0);
    cr_assert_eq(strbuf_detach(b, &s1), 0);
    cr_expect_str_eq(s1, "", "an empty buffer detaches as an allocated \"\"");
    cr_assert_eq(strbuf_printf(b, "v=%u", 7u), 0);
    cr_assert_eq(strbuf_detach(b, &s2), 0);
    cr_expect_str_eq(s2, "v=7");
    cr_expect_eq(strbuf_len(b), 0);
    cr_expect_str_eq(strbuf_str(b), "");
    cr_assert_eq(strbuf_puts(b, "again"), 0);
    cr_assert_eq(strbuf_detach(b, &s3), 0);
    cr_expect_str_eq(s3, "again");
    cr_expect_str_eq(s2, "v=7", "the first text is the caller's, untouched");
}

Test(strbuf, free_is_null_safe)
{
    strbuf_free(NULL);
}
