/* test_compress.c - unit tests for src/http/compress.c: Accept-Encoding negotiation
 * (q-values, wildcards, ties) as data, and gzip/zstd bodies decoded back with zlib's
 * inflate and libzstd's decompressor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "http/compress.h"

static const struct {
    const char *header;
    enum coding want;
} cases[] = {
    {NULL, CODING_IDENTITY},
    {"", CODING_IDENTITY},
    {"gzip", CODING_GZIP},
    {"x-gzip", CODING_GZIP},
    {"zstd", CODING_ZSTD},
    {"gzip, deflate, br, zstd", CODING_ZSTD}, /* a tie: zstd first */
    {"GZIP;Q=1, zstd ; q=0.5", CODING_GZIP},
    {"gzip;q=0.8,zstd;q=0.9", CODING_ZSTD},
    {"gzip;q=0, zstd;q=0", CODING_IDENTITY},
    {"identity", CODING_IDENTITY},
    {"deflate, br", CODING_IDENTITY},
    {"*", CODING_ZSTD},
    {"*;q=0", CODING_IDENTITY},
    {"zstd;q=0, *", CODING_GZIP},
    {"gzip;q=0.5, identity;q=1", CODING_IDENTITY},
    {"gzip;q=1, identity;q=0.5", CODING_GZIP},
    {"gzip;q=0.001", CODING_GZIP},
    {"gzip;q=1.001, zstd;q=0.1", CODING_ZSTD}, /* gzip's q is malformed: ignored */
    {"gzip;q=abc", CODING_IDENTITY},
    {"gzip;level=9", CODING_IDENTITY}, /* an unknown parameter: ignored */
    {" , ,gzip ,", CODING_GZIP},
};

static void test_choose(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum coding got = compress_choose(cases[i].header);
        if (got != cases[i].want)
            fail_msg("Accept-Encoding '%s': got %d, want %d",
                     cases[i].header ? cases[i].header : "(none)", got, cases[i].want);
    }
}

static void test_types(void **state)
{
    (void)state;
    assert_true(compress_type_ok("application/json"));
    assert_true(compress_type_ok("application/json; charset=utf-8"));
    assert_true(compress_type_ok("text/plain; version=0.0.4; charset=utf-8"));
    assert_true(compress_type_ok("text/html"));
    assert_true(compress_type_ok("application/problem+json"));
    assert_true(compress_type_ok("image/svg+xml"));
    assert_false(compress_type_ok(NULL));
    assert_false(compress_type_ok("application/octet-stream"));
    assert_false(compress_type_ok("image/png"));
    assert_false(compress_type_ok("application/zstd"));
}

/* A JSON-like body that compresses well: 1,000 rows of similar objects. */
static char *sample(size_t *len)
{
    char *text = malloc(100000);
    size_t n = 0;
    n += (size_t)sprintf(text, "[");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(text + n, "%s{\"id\":\"S%06d\",\"total\":%d,\"product\":\"widget\"}",
                             i ? "," : "", i, i * 37 % 1000);
    n += (size_t)sprintf(text + n, "]");
    *len = n;
    return text;
}

static void test_gzip_round_trip(void **state)
{
    (void)state;
    size_t len, out_len;
    char *in = sample(&len), *out = NULL;
    assert_true(compress_encode(CODING_GZIP, in, len, &out, &out_len));
    assert_true(out_len < len / 4);
    assert_memory_equal(out, "\x1f\x8b", 2); /* a gzip member, not a raw zlib stream */
    char *back = malloc(len + 1);
    z_stream zs = {0};
    assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = (Bytef *)out;
    zs.avail_in = (uInt)out_len;
    zs.next_out = (Bytef *)back;
    zs.avail_out = (uInt)len + 1;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    assert_int_equal(zs.total_out, len);
    assert_memory_equal(back, in, len);
    inflateEnd(&zs);
    free(back);
    free(out);
    free(in);
}

static void test_zstd_round_trip(void **state)
{
    (void)state;
    size_t len, out_len;
    char *in = sample(&len), *out = NULL;
    assert_true(compress_encode(CODING_ZSTD, in, len, &out, &out_len));
    assert_true(out_len < len / 4);
    assert_int_equal(ZSTD_getFrameContentSize(out, out_len), len);
    char *back = malloc(len);
    assert_int_equal(ZSTD_decompress(back, len, out, out_len), len);
    assert_memory_equal(back, in, len);
    free(back);
    free(out);
    free(in);
}

static void test_no_gain_no_encoding(void **state)
{
    (void)state;
    char *out = (char *)"untouched";
    size_t out_len = 0;
    /* a few bytes only grow with a header and trailer */
    assert_false(compress_encode(CODING_GZIP, "abc", 3, &out, &out_len));
    assert_null(out);
    assert_false(compress_encode(CODING_ZSTD, "abc", 3, &out, &out_len));
    assert_false(compress_encode(CODING_IDENTITY, "abcabcabcabc", 12, &out, &out_len));
    assert_string_equal(compress_name(CODING_GZIP), "gzip");
    assert_string_equal(compress_name(CODING_ZSTD), "zstd");
    assert_null(compress_name(CODING_IDENTITY));
}

/* A body encoded in parts of uneven sizes decodes to the whole body, in both codings. */
static void test_stream_round_trip(void **state)
{
    (void)state;
    size_t len;
    char *in = sample(&len), *back = malloc(len + 1);
    for (enum coding coding = CODING_GZIP; coding <= CODING_ZSTD; coding++) {
        struct compress_stream *cs = compress_stream_new(coding);
        struct buf out;
        buf_init(&out);
        assert_non_null(cs);
        for (size_t at = 0, part = 1; at < len; at += part, part = part * 3 + 7) {
            size_t n = at + part < len ? part : len - at;
            assert_true(compress_stream_write(cs, in + at, n, at + n == len, &out));
        }
        compress_stream_free(cs);
        assert_true(out.len < len / 4);
        if (coding == CODING_ZSTD) {
            assert_int_equal(ZSTD_decompress(back, len + 1, out.data, out.len), len);
        } else {
            z_stream zs = {0};
            assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
            zs.next_in = (Bytef *)out.data;
            zs.avail_in = (uInt)out.len;
            zs.next_out = (Bytef *)back;
            zs.avail_out = (uInt)len + 1;
            assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
            assert_int_equal(zs.total_out, len);
            inflateEnd(&zs);
        }
        assert_memory_equal(back, in, len);
        buf_cleanup(&out);
    }
    assert_null(compress_stream_new(CODING_IDENTITY));
    free(back);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_gzip_round_trip),
        cmocka_unit_test(test_zstd_round_trip),
        cmocka_unit_test(test_no_gain_no_encoding),
        cmocka_unit_test(test_stream_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
