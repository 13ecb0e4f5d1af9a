/* test_blob.c - the content-addressed blob store on a real temporary directory: names
 * are the SHA-256 of the bytes, identical content is stored once, a checksum mismatch
 * leaves nothing, crash leftovers are cleared, unreferenced blobs are collected. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <cmocka.h>

#include "files/blob.h"
#include "files/spool.h"

#define ABC_SHA "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct fixture {
    char dir[64];
    struct blob_store *bs;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct err err = {0};
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-blob-XXXXXX");
    if (!mkdtemp(f->dir) || blob_store_open(f->dir, &f->bs, &err) != FERRY_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    blob_store_close(f->bs);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void put(struct blob_store *bs, const char *text, char hex[65])
{
    struct blob_writer *w = NULL;
    struct err err = {0};
    uint64_t size = 0;
    assert_int_equal(blob_writer_new(bs, &w, &err), FERRY_OK);
    /* in two pieces, as a stream would come */
    size_t half = strlen(text) / 2;
    assert_int_equal(blob_writer_write(w, text, half, &err), FERRY_OK);
    assert_int_equal(blob_writer_write(w, text + half, strlen(text) - half, &err), FERRY_OK);
    assert_int_equal(blob_writer_finish(w, NULL, hex, &size, &err), FERRY_OK);
    assert_int_equal(size, strlen(text));
}

static void test_named_by_hash(void **state)
{
    struct fixture *f = *state;
    char hex[65], want[256], got[8] = {0};
    put(f->bs, "abc", hex);
    assert_string_equal(hex, ABC_SHA);
    snprintf(want, sizeof(want), "%s/ba/78/%s", f->dir, ABC_SHA);
    char *path = blob_path(f->bs, hex, NULL);
    assert_string_equal(path, want);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(got, 1, sizeof(got), fp), 3);
    fclose(fp);
    assert_string_equal(got, "abc");
    assert_true(blob_exists(f->bs, ABC_SHA));
    free(path);

    put(f->bs, "", hex);
    assert_string_equal(hex, EMPTY_SHA);
}

static void test_same_content_once(void **state)
{
    struct fixture *f = *state;
    char a[65], b[65], dir[128];
    put(f->bs, "abc", a);
    put(f->bs, "abc", b);
    assert_string_equal(a, b);
    snprintf(dir, sizeof(dir), "%s/ba/78", f->dir);
    assert_int_equal(count_files(dir), 1);
    snprintf(dir, sizeof(dir), "%s/tmp", f->dir);
    assert_int_equal(count_files(dir), 0); /* the second copy's temp file is gone */
}

