/* Every test of test_job_stops.c (failures to start, stops, kills, the server's death) again, on
 * shims started ahead of time (job_runner_config.prespawn_shims); failed_start_leaves_no_fd is
 * left out there (the pool refills in the background) and test_job_pool.c has its own. */
#define TEST_PRESPAWN 2
#include "test_job_stops.c"
