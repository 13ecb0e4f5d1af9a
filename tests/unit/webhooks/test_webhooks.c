/* test_webhooks.c - unit tests for src/webhooks/webhooks.c's outbox on both stores: an
 * event is queued once per enabled subscription to its type, inside the caller's
 * transaction (a rollback takes it back), and dispatch_purge keeps what is pending. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store_fixture.h"
#include "webhooks/dispatch.h"
#include "webhooks/webhooks.h"

static int64_t count(struct store_conn *c, const char *sql)
{
    int64_t n = -1;
    bool found = false;
    assert_int_equal(store_query_int(c, sql, NULL, 0, &n, &found, NULL), FERRY_OK);
    return n;
}

static void add_hook(struct store_conn *c, const char *id, const char *events, int enabled)
{
    struct store_val v[] = {sv_text(id), sv_text(events), sv_int(enabled)};
    assert_int_equal(store_run(c,
                               "INSERT INTO ferry_webhooks(id, url, events, secret, enabled,"
                               " created_at, updated_at) VALUES ($1, 'http://example.com/', $2,"
                               " 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', $3, 0, 0)",
                               v, 3, NULL, NULL),
                     FERRY_OK);
}

static int setup_as(void **state, enum store_dialect dialect)
{
    static struct store_fixture f;
    *state = &f;
    return store_fixture_open_as(&f, "webhooks", dialect);
}

static int setup_sqlite(void **state)
{
    return setup_as(state, STORE_SQLITE);
}

static int setup_pg(void **state)
{
    return setup_as(state, STORE_POSTGRES);
}

static int teardown(void **state)
{
    store_fixture_close(*state);
    return 0;
}

static void test_emit_queues_per_subscription(void **state)
{
    struct store_conn *c = ((struct store_fixture *)*state)->c;
    struct err err = {0};
    /* nobody subscribed: nothing is written */
    assert_int_equal(webhooks_emit(c, WEBHOOK_SYNC_FAILED, json_object(), &err), FERRY_OK);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_events"), 0);
    add_hook(c, "wh_a", "sync.completed,sync.failed", 1);
    add_hook(c, "wh_b", "sync.completed", 1);
    add_hook(c, "wh_c", "sync.completed", 0);    /* disabled */
    add_hook(c, "wh_d", "device.registered", 1); /* another type */
    assert_int_equal(webhooks_emit(c, WEBHOOK_SYNC_COMPLETED, json_pack("{s:i}", "n", 1), &err),
                     FERRY_OK);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_events"), 1);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_deliveries"), 2);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_deliveries WHERE webhook_id"
                              " IN ('wh_a', 'wh_b') AND status = 'pending' AND attempts = 0"),
                     2);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_events WHERE type ="
                              " 'sync.completed' AND payload LIKE '{\"type\":\"sync.completed\","
                              "\"timestamp\":\"%Z\",\"data\":{\"n\":1}}'"),
                     1);
    /* inside a transaction that rolls back, the event goes with the change */
    assert_int_equal(store_begin(c, &err), FERRY_OK);
    assert_int_equal(webhooks_emit(c, WEBHOOK_SYNC_FAILED, NULL, &err), FERRY_OK);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_deliveries"), 3);
    store_rollback(c);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_deliveries"), 2);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_events"), 1);
}

static void test_change_and_purge(void **state)
{
    struct store_conn *c = ((struct store_fixture *)*state)->c;
    struct err err = {0};
    int64_t changed = -1, removed = -1;
    add_hook(c, "wh_a", "site.connection.changed", 1);
    /* a statement that changes nothing emits nothing */
    assert_int_equal(webhooks_change(c, "UPDATE ferry_meta SET value = 'x' WHERE key = 'none'",
                                     NULL, 0, &changed, WEBHOOK_SITE_CONNECTION_CHANGED,
                                     json_object(), &err),
                     FERRY_OK);
    assert_int_equal(changed, 0);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_events"), 0);
    assert_int_equal(webhooks_change(c, "INSERT INTO ferry_meta(key, value) VALUES ('k', 'v')",
                                     NULL, 0, &changed, WEBHOOK_SITE_CONNECTION_CHANGED,
                                     json_object(), &err),
                     FERRY_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_events"), 1);
    /* pending deliveries survive a purge; finished ones go with their event and attempts */
    assert_int_equal(dispatch_purge(c, INT64_MAX, &removed, &err), FERRY_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_events"), 1);
    assert_int_equal(store_run(c,
                               "UPDATE ferry_webhook_deliveries SET status = 'delivered',"
                               " attempts = 1",
                               NULL, 0, NULL, &err),
                     FERRY_OK);
    assert_int_equal(store_run(c,
                               "INSERT INTO ferry_webhook_attempts(event_id, webhook_id, attempt,"
                               " at, ok, duration_ms) SELECT event_id, webhook_id, 1, 5, 1, 3"
                               " FROM ferry_webhook_deliveries",
                               NULL, 0, NULL, &err),
                     FERRY_OK);
    assert_int_equal(dispatch_purge(c, 1, &removed, &err), FERRY_OK); /* too young */
    assert_int_equal(removed, 0);
    assert_int_equal(dispatch_purge(c, INT64_MAX, &removed, &err), FERRY_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_events"), 0);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM ferry_webhook_attempts"), 0);
}

static void test_job_events(void **state)
{
    (void)state;
    assert_int_equal(webhooks_job_event("dirsync", "{}", true), WEBHOOK_SYNC_COMPLETED);
    assert_int_equal(webhooks_job_event("site-import", NULL, false), WEBHOOK_SYNC_FAILED);
    assert_int_equal(webhooks_job_event(NULL, NULL, true), WEBHOOK_SYNC_COMPLETED);
    assert_int_equal(webhooks_job_event("backup", "{\"op\":\"create\"}", true),
                     WEBHOOK_BACKUP_COMPLETED);
    assert_int_equal(webhooks_job_event("backup", "{\"op\":\"create\"}", false), WEBHOOK_N_EVENTS);
    assert_int_equal(webhooks_job_event("backup", "{\"op\":\"restore\"}", true), WEBHOOK_N_EVENTS);
    assert_int_equal(webhooks_job_event("backup", "not json", true), WEBHOOK_N_EVENTS);
    json_t *d = webhooks_job_data("job_1", "backup", "/src", "/repo", true, "{\"v\":1}", "done");
    assert_string_equal(json_string_value(json_object_get(d, "jobId")), "job_1");
    assert_string_equal(json_string_value(json_object_get(d, "status")), "completed");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "result"), "v")), 1);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_events),
        cmocka_unit_test_setup_teardown(test_emit_queues_per_subscription, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_change_and_purge, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_emit_queues_per_subscription, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_change_and_purge, setup_pg, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
