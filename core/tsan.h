#pragma once
/* RUNJOB_TSAN: 1 in a ThreadSanitizer build (gcc defines __SANITIZE_THREAD__, clang answers
 * __has_feature), else 0. The one place that asks; code that must work around TSan's
 * interceptors or state happens-before edges it cannot see tests `#if RUNJOB_TSAN`.
 * RUNJOB_ASAN, likewise for AddressSanitizer. */
#if defined(__SANITIZE_THREAD__)
#define RUNJOB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RUNJOB_TSAN 1
#endif
#endif
#ifndef RUNJOB_TSAN
#define RUNJOB_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define RUNJOB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RUNJOB_ASAN 1
#endif
#endif
#ifndef RUNJOB_ASAN
#define RUNJOB_ASAN 0
#endif
