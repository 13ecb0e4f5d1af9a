/* test_tokens.c - unit tests for src/auth/tokens.c against a real SQLite store in a
 * temporary directory (store_open runs the migrations that make ferry_tokens). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/tokens.h"
#include "util/crypto.h"
#include "util/timeutil.h"

#include "store_fixture.h"

static int setup(void **state)
{
    struct store_fixture *f = xcalloc(1, sizeof(*f));
    if (store_fixture_open(f, "tokens") != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct store_fixture *f = *state;
    store_fixture_close(f);
    free(f);
    return 0;
}

/* Creates a token or fails the test; the caller frees the secret. */
static char *create(struct store_conn *c, const char *role, const char *name, const char *user_id,
                    const char *device_id, int64_t expires_at, char id[40])
{
    struct token_spec spec = {
        tokens_parse_role(role), name, user_id, device_id, expires_at, NULL, NULL};
    struct err err = {0};
    char *secret = NULL;
    if (tokens_create(c, &spec, &secret, id, &err) != FERRY_OK)
        fail_msg("tokens_create: %s", err.msg);
    assert_non_null(secret);
    return secret;
}

/* Reads one text column of the token row (NULL for SQL NULL); caller frees. */
static char *token_column(struct store_conn *c, const char *id, const char *column)
{
    struct store_rows *rows = NULL;
    struct err err = {0};
    struct store_val v = sv_text(id);
    char *sql = xasprintf("SELECT %s FROM ferry_tokens WHERE id = $1", column);
    char *value = NULL;

    assert_int_equal(store_query(c, sql, &v, 1, &rows, &err), FERRY_OK);
    assert_int_equal(store_rows_next(rows, &err), 1);
    if (!store_rows_isnull(rows, 0))
        value = xstrdup(store_rows_text(rows, 0));
    assert_int_equal(store_rows_next(rows, &err), 0);
    store_rows_free(rows);
    free(sql);
    return value;
}

static int64_t count(struct store_conn *c, const char *sql)
{
    int64_t n = -1;
    bool found = false;
    struct err err = {0};
    assert_int_equal(store_query_int(c, sql, NULL, 0, &n, &found, &err), FERRY_OK);
    assert_true(found);
    return n;
}

static void assert_token_id(const char *id)
{
    assert_int_equal(strlen(id), 4 + 24);
    assert_memory_equal(id, "tok_", 4);
    for (size_t i = 4; i < 28; i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
}

static void assert_url_safe(const char *s)
{
    for (; *s; s++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *s));
}

/* --- create ---------------------------------------------------------------------- */

static void test_create_admin(void **state)
{
    struct store_fixture *f = *state;
    char id[40], hash[65];
    char *secret = create(f->c, "admin", "ops", NULL, NULL, 0, id);

    assert_memory_equal(secret, "fy_", 3);
    assert_int_equal(strlen(secret), 3 + 43); /* 32 random bytes in base64url */
    assert_url_safe(secret + 3);
    assert_true(tokens_well_formed(secret));
    assert_token_id(id);

    crypto_sha256_hex(secret, strlen(secret), hash);
    char *stored_hash = token_column(f->c, id, "token_hash");
    assert_string_equal(stored_hash, hash);
    free(stored_hash);

    /* The readable prefix: "fy_" and the first four characters of the random part. */
    char *prefix = token_column(f->c, id, "prefix");
    assert_int_equal(strlen(prefix), 7);
    assert_memory_equal(prefix, secret, 7);
    free(prefix);

    char *text = token_column(f->c, id, "role");
    assert_string_equal(text, "admin");
    free(text);
    text = token_column(f->c, id, "name");
    assert_string_equal(text, "ops");
    free(text);
    assert_null(token_column(f->c, id, "user_id"));
    assert_null(token_column(f->c, id, "device_id"));
    assert_null(token_column(f->c, id, "expires_at"));
    assert_null(token_column(f->c, id, "revoked_at"));
    assert_null(token_column(f->c, id, "last_used_at"));

    /* Nothing in the row is the secret itself. */
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM ferry_tokens"), 1);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM ferry_users"), 0);
    assert_false(store_in_txn(f->c));
    free(secret);
}

