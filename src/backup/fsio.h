/* fsio.h - the durable file operations the backup repository is built from: whole files
 * written atomically (temporary name, fsync, rename, fsync of the folder), whole files
 * read, folders made and synced. */
#ifndef FERRY_BACKUP_FSIO_H
#define FERRY_BACKUP_FSIO_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

/* Writes len bytes to path so that a crash leaves either the old file or the new one:
 * path.tmp-PID is written and synced, renamed over path, and the folder synced. */
int fsio_write_atomic(const char *path, const void *data, size_t len, struct err *err);

/* Reads the whole file (at most max bytes) into *out (malloc'd, NUL-terminated).
 * ERR_NOT_FOUND when it does not exist. */
int fsio_read_all(const char *path, size_t max, uint8_t **out, size_t *len, struct err *err);

/* Writes all of len bytes to fd. */
int fsio_write_all(int fd, const void *data, size_t len, struct err *err);

/* fsyncs the folder holding path (or path itself when it is a folder, with is_dir). */
int fsio_sync_dir(const char *path, int is_dir, struct err *err);

/* Makes dir and its missing parents with the given mode. */
int fsio_mkdirs(const char *dir, unsigned mode, struct err *err);

#endif
