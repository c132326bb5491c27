/* "Did you mean" (applets/suggest.c): prefixes, edit distance with swaps, ties, and words too
 * far or too short to guess from. */
#include <criterion/criterion.h>
#include <string.h>

#include "applets/suggest.h"

static const char *const verbs[] = {"certs",  "completion", "context", "list",  "metrics",
                                    "ping",   "query",      "run",     "serve", "start",
                                    "status", "stop",       "stream"};
#define N_VERBS (sizeof(verbs) / sizeof(verbs[0]))

static const char *text(const char *word, const char *prefix)
{
    static char buf[256];
    return suggest_text(word, verbs, N_VERBS, prefix, buf, sizeof(buf));
}

Test(suggest, typos_and_swaps)
{
    cr_expect_str_eq(text("stauts", ""), "; did you mean 'status'?");
    cr_expect_str_eq(text("strat", ""), "; did you mean 'start'?");
    cr_expect_str_eq(text("contxt", ""), "; did you mean 'context'?");
    cr_expect_str_eq(text("lsit", ""), "; did you mean 'list'?");
    cr_expect_str_eq(text("STATUS2", ""), "; did you mean 'status'?"); /* case ignored */
    cr_expect_str_eq(text("pnig", "--"), "; did you mean '--ping'?");
}

Test(suggest, prefixes)
{
    cr_expect_str_eq(text("comp", ""), "; did you mean 'completion'?");
    cr_expect_str_eq(text("sta", ""), "; did you mean 'start' or 'status'?");
    cr_expect_str_eq(text("con", ""), "; did you mean 'context'?");
    cr_expect_str_eq(text("co", ""), "; did you mean 'completion' or 'context'?");
    /* more prefixes than are worth listing, and no word close enough */
    cr_expect_str_eq(text("s", ""), "");
    cr_expect_str_eq(text("st", ""), "");
}

Test(suggest, nothing_close)
{
    cr_expect_str_eq(text("xyzzy", ""), "");
    cr_expect_str_eq(text("", ""), "");
    cr_expect_str_eq(text("ab", ""), ""); /* distance 2 from a word of two letters is anything */
    cr_expect_str_eq(text("status", ""), "");
}

Test(suggest, ties_are_all_offered)
{
    static const char *const c[] = {"server-host", "server-port"};
    const char *r[SUGGEST_MAX];
    cr_expect_eq(suggest_words("server-hots", c, 2, r), 1);
    cr_expect_str_eq(r[0], "server-host");
    cr_expect_eq(suggest_words("server-", c, 2, r), 2);
    static const char *const d[] = {"stop", "step", "stoq", "sxyz"};
    cr_expect_eq(suggest_words("stp", d, 4, r), 2); /* stop, step; stoq is 2 away */
    cr_expect_str_eq(r[0], "stop");
    cr_expect_str_eq(r[1], "step");
}

Test(suggest, long_words_are_safe)
{
    char word[300];
    memset(word, 'a', sizeof(word) - 1);
    word[sizeof(word) - 1] = '\0';
    cr_expect_str_eq(text(word, ""), "");
    char small[4];
    cr_expect_str_eq(suggest_text("stauts", verbs, N_VERBS, "", small, sizeof(small)), "; d");
}
