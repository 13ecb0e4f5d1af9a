/* test_config.c - unit tests for src/config.c: defaults, the config file, sizes and
 * booleans, the file < environment < flags precedence, and the address helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static const char *const env_names[] = {
    "FERRY_LISTEN",           "FERRY_DATA_DIR",     "FERRY_DB",
    "FERRY_CONFIG",           "FERRY_MAX_BODY",     "FERRY_MAX_HEADER",
    "FERRY_MAX_JSON_DEPTH",   "FERRY_RATE_LIMIT",   "FERRY_AUTH_FAIL_LIMIT",
    "FERRY_CORS_ORIGINS",     "FERRY_JWT_SECRET",   "FERRY_THREADS",
    "FERRY_SHUTDOWN_TIMEOUT", "FERRY_METRICS_AUTH", "FERRY_LOG_LEVEL",
    "FERRY_LOG_FORMAT",       "FERRY_LOG_FILE",
};

/* Each test starts and ends with none of ferry's variables set. */
static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        unsetenv(env_names[i]);
    return 0;
}

/* Writes text to a new temporary file; returns its path (caller unlinks and frees). */
static char *temp_file(const char *text)
{
    char *path = xstrdup("/tmp/ferry-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

/* Loads with argv (flags only, as the subcommand sees them). */
static int load(struct config *cfg, struct err *err, int argc, const char **argv)
{
    return config_load(cfg, argc, (char **)argv, err);
}

/* --- defaults -------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_string_equal(cfg.data_dir, "./ferry-data");
    assert_null(cfg.db_url);
    assert_null(cfg.config_file);
    assert_int_equal(cfg.max_body, 10 * 1024 * 1024);
    assert_int_equal(cfg.max_header, 32 * 1024);
    assert_int_equal(cfg.max_json_depth, 32);
    assert_int_equal(cfg.rate_limit, 600);
    assert_int_equal(cfg.auth_fail_limit, 30);
    assert_null(cfg.cors_origins);
    assert_null(cfg.jwt_secret);
    assert_int_equal(cfg.threads, 8);
    assert_int_equal(cfg.shutdown_timeout, 10);
    assert_false(cfg.metrics_auth);

    char *url = config_db_url(&cfg);
    assert_string_equal(url, "sqlite:./ferry-data/ferry.db");
    free(url);

    config_cleanup(&cfg);
    assert_null(cfg.listen);
    assert_null(cfg.data_dir);
    /* Cleaning up twice is harmless. */
    config_cleanup(&cfg);
}

/* --- config file ----------------------------------------------------------------- */

static void test_file_parsing(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    char *path = temp_file("# ferry settings\n"
                           "\n"
                           "   \n"
                           "rate-limit=42\n"
                           "threads = 4\r\n"
                           "  listen   =   0.0.0.0:9090   \n"
                           "\t# an indented comment\n"
                           "jwt-secret = a=b=c\n"
                           "metrics-auth = yes\n"
                           "max-body = 512K\n"
                           "cors-origins = https://a.example, https://b.example\n");

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_int_equal(config_load_file(&cfg, path, &err), FERRY_OK);
    assert_int_equal(cfg.rate_limit, 42);
    assert_string_equal(cfg.listen, "0.0.0.0:9090");
    assert_string_equal(cfg.jwt_secret, "a=b=c"); /* only the first '=' splits */
    assert_true(cfg.metrics_auth);
    assert_int_equal(cfg.max_body, 512 * 1024);
    assert_string_equal(cfg.cors_origins, "https://a.example, https://b.example");
    assert_int_equal(cfg.threads, 4); /* CRLF line ending */
    /* Untouched settings keep their defaults. */
    assert_int_equal(cfg.auth_fail_limit, 30);
    config_cleanup(&cfg);
    remove_temp(path);
}

static void test_file_unknown_key(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    char *path = temp_file("# comment\nthreads = 4\nbogus = 1\nrate-limit = 5\n");
    char want[600];

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_int_equal(config_load_file(&cfg, path, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    snprintf(want, sizeof(want), "%s:3: unknown setting 'bogus'", path);
    assert_string_equal(err.msg, want);
    assert_int_equal(cfg.threads, 4);      /* lines before the error applied */
    assert_int_equal(cfg.rate_limit, 600); /* reading stopped at the error */
    config_cleanup(&cfg);
    remove_temp(path);
}

static void test_file_missing_equals(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    char *path = temp_file("threads = 4\nrate-limit 5\n");
    char want[600];

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_int_equal(config_load_file(&cfg, path, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    snprintf(want, sizeof(want), "%s:2: expected 'key = value'", path);
    assert_string_equal(err.msg, want);
    config_cleanup(&cfg);
    remove_temp(path);
}

static void test_file_bad_value_names_line(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    char *path = temp_file("\n\n\nmax-body = 10X\n");
    char want[600];

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_int_equal(config_load_file(&cfg, path, &err), FERRY_ERR);
    snprintf(want, sizeof(want), "%s:4: max-body must be a size like 512K or 10M, not '10X'", path);
    assert_string_equal(err.msg, want);
    config_cleanup(&cfg);
    remove_temp(path);
}

/* A line longer than the reader's buffer must be reported as line 1, not parsed as
 * two lines. */
static void test_file_long_line(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    char *text = xmalloc(6000);
    size_t used = (size_t)snprintf(text, 6000, "jwt-secret = ");
    memset(text + used, 's', 5000);
    strcpy(text + used + 5000, "\n");
    char *path = temp_file(text);
    char want[600];

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    int rc = config_load_file(&cfg, path, &err);
    snprintf(want, sizeof(want), "%s:1:", path);
    bool names_line_1 = strncmp(err.msg, want, strlen(want)) == 0;
    config_cleanup(&cfg);
    remove_temp(path);
    free(text);
    assert_int_equal(rc, FERRY_ERR);
    if (!names_line_1)
        fail_msg("error for an over-long line 1 was: %s", err.msg);
}

static void test_file_cannot_name_another(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    char *path = temp_file("config = /etc/other.conf\n");
    char want[600];

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_int_equal(config_load_file(&cfg, path, &err), FERRY_ERR);
    snprintf(want, sizeof(want), "%s:1: a config file cannot name another", path);
    assert_string_equal(err.msg, want);
    config_cleanup(&cfg);
    remove_temp(path);
}

static void test_file_missing(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_int_equal(config_load_file(&cfg, "/nonexistent/ferry.conf", &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(
        err.msg, "cannot read config file /nonexistent/ferry.conf: No such file or directory");
    config_cleanup(&cfg);
}

/* --- values ---------------------------------------------------------------------- */

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        long long want;
    } good[] = {
        {"123", 123},
        {"0", 0},
        {"512K", 512LL * 1024},
        {"512k", 512LL * 1024},
        {"10M", 10LL * 1024 * 1024},
        {"10MB", 10LL * 1024 * 1024},
        {"1G", 1024LL * 1024 * 1024},
        {"1gb", 1024LL * 1024 * 1024},
    };
    static const char *const bad[] = {
        "10X", "-1", "", "M", "10MM", "1.5M", "10 M", "99999999999999999999", "2000000G"};
    struct config cfg;
    struct err err = {0};
    char want[600];

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(config_set(&cfg, "max-body", good[i].text, "test", &err), FERRY_OK);
        assert_int_equal(cfg.max_body, good[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.max_body = 77;
        assert_int_equal(config_set(&cfg, "max-body", bad[i], "test", &err), FERRY_ERR);
        assert_int_equal(err.code, ERR_INVALID);
        snprintf(want, sizeof(want), "test: max-body must be a size like 512K or 10M, not '%s'",
                 bad[i]);
        assert_string_equal(err.msg, want);
        assert_int_equal(cfg.max_body, 77);
    }
    config_cleanup(&cfg);
}

static void test_integers(void **state)
{
    (void)state;
    static const char *const bad[] = {"abc", "-5", "12x", "", "1.0"};
    struct config cfg;
    struct err err = {0};
    char want[600];

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_int_equal(config_set(&cfg, "rate-limit", "0", "test", &err), FERRY_OK);
    assert_int_equal(cfg.rate_limit, 0);
    assert_int_equal(config_set(&cfg, "threads", "16", "test", &err), FERRY_OK);
    assert_int_equal(cfg.threads, 16);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(config_set(&cfg, "rate-limit", bad[i], "test", &err), FERRY_ERR);
        snprintf(want, sizeof(want), "test: rate-limit must be a whole number >= 0, not '%s'",
                 bad[i]);
        assert_string_equal(err.msg, want);
        assert_int_equal(cfg.rate_limit, 0);
    }
    assert_int_equal(config_set(&cfg, "nope", "1", "test", &err), FERRY_ERR);
    assert_string_equal(err.msg, "test: unknown setting 'nope'");
    config_cleanup(&cfg);
}

static void test_bools(void **state)
{
    (void)state;
    static const char *const yes[] = {"1", "true", "TRUE", "True", "yes", "YES", "on", "On"};
    static const char *const no[] = {"0", "false", "FALSE", "no", "No", "off", "OFF"};
    static const char *const bad[] = {"maybe", "", "2", "y", "t"};
    struct config cfg;
    struct err err = {0};
    char want[600];

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        cfg.metrics_auth = false;
        assert_int_equal(config_set(&cfg, "metrics-auth", yes[i], "test", &err), FERRY_OK);
        assert_true(cfg.metrics_auth);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        cfg.metrics_auth = true;
        assert_int_equal(config_set(&cfg, "metrics-auth", no[i], "test", &err), FERRY_OK);
        assert_false(cfg.metrics_auth);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.metrics_auth = true;
        assert_int_equal(config_set(&cfg, "metrics-auth", bad[i], "test", &err), FERRY_ERR);
        snprintf(want, sizeof(want), "test: metrics-auth must be true or false, not '%s'", bad[i]);
        assert_string_equal(err.msg, want);
        assert_true(cfg.metrics_auth);
    }
    config_cleanup(&cfg);
}

/* --- precedence ------------------------------------------------------------------ */

static void test_precedence_file_env_flags(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    char *path = temp_file("rate-limit = 100\nthreads = 3\n");

    /* File only. */
    const char *argv_file[] = {"--config", path};
    assert_int_equal(load(&cfg, &err, 2, argv_file), FERRY_OK);
    assert_string_equal(cfg.config_file, path);
    assert_int_equal(cfg.rate_limit, 100);
    assert_int_equal(cfg.threads, 3);
    config_cleanup(&cfg);

    /* The environment beats the file. */
    setenv("FERRY_RATE_LIMIT", "200", 1);
    assert_int_equal(load(&cfg, &err, 2, argv_file), FERRY_OK);
    assert_int_equal(cfg.rate_limit, 200);
    assert_int_equal(cfg.threads, 3);
    config_cleanup(&cfg);

    /* A flag beats both, in either spelling. */
    const char *argv_sep[] = {"--config", path, "--rate-limit", "9"};
    assert_int_equal(load(&cfg, &err, 4, argv_sep), FERRY_OK);
    assert_int_equal(cfg.rate_limit, 9);
    assert_int_equal(cfg.threads, 3);
    config_cleanup(&cfg);

    const char *argv_eq[] = {"--rate-limit=9", "--config=", NULL};
    char config_eq[600];
    snprintf(config_eq, sizeof(config_eq), "--config=%s", path);
    argv_eq[1] = config_eq;
    assert_int_equal(load(&cfg, &err, 2, argv_eq), FERRY_OK);
    assert_int_equal(cfg.rate_limit, 9);
    assert_int_equal(cfg.threads, 3);
    config_cleanup(&cfg);

    unsetenv("FERRY_RATE_LIMIT");
    remove_temp(path);
}

static void test_config_from_env(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    char *path = temp_file("listen = 10.0.0.1:7000\n");
    char *other = temp_file("listen = 10.0.0.2:7001\n");

    setenv("FERRY_CONFIG", path, 1);
    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_string_equal(cfg.config_file, path);
    assert_string_equal(cfg.listen, "10.0.0.1:7000");
    config_cleanup(&cfg);

    /* --config beats FERRY_CONFIG. */
    const char *argv[] = {"--config", other};
    assert_int_equal(load(&cfg, &err, 2, argv), FERRY_OK);
    assert_string_equal(cfg.config_file, other);
    assert_string_equal(cfg.listen, "10.0.0.2:7001");
    config_cleanup(&cfg);

    unsetenv("FERRY_CONFIG");
    remove_temp(path);
    remove_temp(other);
}

static void test_config_file_error_propagates(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    const char *argv[] = {"--config", "/nonexistent/ferry.conf"};

    assert_int_equal(load(&cfg, &err, 2, argv), FERRY_ERR);
    assert_string_equal(
        err.msg, "cannot read config file /nonexistent/ferry.conf: No such file or directory");
    config_cleanup(&cfg);
}

static void test_env_values(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};

    setenv("FERRY_MAX_BODY", "1G", 1);
    setenv("FERRY_METRICS_AUTH", "on", 1);
    setenv("FERRY_JWT_SECRET", "s3cret", 1);
    setenv("FERRY_THREADS", "", 1); /* empty means unset */
    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_int_equal(cfg.max_body, 1024LL * 1024 * 1024);
    assert_true(cfg.metrics_auth);
    assert_string_equal(cfg.jwt_secret, "s3cret");
    assert_int_equal(cfg.threads, 8);
    config_cleanup(&cfg);

    setenv("FERRY_RATE_LIMIT", "lots", 1);
    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg,
                        "FERRY_RATE_LIMIT: rate-limit must be a whole number >= 0, not 'lots'");
    config_cleanup(&cfg);

    unsetenv("FERRY_MAX_BODY");
    unsetenv("FERRY_METRICS_AUTH");
    unsetenv("FERRY_JWT_SECRET");
    unsetenv("FERRY_THREADS");
    unsetenv("FERRY_RATE_LIMIT");
}

/* --- flags ----------------------------------------------------------------------- */

static void test_unknown_flag(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};

    const char *argv[] = {"--threads", "2", "--nope", "1"};
    assert_int_equal(load(&cfg, &err, 4, argv), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "unknown option '--nope'");
    config_cleanup(&cfg);

    const char *argv_eq[] = {"--nope=1"};
    assert_int_equal(load(&cfg, &err, 1, argv_eq), FERRY_ERR);
    assert_string_equal(err.msg, "unknown option '--nope'");
    config_cleanup(&cfg);

    const char *argv_pos[] = {"serve"};
    assert_int_equal(load(&cfg, &err, 1, argv_pos), FERRY_ERR);
    assert_string_equal(err.msg, "unexpected argument 'serve'");
    config_cleanup(&cfg);

    const char *argv_short[] = {"-t", "2"};
    assert_int_equal(load(&cfg, &err, 2, argv_short), FERRY_ERR);
    assert_string_equal(err.msg, "unknown option '-t'");
    config_cleanup(&cfg);
}

static void test_flag_needs_value(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    const char *argv[] = {"--rate-limit"};

    assert_int_equal(load(&cfg, &err, 1, argv), FERRY_ERR);
    assert_string_equal(err.msg, "option '--rate-limit' needs a value");
    config_cleanup(&cfg);

    const char *argv_bad[] = {"--rate-limit", "fast"};
    assert_int_equal(load(&cfg, &err, 2, argv_bad), FERRY_ERR);
    assert_string_equal(err.msg,
                        "command line: rate-limit must be a whole number >= 0, not 'fast'");
    config_cleanup(&cfg);
}

static void test_bool_flag_alone(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};

    const char *argv_last[] = {"--metrics-auth"};
    assert_int_equal(load(&cfg, &err, 1, argv_last), FERRY_OK);
    assert_true(cfg.metrics_auth);
    config_cleanup(&cfg);

    const char *argv_mid[] = {"--metrics-auth", "--rate-limit", "5"};
    assert_int_equal(load(&cfg, &err, 3, argv_mid), FERRY_OK);
    assert_true(cfg.metrics_auth);
    assert_int_equal(cfg.rate_limit, 5);
    config_cleanup(&cfg);

    const char *argv_val[] = {"--metrics-auth", "false"};
    assert_int_equal(load(&cfg, &err, 2, argv_val), FERRY_OK);
    assert_false(cfg.metrics_auth);
    config_cleanup(&cfg);

    const char *argv_eq[] = {"--metrics-auth=no"};
    setenv("FERRY_METRICS_AUTH", "true", 1);
    assert_int_equal(load(&cfg, &err, 1, argv_eq), FERRY_OK);
    assert_false(cfg.metrics_auth); /* the flag beats the environment */
    config_cleanup(&cfg);
    unsetenv("FERRY_METRICS_AUTH");
}

