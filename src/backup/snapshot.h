/* snapshot.h - a backup version's manifest: what the source folder held (paths, types,
 * modes, owners, mtimes, sizes, inodes, symlink targets, hard links, extended attributes,
 * the chunks of each file) and
 * the version's own facts (id, time, description, full or incremental, the change-feed
 * cursor). Stored as zstd-compressed JSON, sealed, one file per version under
 * snapshots/. */
#ifndef FERRY_BACKUP_SNAPSHOT_H
#define FERRY_BACKUP_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"

enum snap_type { SNAP_FILE, SNAP_DIR, SNAP_SYMLINK, SNAP_HARDLINK };

/* An extended attribute (any namespace the reading process could read). */
struct snap_xattr {
    char *name;
    uint8_t *value;
    size_t len;
};

struct snap_entry {
    char *path; /* relative to the source, "a/b" */
    enum snap_type type;
    uint32_t mode; /* permission bits (07777) */
    uint32_t uid, gid;
    int64_t mtime_ns;
    uint64_t size, inode;
    char *target;          /* symlinks: the link's text; hard links: the path of the earlier file
                              entry of this version that has the same inode */
    uint8_t (*chunks)[32]; /* files: their chunks in order */
    size_t n_chunks;
    struct snap_xattr *xattrs; /* files, folders and symlinks (a hard link shares its file's) */
    size_t n_xattrs;
};

struct snapshot {
    char id[37]; /* a UUID */
    int64_t created_ms;
    char *description, *source, *parent; /* parent: the version an incremental one read from */
    bool full;
    int64_t feed_cursor; /* -1 when no database was asked */
    uint64_t total_size, file_count, added_bytes;
    char **changed;
    size_t n_changed;
    struct snap_entry *entries;
    size_t n_entries, cap_entries;
};

void snapshot_clear(struct snapshot *s);

/* Appends an entry (the caller fills it; the snapshot owns its strings and chunks). */
struct snap_entry *snapshot_add(struct snapshot *s);
void snapshot_add_changed(struct snapshot *s, const char *path);
void snapshot_add_xattr(struct snap_entry *e, const char *name, const void *value, size_t len);

/* The version's summary in the API's shape (versionId, createdAt, totalSize, fileCount,
 * isFullBackup, and ferry's additions). */
json_t *snapshot_summary_json(const struct snapshot *s);

/* The summary and changedFiles: POST /backup/create's answer. */
json_t *snapshot_created_json(const struct snapshot *s);

/* Writes snapshots/ID.snap atomically; after it the version exists. */
int snapshot_save(const char *repo, const uint8_t *key, const struct snapshot *s, struct err *err);

/* Reads one version. ERR_NOT_FOUND when there is none with that id. */
int snapshot_load(const char *repo, const uint8_t *key, const char *id, struct snapshot *s,
                  struct err *err);

/* Reads every version's summary (no entries, no changedFiles), oldest first (*list
 * malloc'd, free with snapshot_list_free). A version that cannot be read is an error
 * naming it. */
int snapshot_list(const char *repo, const uint8_t *key, struct snapshot **list, size_t *n,
                  struct err *err);
void snapshot_list_free(struct snapshot *list, size_t n);

/* Removes a version's file (and syncs the folder). */
int snapshot_remove(const char *repo, const char *id, struct err *err);

/* True when id has a version id's form (so it can name a file). */
bool snapshot_id_valid(const char *id);

#endif
