/* pack.h - where chunk bytes live: pack files (many chunks each, appended, never
 * changed) and one index file per pack listing its chunks. The in-memory index maps a
 * chunk's SHA-256 to its place, for deduplication and for reading. A pack without an index
 * file is an orphan of an interrupted run (nothing refers to it); the index file is written
 * only after its pack is durable. Format: docs/backup.md. */
#ifndef FERRY_BACKUP_PACK_H
#define FERRY_BACKUP_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

#define PACK_TARGET_SIZE (16u * 1024 * 1024) /* a pack is closed once it holds this much */
#define PACK_MAGIC "FERRYPK1"                /* the first 8 bytes of every pack */
#define PACK_INDEX_MAGIC "FERRYIX1"          /* the first 8 bytes of an index's plaintext */
#define PACK_FLAG_ZSTD 1                     /* the chunk was compressed with zstd */
#define PACK_ID_LEN 32                       /* hex characters of a pack's name */
#define PACK_DAMAGED (-2)                    /* a result: the chunk's bytes are gone or altered */

struct chunk_ref {
    uint8_t hash[32];
    uint32_t pack; /* index into pack_index.packs */
    uint32_t stored_len, raw_len;
    uint64_t offset;
    uint8_t flags;
};

struct pack_index {
    char (*packs)[PACK_ID_LEN + 1];
    size_t n_packs, cap_packs;
    struct chunk_ref *refs;
    size_t n_refs, cap_refs;
    uint32_t *slots; /* open addressing: 1 + index into refs, 0 empty */
    size_t n_slots;
};

void pack_index_init(struct pack_index *ix);
void pack_index_cleanup(struct pack_index *ix);

/* Loads every index file of the repository. An index that cannot be read or decrypted
 * is an error naming it, unless bad is given: then its name is appended to *bad (a
 * malloc'd array of malloc'd names, *n_bad long) and loading goes on. */
int pack_index_load(const char *repo, const uint8_t *key, struct pack_index *ix, char ***bad,
                    size_t *n_bad, struct err *err);

/* The chunk with this hash, or NULL. */
const struct chunk_ref *pack_index_find(const struct pack_index *ix, const uint8_t hash[32]);

/* Adds a chunk of pack id (keeps the first when the hash is known); returns its ref. */
const struct chunk_ref *pack_index_add(struct pack_index *ix, const char *pack_id,
                                       const struct chunk_ref *ref);

/* Claims a chunk not yet stored, so that one thread stores it while the others only refer
 * to it: true when the hash was unknown and is now held by a ref with pack PACK_PENDING
 * (its place is given by pack_index_place once its bytes are appended). */
#define PACK_PENDING UINT32_MAX
bool pack_index_claim(struct pack_index *ix, const uint8_t hash[32]);

/* Gives a claimed chunk its place: pack id and ref's offset, lengths and flags. */
void pack_index_place(struct pack_index *ix, const char *pack_id, const struct chunk_ref *ref);

/* The paths of a pack and of its index file (malloc'd). */
char *pack_path(const char *repo, const char *pack_id);
char *pack_index_path(const char *repo, const char *pack_id);

/* Writes the index file of one pack (atomically) from its entries. */
int pack_index_write(const char *repo, const uint8_t *key, const char *pack_id,
                     const struct chunk_ref *refs, size_t n, struct err *err);

/* Reads one index file's entries (pack fields left 0). */
int pack_index_read(const char *repo, const uint8_t *key, const char *pack_id,
                    struct chunk_ref **refs, size_t *n, struct err *err);

/* --- sealing: what a chunk becomes before it is appended ------------------------------- */
struct pack_sealer;
struct pack_sealer *pack_sealer_new(const uint8_t *key);
void pack_sealer_free(struct pack_sealer *s);

/* Turns one chunk (its hash already computed) into its stored bytes: compressed with zstd
 * when that saves at least 1/32 (judged on a 64 KiB sample first for large chunks, so
 * incompressible data costs little), then sealed. Fills ref (hash, lengths, flags) and
 * points *stored into the sealer (valid until its next call). Sealers are per thread. */
void pack_sealer_seal(struct pack_sealer *s, const uint8_t hash[32], const uint8_t *data,
                      size_t len, struct chunk_ref *ref, const uint8_t **stored);

/* --- writing -------------------------------------------------------------------------- */
struct pack_writer;

/* A writer that appends chunks to new packs of repo and adds them to ix as it goes (when
 * ix is NULL, to no index: its caller keeps one, see pack_writer_append). */
struct pack_writer *pack_writer_new(const char *repo, const uint8_t *key, struct pack_index *ix);

/* Stores one chunk (its hash already computed): compressed with zstd when that saves at
 * least 1/32, encrypted, appended. *stored is the bytes it took. */
int pack_writer_add(struct pack_writer *w, const uint8_t hash[32], const uint8_t *data, size_t len,
                    uint64_t *stored, struct err *err);

/* Appends a chunk's stored bytes as they are: a sealed chunk, or prune's copy of one from
 * an old pack (no re-encryption). Appends may run on several threads at once: each takes
 * its room under the writer's lock and copies its bytes in outside it (the writer's index,
 * if it has one, is changed under that lock: others must not read it meanwhile). */
int pack_writer_copy(struct pack_writer *w, const struct chunk_ref *ref, const uint8_t *stored,
                     struct err *err);

/* Appends a sealed chunk like pack_writer_copy; ref->offset and pack_id (PACK_ID_LEN + 1
 * bytes) say where it went, for a caller that keeps its own index (writer made with none)
 * under its own lock. */
int pack_writer_append(struct pack_writer *w, struct chunk_ref *ref, const uint8_t *stored,
                       char *pack_id, struct err *err);

/* Makes the open pack durable and writes its index (no append may be under way). After it
 * every chunk added so far is in the repository. */
int pack_writer_flush(struct pack_writer *w, struct err *err);

/* Frees the writer; an unflushed pack stays as an orphan for repair to remove. */
void pack_writer_free(struct pack_writer *w);

/* --- reading -------------------------------------------------------------------------- */
struct pack_reader;
struct pack_reader *pack_reader_new(const char *repo, const uint8_t *key,
                                    const struct pack_index *ix);
void pack_reader_free(struct pack_reader *r);

/* Reads a chunk's stored bytes (*stored points into the reader, valid until its next call). */
int pack_reader_stored(struct pack_reader *r, const struct chunk_ref *ref, const uint8_t **stored,
                       struct err *err);

/* Reads, decrypts, decompresses and verifies one chunk into *data (valid until the next
 * call). PACK_DAMAGED, with err naming the pack, when the bytes are missing or do not
 * match the chunk's hash. */
int pack_reader_chunk(struct pack_reader *r, const struct chunk_ref *ref, const uint8_t **data,
                      struct err *err);

/* Lists the pack ids found in packs/ (malloc'd array of malloc'd strings). */
int pack_list(const char *repo, char ***ids, size_t *n, struct err *err);

/* Hex of a 32-byte hash (65 bytes with NUL) and back. */
void pack_hex(const uint8_t hash[32], char out[65]);
int pack_unhex(const char *hex, uint8_t hash[32]);

#endif