static void test_string_flags(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};
    const char *argv[] = {"--data-dir", "/srv/ferry",        "--listen=[::1]:9000",
                          "--db",       "postgres://u@h/db", "--cors-origins",
                          "*"};

    assert_int_equal(load(&cfg, &err, 7, argv), FERRY_OK);
    assert_string_equal(cfg.data_dir, "/srv/ferry");
    assert_string_equal(cfg.listen, "[::1]:9000");
    assert_string_equal(cfg.db_url, "postgres://u@h/db");
    assert_string_equal(cfg.cors_origins, "*");
    char *url = config_db_url(&cfg);
    assert_string_equal(url, "postgres://u@h/db");
    free(url);
    config_cleanup(&cfg);
}

static void test_validation(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};

    const char *threads0[] = {"--threads", "0"};
    assert_int_equal(load(&cfg, &err, 2, threads0), FERRY_ERR);
    assert_string_equal(err.msg, "threads must be between 1 and 256");
    config_cleanup(&cfg);

    const char *threads257[] = {"--threads=257"};
    assert_int_equal(load(&cfg, &err, 1, threads257), FERRY_ERR);
    assert_string_equal(err.msg, "threads must be between 1 and 256");
    config_cleanup(&cfg);

    const char *threads256[] = {"--threads=256"};
    assert_int_equal(load(&cfg, &err, 1, threads256), FERRY_OK);
    assert_int_equal(cfg.threads, 256);
    config_cleanup(&cfg);

    const char *depth0[] = {"--max-json-depth", "0"};
    assert_int_equal(load(&cfg, &err, 2, depth0), FERRY_ERR);
    assert_string_equal(err.msg, "max-json-depth must be at least 1");
    config_cleanup(&cfg);

    const char *header[] = {"--max-header", "1023"};
    assert_int_equal(load(&cfg, &err, 2, header), FERRY_ERR);
    assert_string_equal(err.msg, "max-header must be at least 1K");
    config_cleanup(&cfg);

    const char *header1k[] = {"--max-header", "1K"};
    assert_int_equal(load(&cfg, &err, 2, header1k), FERRY_OK);
    assert_int_equal(cfg.max_header, 1024);
    config_cleanup(&cfg);
}

