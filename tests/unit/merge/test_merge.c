/* test_merge.c - merge_texts against known git merges (clean, each favor, conflicts with
 * their three sides and line numbers, inputs holding marker-like lines), the input
 * checks (binary, non-UTF-8, oversize), merge_read_file and merge_write_file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "merge/merge.h"

static struct merge_text text_of(const char *s)
{
    return (struct merge_text){s, strlen(s)};
}

/* Merges the three texts with favor; the caller cleans *r up. */
static void merge3(const char *base, const char *source, const char *target, enum merge_favor favor,
                   struct merge_result *r)
{
    struct merge_text b = text_of(base), s = text_of(source), t = text_of(target);
    struct err err = {0};
    assert_int_equal(merge_texts(&b, &s, &t, favor, r, &err), FERRY_OK);
    assert_int_equal(strlen(r->merged), r->merged_len);
}

static void test_clean_merge(void **state)
{
    (void)state;
    struct merge_result r;
    merge3("a\nb\nc\nd\ne\n", "a\nB\nc\nd\ne\n", "a\nb\nc\nd\nE\nf\n", MERGE_FAVOR_NONE, &r);
    assert_true(r.success);
    assert_string_equal(r.merged, "a\nB\nc\nd\nE\nf\n");
    assert_int_equal(r.n_conflicts, 0);
    assert_int_equal(r.n_resolved, 0);
    merge_result_cleanup(&r);
    merge3("", "", "", MERGE_FAVOR_SOURCE, &r); /* empty inputs are text too */
    assert_true(r.success);
    assert_string_equal(r.merged, "");
    merge_result_cleanup(&r);
}

static void test_conflict_each_favor(void **state)
{
    (void)state;
    static const struct {
        enum merge_favor favor;
        const char *merged, *resolution;
    } cases[] = {
        {MERGE_FAVOR_NONE,
         "a\nx\n<<<<<<< source\nB1\n||||||| base\nb\n=======\nB2\n>>>>>>> target\nc\n", NULL},
        {MERGE_FAVOR_SOURCE, "a\nx\nB1\nc\n", "B1\n"},
        {MERGE_FAVOR_TARGET, "a\nx\nB2\nc\n", "B2\n"},
        {MERGE_FAVOR_UNION, "a\nx\nB1\nB2\nc\n", "B1\nB2\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct merge_result r;
        merge3("a\nx\nb\nc\n", "a\nx\nB1\nc\n", "a\nx\nB2\nc\n", cases[i].favor, &r);
        assert_string_equal(r.merged, cases[i].merged);
        assert_int_equal(r.success, cases[i].favor != MERGE_FAVOR_NONE);
        assert_int_equal(r.n_conflicts, 1);
        assert_int_equal(r.n_resolved, cases[i].favor != MERGE_FAVOR_NONE);
        assert_int_equal(r.conflicts[0].line_number, 3);
        assert_string_equal(r.conflicts[0].base, "b\n");
        assert_string_equal(r.conflicts[0].source, "B1\n");
        assert_string_equal(r.conflicts[0].target, "B2\n");
        if (cases[i].resolution)
            assert_string_equal(r.conflicts[0].resolution, cases[i].resolution);
        else
            assert_null(r.conflicts[0].resolution);
        merge_result_cleanup(&r);
    }
}

/* merge_texts_only hands over libgit2's buffer (merged_len bytes, no NUL after them):
 * the same bytes as merge_texts for each favor, and an empty merge is empty. */
static void test_texts_only(void **state)
{
    (void)state;
    static const char *const triples[][3] = {
        {"a\nx\nb\nc\n", "a\nx\nB1\nc\n", "a\nx\nB2\nc\n"},
        {"a\nb\nc\nd\ne\n", "a\nB\nc\nd\ne\n", "a\nb\nc\nd\nE\nf\n"},
        {"", "", ""},
    };
    for (size_t i = 0; i < sizeof(triples) / sizeof(triples[0]); i++)
        for (int favor = MERGE_FAVOR_NONE; favor <= MERGE_FAVOR_UNION; favor++) {
            struct merge_text b = text_of(triples[i][0]), s = text_of(triples[i][1]),
                              t = text_of(triples[i][2]);
            struct merge_result full, only;
            struct err err = {0};
            merge3(triples[i][0], triples[i][1], triples[i][2], favor, &full);
            assert_int_equal(merge_texts_only(&b, &s, &t, favor, &only, &err), FERRY_OK);
            assert_int_equal(only.merged_len, full.merged_len);
            assert_memory_equal(only.merged, full.merged, full.merged_len);
            assert_int_equal(only.success, full.success);
            assert_int_equal(only.n_conflicts, 0);
            merge_result_cleanup(&only);
            merge_result_cleanup(&full);
        }
}

static void test_two_conflicts_and_json(void **state)
{
    (void)state;
    struct merge_result r;
    merge3("1\n2\n3\n4\n5\n6\n7\n", "S\n2\n3\n4\n5\n6\nS7\n", "T\n2\n3\n4\n5\n6\nT7\n",
           MERGE_FAVOR_TARGET, &r);
    assert_string_equal(r.merged, "T\n2\n3\n4\n5\n6\nT7\n");
    assert_int_equal(r.n_conflicts, 2);
    assert_int_equal(r.conflicts[0].line_number, 1);
    /* lines in the merge with markers: the first conflict takes 7, then 5 clean lines */
    assert_int_equal(r.conflicts[1].line_number, 13);
    size_t len = 0;
    char *dump = merge_result_dump(&r, MERGE_FAVOR_TARGET, &len);
    assert_int_equal(strlen(dump), len);
    json_t *j = json_loads(dump, 0, NULL);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(text,
                        "{\"conflictResolutionCount\":2,\"conflicts\":["
                        "{\"baseContent\":\"1\",\"lineNumber\":1,\"resolution\":\"T\","
                        "\"sourceContent\":\"S\",\"targetContent\":\"T\"},"
                        "{\"baseContent\":\"7\",\"lineNumber\":13,\"resolution\":\"T7\","
                        "\"sourceContent\":\"S7\",\"targetContent\":\"T7\"}],"
                        "\"favor\":\"target\",\"mergedContent\":\"T\\n2\\n3\\n4\\n5\\n6\\nT7\\n\","
                        "\"success\":true}");
    free(text);
    free(dump);
    json_decref(j);
    merge_result_cleanup(&r);
}

/* mergedContent is written by hand: every character that JSON escapes, and UTF-8, come
 * back as they were, in a conflict with markers too. */
static void test_json_escapes(void **state)
{
    (void)state;
    static const char base[] = "q\"uote\nback\\slash\r\ntab\tbell\x01\x1f\b\f\n"
                               "caf\xc3\xa9 \xe2\x98\x95 \xf0\x9f\x98\x80 / \x7f\nend\n";
    struct merge_result r;
    size_t len = 0;
    merge3(base,
           "S\"\n"
           "back\\slash\r\n"
           "x\n",
           "T\t\n", MERGE_FAVOR_NONE, &r);
    char *dump = merge_result_dump(&r, MERGE_FAVOR_NONE, &len);
    json_t *j = json_loads(dump, 0, NULL);
    assert_non_null(j);
    json_t *merged = json_object_get(j, "mergedContent");
    assert_int_equal(json_string_length(merged), r.merged_len);
    assert_memory_equal(json_string_value(merged), r.merged, r.merged_len);
    assert_false(json_is_true(json_object_get(j, "success")));
    json_decref(j);
    free(dump);
    merge_result_cleanup(&r);
    merge3(base, base, base, MERGE_FAVOR_SOURCE, &r);
    dump = merge_result_dump(&r, MERGE_FAVOR_SOURCE, &len);
    j = json_loads(dump, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "mergedContent")), base);
    assert_true(json_is_true(json_object_get(j, "success")));
    json_decref(j);
    free(dump);
    merge_result_cleanup(&r);
}

