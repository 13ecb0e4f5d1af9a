/* test_pack.c - unit tests for src/backup/pack.c and seal.c: chunks written to packs come
 * back byte-identical through the index files (encrypted and plaintext), text is
 * compressed and random bytes are not, a flipped byte in a pack is reported, and a derived
 * password key is reused for the same password and salt only. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "backup/pack.h"
#include "backup/repo.h"
#include "backup/seal.h"

#define N_CHUNKS 40
#define CHUNK_LEN 100000

static char *make_repo(bool plaintext, struct repo **r)
{
    char tmpl[] = "/tmp/ferry-pack-XXXXXX";
    char *dir = xstrdup(mkdtemp(tmpl));
    char *path = xasprintf("%s/repo", dir);
    struct err err = {0};
    assert_int_equal(repo_open(path, plaintext ? NULL : "pw", true, plaintext, r, &err), FERRY_OK);
    free(path);
    return dir;
}

static void fill(uint8_t *d, int i)
{
    if (i % 2) { /* text: compresses */
        for (int k = 0; k < CHUNK_LEN; k++)
            d[k] = (uint8_t)('a' + (k / 7 + i) % 26);
        d[0] = (uint8_t)i; /* every chunk differs */
    } else {
        uint64_t s = (uint64_t)i + 99;
        for (int k = 0; k < CHUNK_LEN; k++) {
            s = s * 6364136223846793005ULL + 1;
            d[k] = (uint8_t)(s >> 56);
        }
    }
}

static void round_trip(bool plaintext)
{
    struct repo *r = NULL;
    char *dir = make_repo(plaintext, &r);
    struct pack_index ix, loaded;
    struct err err = {0};
    uint8_t data[CHUNK_LEN], hashes[N_CHUNKS][32];
    pack_index_init(&ix);
    pack_index_init(&loaded);
    struct pack_writer *w = pack_writer_new(r->path, r->key, &ix);
    for (int i = 0; i < N_CHUNKS; i++) {
        uint64_t stored = 0;
        fill(data, i);
        SHA256(data, CHUNK_LEN, hashes[i]);
        assert_int_equal(pack_writer_add(w, hashes[i], data, CHUNK_LEN, &stored, &err), FERRY_OK);
        assert_true(i % 2 ? stored < CHUNK_LEN / 2 : stored >= CHUNK_LEN);
    }
    assert_int_equal(pack_writer_flush(w, &err), FERRY_OK);
    pack_writer_free(w);
    assert_int_equal(pack_index_load(r->path, r->key, &loaded, NULL, NULL, &err), FERRY_OK);
    assert_int_equal(loaded.n_refs, N_CHUNKS);
    assert_true(loaded.n_packs >= 1 && loaded.n_packs <= 2);
    struct pack_reader *rd = pack_reader_new(r->path, r->key, &loaded);
    for (int i = 0; i < N_CHUNKS; i++) {
        const struct chunk_ref *ref = pack_index_find(&loaded, hashes[i]);
        const uint8_t *got = NULL;
        assert_non_null(ref);
        assert_int_equal(ref->flags & PACK_FLAG_ZSTD, i % 2 ? PACK_FLAG_ZSTD : 0);
        assert_int_equal(pack_reader_chunk(rd, ref, &got, &err), FERRY_OK);
        fill(data, i);
        assert_memory_equal(got, data, CHUNK_LEN);
    }
    /* Flip one byte of the first chunk: reading it reports the pack. */
    const struct chunk_ref *ref = pack_index_find(&loaded, hashes[0]);
    char *path = pack_path(r->path, loaded.packs[ref->pack]);
    int fd = open(path, O_RDWR);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, (off_t)ref->offset + 50), 1);
    byte ^= 0xff;
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)ref->offset + 50), 1);
    close(fd);
    const uint8_t *got = NULL;
    assert_int_equal(pack_reader_chunk(rd, ref, &got, &err), PACK_DAMAGED);
    assert_non_null(strstr(err.msg, loaded.packs[ref->pack]));
    free(path);
    pack_reader_free(rd);
    pack_index_cleanup(&ix);
    pack_index_cleanup(&loaded);
    repo_close(r);
    char *rm = xasprintf("rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
    free(rm);
    free(dir);
}