/* --- helpers --------------------------------------------------------------------- */

static int listen_addr(const char *listen, char *host, size_t host_len, int *port, struct err *err)
{
    struct config cfg = {0};
    cfg.listen = (char *)listen;
    return config_listen_addr(&cfg, host, host_len, port, err);
}

static void test_listen_addr(void **state)
{
    (void)state;
    char host[64];
    int port = -1;
    struct err err = {0};

    assert_int_equal(listen_addr("127.0.0.1:8080", host, sizeof(host), &port, &err), FERRY_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);

    assert_int_equal(listen_addr("[::1]:9000", host, sizeof(host), &port, &err), FERRY_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9000);

    assert_int_equal(listen_addr("localhost:0", host, sizeof(host), &port, &err), FERRY_OK);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 0);

    assert_int_equal(listen_addr("h:65535", host, sizeof(host), &port, &err), FERRY_OK);
    assert_int_equal(port, 65535);

    port = -1;
    assert_int_equal(listen_addr(":80", host, sizeof(host), &port, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, "listen must be HOST:PORT, not ':80'");
    assert_int_equal(port, -1);

    assert_int_equal(listen_addr("localhost", host, sizeof(host), &port, &err), FERRY_ERR);
    assert_string_equal(err.msg, "listen must be HOST:PORT, not 'localhost'");

    assert_int_equal(listen_addr("host:99999", host, sizeof(host), &port, &err), FERRY_ERR);
    assert_string_equal(err.msg, "listen port must be 0-65535, not '99999'");

    assert_int_equal(listen_addr("host:", host, sizeof(host), &port, &err), FERRY_ERR);
    assert_string_equal(err.msg, "listen port must be 0-65535, not ''");

    assert_int_equal(listen_addr("host:80x", host, sizeof(host), &port, &err), FERRY_ERR);
    assert_string_equal(err.msg, "listen port must be 0-65535, not '80x'");

    assert_int_equal(listen_addr("host:-1", host, sizeof(host), &port, &err), FERRY_ERR);
    assert_string_equal(err.msg, "listen port must be 0-65535, not '-1'");
    assert_int_equal(port, -1);

    /* The host must fit, NUL included. */
    char small[5];
    assert_int_equal(listen_addr("abcde:80", small, sizeof(small), &port, &err), FERRY_ERR);
    assert_string_equal(err.msg, "listen host is too long");
    assert_int_equal(listen_addr("abcd:80", small, sizeof(small), &port, &err), FERRY_OK);
    assert_string_equal(small, "abcd");
}