/* An input holding a line like a conflict marker is text: the conflict list has only
 * the real conflict, and favor none still shows git's 7-character markers. */
/* Each character JSON escapes, at each place in and across the eight-byte words that
 * mergedContent's writer tests at once, and two in one word, come back as they were. */
static void test_json_escape_positions(void **state)
{
    (void)state;
    static const char specials[] = "\"\\\n\x01\x1f";
    for (size_t k = 0; k < 20; k++)
        for (size_t c = 0; c < sizeof(specials) - 1; c++) {
            char text[24];
            memset(text, 'a', sizeof(text));
            text[k] = specials[c];
            text[(k + 3) % sizeof(text)] = '\\';
            struct merge_result r = {.success = true, .merged = text, .merged_len = sizeof(text)};
            size_t len = 0;
            char *dump = merge_result_dump(&r, MERGE_FAVOR_SOURCE, &len);
            assert_int_equal(strlen(dump), len); /* two \u00XX pass the first guess of room */
            json_t *j = json_loads(dump, 0, NULL);
            assert_non_null(j);
            json_t *merged = json_object_get(j, "mergedContent");
            assert_int_equal(json_string_length(merged), sizeof(text));
            assert_memory_equal(json_string_value(merged), text, sizeof(text));
            json_decref(j);
            free(dump);
        }
}