static void test_round_trip_encrypted(void **state)
{
    (void)state;
    round_trip(false);
}

static void test_round_trip_plaintext(void **state)
{
    (void)state;
    round_trip(true);
}

static void test_passwords(void **state)
{
    (void)state;
    struct repo *r = NULL, *again = NULL;
    struct err err = {0};
    char *dir = make_repo(false, &r);
    char *path = xstrdup(r->path);
    uint8_t master[SEAL_KEY_LEN];
    memcpy(master, r->master, sizeof(master));
    assert_int_equal(repo_open(path, "wrong", false, false, &again, &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "wrong password"));
    assert_int_equal(repo_open(path, NULL, false, false, &again, &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "encrypted"));
    /* A new password wraps the same master key; the old one stops working. */
    assert_int_equal(repo_change_password(r, "new", &err), FERRY_OK);
    assert_int_equal(repo_open(path, "pw", false, false, &again, &err), FERRY_ERR);
    assert_int_equal(repo_open(path, "new", false, false, &again, &err), FERRY_OK);
    assert_memory_equal(again->master, master, sizeof(master));
    repo_close(again);
    repo_close(r);
    /* Without a password an encrypted repository cannot be created. */
    char *other = xasprintf("%s/other", dir);
    assert_int_equal(repo_open(other, NULL, true, false, &again, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    char *rm = xasprintf("rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
    free(rm);
    free(other);
    free(path);
    free(dir);
}

static void test_sealed_objects_are_bound(void **state)
{
    (void)state;
    uint8_t key[SEAL_KEY_LEN], out[64 + SEAL_OVERHEAD], back[64];
    struct seal_kdf kdf;
    struct err err = {0};
    assert_int_equal(seal_init(&err), FERRY_OK);
    seal_new_master(key, &kdf);
    size_t n = seal_encrypt(key, "a", 1, "hello", 5, out);
    assert_int_equal(n, 5 + SEAL_OVERHEAD);
    assert_int_equal(seal_decrypt(key, "a", 1, out, n, back), 5);
    assert_memory_equal(back, "hello", 5);
    assert_int_equal(seal_decrypt(key, "b", 1, out, n, back), -1); /* other ad */
    out[SEAL_NONCE_LEN] ^= 1;
    assert_int_equal(seal_decrypt(key, "a", 1, out, n, back), -1); /* altered */
}

static double seconds_to_derive(const char *password, const struct seal_kdf *kdf,
                                uint8_t key[SEAL_KEY_LEN])
{
    struct err err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(seal_derive(password, kdf, key, &err), FERRY_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

/* The second derivation with the same password, salt and limits comes from the cache
 * (same key, no Argon2id); another password or salt derives afresh. */
static void test_derived_keys_are_cached(void **state)
{
    (void)state;
    uint8_t master[SEAL_KEY_LEN], k1[SEAL_KEY_LEN], k2[SEAL_KEY_LEN], k3[SEAL_KEY_LEN],
        k4[SEAL_KEY_LEN];
    struct seal_kdf kdf, other;
    struct err err = {0};
    assert_int_equal(seal_init(&err), FERRY_OK);
    seal_new_master(master, &kdf);
    seal_new_master(master, &other);
    double first = seconds_to_derive("pw one", &kdf, k1);
    double again = seconds_to_derive("pw one", &kdf, k2);
    assert_memory_equal(k1, k2, SEAL_KEY_LEN);
    assert_true(again < first / 10);
    seconds_to_derive("pw two", &kdf, k3);
    assert_memory_not_equal(k1, k3, SEAL_KEY_LEN);
    seconds_to_derive("pw one", &other, k4);
    assert_memory_not_equal(k1, k4, SEAL_KEY_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_encrypted),
        cmocka_unit_test(test_round_trip_plaintext),
        cmocka_unit_test(test_passwords),
        cmocka_unit_test(test_sealed_objects_are_bound),
        cmocka_unit_test(test_derived_keys_are_cached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