static void test_db_url(void **state)
{
    (void)state;
    struct config cfg = {0};
    char *url;

    cfg.data_dir = "/var/lib/ferry";
    url = config_db_url(&cfg);
    assert_string_equal(url, "sqlite:/var/lib/ferry/ferry.db");
    free(url);

    cfg.db_url = ""; /* empty counts as unset */
    url = config_db_url(&cfg);
    assert_string_equal(url, "sqlite:/var/lib/ferry/ferry.db");
    free(url);

    cfg.db_url = "sqlite:/elsewhere.db";
    url = config_db_url(&cfg);
    assert_string_equal(url, "sqlite:/elsewhere.db");
    free(url);
}

static void test_print_help(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    config_print_help(out);
    fclose(out);
    assert_non_null(strstr(text, "--rate-limit"));
    assert_non_null(strstr(text, "(env FERRY_RATE_LIMIT, default 600)"));
    assert_non_null(strstr(text, "(env FERRY_JWT_SECRET)"));
    assert_non_null(strstr(text, "--metrics-auth"));
    free(text);
}

/* --- a command's own options next to the settings (config_parse_args) ------------ */

enum { OWN_ROLE = 'r', OWN_FLAG = 'f' };
static const struct option own[] = {
    {"role", required_argument, NULL, OWN_ROLE},
    {"flag", no_argument, NULL, OWN_FLAG},
};

