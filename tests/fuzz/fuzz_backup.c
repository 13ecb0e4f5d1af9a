/* fuzz_backup.c - the backup repository's own formats (src/backup/snapshot.c, pack.c), as
 * read from a plaintext repository, where nothing authenticates the bytes first. Input:
 * one byte choosing the reader, then the rest:
 *   0  a whole version file (snapshots/ID.snap) for snapshot_load,
 *   1  the same file for snapshot_list (which reads only the header part),
 *   2  a manifest's JSON, wrapped here into a valid version file (magic, an empty header
 *      part, the manifest compressed with zstd), so mutations reach the manifest parser
 *      instead of dying in zstd,
 *   3  an index file (index/ID.idx) for pack_index_read.
 * The readers take a repository folder, so each input is written to a scratch one. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "backup/pack.h"
#include "backup/snapshot.h"
#include "fuzz.h"
#include "ferry.h"

#define VERSION_ID "f3194b1c-57dd-420b-a46f-281ee971c89d"
#define PACK_ID "fcf6ae4db19e89d2a0cb56e931c17cf1"

static char repo[64];

/* Leaves nothing in /tmp when the run ends. */
static void remove_repo(void)
{
    char path[160];
    const char *files[] = {"snapshots/" VERSION_ID ".snap", "index/" PACK_ID ".idx", "snapshots",
                           "index", ""};
    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        snprintf(path, sizeof(path), "%s/%s", repo, files[i]);
        remove(path);
    }
}

static void scratch_repo(void)
{
    char path[128];
    if (repo[0])
        return;
    snprintf(repo, sizeof(repo), "/tmp/ferry-fuzz-backup-%d", (int)getpid());
    if (mkdir(repo, 0700) != 0)
        abort();
    atexit(remove_repo);
    snprintf(path, sizeof(path), "%s/snapshots", repo);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/index", repo);
    mkdir(path, 0700);
}

static void write_file(const char *rel, const uint8_t *data, size_t size)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", repo, rel);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

/* A version file around manifest json: magic, header length 2, "{}", the zstd frame. */
static void write_manifest(const uint8_t *json, size_t size)
{
    size_t bound = ZSTD_compressBound(size);
    uint8_t *file = malloc(14 + bound);
    if (!file)
        abort();
    memcpy(file, "FERRYSN1", 8);
    memcpy(file + 8, "\x02\x00\x00\x00{}", 6);
    size_t z = ZSTD_compress(file + 14, bound, json, size, 1);
    if (ZSTD_isError(z))
        abort();
    write_file("snapshots/" VERSION_ID ".snap", file, 14 + z);
    free(file);
}

static void read_version(bool list)
{
    struct err err = {0};
    if (!list) {
        struct snapshot s;
        if (snapshot_load(repo, NULL, VERSION_ID, &s, &err) == FERRY_OK)
            snapshot_clear(&s);
        return;
    }
    struct snapshot *all = NULL;
    size_t n = 0;
    if (snapshot_list(repo, NULL, &all, &n, &err) == FERRY_OK)
        snapshot_list_free(all, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err err = {0};
    if (size < 1)
        return 0;
    scratch_repo();
    uint8_t mode = data[0] % 4;
    data++, size--;
    if (mode == 3) {
        struct chunk_ref *refs = NULL;
        size_t n = 0;
        write_file("index/" PACK_ID ".idx", data, size);
        if (pack_index_read(repo, NULL, PACK_ID, &refs, &n, &err) == FERRY_OK)
            free(refs);
        return 0;
    }
    if (mode == 2)
        write_manifest(data, size);
    else
        write_file("snapshots/" VERSION_ID ".snap", data, size);
    read_version(mode == 1);
    return 0;
}
