/* test_log.c - util/log: the JSON and text line forms, level filtering, reopening a
 * moved file, and whole lines from many threads at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "util/log.h"

static char dir[] = "/tmp/ferry-test-log-XXXXXX";
static char path[64], moved[64];

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ferry.log", dir);
    snprintf(moved, sizeof(moved), "%s/ferry.log.1", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_close();
    unlink(path);
    unlink(moved);
    rmdir(dir);
    return 0;
}

/* The file's lines, as one string; caller frees. Empties the file for the next test. */
static char *take(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = calloc(1, (size_t)size + 1);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    assert_int_equal(truncate(file, 0), 0);
    return text;
}

static void test_json_line(void **state)
{
    (void)state;
    assert_int_equal(log_open(LOG_LEVEL_INFO, LOG_FORMAT_JSON, path, NULL), FERRY_OK);
    log_info("request",
             json_pack("{s:s, s:i, s:f}", "path", "/a \"b\"", "status", 200, "durationMs", 1.5));
    log_info("bare", NULL);
    char *text = take(path);
    char *second = strchr(text, '\n') + 1;
    json_error_t error;
    json_t *line = json_loadb(text, (size_t)(second - text), 0, &error);
    assert_non_null(line);
    const char *keys[] = {"time", "level", "event", "path", "status", "durationMs"};
    const char *key;
    json_t *value;
    size_t i = 0;
    json_object_foreach(line, key, value) assert_string_equal(key, keys[i++]);
    assert_int_equal(i, 6);
    const char *time = json_string_value(json_object_get(line, "time"));
    assert_int_equal(strlen(time), 24); /* 2026-01-15T10:30:00.123Z */
    assert_int_equal(time[23], 'Z');
    assert_int_equal(time[19], '.');
    assert_string_equal(json_string_value(json_object_get(line, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(line, "path")), "/a \"b\"");
    json_decref(line);
    assert_non_null(strstr(second, "\"level\":\"info\",\"event\":\"bare\"}\n"));
    free(text);
}

static void test_text_line(void **state)
{
    (void)state;
    assert_int_equal(log_open(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT, path, NULL), FERRY_OK);
    log_warn("site_call",
             json_pack("{s:s, s:s, s:s, s:i, s:s}", "msg", "site call", "site", "https://b.example",
                       "error", "", "status", 502, "note", "two words"));
    char *text = take(path);
    char *rest = strchr(text, ' ');
    assert_non_null(rest);
    assert_string_equal(rest, " warn  site_call site call site=https://b.example error=\"\""
                              " status=502 note=\"two words\"\n");
    free(text);
}

static void test_levels(void **state)
{
    (void)state;
    assert_int_equal(log_open(LOG_LEVEL_WARN, LOG_FORMAT_JSON, path, NULL), FERRY_OK);
    assert_false(log_enabled(LOG_LEVEL_INFO));
    assert_true(log_enabled(LOG_LEVEL_ERROR));
    log_debug("d", NULL);
    log_info("i", json_pack("{s:s}", "msg", "dropped")); /* consumed all the same */
    log_warn("w", NULL);
    log_error("e", NULL);
    char *text = take(path);
    assert_null(strstr(text, "\"event\":\"d\""));
    assert_null(strstr(text, "\"event\":\"i\""));
    assert_non_null(strstr(text, "\"level\":\"warn\",\"event\":\"w\""));
    assert_non_null(strstr(text, "\"level\":\"error\",\"event\":\"e\""));
    free(text);

    enum log_level level;
    enum log_format format;
    assert_int_equal(log_parse_level("debug", &level), FERRY_OK);
    assert_int_equal(level, LOG_LEVEL_DEBUG);
    assert_int_equal(log_parse_level("verbose", &level), FERRY_ERR);
    assert_int_equal(log_parse_format("text", &format), FERRY_OK);
    assert_int_equal(format, LOG_FORMAT_TEXT);
    assert_int_equal(log_parse_format("xml", &format), FERRY_ERR);
}

static void test_reopen(void **state)
{
    (void)state;
    struct err err = {0};
    assert_int_equal(log_open(LOG_LEVEL_INFO, LOG_FORMAT_JSON, path, NULL), FERRY_OK);
    log_info("before", NULL);
    assert_int_equal(rename(path, moved), 0);
    log_info("moved", NULL); /* still the old file, under its new name */
    assert_int_equal(log_reopen(&err), FERRY_OK);
    log_info("after", NULL);
    char *old = take(moved), *now = take(path);
    assert_non_null(strstr(old, "\"before\""));
    assert_non_null(strstr(old, "\"moved\""));
    assert_null(strstr(old, "\"after\""));
    assert_non_null(strstr(now, "\"after\""));
    free(old);
    free(now);

    assert_int_equal(log_open(LOG_LEVEL_INFO, LOG_FORMAT_JSON, "/nonexistent/x.log", &err),
                     FERRY_ERR);
    assert_string_equal(err.msg, "cannot open log file /nonexistent/x.log: No such file or "
                                 "directory");
    log_info("kept", NULL); /* the failed open left the log where it was */
    now = take(path);
    assert_non_null(strstr(now, "\"kept\""));
    free(now);
}

#define N_THREADS 8
#define N_LINES 500

static void *writer(void *arg)
{
    char pad[3000]; /* some lines longer than a pipe's atomic write */
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < N_LINES; i++)
        log_info("line", json_pack("{s:i, s:i, s:s}", "thread", (int)(intptr_t)arg, "n", i, "pad",
                                   i % 10 ? "" : pad));
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t threads[N_THREADS];
    assert_int_equal(log_open(LOG_LEVEL_INFO, LOG_FORMAT_JSON, path, NULL), FERRY_OK);
    for (intptr_t t = 0; t < N_THREADS; t++)
        pthread_create(&threads[t], NULL, writer, (void *)t);
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(threads[t], NULL);
    char *text = take(path), *save = NULL;
    int lines = 0;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_t *line = json_loads(l, 0, NULL);
        assert_non_null(line); /* whole, never two lines mixed */
        json_decref(line);
        lines++;
    }
    assert_int_equal(lines, N_THREADS * N_LINES);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_line), cmocka_unit_test(test_text_line),
        cmocka_unit_test(test_levels),    cmocka_unit_test(test_reopen),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
