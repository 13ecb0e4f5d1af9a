/* test_siteimport.c - unit tests for src/sites/siteimport.c on SQLite and PostgreSQL:
 * which connections may pull, what an import request must name, the job it queues, and
 * an import whose sender cannot be reached failing as a job without touching the tables.
 * The page-by-page import from a live sender is covered by tests/api/test_site_imports.py. */
#include "sites/siteimport.h"
#include "sites/sites.h"
#include "sync/sync_fixture.h"

/* Records a connection of direction and status to a closed local port; id[40] gets it. */
static void make_site(struct sync_fixture *f, enum site_direction direction,
                      enum site_status status, char id[40])
{
    struct err err = {0};
    struct site s = {
        .name = "peer",
        .direction = direction,
        .site_url = direction == SITE_RECEIVER ? "http://127.0.0.1:9/phoenix_kit"
                                               : "http://127.0.0.1:9/other",
        .token_hash = "secret-token",
        .status = status,
        .default_strategy = STRATEGY_MERGE,
    };
    if (sites_create(f->store.c, &s, &err) != FERRY_OK)
        fail_msg("sites_create: %s", err.msg);
    memcpy(id, s.id, 40);
}

static void test_who_may_pull(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    char receiver[40], sender[40], pending[40], job[40];
    json_t *tables = json_pack("[s]", "notes");
    make_site(f, SITE_RECEIVER, SITE_ACTIVE, receiver);
    make_site(f, SITE_SENDER, SITE_ACTIVE, sender);
    /* a receiver still waiting for approval */
    struct site dup = {.name = "p",
                       .direction = SITE_RECEIVER,
                       .site_url = "http://127.0.0.1:9/p",
                       .token_hash = "t2",
                       .status = SITE_PENDING};
    assert_int_equal(sites_create(f->store.c, &dup, &err), FERRY_OK);
    memcpy(pending, dup.id, 40);

    assert_int_equal(
        siteimport_start(f->store.c, "nope", tables, NULL, false, false, NULL, job, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    assert_int_equal(
        siteimport_start(f->store.c, sender, tables, NULL, false, false, NULL, job, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_CONFLICT);
    assert_int_equal(
        siteimport_start(f->store.c, pending, tables, NULL, false, false, NULL, job, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_CONFLICT);
    json_decref(tables);
}

static void test_what_a_request_must_name(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    char id[40], job[40];
    make_site(f, SITE_RECEIVER, SITE_ACTIVE, id);
    static const char *const bad_tables[] = {"[]", "[\"ferry_tokens\"]", "[\"a-b\"]", "[5]",
                                             "\"notes\""};
    for (size_t i = 0; i < sizeof(bad_tables) / sizeof(bad_tables[0]); i++) {
        json_t *t = json_loads(bad_tables[i], JSON_DECODE_ANY, NULL);
        assert_int_equal(siteimport_start(f->store.c, id, t, NULL, false, false, NULL, job, &err),
                         FERRY_ERR);
        assert_int_equal(err.code, ERR_INVALID);
        json_decref(t);
    }
    json_t *tables = json_pack("[s]", "notes");
    assert_int_equal(
        siteimport_start(f->store.c, id, tables, "sideways", false, false, NULL, job, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_int_equal(
        siteimport_start(f->store.c, id, tables, "append", true, false, NULL, job, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);

    /* a good one queues a job with the connection's default strategy */
    assert_int_equal(
        siteimport_start(f->store.c, id, tables, NULL, false, false, "alice", job, &err), FERRY_OK);
    struct job j = {0};
    bool found = false;
    assert_int_equal(jobs_get(f->store.c, job, &j, &found, &err), FERRY_OK);
    assert_true(found);
    assert_string_equal(j.kind, "site-import");
    assert_string_equal(j.status, "pending");
    json_t *params = json_loads(j.params, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(params, "strategy")), "merge");
    assert_string_equal(json_string_value(json_object_get(params, "connection")), id);
    json_decref(params);
    jobs_clear(&j);
    json_decref(tables);
}

static void test_unreachable_sender_fails_the_job(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    char id[40], job[40];
    make_site(f, SITE_RECEIVER, SITE_ACTIVE, id);
    json_t *tables = json_pack("[s]", "notes"), *transfers = NULL;
    struct siteops_env env = {.public_url = "http://127.0.0.1:1",
                              .client = {.allow_private = true, .timeout_s = 5}};
    assert_int_equal(
        siteimport_start(f->store.c, id, tables, "overwrite", false, true, NULL, job, &err),
        FERRY_OK);
    assert_int_equal(siteimport_run_now(f->store.st, f->store.c, &env, job, &err), FERRY_ERR);
    struct job j = {0};
    bool found = false;
    assert_int_equal(jobs_get(f->store.c, job, &j, &found, &err), FERRY_OK);
    assert_string_equal(j.status, "failed");
    jobs_clear(&j);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM notes"), 0);
    assert_int_equal(siteimport_transfers(f->store.c, id, &transfers, &err), FERRY_OK);
    for (size_t i = 0; i < json_array_size(transfers); i++)
        assert_string_not_equal(
            json_string_value(json_object_get(json_array_get(transfers, i), "status")),
            "completed");
    json_decref(transfers);
    assert_int_equal(siteimport_transfers(f->store.c, "nope", &transfers, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    json_decref(tables);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SYNC_TEST(test_who_may_pull),
        SYNC_TEST(test_what_a_request_must_name),
        SYNC_TEST(test_unreachable_sender_fails_the_job),
    };
    return SYNC_RUN_BOTH(tests);
}