static void test_create_user(void **state)
{
    struct store_fixture *f = *state;
    char id[40], id2[40], hash[65];
    int64_t before = time_now_ms();
    char *secret = create(f->c, "user", "laptop", "alice", NULL, 0, id);
    int64_t after = time_now_ms();

    assert_memory_equal(secret, "fy_", 3);
    assert_int_not_equal(strncmp(secret, TOKEN_PREFIX_DEVICE, strlen(TOKEN_PREFIX_DEVICE)), 0);
    assert_int_equal(strlen(secret), 46);
    crypto_sha256_hex(secret, strlen(secret), hash);
    char *stored_hash = token_column(f->c, id, "token_hash");
    assert_string_equal(stored_hash, hash);
    free(stored_hash);
    char *user = token_column(f->c, id, "user_id");
    assert_string_equal(user, "alice");
    free(user);
    char *created = token_column(f->c, id, "created_at");
    assert_in_range(strtoll(created, NULL, 10), before, after);
    free(created);

    /* The user row is made once. */
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM ferry_users WHERE id = 'alice'"), 1);
    char *secret2 = create(f->c, "user", "phone", "alice", NULL, 0, id2);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM ferry_users"), 1);
    assert_string_not_equal(secret, secret2);
    assert_string_not_equal(id, id2);
    free(secret);
    free(secret2);
}

static void test_create_device(void **state)
{
    struct store_fixture *f = *state;
    char id[40], hash[65];
    char *secret = create(f->c, "device", "phone", "alice", "phone-1", 0, id);

    assert_memory_equal(secret, "fyd_", 4);
    assert_int_equal(strlen(secret), 4 + 43);
    assert_url_safe(secret + 4);
    assert_true(tokens_well_formed(secret));
    crypto_sha256_hex(secret, strlen(secret), hash);
    char *stored_hash = token_column(f->c, id, "token_hash");
    assert_string_equal(stored_hash, hash);
    free(stored_hash);
    char *prefix = token_column(f->c, id, "prefix");
    assert_int_equal(strlen(prefix), 8); /* "fyd_" and four characters */
    assert_memory_equal(prefix, secret, 8);
    free(prefix);
    char *device = token_column(f->c, id, "device_id");
    assert_string_equal(device, "phone-1");
    free(device);
    free(secret);
}

static void test_create_with_expiry(void **state)
{
    struct store_fixture *f = *state;
    char id[40];
    int64_t expires = time_now_ms() + 3600 * 1000;
    char *secret = create(f->c, "user", "temp", "bob", NULL, expires, id);
    char *stored = token_column(f->c, id, "expires_at");
    assert_int_equal(strtoll(stored, NULL, 10), expires);
    free(stored);
    free(secret);
}