static void test_checksum_mismatch_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    struct blob_writer *w = NULL;
    struct err err = {0};
    char hex[65], tmp[128];
    uint64_t size;
    assert_int_equal(blob_writer_new(f->bs, &w, &err), FERRY_OK);
    assert_int_equal(blob_writer_write(w, "abd", 3, &err), FERRY_OK);
    assert_int_equal(blob_writer_finish(w, ABC_SHA, hex, &size, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_non_null(strstr(err.msg, "checksum mismatch"));
    assert_false(blob_exists(f->bs, ABC_SHA));
    assert_false(blob_exists(f->bs, hex));
    snprintf(tmp, sizeof(tmp), "%s/tmp", f->dir);
    assert_int_equal(count_files(tmp), 0);
}

static void test_abort_and_crash_leftovers(void **state)
{
    struct fixture *f = *state;
    struct blob_writer *w = NULL;
    struct err err = {0};
    char tmp[128], stale[160];
    assert_int_equal(blob_writer_new(f->bs, &w, &err), FERRY_OK);
    assert_int_equal(blob_writer_write(w, "partial", 7, &err), FERRY_OK);
    snprintf(tmp, sizeof(tmp), "%s/tmp", f->dir);
    assert_int_equal(count_files(tmp), 1);
    blob_writer_abort(w);
    assert_int_equal(count_files(tmp), 0);
    blob_writer_abort(NULL);

    /* a temp file from a crashed run is cleared when the store opens, once it is old
     * enough not to be another node's that is still writing */
    snprintf(stale, sizeof(stale), "%s/blob-crashed", tmp);
    FILE *fp = fopen(stale, "w");
    fputs("half", fp);
    fclose(fp);
    struct blob_store *again = NULL;
    assert_int_equal(blob_store_open(f->dir, &again, &err), FERRY_OK);
    assert_int_equal(count_files(tmp), 1);
    blob_store_close(again);
    struct utimbuf old = {.actime = time(NULL) - 7200, .modtime = time(NULL) - 7200};
    assert_int_equal(utime(stale, &old), 0);
    assert_int_equal(blob_store_open(f->dir, &again, &err), FERRY_OK);
    assert_int_equal(count_files(tmp), 0);
    blob_store_close(again);
}

static void test_put_file(void **state)
{
    struct fixture *f = *state;
    struct err err = {0};
    char src[128], hex[65];
    uint64_t size = 0;
    snprintf(src, sizeof(src), "%s/source.txt", f->dir);
    FILE *fp = fopen(src, "w");
    fputs("abc", fp);
    fclose(fp);
    assert_int_equal(blob_put_file(f->bs, src, hex, &size, &err), FERRY_OK);
    assert_string_equal(hex, ABC_SHA);
    assert_int_equal(size, 3);
    assert_int_equal(blob_put_file(f->bs, "/nonexistent/file", hex, &size, &err), FERRY_ERR);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* A finished upload becomes a blob by rename: the file moves, hashed or with the hash
 * its writer computed; content the store has already just goes away. */
static void test_adopt_file(void **state)
{
    struct fixture *f = *state;
    struct err err = {0};
    char src[128], hex[65], path[256];
    uint64_t size = 0;
    struct stat st;
    snprintf(src, sizeof(src), "%s/upload.data", f->dir);
    write_text(src, "abc");
    assert_int_equal(blob_adopt_file(f->bs, src, NULL, "0000", hex, &size, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_int_equal(stat(src, &st), 0); /* a mismatch leaves the file alone */
    assert_int_equal(blob_adopt_file(f->bs, src, NULL, ABC_SHA, hex, &size, &err), FERRY_OK);
    assert_string_equal(hex, ABC_SHA);
    assert_int_equal(size, 3);
    assert_int_equal(stat(src, &st), -1);
    snprintf(path, sizeof(path), "%s/ba/78/%s", f->dir, ABC_SHA);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 3);

    write_text(src, "abc"); /* the same again, with the hash given: dropped, stored once */
    assert_int_equal(blob_adopt_file(f->bs, src, ABC_SHA, NULL, hex, &size, &err), FERRY_OK);
    assert_int_equal(stat(src, &st), -1);
    snprintf(path, sizeof(path), "%s/ba/78", f->dir);
    assert_int_equal(count_files(path), 1);
}

/* A spool is invisible under its final name until kept; discarding leaves nothing. */
static void test_spool(void **state)
{
    struct fixture *f = *state;
    struct err err = {0};
    struct spool *s = NULL;
    char final[128], hex[65];
    struct stat st;
    snprintf(final, sizeof(final), "%s/chunk-0", f->dir);
    assert_int_equal(spool_new(f->dir, &s, &err), FERRY_OK);
    assert_int_equal(spool_write(s, "ab", 2, &err), FERRY_OK);
    assert_int_equal(spool_write(s, "c", 1, &err), FERRY_OK);
    assert_int_equal(spool_size(s), 3);
    spool_hash(s, hex);
    assert_string_equal(hex, ABC_SHA);
    assert_int_equal(stat(final, &st), -1);
    assert_int_equal(spool_keep(s, final, &err), FERRY_OK);
    assert_int_equal(stat(final, &st), 0);
    assert_int_equal(st.st_size, 3);

    int before = count_files(f->dir);
    assert_int_equal(spool_new(f->dir, &s, &err), FERRY_OK);
    assert_int_equal(count_files(f->dir), before + 1);
    spool_discard(s);
    assert_int_equal(count_files(f->dir), before);
    spool_discard(NULL);
    assert_int_equal(spool_new("/nonexistent/dir", &s, &err), FERRY_ERR);
}

static void test_path_validation(void **state)
{
    struct fixture *f = *state;
    struct err err = {0};
    assert_null(blob_path(f->bs, "../../etc/passwd", &err));
    assert_int_equal(err.code, ERR_INVALID);
    assert_null(
        blob_path(f->bs, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", &err));
    assert_false(blob_valid_hex(NULL));
    assert_true(blob_valid_hex(ABC_SHA));
}

struct asked {
    int referenced, done;
};

static bool keep_abc(const char *hex, void *ctx)
{
    ((struct asked *)ctx)->referenced++;
    return strcmp(hex, ABC_SHA) == 0;
}

static void count_done(const char *hex, void *ctx)
{
    (void)hex;
    ((struct asked *)ctx)->done++;
}

static void test_collect(void **state)
{
    struct fixture *f = *state;
    struct err err = {0};
    char hex[65];
    int64_t removed = -1;
    struct asked asked = {0};
    struct blob_collector who = {keep_abc, count_done, &asked};
    put(f->bs, "abc", hex);
    put(f->bs, "other", hex);
    put(f->bs, "", hex);
    assert_int_equal(blob_collect(f->bs, &who, 0, &removed, &err), FERRY_OK);
    assert_int_equal(asked.referenced, 3);
    assert_int_equal(asked.done, 2); /* the lock of each unreferenced blob is given back */
    assert_int_equal(removed, 2);
    assert_true(blob_exists(f->bs, ABC_SHA));
    assert_false(blob_exists(f->bs, EMPTY_SHA));
}

static void test_collect_spares_young_blobs(void **state)
{
    struct fixture *f = *state;
    struct err err = {0};
    char hex[65];
    int64_t removed = -1;
    struct asked asked = {0};
    struct blob_collector who = {keep_abc, count_done, &asked};
    put(f->bs, "other", hex);
    assert_int_equal(blob_collect(f->bs, &who, 3600, &removed, &err), FERRY_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(asked.referenced, 0);
    assert_true(blob_exists(f->bs, hex));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_named_by_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_content_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checksum_mismatch_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_and_crash_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect_spares_young_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
