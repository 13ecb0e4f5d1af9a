/* test_chunker.c - unit tests for src/backup/chunker.c: chunk sizes stay within bounds
 * and near the average, the cuts depend only on content (an insertion moves only the
 * chunks around it), and short or final pieces are handled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backup/chunker.h"

#define DATA_LEN (24u * 1024 * 1024)
#define MAX_CUTS 256

static uint8_t *random_data(size_t len, uint64_t seed)
{
    uint8_t *d = malloc(len);
    for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        d[i] = (uint8_t)(seed >> 56);
    }
    return d;
}

/* Cuts the whole buffer; returns the number of chunks, their ends in ends[]. */
static size_t cut_all(const uint8_t *d, size_t len, size_t *ends)
{
    size_t pos = 0, n = 0;
    while (pos < len && n < MAX_CUTS) {
        size_t cut = chunker_cut(d + pos, len - pos, 1);
        assert_true(cut > 0);
        pos += cut;
        ends[n++] = pos;
    }
    return n;
}

static void test_bounds_and_average(void **state)
{
    (void)state;
    uint8_t *d = random_data(DATA_LEN, 1);
    size_t ends[MAX_CUTS], n = cut_all(d, DATA_LEN, ends);
    for (size_t i = 0; i + 1 < n; i++) {
        size_t size = ends[i] - (i ? ends[i - 1] : 0);
        assert_true(size >= CHUNKER_MIN && size <= CHUNKER_MAX);
    }
    double avg = (double)DATA_LEN / (double)n;
    assert_true(avg > CHUNKER_AVG / 2.0 && avg < CHUNKER_AVG * 2.0);
    free(d);
}

static void test_insertion_moves_few_boundaries(void **state)
{
    (void)state;
    uint8_t *d = random_data(DATA_LEN, 2);
    uint8_t *e = malloc(DATA_LEN + 100);
    size_t at = 5u * 1024 * 1024 + 12345;
    memcpy(e, d, at);
    memset(e + at, 'x', 100);
    memcpy(e + at + 100, d + at, DATA_LEN - at);
    size_t a[MAX_CUTS], b[MAX_CUTS];
    size_t na = cut_all(d, DATA_LEN, a), nb = cut_all(e, DATA_LEN + 100, b);
    /* Every cut after the insertion's neighbourhood is the same, 100 bytes later. */
    size_t shared = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (b[j] == (a[i] > at ? a[i] + 100 : a[i]))
                shared++;
    assert_true(shared + 2 >= na);
    free(d);
    free(e);
}

static void test_short_and_partial(void **state)
{
    (void)state;
    uint8_t *d = random_data(CHUNKER_MAX, 3);
    assert_int_equal(chunker_cut(d, 10, 1), 10);
    assert_int_equal(chunker_cut(d, 10, 0), 0); /* not at the end: needs more */
    assert_int_equal(chunker_cut(d, 0, 1), 0);
    size_t cut = chunker_cut(d, CHUNKER_MAX, 0);
    assert_true(cut >= CHUNKER_MIN && cut <= CHUNKER_MAX);
    /* Zeros never match the mask: the cut falls at the maximum. */
    memset(d, 0, CHUNKER_MAX);
    assert_int_equal(chunker_cut(d, CHUNKER_MAX, 0), CHUNKER_MAX);
    free(d);
}

static void test_gear_table_is_fixed(void **state)
{
    (void)state;
    /* The documented table (docs/backup.md): splitmix64 from CHUNKER_GEAR_SEED. */
    assert_true(chunker_gear(0) != chunker_gear(1));
    assert_true(chunker_gear(0) == chunker_gear(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_and_average),
        cmocka_unit_test(test_insertion_moves_few_boundaries),
        cmocka_unit_test(test_short_and_partial),
        cmocka_unit_test(test_gear_table_is_fixed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
