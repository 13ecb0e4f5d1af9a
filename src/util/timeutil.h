/* timeutil.h - wall-clock and monotonic time, ISO-8601 formatting. */
#ifndef FERRY_TIMEUTIL_H
#define FERRY_TIMEUTIL_H

#include <stdint.h>
#include <time.h>

/* Milliseconds since the Unix epoch. */
int64_t time_now_ms(void);
/* Microseconds from a monotonic clock, for durations. */
int64_t time_mono_us(void);
/* The time ms milliseconds from now on clock (CLOCK_REALTIME or CLOCK_MONOTONIC, the
 * clock the condition variable waited on uses), for pthread_cond_timedwait. */
struct timespec time_after_ms(clockid_t clock, int64_t ms);
/* Formats ms since the epoch as UTC "2024-01-15T10:30:00Z" (or with ".123" when
 * with_ms). out must hold 32 bytes. */
void time_iso8601(int64_t ms, int with_ms, char out[32]);

/* Parses UTC "YYYY-MM-DDTHH:MM:SS[.fff]Z" (or "+00:00") into ms since the epoch.
 * Returns 0, or -1 for text of another form. */
int time_parse_iso8601(const char *text, int64_t *ms);

#endif