static int parse(struct config_args *a, struct err *err, int argc, const char **argv)
{
    return config_parse_args(argc, (char **)argv, own, 2, a, err);
}

static void test_args_split(void **state)
{
    (void)state;
    struct config_args a;
    struct err err = {0};
    const char *argv[] = {"create",         "--role", "admin", "--rate-limit=3", "id-1", "--flag",
                          "--metrics-auth", "no",     "--",    "--not-an-option"};

    assert_int_equal(parse(&a, &err, 10, argv), FERRY_OK);
    assert_int_equal(a.n_own, 2);
    assert_int_equal(a.own[0].val, OWN_ROLE);
    assert_string_equal(a.own[0].name, "role");
    assert_string_equal(a.own[0].value, "admin");
    assert_int_equal(a.own[1].val, OWN_FLAG);
    assert_null(a.own[1].value);
    assert_int_equal(a.n_flags, 2);
    assert_string_equal(a.flags[0].value, "3");
    assert_string_equal(a.flags[1].value, "no"); /* a bool takes a bool word after it */
    assert_int_equal(a.n_positional, 3);
    assert_string_equal(a.positional[0], "create");
    assert_string_equal(a.positional[1], "id-1");
    assert_string_equal(a.positional[2], "--not-an-option");
    assert_false(a.help);

    struct config cfg;
    assert_int_equal(config_load_args(&cfg, &a, &err), FERRY_OK);
    assert_int_equal(cfg.rate_limit, 3);
    assert_false(cfg.metrics_auth);
    config_cleanup(&cfg);
    config_args_cleanup(&a);
    /* the caller's argv is left in its order */
    assert_string_equal(argv[4], "id-1");
}

