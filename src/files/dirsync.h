/* dirsync.h - one-way directory sync (EonaCat.Sync's POST /sync/files): makes a target
 * folder hold what a source folder holds, like `rsync -a` but atomic per file.
 *
 * - A file is copied when the target lacks it or differs in size or modification time
 *   (full_compare: in content); unchanged files are left alone.
 * - Copies go to a temporary file beside the target, which takes the source's mode and
 *   modification time and is renamed into place only after its bytes are on disk, so a
 *   crash leaves either the old file or the new one. Renames are done in batches, after
 *   one flush for a large batch, which keeps this as fast as rsync (which never
 *   flushes).
 * - A target file newer than its source was changed on the target side: it is kept and
 *   counted as a conflict.
 * - Every path is opened beneath its root with openat2(RESOLVE_BENEATH): a symbolic link
 *   is followed only when it stays inside the source folder, never on the target side,
 *   and a folder swapped for a link while the sync runs cannot lead out.
 * - A file that changes while it is copied is reported and not copied.
 * - Files are copied by a few threads, each taking one folder's files at a time. */
#ifndef FERRY_DIRSYNC_H
#define FERRY_DIRSYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"

struct dirsync_progress {
    int64_t files_total, bytes_total; /* of the source */
    int64_t files_done, bytes_done;   /* settled: on disk in place, unchanged, or failed */
};

struct dirsync_options {
    const char *source, *target;           /* absolute, resolved; target is created if missing */
    const char *source_root, *target_root; /* the file roots (resolved) that hold them */
    bool delete_missing;                   /* remove target entries the source lacks */
    bool verify;                           /* compare SHA-256 of source and copy before renaming */
    bool full_compare;                     /* decide "unchanged" by content, not size and time */
    const char *const *exclude;            /* fnmatch patterns, matched on the path and the name */
    size_t n_exclude;
    /* Called after each file (the callee throttles); may be NULL. */
    void (*progress)(void *ctx, const struct dirsync_progress *p);
    void *ctx;
    const atomic_bool *stop; /* when it becomes true the sync ends early (may be NULL) */
};

struct dirsync_result {
    int64_t copied, deleted, unchanged, conflicts;
    int64_t bytes_copied;
    json_t *errors;       /* strings: "path: what went wrong" */
    json_t *conflicts_at; /* {path, reason}: target entries kept as they were */
};

/* Runs the sync. FERRY_ERR only when it cannot run at all (a root cannot be opened);
 * problems with single files are in r->errors. The caller frees r->errors and
 * r->conflicts_at. */
int dirsync_run(const struct dirsync_options *o, struct dirsync_result *r, struct err *err);

#endif
