/* treesync.h - a folder tree copied to or from a cloud location (EonaCat.Sync's sessions
 * between a folder and an s3, azure or local location): every file becomes the object
 * PREFIX + its relative path, and back.
 *
 * - Bytes stream through cloud.h: uploads go from the file's descriptor (in parts for large
 *   files, so a session started again after a failure continues a file's upload where it
 *   stopped), downloads into a partial file beside the target named after the object's
 *   etag, continued on the next run, then renamed into place with the object's date.
 * - What was transferred is recorded per pair (migration 14): the file's size and
 *   modification time with the object's etag. An Incremental run skips a file whose
 *   record still matches both sides; Full transfers everything again.
 * - Folders are walked and written one component at a time with O_NOFOLLOW beneath the
 *   folder's own descriptor: symbolic links are never followed, on either side, and an
 *   object key with "..", a leading "/" or control bytes is refused, not written.
 * - Every upload carries the file's SHA-256 as the object's metadata "sha256"; with verify,
 *   uploads are read back and downloads checked against it, and a mismatch fails the file.
 * - delete_missing removes, after the transfers, the target's files the source lacks: only
 *   objects under the prefix, or files beneath the folder (never through a link), neither
 *   excluded ones; an upload whose folder could not be read in full removes nothing.
 * - The provider failing (down, refusing) ends the run with its error; a single file
 *   that cannot be read or written is reported in the result and the run goes on. */
#ifndef FERRY_TREESYNC_H
#define FERRY_TREESYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cloud/cloud.h"
#include "store/store.h"

struct treesync_progress {
    int64_t files_total, bytes_total; /* of the side copied from */
    int64_t files_done;               /* settled: transferred, unchanged or failed */
    int64_t bytes_done;  /* of the files settled, plus what moved of the current one so far */
    const char *current; /* the file being transferred now (relative), or NULL */
};

struct treesync_options {
    struct cloud *cloud;
    const char *container;      /* the bucket, container or folder cloud was opened on */
    const char *prefix;         /* of every key: "" or ending in '/' */
    const char *folder;         /* absolute, resolved and confined; created when missing */
    bool upload;                /* folder to cloud; else cloud to folder */
    bool incremental;           /* skip files whose record matches both sides */
    const char *const *exclude; /* fnmatch patterns, matched on the path and the name */
    size_t n_exclude;
    bool delete_missing; /* afterwards, remove the target's files the source lacks */
    /* folders of the target (relative, no final '/') delete_missing leaves alone: other
     * configured locations inside this one's, whose files are not this pair's */
    const char *const *spare;
    size_t n_spare;
    bool verify; /* check each transferred file's SHA-256 (see treesync.c) */
    /* Called before and after each file, and as the current file's bytes move (the callee
     * throttles); may be NULL. */
    void (*progress)(void *ctx, const struct treesync_progress *p);
    void *ctx;
    const atomic_bool *stop; /* when it turns true the run ends early (may be NULL) */
};

struct treesync_result {
    int64_t copied, unchanged, bytes, deleted;
    int64_t parts_resumed; /* upload parts an earlier run had already sent */
    int64_t bytes_resumed; /* download bytes an earlier run had already written */
    json_t *errors;        /* strings: "path: what went wrong" */
};

/* Runs the transfer, keeping the pair's records in c. FERRY_ERR when it cannot run or the
 * provider fails (err says why; what was done stays done and recorded); problems with
 * single files are in r->errors, which the caller frees. */
int treesync_run(struct store_conn *c, const struct treesync_options *o, struct treesync_result *r,
                 struct err *err);

#endif
