/* crashpoint.h - named points where the test build can die as a kill -9 would, to test
 * what survives a crash there (tests/api/test_crash.py and test_crash_long.py).
 * FERRY_CRASH_AT=NAME kills the process the first time NAME is reached, NAME:N the N-th
 * time. Compiled only with the CMake option FERRY_CRASH_POINTS (test builds); elsewhere
 * CRASH_AT is nothing. */
#ifndef FERRY_CRASHPOINT_H
#define FERRY_CRASHPOINT_H

#ifdef FERRY_CRASH_POINTS
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static inline void crashpoint_hit(const char *name)
{
    static atomic_int hits; /* test builds only: counts hits of the chosen point */
    const char *want = getenv("FERRY_CRASH_AT");
    size_t n = strlen(name);
    if (!want || strncmp(want, name, n) != 0 || (want[n] != '\0' && want[n] != ':'))
        return;
    int nth = want[n] == ':' ? atoi(want + n + 1) : 1;
    if (atomic_fetch_add(&hits, 1) + 1 >= nth)
        raise(SIGKILL);
}
#define CRASH_AT(name) crashpoint_hit(name)
#else
#define CRASH_AT(name) ((void)0)
#endif

#endif
