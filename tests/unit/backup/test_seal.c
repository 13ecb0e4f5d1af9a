/* test_seal.c - sealing (XChaCha20-Poly1305 through OpenSSL under libsodium's HChaCha20):
 * the very bytes libsodium's xchacha20poly1305_ietf makes, both ways, at sizes around
 * ChaCha20's 64-byte blocks; an altered byte, tag or additional data is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "backup/seal.h"

static const size_t sizes[] = {0, 1, 63, 64, 65, 1000, 100000};
#define N_SIZES (sizeof(sizes) / sizeof(sizes[0]))

static int setup(void **state)
{
    (void)state;
    struct err err = {0};
    return seal_init(&err) == FERRY_OK ? 0 : -1;
}

static void test_same_bytes_as_libsodium(void **state)
{
    (void)state;
    uint8_t key[SEAL_KEY_LEN], ad[32];
    randombytes_buf(key, sizeof(key));
    randombytes_buf(ad, sizeof(ad));
    for (size_t i = 0; i < N_SIZES; i++) {
        size_t n = sizes[i];
        uint8_t *plain = malloc(n + 1), *sealed = malloc(n + SEAL_OVERHEAD);
        uint8_t *theirs = malloc(n + SEAL_TAG_LEN), *back = malloc(n + 1);
        unsigned long long len = 0;
        randombytes_buf(plain, n);
        assert_int_equal(seal_encrypt(key, ad, sizeof(ad), plain, n, sealed), n + SEAL_OVERHEAD);
        /* libsodium, given the same nonce, makes the same ciphertext and tag */
        crypto_aead_xchacha20poly1305_ietf_encrypt(theirs, &len, plain, n, ad, sizeof(ad), NULL,
                                                   sealed, key);
        assert_int_equal(len, n + SEAL_TAG_LEN);
        assert_memory_equal(theirs, sealed + SEAL_NONCE_LEN, n + SEAL_TAG_LEN);
        /* and opens ours; ours opens its */
        assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
                             back, &len, NULL, sealed + SEAL_NONCE_LEN, n + SEAL_TAG_LEN, ad,
                             sizeof(ad), sealed, key),
                         0);
        assert_int_equal(len, n);
        assert_int_equal(seal_decrypt(key, ad, sizeof(ad), sealed, n + SEAL_OVERHEAD, back), n);
        if (n)
            assert_memory_equal(back, plain, n);
        free(plain);
        free(sealed);
        free(theirs);
        free(back);
    }
}

static void test_alterations_refused(void **state)
{
    (void)state;
    uint8_t key[SEAL_KEY_LEN], plain[1000], sealed[1000 + SEAL_OVERHEAD], back[1000];
    randombytes_buf(key, sizeof(key));
    randombytes_buf(plain, sizeof(plain));
    size_t n = seal_encrypt(key, "ad", 2, plain, sizeof(plain), sealed);
    const size_t spots[] = {0, SEAL_NONCE_LEN + 500, n - 1}; /* nonce, body, tag */
    for (size_t i = 0; i < 3; i++) {
        sealed[spots[i]] ^= 1;
        assert_int_equal(seal_decrypt(key, "ad", 2, sealed, n, back), -1);
        sealed[spots[i]] ^= 1;
    }
    assert_int_equal(seal_decrypt(key, "ae", 2, sealed, n, back), -1);
    assert_int_equal(seal_decrypt(key, "ad", 2, sealed, SEAL_OVERHEAD - 1, back), -1);
    key[0] ^= 1;
    assert_int_equal(seal_decrypt(key, "ad", 2, sealed, n, back), -1);
    key[0] ^= 1;
    assert_int_equal(seal_decrypt(key, "ad", 2, sealed, n, back), (long)sizeof(plain));
    assert_memory_equal(back, plain, sizeof(plain));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_as_libsodium),
        cmocka_unit_test(test_alterations_refused),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
