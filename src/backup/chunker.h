/* chunker.h - content-defined chunking for backups: cuts a byte stream where its content
 * says (FastCDC with normalised chunking), so an insertion early in a file moves only the
 * chunks around it and every later chunk keeps its name. */
#ifndef FERRY_BACKUP_CHUNKER_H
#define FERRY_BACKUP_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#define CHUNKER_MIN (256u * 1024)      /* no cut before this many bytes */
#define CHUNKER_AVG (1024u * 1024)     /* the aimed-at average (a power of two) */
#define CHUNKER_MAX (4u * 1024 * 1024) /* always a cut here */

/* The seed of the gear table (documented in docs/backup.md: another program needs it to
 * cut the same chunks, though it never needs to cut to read a repository). */
#define CHUNKER_GEAR_SEED 0x6665727279636463ULL

/* Returns where the first chunk of data[0..len) ends: a cut in [CHUNKER_MIN, CHUNKER_MAX],
 * or len when len <= CHUNKER_MIN. With at_eof false and no cut found before len (which is
 * then less than CHUNKER_MAX), returns 0: the caller must supply more bytes first. */
size_t chunker_cut(const uint8_t *data, size_t len, int at_eof);

/* The gear table's value for byte b (for the tests and docs). */
uint64_t chunker_gear(uint8_t b);

#endif
