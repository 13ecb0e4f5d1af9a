/* archive.h - making a backup version: walks a folder, cuts its files into chunks,
 * stores the chunks the repository does not hold yet, and writes the version's manifest
 * last, so a run that dies leaves no half version. */
#ifndef FERRY_BACKUP_ARCHIVE_H
#define FERRY_BACKUP_ARCHIVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backup/repo.h"
#include "backup/snapshot.h"
#include "ferry.h"

struct archive_options {
    const char *source; /* a folder */
    bool full; /* re-read every file (else only those whose size, mtime or inode changed) */
    const char *description;
    int64_t feed_cursor; /* the change-feed cursor to record, or -1 */
    repo_progress_fn progress;
    void *progress_ctx;
    const atomic_bool *stop; /* set to end the run early (ERR_UNAVAILABLE); may be NULL */
};

/* Makes a version of o->source in r, taking r's exclusive lock for the run (and
 * removing what an earlier interrupted run left). On success *out is the new version
 * (the caller clears it). The version is incremental when asked and an earlier version
 * of the same folder exists; otherwise it is full. */
int archive_create(struct repo *r, const struct archive_options *o, struct snapshot *out,
                   struct err *err);

#endif
