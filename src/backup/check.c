/* check.c - see check.h. Damage is found chunk by chunk and traced to the files of every
 * version that uses the chunk, so a report says which files a bad pack costs. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/check.h"
#include "backup/fsio.h"
#include "backup/pack.h"
#include "backup/snapshot.h"

#define MAX_DAMAGED_LISTED 1000 /* files listed in a report; the count is always exact */

void check_report_init(struct check_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    rep->leftovers = json_array();
    rep->problems = json_array();
    rep->damaged = json_array();
    rep->repaired = json_array();
}

void check_report_cleanup(struct check_report *rep)
{
    json_decref(rep->leftovers);
    json_decref(rep->problems);
    json_decref(rep->damaged);
    json_decref(rep->repaired);
    memset(rep, 0, sizeof(*rep));
}

bool check_report_ok(const struct check_report *rep)
{
    return json_array_size(rep->problems) == 0;
}

json_t *check_report_json(const struct check_report *rep)
{
    return json_pack("{s:b, s:I, s:I, s:I, s:O, s:O, s:O, s:O}", "ok", check_report_ok(rep),
                     "versions", (json_int_t)rep->n_versions, "packs", (json_int_t)rep->n_packs,
                     "chunks", (json_int_t)rep->n_chunks, "leftovers", rep->leftovers, "problems",
                     rep->problems, "damagedFiles", rep->damaged, "repaired", rep->repaired);
}

static void note(json_t *list, const char *fmt, const char *a, const char *b)
{
    char *text = xasprintf(fmt, a, b);
    json_array_append_new(list, json_string(text));
    free(text);
}

static bool has_index(const char *repo, const char *pack_id)
{
    char *path = pack_index_path(repo, pack_id);
    bool found = access(path, F_OK) == 0;
    free(path);
    return found;
}

/* Temporary files (NAME.tmp-PID) in one folder: found, or removed with remove. */
static void temp_files(struct repo *r, const char *sub, bool remove, struct check_report *rep)
{
    char *dir_path = xasprintf("%s/%s", r->path, sub);
    DIR *dir = opendir(dir_path);
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        if (!strstr(de->d_name, ".tmp-"))
            continue;
        char *path = xasprintf("%s/%s", dir_path, de->d_name);
        if (remove && unlink(path) == 0 && rep)
            note(rep->repaired, "removed the temporary file %s/%s", sub, de->d_name);
        else if (!remove && rep)
            note(rep->leftovers, "temporary file %s/%s (left by an interrupted run)", sub,
                 de->d_name);
        free(path);
    }
    if (dir)
        closedir(dir);
    free(dir_path);
}