static void test_args_errors(void **state)
{
    (void)state;
    struct config_args a;
    struct err err = {0};

    const char *help[] = {"list", "-h"};
    assert_int_equal(parse(&a, &err, 2, help), FERRY_OK);
    assert_true(a.help);
    config_args_cleanup(&a);

    const char *bool_then_option[] = {"--metrics-auth", "--flag", "id-1"};
    assert_int_equal(parse(&a, &err, 3, bool_then_option), FERRY_OK);
    assert_string_equal(a.flags[0].value, "true");
    assert_int_equal(a.n_own, 1);
    assert_int_equal(a.n_positional, 1);
    config_args_cleanup(&a);

    const char *missing[] = {"--role"};
    assert_int_equal(parse(&a, &err, 1, missing), FERRY_ERR);
    assert_string_equal(err.msg, "option '--role' needs a value");

    const char *no_value[] = {"--flag=yes"};
    assert_int_equal(parse(&a, &err, 1, no_value), FERRY_ERR);
    assert_string_equal(err.msg, "option '--flag' takes no value");

    const char *unknown[] = {"--rolex", "1"};
    assert_int_equal(parse(&a, &err, 2, unknown), FERRY_ERR);
    assert_string_equal(err.msg, "unknown option '--rolex'");
}

static void test_log_settings(void **state)
{
    (void)state;
    struct config cfg;
    struct err err = {0};

    assert_int_equal(load(&cfg, &err, 0, NULL), FERRY_OK);
    assert_string_equal(cfg.log_level, "info");
    assert_string_equal(cfg.log_format, "json");
    assert_null(cfg.log_file);
    config_cleanup(&cfg);

    setenv("FERRY_LOG_LEVEL", "warn", 1);
    setenv("FERRY_LOG_FILE", "/var/log/ferry.log", 1);
    const char *argv[] = {"--log-format", "text"};
    assert_int_equal(load(&cfg, &err, 2, argv), FERRY_OK);
    assert_string_equal(cfg.log_level, "warn");
    assert_string_equal(cfg.log_format, "text");
    assert_string_equal(cfg.log_file, "/var/log/ferry.log");
    config_cleanup(&cfg);

    const char *level[] = {"--log-level", "loud"};
    assert_int_equal(load(&cfg, &err, 2, level), FERRY_ERR);
    assert_string_equal(err.msg, "log-level must be debug, info, warn or error, not 'loud'");
    config_cleanup(&cfg);

    const char *format[] = {"--log-format=xml"};
    assert_int_equal(load(&cfg, &err, 1, format), FERRY_ERR);
    assert_string_equal(err.msg, "log-format must be json or text, not 'xml'");
    config_cleanup(&cfg);

    char *path = temp_file("log-level = debug\nlog-format = json\n");
    const char *file[] = {"--config", path};
    unsetenv("FERRY_LOG_LEVEL");
    assert_int_equal(load(&cfg, &err, 2, file), FERRY_OK);
    assert_string_equal(cfg.log_level, "debug");
    config_cleanup(&cfg);
    remove_temp(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_file_parsing, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_file_unknown_key, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_file_missing_equals, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_file_bad_value_names_line, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_file_long_line, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_file_cannot_name_another, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_file_missing, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_sizes, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_integers, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_bools, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_precedence_file_env_flags, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_config_from_env, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_config_file_error_propagates, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_env_values, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_unknown_flag, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_flag_needs_value, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_bool_flag_alone, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_string_flags, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_validation, clear_env, clear_env),
        cmocka_unit_test(test_listen_addr),
        cmocka_unit_test(test_db_url),
        cmocka_unit_test(test_print_help),
        cmocka_unit_test_setup_teardown(test_args_split, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_args_errors, clear_env, clear_env),
        cmocka_unit_test_setup_teardown(test_log_settings, clear_env, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
