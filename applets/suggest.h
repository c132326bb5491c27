#pragma once
/* "Did you mean": the words a mistyped one was likely meant as, among the ones that exist
 * (commands, flags, values). Pure; thread-safe. */
#include <stddef.h>

/* Up to SUGGEST_MAX candidates are offered; more are no help. */
#define SUGGEST_MAX 3

/* The candidates word was likely meant as, into ret (at most SUGGEST_MAX, in cands' order):
 * those that word is a prefix of when they are 1 to SUGGEST_MAX, else those closest to it by
 * edit distance (insertions, deletions, substitutions and swaps of two neighbours, case
 * ignored) when that distance is at most 2 and less than word's length. Returns how many. */
size_t suggest_words(const char *word, const char *const *cands, size_t n, const char **ret);
/* "; did you mean 'a'?" or "; did you mean 'a' or 'b'?" (each candidate after prefix, e.g.
 * "--") into buf, or "" when there is none; returns buf. */
const char *suggest_text(const char *word, const char *const *cands, size_t n, const char *prefix,
                         char *buf, size_t cap);
