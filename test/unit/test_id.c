/* core/id: what counts as a job id (canonical lower-case UUID text). */
#include <criterion/criterion.h>

#include "core/id.h"

Test(id, canonical_lower_case_uuids_only)
{
    cr_expect(id_is_valid("01234567-89ab-4def-8123-456789abcdef"));
    cr_expect(id_is_valid("00000000-0000-0000-0000-000000000000"));
    cr_expect_not(id_is_valid(""));
    cr_expect_not(id_is_valid("not-a-uuid"));
    cr_expect_not(id_is_valid("0123456789abcdef0123456789abcdef0123"));  /* no dashes */
    cr_expect_not(id_is_valid("01234567-89AB-4def-8123-456789abcdef"));  /* upper case */
    cr_expect_not(id_is_valid("01234567-89ab-4def-8123-456789abcdef0")); /* too long */
    cr_expect_not(id_is_valid("01234567-89ab-4def-8123-456789abcde"));   /* too short */
    cr_expect_not(id_is_valid("01234567-89ab-4def-8123-456789abcdeg"));  /* not hex */
    cr_expect_not(id_is_valid("01234567089ab-4def-8123-456789abcdef"));  /* dash moved */
    cr_expect_not(id_is_valid("{1234567-89ab-4def-8123-456789abcdef}"));
}
