/* progress.h - progress of long client work: on a terminal one line redrawn in place
 * (bytes, items, rate, ETA; at most 10 times a second, the line cleared before it is
 * written again so nothing flickers or lingers), otherwise JSON lines (at most 10
 * a second, and the last). */
#ifndef FERRY_CLI_PROGRESS_H
#define FERRY_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
    const char *what; /* e.g. "download docs/a.pdf" */
    bool tty;         /* draw a bar; else JSON lines */
    int64_t started_ms, last_ms, first_done;
    int items_done, items_total;
    int64_t last_done, last_total; /* as last reported */
    bool counts; /* done and total count items, not bytes (set after progress_start) */
};

/* Starts: a bar when stderr is a terminal and json is false. */
void progress_start(struct progress *p, const char *what, bool json, int items_total);

/* Reports done of total bytes (total < 0: unknown); final draws regardless of the rate. */
void progress_update(struct progress *p, int64_t done, int64_t total, bool final);

/* Ends the bar's line (a newline on a terminal). */
void progress_end(struct progress *p);

#endif
