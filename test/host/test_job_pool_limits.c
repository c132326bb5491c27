/* Every test of test_job_limits.c (limits, the job's cgroup made ahead) again, on shims started
 * ahead of time (job_runner_config.prespawn_shims). */
#define TEST_PRESPAWN 2
#include "test_job_limits.c"