static void expect_invalid(struct store_conn *c, const struct token_spec *spec, const char *want)
{
    struct err err = {0};
    char id[40];
    char *secret = (char *)"untouched";
    assert_int_equal(tokens_create(c, spec, &secret, id, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_string_equal(err.msg, want);
    assert_null(secret);
}

static void test_create_validation(void **state)
{
    struct store_fixture *f = *state;
    char long_name[202];
    memset(long_name, 'n', 201);
    long_name[201] = '\0';

    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_NONE, "x", "u", NULL, 0, NULL, NULL},
                   "role must be admin, user or device");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_NONE, "x", "u", NULL, 0, NULL, NULL},
                   "role must be admin, user or device");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_NONE, "x", NULL, NULL, 0, NULL, NULL},
                   "role must be admin, user or device");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_ADMIN, "", NULL, NULL, 0, NULL, NULL},
                   "name must be 1 to 200 characters");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_ADMIN, NULL, NULL, NULL, 0, NULL, NULL},
                   "name must be 1 to 200 characters");
    expect_invalid(f->c,
                   &(struct token_spec){TOKEN_ROLE_ADMIN, long_name, NULL, NULL, 0, NULL, NULL},
                   "name must be 1 to 200 characters");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_USER, "x", NULL, NULL, 0, NULL, NULL},
                   "a user token needs a user");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_USER, "x", "", NULL, 0, NULL, NULL},
                   "a user token needs a user");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_DEVICE, "x", NULL, "d1", 0, NULL, NULL},
                   "a device token needs a user");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_DEVICE, "x", "alice", NULL, 0, NULL, NULL},
                   "a device token needs a device id");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_DEVICE, "x", "alice", "", 0, NULL, NULL},
                   "a device token needs a device id");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_USER, "x", "alice", "d1", 0, NULL, NULL},
                   "only a device token has a device id");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_ADMIN, "x", NULL, "d1", 0, NULL, NULL},
                   "only a device token has a device id");
    expect_invalid(
        f->c,
        &(struct token_spec){TOKEN_ROLE_USER, "x", "alice", NULL, time_now_ms() - 1, NULL, NULL},
        "the expiry must be in the future");
    expect_invalid(f->c, &(struct token_spec){TOKEN_ROLE_USER, "x", "alice", NULL, 1, NULL, NULL},
                   "the expiry must be in the future");

    /* Nothing was stored by any of them. */
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM ferry_tokens"), 0);
    assert_int_equal(count(f->c, "SELECT COUNT(*) FROM ferry_users"), 0);
    assert_false(store_in_txn(f->c));

    /* 200 characters is the longest name. */
    char id[40];
    long_name[200] = '\0';
    char *secret = create(f->c, "admin", long_name, NULL, NULL, 0, id);
    free(secret);
}

/* --- authenticate ---------------------------------------------------------------- */

static void test_authenticate_ok(void **state)
{
    struct store_fixture *f = *state;
    struct token_info info;
    struct err err = {0};
    char id[40];
    char *secret = create(f->c, "device", "phone", "alice", "phone-1", 0, id);
    int64_t now = time_now_ms();

    memset(&info, 0x5a, sizeof(info));
    assert_int_equal(tokens_authenticate(f->c, secret, now, &info, &err), FERRY_OK);
    assert_string_equal(info.id, id);
    assert_int_equal(info.role, TOKEN_ROLE_DEVICE);
    assert_string_equal(info.user_id, "alice");
    assert_string_equal(info.device_id, "phone-1");

    /* last_used_at is recorded, then refreshed at most once a minute. */
    char *used = token_column(f->c, id, "last_used_at");
    assert_int_equal(strtoll(used, NULL, 10), now);
    free(used);
    assert_int_equal(tokens_authenticate(f->c, secret, now + 30000, &info, &err), FERRY_OK);
    used = token_column(f->c, id, "last_used_at");
    assert_int_equal(strtoll(used, NULL, 10), now);
    free(used);
    assert_int_equal(tokens_authenticate(f->c, secret, now + 61000, &info, &err), FERRY_OK);
    used = token_column(f->c, id, "last_used_at");
    assert_int_equal(strtoll(used, NULL, 10), now + 61000);
    free(used);
    free(secret);
}

static void test_authenticate_admin_has_empty_owner(void **state)
{
    struct store_fixture *f = *state;
    struct token_info info;
    struct err err = {0};
    char id[40];
    char *secret = create(f->c, "admin", "ops", NULL, NULL, 0, id);

    memset(&info, 0x5a, sizeof(info));
    assert_int_equal(tokens_authenticate(f->c, secret, time_now_ms(), &info, &err), FERRY_OK);
    assert_string_equal(info.id, id);
    assert_int_equal(info.role, TOKEN_ROLE_ADMIN);
    assert_string_equal(info.user_id, "");
    assert_string_equal(info.device_id, "");
    free(secret);
}

