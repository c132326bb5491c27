#include "suggest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Long enough for any command, flag or value name; longer words are never suggested. */
#define SUGGEST_LEN 64

/* The optimal string alignment distance of a and b, case ignored (a swap of two neighbours
 * counts one: "stauts" is 1 from "status"). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t d[SUGGEST_LEN + 1][SUGGEST_LEN + 1];

    if (la > SUGGEST_LEN || lb > SUGGEST_LEN)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

size_t suggest_words(const char *word, const char *const *cands, size_t n, const char **ret)
{
    size_t len = strlen(word), found = 0, best = SIZE_MAX;

    if (!len)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strncasecmp(cands[i], word, len) == 0 && strlen(cands[i]) > len &&
            found++ < SUGGEST_MAX)
            ret[found - 1] = cands[i];
    if (found >= 1 && found <= SUGGEST_MAX)
        return found;

    found = 0;
    for (size_t i = 0; i < n; i++) {
        size_t d = distance(word, cands[i]);
        if (d == 0 || d > 2 || d >= len || d > best)
            continue;
        if (d < best) {
            best = d;
            found = 0;
        }
        if (found < SUGGEST_MAX)
            ret[found++] = cands[i];
    }
    return found;
}

const char *suggest_text(const char *word, const char *const *cands, size_t n, const char *prefix,
                         char *buf, size_t cap)
{
    const char *s[SUGGEST_MAX];
    size_t k = suggest_words(word, cands, n, s), len;

    if (!cap)
        return buf;
    buf[0] = '\0';
    if (!k)
        return buf;
    len = (size_t)snprintf(buf, cap, "; did you mean");
    for (size_t i = 0; i < k && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s'%s%s'",
                                i == 0       ? " "
                                : i + 1 == k ? " or "
                                             : ", ",
                                prefix, s[i]);
    if (len < cap)
        (void)snprintf(buf + len, cap - len, "?");
    return buf;
}