static void test_marker_lines_in_input(void **state)
{
    (void)state;
    struct merge_result r;
    merge3("x\n<<<<<<< source\ny\n=======\nz\n", "x\n<<<<<<< source\nY\n=======\nz\n",
           "x\n<<<<<<< source\nY2\n=======\nz\n", MERGE_FAVOR_NONE, &r);
    assert_int_equal(r.n_conflicts, 1);
    assert_int_equal(r.conflicts[0].line_number, 3);
    assert_string_equal(r.conflicts[0].source, "Y\n");
    assert_string_equal(r.conflicts[0].base, "y\n");
    assert_string_equal(r.conflicts[0].target, "Y2\n");
    assert_string_equal(r.merged, "x\n<<<<<<< source\n<<<<<<< source\nY\n||||||| base\ny\n"
                                  "=======\nY2\n>>>>>>> target\n=======\nz\n");
    merge_result_cleanup(&r);
}

/* Union is written from the diff3 merge, each conflict's sides merged alone, while git
 * joins no two conflicts: four lines with letters apart. Three lines apart git joins
 * them, repeating the lines between, and ferry takes libgit2's union merge instead. */
static void test_union_far_and_near(void **state)
{
    (void)state;
    static const struct {
        const char *base, *source, *target, *merged;
    } cases[] = {
        {"b1\nk1\nk2\nk3\nk4\nb2\nend\n", "S1\nc1\nc2\nc3\nc4\nS2\nk1\nk2\nk3\nk4\nS3\nend\n",
         "T1\nc1\nc2\nc3\nc4\nT2\nk1\nk2\nk3\nk4\nT3\nend\n",
         "S1\nT1\nc1\nc2\nc3\nc4\nS2\nT2\nk1\nk2\nk3\nk4\nS3\nT3\nend\n"},
        {"b1\nk1\nk2\nk3\nb2\nend\n", "S1\nc1\nc2\nc3\nc4\nS2\nk1\nk2\nk3\nS3\nend\n",
         "T1\nc1\nc2\nc3\nc4\nT2\nk1\nk2\nk3\nT3\nend\n",
         "S1\nT1\nc1\nc2\nc3\nc4\nS2\nk1\nk2\nk3\nS3\nT2\nk1\nk2\nk3\nT3\nend\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct merge_result r;
        merge3(cases[i].base, cases[i].source, cases[i].target, MERGE_FAVOR_UNION, &r);
        assert_string_equal(r.merged, cases[i].merged);
        assert_int_equal(r.n_conflicts, 2);
        assert_string_equal(r.conflicts[0].resolution, "S1\nT1\nc1\nc2\nc3\nc4\nS2\nT2\n");
        merge_result_cleanup(&r);
    }
}

static void test_favor_names(void **state)
{
    (void)state;
    enum merge_favor f = MERGE_FAVOR_NONE;
    struct err err = {0};
    assert_int_equal(merge_favor_parse("union", &f, &err), FERRY_OK);
    assert_int_equal(f, MERGE_FAVOR_UNION);
    assert_int_equal(merge_favor_parse("ours", &f, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
}

static void test_check_text(void **state)
{
    (void)state;
    struct err err = {0};
    struct merge_text ok = text_of("caf\xc3\xa9 \xe2\x98\x95\n"), nul = {"a\0b", 3},
                      latin1 = text_of("caf\xe9\n"), cut = text_of("\xe2\x98");
    assert_int_equal(merge_check_text(&ok, "base", &err), FERRY_OK);
    assert_int_equal(merge_check_text(&nul, "base", &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_non_null(strstr(err.msg, "base is binary"));
    assert_int_equal(merge_check_text(&latin1, "source", &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "source is not valid UTF-8"));
    assert_int_equal(merge_check_text(&cut, "target", &err), FERRY_ERR);
    struct merge_text big = {ok.data, (size_t)MERGE_MAX_INPUT + 1}; /* checked before reading */
    assert_int_equal(merge_check_text(&big, "target", &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "larger than the merge limit"));
}

static void test_read_and_write_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-merge-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = xasprintf("%s/out.txt", dir), *missing = xasprintf("%s/none", dir), *data;
    struct err err = {0};
    size_t len = 0;
    struct stat st;

    assert_int_equal(merge_write_file(path, "one\n", 4, &err), FERRY_OK);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(merge_write_file(path, "two\n", 4, &err), FERRY_OK); /* replaces */
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* and keeps the permissions */
    assert_int_equal(merge_read_file(path, "base", &data, &len, &err), FERRY_OK);
    assert_int_equal(len, 4);
    assert_string_equal(data, "two\n");
    free(data);
    assert_int_equal(merge_read_file(missing, "base", &data, &len, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    assert_int_equal(merge_read_file(dir, "base", &data, &len, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0); /* no temporary file was left beside it */
    free(path);
    free(missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_merge),
        cmocka_unit_test(test_conflict_each_favor),
        cmocka_unit_test(test_texts_only),
        cmocka_unit_test(test_two_conflicts_and_json),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_escape_positions),
        cmocka_unit_test(test_marker_lines_in_input),
        cmocka_unit_test(test_union_far_and_near),
        cmocka_unit_test(test_favor_names),
        cmocka_unit_test(test_check_text),
        cmocka_unit_test(test_read_and_write_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