static void test_authenticate_unknown(void **state)
{
    struct store_fixture *f = *state;
    struct token_info info;
    struct err err = {0};
    char id[40];
    char *secret = create(f->c, "user", "laptop", "alice", NULL, 0, id);

    /* Right shape, wrong secret: one character changed. */
    char *guess = xstrdup(secret);
    guess[10] = guess[10] == 'A' ? 'B' : 'A';
    assert_int_equal(tokens_authenticate(f->c, guess, time_now_ms(), &info, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_UNAUTHORIZED);
    assert_string_equal(err.msg, "unknown token");

    assert_int_equal(tokens_authenticate(f->c, "fy_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                         time_now_ms(), &info, &err),
                     FERRY_ERR);
    assert_string_equal(err.msg, "unknown token");

    assert_int_equal(tokens_authenticate(f->c, "not-a-token", time_now_ms(), &info, &err),
                     FERRY_ERR);
    assert_int_equal(err.code, ERR_UNAUTHORIZED);
    assert_string_equal(err.msg, "malformed token");
    free(guess);
    free(secret);
}

static void test_authenticate_revoked(void **state)
{
    struct store_fixture *f = *state;
    struct token_info info;
    struct err err = {0};
    char id[40], want[96];
    char *secret = create(f->c, "user", "laptop", "alice", NULL, 0, id);

    assert_int_equal(tokens_revoke(f->c, id, &err), FERRY_OK);
    char *revoked_at = token_column(f->c, id, "revoked_at");
    assert_non_null(revoked_at);
    assert_int_equal(tokens_authenticate(f->c, secret, time_now_ms(), &info, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_UNAUTHORIZED);
    snprintf(want, sizeof(want), "token %s is revoked", id);
    assert_string_equal(err.msg, want);

    /* Revoking twice is fine and keeps the first time. */
    assert_int_equal(tokens_revoke(f->c, id, &err), FERRY_OK);
    char *again = token_column(f->c, id, "revoked_at");
    assert_string_equal(again, revoked_at);
    free(again);
    free(revoked_at);
    free(secret);
}

static void test_authenticate_expired(void **state)
{
    struct store_fixture *f = *state;
    struct token_info info;
    struct err err = {0};
    char id[40], want[96];
    int64_t expires = time_now_ms() + 3600 * 1000;
    char *secret = create(f->c, "user", "temp", "alice", NULL, expires, id);

    assert_int_equal(tokens_authenticate(f->c, secret, expires - 1, &info, &err), FERRY_OK);
    assert_string_equal(info.id, id);

    snprintf(want, sizeof(want), "token %s has expired", id);
    assert_int_equal(tokens_authenticate(f->c, secret, expires, &info, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_UNAUTHORIZED);
    assert_string_equal(err.msg, want);
    assert_int_equal(tokens_authenticate(f->c, secret, expires + 86400000, &info, &err), FERRY_ERR);
    assert_string_equal(err.msg, want);
    free(secret);
}

/* --- shape ----------------------------------------------------------------------- */

static char *repeat(const char *prefix, size_t n)
{
    size_t plen = strlen(prefix);
    char *s = xmalloc(plen + n + 1);
    memcpy(s, prefix, plen);
    memset(s + plen, 'a', n);
    s[plen + n] = '\0';
    return s;
}

static void test_well_formed(void **state)
{
    (void)state;
    static const struct {
        const char *prefix;
        size_t n;
        bool want;
    } cases[] = {
        {"fy_", 40, false},   {"fy_", 41, true},   {"fy_", 43, true},  {"fy_", 125, true},
        {"fy_", 126, false},  {"fyd_", 40, false}, {"fyd_", 41, true}, {"fyd_", 124, true},
        {"fyd_", 125, false}, {"fx_", 43, false},  {"FY_", 43, false}, {"fy", 44, false},
        {"", 0, false},       {"fy_", 0, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *token = repeat(cases[i].prefix, cases[i].n);
        if (tokens_well_formed(token) != cases[i].want)
            fail_msg("tokens_well_formed(\"%s\" + %zu chars) should be %d", cases[i].prefix,
                     cases[i].n, cases[i].want);
        free(token);
    }
}

static void test_valid_role(void **state)
{
    (void)state;
    assert_int_equal(tokens_parse_role("admin"), TOKEN_ROLE_ADMIN);
    assert_int_equal(tokens_parse_role("user"), TOKEN_ROLE_USER);
    assert_int_equal(tokens_parse_role("device"), TOKEN_ROLE_DEVICE);
    assert_int_equal(tokens_parse_role("root"), TOKEN_ROLE_NONE);
    assert_int_equal(tokens_parse_role(""), TOKEN_ROLE_NONE);
    assert_int_equal(tokens_parse_role("admin "), TOKEN_ROLE_NONE);
    assert_int_equal(tokens_parse_role(NULL), TOKEN_ROLE_NONE);
    assert_string_equal(tokens_role_name(TOKEN_ROLE_USER), "user");
    assert_string_equal(tokens_role_name(TOKEN_ROLE_NONE), "");
}

/* --- list, get, revoke ----------------------------------------------------------- */

static bool has_key_set(json_t *obj)
{
    static const char *const keys[] = {
        "id",         "name",         "role",       "user_id", "device_id", "prefix", "created_at",
        "expires_at", "last_used_at", "revoked_at", "revoked", "tables",    "attrs"};
    if (json_object_size(obj) != sizeof(keys) / sizeof(keys[0]))
        return false;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (!json_object_get(obj, keys[i]))
            return false;
    return true;
}

static json_t *find_by_id(json_t *list, const char *id)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (strcmp(json_string_value(json_object_get(item, "id")), id) == 0)
            return item;
    }
    return NULL;
}

static void test_list_has_no_secret(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    char id_admin[40], id_alice[40], id_phone[40], id_bob[40], hash[65];
    char *s_admin = create(f->c, "admin", "ops", NULL, NULL, 0, id_admin);
    char *s_alice = create(f->c, "user", "laptop", "alice", NULL, 0, id_alice);
    char *s_phone = create(f->c, "device", "phone", "alice", "phone-1", 0, id_phone);
    char *s_bob = create(f->c, "user", "desk", "bob", NULL, 0, id_bob);
    char *secrets[] = {s_admin, s_alice, s_phone, s_bob};
    json_t *list = NULL;

    assert_int_equal(tokens_revoke(f->c, id_bob, &err), FERRY_OK);
    assert_int_equal(tokens_list(f->c, NULL, &list, &err), FERRY_OK);
    assert_true(json_is_array(list));
    assert_int_equal(json_array_size(list), 4);

    char *dump = json_dumps(list, JSON_COMPACT);
    for (size_t i = 0; i < 4; i++) {
        crypto_sha256_hex(secrets[i], strlen(secrets[i]), hash);
        assert_null(strstr(dump, secrets[i]));
        assert_null(strstr(dump, secrets[i] + 4)); /* not even the random part */
        assert_null(strstr(dump, hash));
    }
    free(dump);

    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        assert_true(has_key_set(item));
        assert_null(json_object_get(item, "secret"));
        assert_null(json_object_get(item, "token"));
        assert_null(json_object_get(item, "tokenHash"));
    }

    json_t *phone = find_by_id(list, id_phone);
    assert_non_null(phone);
    assert_string_equal(json_string_value(json_object_get(phone, "name")), "phone");
    assert_string_equal(json_string_value(json_object_get(phone, "role")), "device");
    assert_string_equal(json_string_value(json_object_get(phone, "user_id")), "alice");
    assert_string_equal(json_string_value(json_object_get(phone, "device_id")), "phone-1");
    assert_int_equal(strlen(json_string_value(json_object_get(phone, "prefix"))), 8);
    assert_memory_equal(json_string_value(json_object_get(phone, "prefix")), s_phone, 8);
    assert_true(json_is_string(json_object_get(phone, "created_at")));
    assert_true(json_is_null(json_object_get(phone, "expires_at")));
    assert_true(json_is_null(json_object_get(phone, "last_used_at")));
    assert_true(json_is_null(json_object_get(phone, "revoked_at")));
    assert_true(json_is_false(json_object_get(phone, "revoked")));

    json_t *admin = find_by_id(list, id_admin);
    assert_non_null(admin);
    assert_true(json_is_null(json_object_get(admin, "user_id")));
    assert_true(json_is_null(json_object_get(admin, "device_id")));

    json_t *bob = find_by_id(list, id_bob);
    assert_non_null(bob);
    assert_true(json_is_true(json_object_get(bob, "revoked")));
    assert_true(json_is_string(json_object_get(bob, "revoked_at")));
    json_decref(list);

    /* Filtered by owner. */
    assert_int_equal(tokens_list(f->c, "alice", &list, &err), FERRY_OK);
    assert_int_equal(json_array_size(list), 2);
    assert_non_null(find_by_id(list, id_alice));
    assert_non_null(find_by_id(list, id_phone));
    json_decref(list);

    assert_int_equal(tokens_list(f->c, "nobody", &list, &err), FERRY_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    for (size_t k = 0; k < 4; k++)
        free(secrets[k]);
}

static void test_get(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    char id[40];
    char *secret = create(f->c, "user", "laptop", "alice", NULL, 0, id);
    json_t *tok = NULL;

    assert_int_equal(tokens_get(f->c, id, &tok, &err), FERRY_OK);
    assert_true(has_key_set(tok));
    assert_string_equal(json_string_value(json_object_get(tok, "id")), id);
    assert_string_equal(json_string_value(json_object_get(tok, "user_id")), "alice");
    json_decref(tok);

    tok = json_object(); /* must be reset */
    json_t *kept = tok;
    assert_int_equal(tokens_get(f->c, "tok_nope", &tok, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    assert_string_equal(err.msg, "no token with id 'tok_nope'");
    assert_null(tok);
    json_decref(kept);
    free(secret);
}

static void test_revoke_unknown(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};

    assert_int_equal(tokens_revoke(f->c, "tok_missing", &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    assert_string_equal(err.msg, "no token with id 'tok_missing'");
}

/* Attributes are checked, stored compact with sorted names, and come back with the token
 * when it authenticates; changing them marks the token's device for a resync. */
static void test_attributes(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    struct token_info info;
    char id[40], *clean = NULL;

    assert_int_equal(tokens_check_attrs("{ \"z\": 1, \"a\": \"x\" }", &clean, &err), FERRY_OK);
    assert_string_equal(clean, "{\"a\":\"x\",\"z\":1}");
    free(clean);
    assert_int_equal(tokens_check_attrs("{}", &clean, &err), FERRY_OK);
    assert_null(clean);
    const char *bad[] = {"[1]", "{\"a\": 1.5}", "{\"a\": {}}", "{\"\": \"x\"}", "nope", NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(tokens_check_attrs(bad[i], &clean, &err), FERRY_ERR);

    struct token_spec spec = {TOKEN_ROLE_DEVICE,         "d", "alice", "dev-1", 0, NULL,
                              "{\"tenant_id\":\"acme\"}"};
    char *secret = NULL;
    assert_int_equal(tokens_create(f->c, &spec, &secret, id, &err), FERRY_OK);
    assert_int_equal(tokens_authenticate(f->c, secret, time_now_ms(), &info, &err), FERRY_OK);
    assert_string_equal(info.attrs, "{\"tenant_id\":\"acme\"}");

    assert_int_equal(count(f->c, "SELECT resync_seq FROM ferry_devices WHERE id = 'dev-1'"), 0);
    assert_int_equal(tokens_set_attrs(f->c, id, "{\"tenant_id\":\"acme\"}", &err), FERRY_OK);
    assert_int_equal(count(f->c, "SELECT resync_seq FROM ferry_devices WHERE id = 'dev-1'"), 0);
    assert_int_equal(tokens_set_attrs(f->c, id, "{\"tenant_id\":\"globex\"}", &err), FERRY_OK);
    assert_true(count(f->c, "SELECT resync_seq FROM ferry_devices WHERE id = 'dev-1'") > 0);
    assert_int_equal(tokens_authenticate(f->c, secret, time_now_ms(), &info, &err), FERRY_OK);
    assert_string_equal(info.attrs, "{\"tenant_id\":\"globex\"}");
    assert_int_equal(tokens_set_attrs(f->c, "tok_nope", "{}", &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    free(secret);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_create_admin),
        TEST(test_create_user),
        TEST(test_create_device),
        TEST(test_create_with_expiry),
        TEST(test_create_validation),
        TEST(test_authenticate_ok),
        TEST(test_authenticate_admin_has_empty_owner),
        TEST(test_authenticate_unknown),
        TEST(test_authenticate_revoked),
        TEST(test_authenticate_expired),
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_valid_role),
        TEST(test_list_has_no_secret),
        TEST(test_get),
        TEST(test_revoke_unknown),
        TEST(test_attributes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