/* Packs without an index file: found, or removed with remove. */
static int orphan_packs(struct repo *r, bool remove, struct check_report *rep, struct err *err)
{
    char **ids = NULL;
    size_t n = 0;
    if (pack_list(r->path, &ids, &n, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t i = 0; i < n; i++) {
        if (!has_index(r->path, ids[i])) {
            char *path = pack_path(r->path, ids[i]);
            if (remove && unlink(path) == 0 && rep)
                note(rep->repaired, "removed the pack %s%s, which had no index", ids[i], "");
            else if (!remove && rep)
                note(rep->leftovers, "pack %s has no index (left by an interrupted run%s)", ids[i],
                     "; repair or the next backup removes it");
            free(path);
        }
        free(ids[i]);
    }
    free(ids);
    return FERRY_OK;
}

int check_remove_leftovers(struct repo *r, struct check_report *rep, struct err *err)
{
    static const char *const subs[] = {"index", "snapshots", "."};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        temp_files(r, subs[i], true, rep);
    return orphan_packs(r, true, rep, err);
}

struct scan {
    struct pack_index ix, bad; /* every chunk; the damaged ones */
    char **bad_indexes;
    size_t n_bad_indexes;
};

static void scan_cleanup(struct scan *sc)
{
    pack_index_cleanup(&sc->ix);
    pack_index_cleanup(&sc->bad);
    for (size_t i = 0; i < sc->n_bad_indexes; i++)
        free(sc->bad_indexes[i]);
    free(sc->bad_indexes);
}

/* Without read_data only that each pack exists and is long enough for its chunks. */
static bool pack_short(const char *repo, const struct chunk_ref *ref, const char *pack_id)
{
    struct stat st;
    char *path = pack_path(repo, pack_id);
    bool bad = stat(path, &st) != 0 || (uint64_t)st.st_size < ref->offset + ref->stored_len;
    free(path);
    return bad;
}

static void scan_chunks(struct repo *r, struct scan *sc, bool read_data, struct check_report *rep)
{
    struct pack_reader *reader = pack_reader_new(r->path, r->key, &sc->ix);
    int64_t last_reported = -1;
    for (size_t i = 0; i < sc->ix.n_refs; i++) {
        const struct chunk_ref *ref = &sc->ix.refs[i];
        const char *pack_id = sc->ix.packs[ref->pack];
        const uint8_t *data = NULL;
        struct err err = {0};
        bool bad = read_data ? pack_reader_chunk(reader, ref, &data, &err) != FERRY_OK
                             : pack_short(r->path, ref, pack_id);
        if (!bad)
            continue;
        pack_index_add(&sc->bad, pack_id, ref);
        if (last_reported != (int64_t)ref->pack) /* one line per pack */
            note(rep->problems, "%s%s",
                 err.msg[0] ? err.msg : "pack is missing or short: ", err.msg[0] ? "" : pack_id);
        last_reported = ref->pack;
    }
    pack_reader_free(reader);
    for (size_t i = 0; i < sc->n_bad_indexes; i++)
        note(rep->problems, "the index of pack %s is damaged or unreadable%s", sc->bad_indexes[i],
             "");
}

static void damaged_file(struct check_report *rep, const struct snapshot *s,
                         const struct snap_entry *e, const char *pack_id)
{
    if (json_array_size(rep->damaged) >= MAX_DAMAGED_LISTED)
        return;
    json_array_append_new(rep->damaged, json_pack("{s:s, s:s, s:s?}", "versionId", s->id, "path",
                                                  e->path, "pack", pack_id));
}

/* Which files of one version use a missing or damaged chunk. */
static void scan_version(const struct scan *sc, const struct snapshot *s, struct check_report *rep)
{
    size_t n_missing = 0;
    for (size_t i = 0; i < s->n_entries; i++) {
        const struct snap_entry *e = &s->entries[i];
        for (size_t c = 0; c < e->n_chunks; c++) {
            const struct chunk_ref *bad = pack_index_find(&sc->bad, e->chunks[c]);
            if (bad || !pack_index_find(&sc->ix, e->chunks[c])) {
                damaged_file(rep, s, e, bad ? sc->bad.packs[bad->pack] : NULL);
                n_missing += !bad;
                break;
            }
        }
    }
    if (n_missing) {
        char count[32];
        snprintf(count, sizeof(count), "%zu", n_missing);
        note(rep->problems, "version %s: %s files use chunks no pack holds", s->id, count);
    }
}

/* Every manifest: unreadable ones are damage (set aside with repair). */
static int scan_versions(struct repo *r, const struct scan *sc, bool repair,
                         struct check_report *rep, struct err *err)
{
    char *dir_path = xasprintf("%s/snapshots", r->path);
    DIR *dir = opendir(dir_path);
    struct dirent *de;
    int rc = FERRY_ERR;
    if (!dir) {
        err_set(err, ERR_INTERNAL, "cannot read %s: %s", dir_path, strerror(errno));
        goto out;
    }
    while ((de = readdir(dir))) {
        if (strlen(de->d_name) != 41 || strcmp(de->d_name + 36, ".snap"))
            continue;
        char id[37];
        struct snapshot s;
        struct err load_err = {0};
        snprintf(id, sizeof(id), "%.36s", de->d_name);
        if (snapshot_load(r->path, r->key, id, &s, &load_err) != FERRY_OK) {
            note(rep->problems, "%s%s", load_err.msg, "");
            char *from = xasprintf("%s/%s", dir_path, de->d_name);
            char *to = xasprintf("%s.damaged", from);
            if (repair && rename(from, to) == 0)
                note(rep->repaired, "set the damaged manifest of version %s aside (%s)", id,
                     "snapshots/ID.snap.damaged");
            free(from);
            free(to);
            continue;
        }
        rep->n_versions++;
        scan_version(sc, &s, rep);
        snapshot_clear(&s);
    }
    rc = FERRY_OK;
out:
    if (dir)
        closedir(dir);
    free(dir_path);
    return rc;
}

static int scan_all(struct repo *r, struct scan *sc, bool read_data, bool repair,
                    struct check_report *rep, struct err *err)
{
    if (pack_index_load(r->path, r->key, &sc->ix, &sc->bad_indexes, &sc->n_bad_indexes, err) !=
        FERRY_OK)
        return FERRY_ERR;
    rep->n_packs = sc->ix.n_packs;
    rep->n_chunks = sc->ix.n_refs;
    scan_chunks(r, sc, read_data, rep);
    return scan_versions(r, sc, repair, rep, err);
}

int check_run(struct repo *r, bool read_data, struct check_report *rep, struct err *err)
{
    struct scan sc = {0};
    int rc = FERRY_ERR;
    if (repo_lock(r, false, REPO_LOCK_WAIT_MS, err) != FERRY_OK)
        return FERRY_ERR;
    static const char *const subs[] = {"index", "snapshots", "."};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        temp_files(r, subs[i], false, rep);
    if (orphan_packs(r, false, rep, err) != FERRY_OK)
        goto out;
    rc = scan_all(r, &sc, read_data, false, rep, err);
out:
    scan_cleanup(&sc);
    repo_unlock(r);
    return rc;
}

/* Rewrites one pack's index without its damaged chunks (or removes it when the pack is
 * gone or nothing good is left), so the chunks count as missing and are stored again. */
static int drop_damaged(struct repo *r, const struct scan *sc, const char *pack_id,
                        struct check_report *rep, struct err *err)
{
    struct chunk_ref *refs = NULL;
    size_t n = 0, kept = 0;
    char *idx = pack_index_path(r->path, pack_id);
    int rc = FERRY_ERR;
    if (pack_index_read(r->path, r->key, pack_id, &refs, &n, err) != FERRY_OK)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (!pack_index_find(&sc->bad, refs[i].hash))
            refs[kept++] = refs[i];
    if (kept == 0) {
        rc = unlink(idx) == 0 ? fsio_sync_dir(idx, 0, err)
                              : err_set(err, ERR_INTERNAL, "cannot remove %s", idx);
    } else {
        rc = pack_index_write(r->path, r->key, pack_id, refs, kept, err);
    }
    if (rc == FERRY_OK)
        note(rep->repaired, "dropped the damaged chunks of pack %s from the index%s", pack_id,
             kept ? "" : " (and the index, nothing good was left)");
out:
    free(refs);
    free(idx);
    return rc;
}

static int repair_indexes(struct repo *r, const struct scan *sc, struct check_report *rep,
                          struct err *err)
{
    for (size_t i = 0; i < sc->n_bad_indexes; i++) {
        char *idx = pack_index_path(r->path, sc->bad_indexes[i]);
        if (unlink(idx) == 0)
            note(rep->repaired, "removed the unreadable index of pack %s%s", sc->bad_indexes[i],
                 "");
        free(idx);
    }
    for (size_t p = 0; p < sc->bad.n_packs; p++)
        if (drop_damaged(r, sc, sc->bad.packs[p], rep, err) != FERRY_OK)
            return FERRY_ERR;
    return FERRY_OK;
}

int check_repair(struct repo *r, struct check_report *rep, struct err *err)
{
    struct scan sc = {0};
    struct check_report first;
    int rc = FERRY_ERR;
    check_report_init(&first);
    if (repo_lock(r, true, REPO_LOCK_WAIT_MS, err) != FERRY_OK)
        goto out;
    if (check_remove_leftovers(r, rep, err) != FERRY_OK ||
        scan_all(r, &sc, true, true, &first, err) != FERRY_OK ||
        repair_indexes(r, &sc, rep, err) != FERRY_OK ||
        check_remove_leftovers(r, rep, err) != FERRY_OK)
        goto out;
    json_array_extend(rep->repaired, first.repaired);
    scan_cleanup(&sc);
    memset(&sc, 0, sizeof(sc));
    rc = scan_all(r, &sc, false, false, rep, err); /* what is still true after the repair */
out:
    scan_cleanup(&sc);
    check_report_cleanup(&first);
    repo_unlock(r);
    return rc;
}
