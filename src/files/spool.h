/* spool.h - a file written as its bytes stream in: kept in a temporary file beside its
 * final place and hashed (SHA-256) on the way, then flushed to disk and renamed into
 * place, so a crash never leaves a half-written file under its final name. Blobs,
 * upload chunks and directory-sync copies are all written this way. */
#ifndef FERRY_SPOOL_H
#define FERRY_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry.h"

struct spool;

/* Starts a temporary file in dir (which must exist). */
int spool_new(const char *dir, struct spool **out, struct err *err);

/* Appends bytes. ERR_STORAGE_FULL when the disk (or the file size limit) is full. */
int spool_write(struct spool *s, const void *data, size_t len, struct err *err);

/* Bytes written so far. */
uint64_t spool_size(const struct spool *s);

/* The SHA-256 of the bytes so far, in hex, without ending the spool. */
void spool_hash(const struct spool *s, char hex[65]);

/* Flushes the file to disk and renames it to final_path (replacing what was there),
 * then flushes final_path's folder. The spool is freed in every case; on failure the
 * temporary file is removed. */
int spool_keep(struct spool *s, const char *final_path, struct err *err);

/* Removes the temporary file and frees the spool. spool_discard(NULL) does nothing. */
void spool_discard(struct spool *s);

/* Flushes a folder so that renames in it survive a power cut. */
void spool_sync_dir(const char *dir);

/* An error from errno for an I/O call on path: ERR_STORAGE_FULL for a full disk or a
 * file over the size limit, ERR_INTERNAL otherwise. */
int spool_io_error(struct err *err, const char *what, const char *path);

#endif
