/* cloudrepo.h - a backup repository kept in a cloud location (s3, azure, local): the
 * repository is worked on in a local folder (a cache in ferry's data folder) by the same
 * code as any other, which is brought up to date from the cloud before a run (pull) and
 * whose new files go up after it (push).
 *
 * A repository's files are immutable and content-named (docs/backup.md), so a name is
 * the whole truth about a file: pull fetches the names the cache lacks and drops the ones
 * the cloud no longer has; push sends what the cloud lacks in the order that keeps the
 * repository readable at every moment: config, packs, indexes, and snapshots last (a
 * reader never sees a snapshot whose packs are missing); then, after a prune, removes
 * what the cache no longer has: snapshots first, then indexes, then packs. Temporary
 * files, the lock file and damaged manifests set aside stay local.
 *
 * The caller holds the repository for the whole pull, run and push (a lease in the
 * database, so two nodes sharing the cloud location cannot interleave), and push asks it
 * (fence) before every write, so a run that lost the lease writes nothing more. */
#ifndef FERRY_BACKUP_CLOUDREPO_H
#define FERRY_BACKUP_CLOUDREPO_H

#include <stdbool.h>
#include <stdint.h>

#include "backup/pack.h"
#include "cloud/cloud.h"
#include "ferry.h"
#include "store/store.h"

/* What a pull fetches besides config and snapshots (which it always does). */
#define CLOUDREPO_INDEX 1u /* index files: what create deduplicates against */
#define CLOUDREPO_PACKS 2u /* packs: what restore and prune read */

struct cloudrepo {
    struct cloud *cloud;
    const char *container;   /* the bucket, container or folder cloud was opened on */
    const char *prefix;      /* of every key: "" or ending in '/' */
    const char *dir;         /* the local copy: absolute, created when missing */
    struct store_conn *db;   /* where the objects stored are recorded (cloud/usage.h) */
    void (*tick)(void *ctx); /* called after each file, to keep a lease (may be NULL) */
    /* Called before each file push sends or removes (fencing): FERRY_ERR (with err) when
     * the run may no longer write, which ends the push there. May be NULL. */
    int (*fence)(void *ctx, struct err *err);
    void *ctx;
    /* what moved, for the metrics */
    uint64_t bytes_up, bytes_down;
    unsigned files_up, files_down, files_removed;
};

/* Brings dir up to date with the cloud: fetches the missing files of the kinds in what,
 * removes the local files the cloud no longer has. ERR_CLOUD when the provider fails. */
int cloudrepo_pull(struct cloudrepo *cr, unsigned what, struct err *err);

/* Fetches the packs that version id uses and the cache lacks (after a pull of the
 * indexes and snapshots; key decrypts them, NULL for a plaintext repository), so a
 * restore reads only what it needs. ERR_NOT_FOUND when there is no such version. */
int cloudrepo_pull_version(struct cloudrepo *cr, const uint8_t *key, const char *id,
                           struct err *err);

/* Fetches the packs of ix marked in needed that the cache lacks (a prune's partly used
 * packs: the only ones it reads). */
int cloudrepo_fetch_packs(struct cloudrepo *cr, const struct pack_index *ix, const bool *needed,
                          struct err *err);

/* Sends what the cloud lacks (config, packs, indexes, snapshots, in that order); with
 * remove, then deletes what dir no longer has (snapshots, indexes, packs; a pack only
 * when its index is gone too, since the cache holds only the packs a run needed). */
int cloudrepo_push(struct cloudrepo *cr, bool remove, struct err *err);

#endif
