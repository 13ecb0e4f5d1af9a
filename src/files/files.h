/* files.h - file entries: the "files" namespace of the change feed (DESIGN.md section
 * 2). An entry names a path, the SHA-256 of its content (a blob), its size and a
 * version that grows with every upload or deletion of that path. A deleted file keeps
 * its entry, marked deleted, so its version carries on if the path comes back. Each
 * entry belongs to a namespace, its owner's or the common one (files/filescope.h): two
 * users each have their own file at one path. */
#ifndef FERRY_FILES_H
#define FERRY_FILES_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "files/filescope.h"
#include "files/uploads.h"
#include "store/store.h"

struct file_entry {
    char *owner; /* the namespace: a user id, or NULL for the common one */
    char *path;
    int64_t size;
    char sha256[65];
    int64_t version;
    bool deleted;
    int64_t updated_at; /* ms since the epoch */
};

void files_entry_clear(struct file_entry *e);

/* The entry for path in namespace owner (NULL: the common one); *found is false when
 * there is none (a deleted entry is found, with e->deleted set). */
int files_get(struct store_conn *c, const char *owner, const char *path, struct file_entry *e,
              bool *found, struct err *err);

/* Makes path's content (in namespace owner) the blob sha256 (size bytes): a new entry,
 * or the next version of an existing one. device (NULL for none) is recorded as the
 * change's origin. In its own transaction; *e gets the new entry. */
int files_commit(struct store_conn *c, const char *owner, const char *path, const char *sha256,
                 int64_t size, const char *device, struct file_entry *e, struct err *err);

/* Commits finished upload u (u->path, u->device_id) as the entry of namespace owner
 * naming blob sha256, and in the same transaction marks the upload complete with that
 * entry as its result and drops its chunk records and blob claims: a crash leaves
 * either both or neither. ERR_CONFLICT when the upload was completed meanwhile.
 * *result gets the entry as JSON text (the caller frees). */
int files_commit_upload(struct store_conn *c, const struct upload *u, const char *owner,
                        const char *sha256, int64_t size, struct file_entry *e, char **result,
                        struct err *err);

/* Marks path (in namespace owner) deleted (ERR_NOT_FOUND when it has no live entry). */
int files_delete(struct store_conn *c, const char *owner, const char *path, const char *device,
                 struct file_entry *e, struct err *err);

/* Live entries that scope sees whose path starts with prefix (any when empty), in path
 * order after `after` (NULL: from the start), at most limit. For an admin each entry
 * also names its "owner" (null: the common namespace), and with only_owner set the
 * list keeps to that namespace ("": the common one); an admin's page also holds every
 * other namespace's entry at its last path (so the next page may start after it). */
int files_list(struct store_conn *c, const struct filescope *scope, const char *only_owner,
               const char *prefix, const char *after, int limit, json_t **out, struct err *err);

/* Whether a live entry or an upload's claim needs blob sha256 (a deleted entry's
 * content may go). */
int files_blob_used(struct store_conn *c, const char *sha256, bool *used, struct err *err);

/* The entry as the API shows it: path, size, sha256, version, deleted, updatedAt. */
json_t *files_entry_json(const struct file_entry *e);

#endif
