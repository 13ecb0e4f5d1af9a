/* check.h - verifying a backup repository and repairing it: what interrupted runs left
 * (packs without an index, temporary files), damaged or missing packs and indexes,
 * damaged manifests, and which files of which versions a damage touches. */
#ifndef FERRY_BACKUP_CHECK_H
#define FERRY_BACKUP_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "backup/repo.h"
#include "ferry.h"

struct check_report {
    size_t n_versions, n_packs, n_chunks;
    json_t *leftovers; /* array of strings: what interrupted runs left (not damage) */
    json_t *problems;  /* array of strings: damage */
    json_t *damaged;   /* array of {versionId, path, pack}: files a damage touches */
    json_t *repaired;  /* array of strings: what repair did */
};

void check_report_init(struct check_report *rep);
void check_report_cleanup(struct check_report *rep);
json_t *check_report_json(const struct check_report *rep);
/* True when nothing is damaged (leftovers are not damage). */
bool check_report_ok(const struct check_report *rep);

/* Removes what interrupted runs left: packs that have no index file and temporary
 * files. The caller holds the exclusive lock. Adds to rep->repaired when rep is given. */
int check_remove_leftovers(struct repo *r, struct check_report *rep, struct err *err);

/* Checks the repository under its shared lock; with read_data every chunk is read,
 * decrypted and hashed. Damage is reported in rep, not as an error. */
int check_run(struct repo *r, bool read_data, struct check_report *rep, struct err *err);

/* Makes the repository consistent under its exclusive lock: removes leftovers, drops
 * damaged chunks and indexes of missing packs from the index (a later backup of the same
 * files stores them again), sets damaged manifests aside, then checks again into rep. */
int check_repair(struct repo *r, struct check_report *rep, struct err *err);

#endif
