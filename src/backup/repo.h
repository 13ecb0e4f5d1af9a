/* repo.h - a backup repository on disk: its config file (format, chunker parameters and,
 * when encrypted, the KDF parameters and the wrapped master key), its folders, and the
 * lock that serialises the runs that change it. Layout and formats: docs/backup.md. */
#ifndef FERRY_BACKUP_REPO_H
#define FERRY_BACKUP_REPO_H

#include <stdbool.h>
#include <stdint.h>

#include "backup/seal.h"
#include "ferry.h"

#define REPO_FORMAT 1
#define REPO_LOCK_WAIT_MS 30000 /* how long a run waits for another to finish */

struct repo {
    char *path;
    char id[33];
    uint8_t master[SEAL_KEY_LEN];
    const uint8_t *key; /* master, or NULL for a plaintext repository */
    int lock_fd;        /* -1 when not locked */
};

/* What a long run reports, for progress bars and jobs. */
struct repo_progress {
    uint64_t bytes_done, bytes_total, files_done, files_total;
    const char *current; /* the file being read or written, or NULL */
};
typedef void (*repo_progress_fn)(void *ctx, const struct repo_progress *p);

/* Opens the repository at path. When it has no config yet and create is set, makes
 * one: encrypted with password unless plaintext. Errors (ERR_INVALID): an encrypted
 * repository without a password, a wrong password, a folder that is not a repository.
 * ERR_NOT_FOUND when there is none and create is not set. */
int repo_open(const char *path, const char *password, bool create, bool plaintext,
              struct repo **out, struct err *err);
void repo_close(struct repo *r);

/* Takes the repository's lock (an fcntl lock on its lock file, so a process that dies
 * drops it): exclusive for runs that change it, shared for readers. Waits up to wait_ms,
 * then ERR_CONFLICT naming the holder. */
int repo_lock(struct repo *r, bool exclusive, int wait_ms, struct err *err);
void repo_unlock(struct repo *r);

/* How many threads a run on one repository uses (one more than the cores, so reading
 * and writing overlap with the work; at most REPO_MAX_THREADS). */
#define REPO_MAX_THREADS 8
int repo_threads(void);

/* Runs fn on each of the n contexts of ctxs (ctx_size bytes apart, n <= REPO_MAX_THREADS),
 * each on its own thread (in this one when no thread can be had), and waits for all. */
void repo_parallel(void *(*fn)(void *), void *ctxs, size_t ctx_size, int n);

/* Re-wraps the master key with a new password (nothing else changes). */
int repo_change_password(struct repo *r, const char *new_password, struct err *err);

/* Reads a password from a file (its first line), for --password-file and the server's
 * --backup-password-file. */
int repo_read_password_file(const char *path, char **out, struct err *err);

#endif
