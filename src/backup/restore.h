/* restore.h - writing a version back: byte-identical files (holes for runs of zeros),
 * folders and symlinks, with modes, mtimes and (as root) owners, every chunk verified
 * against its hash. Never writes outside the target folder. */
#ifndef FERRY_BACKUP_RESTORE_H
#define FERRY_BACKUP_RESTORE_H

#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

#include "backup/repo.h"
#include "ferry.h"

struct restore_options {
    const char *version_id;
    const char *target; /* a folder; made when missing */
    repo_progress_fn progress;
    void *progress_ctx;
    const atomic_bool *stop;
};

struct restore_result {
    uint64_t files, bytes, entries;
    json_t *damaged; /* array of {path, error}: files that could not be restored whole */
};

void restore_result_cleanup(struct restore_result *res);

/* Restores a version under r's shared lock. When some files use damaged chunks the
 * others are still restored, res->damaged lists them, and the result is an error naming
 * them (ERR_INTERNAL). ERR_NOT_FOUND for an unknown version. */
int restore_run(struct repo *r, const struct restore_options *o, struct restore_result *res,
                struct err *err);

/* The newest version created at or before at_ms (INT64_MAX: the newest of all).
 * ERR_NOT_FOUND when there is none. */
int restore_pick(struct repo *r, int64_t at_ms, char id[37], int64_t *created_ms, struct err *err);

#endif
