/* merge.h - line-based 3-way merge of texts (EonaCat.Sync's POST /merge/files and `ferry
 * merge`), done by libgit2's git_merge_file so that clean merges and conflict regions
 * are git's. Knows nothing of HTTP: it takes texts or paths and gives a result. */
#ifndef FERRY_MERGE_H
#define FERRY_MERGE_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry.h"

/* Largest input ferry merges (each of base, source and target), in bytes. */
#define MERGE_MAX_INPUT (16LL * 1024 * 1024)
/* Largest answer merge_result_dump makes: three inputs at the limit in conflict, in
 * mergedContent and again in conflicts, fit; control characters (six bytes each in JSON)
 * that would make it several times larger do not. */
#define MERGE_MAX_ANSWER (8 * MERGE_MAX_INPUT)

/* Which side a conflict resolves to. "source" is git's "ours", "target" git's "theirs". */
enum merge_favor {
    MERGE_FAVOR_NONE,   /* keep conflicts, with diff3-style markers */
    MERGE_FAVOR_SOURCE, /* git merge-file --ours */
    MERGE_FAVOR_TARGET, /* git merge-file --theirs */
    MERGE_FAVOR_UNION,  /* git merge-file --union */
};

struct merge_text {
    const char *data;
    size_t len;
};

/* One conflict region, as git's diff3 output shows it. Strings are owned and hold the
 * region's lines, each ending in "\n". */
struct merge_conflict {
    size_t line_number; /* 1-based line of its "<<<<<<<" marker in the merge with markers */
    char *base, *source, *target;
    char *resolution; /* what the favor makes of this region alone; NULL for favor none */
};

struct merge_result {
    bool success; /* no conflict markers left in merged */
    char *merged; /* owned, NUL-terminated (the text itself holds no NUL), but see
                   * merge_texts_only */
    size_t merged_len;
    void *held; /* libgit2's result, when merged is its buffer (merge_texts_only) */
    struct merge_conflict *conflicts;
    size_t n_conflicts;
    size_t n_resolved; /* conflicts the favor resolved */
};

/* libgit2's one-time set-up, about 9 ms (56 million instructions: Debian's libgit2 parses
 * the system's CA certificates in git_libgit2_init, which a merge never uses, and no
 * libgit2 call works before it). The merges do it when it is not done; `ferry merge` calls
 * it on a thread of its own while it reads the inputs. Safe from any thread. */
void merge_init(void);

/* "none", "source", "target", "union" -> favor; ERR_INVALID on anything else. */
int merge_favor_parse(const char *name, enum merge_favor *out, struct err *err);

/* Refuses (ERR_INVALID, naming what) a text over MERGE_MAX_INPUT bytes, holding a NUL
 * byte (binary) or not valid UTF-8. */
int merge_check_text(const struct merge_text *t, const char *what, struct err *err);

/* Reads a regular file whole and checks it as merge_check_text does (the size before
 * reading it). *data is owned by the caller, NUL-terminated. ERR_NOT_FOUND when it does
 * not exist, ERR_INVALID when it is not a regular file or not mergeable text. */
int merge_read_file(const char *path, const char *what, char **data, size_t *len, struct err *err);

/* Merges source and target, both descended from base, as `git merge-file` does
 * (source is git's "ours"). The inputs must have passed merge_check_text. On success
 * *out is filled (release with merge_result_cleanup); on failure *out is empty. */
int merge_texts(const struct merge_text *base, const struct merge_text *source,
                const struct merge_text *target, enum merge_favor favor, struct merge_result *out,
                struct err *err);

/* Only the merged text, as `git merge-file -p` prints it (with --diff3 for favor none), by
 * one libgit2 merge: out->conflicts stays empty and n_resolved 0. For callers that show
 * no conflict list (`ferry merge` without --json); release with merge_result_cleanup.
 * out->merged is libgit2's own buffer, not a copy (4 MB at 100,000 lines), so it is NOT
 * NUL-terminated: use its merged_len bytes. */
int merge_texts_only(const struct merge_text *base, const struct merge_text *source,
                     const struct merge_text *target, enum merge_favor favor,
                     struct merge_result *out, struct err *err);

void merge_result_cleanup(struct merge_result *r);

/* The seed's response as JSON text (owned, NUL-terminated, *len bytes): success,
 * mergedContent, conflicts[] (lineNumber, baseContent, sourceContent, targetContent,
 * resolution: each region's lines joined by "\n", without a final newline, as the seed's
 * example shows), conflictResolutionCount; plus favor. */
char *merge_result_dump(const struct merge_result *r, enum merge_favor favor, size_t *len);

/* Refuses (ERR_INVALID) a result whose answer would be over MERGE_MAX_ANSWER bytes: what
 * the escaped texts take is counted before any of it is made. */
int merge_check_answer(const struct merge_result *r, struct err *err);

/* Writes data to path atomically: a temporary file beside it, fsync, rename, fsync of
 * the folder. A reader sees the old file or the new one, never a part. */
int merge_write_file(const char *path, const char *data, size_t len, struct err *err);

#endif
