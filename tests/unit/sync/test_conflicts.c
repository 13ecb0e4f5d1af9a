/* test_conflicts.c - unit tests for src/sync/conflicts.c on SQLite and PostgreSQL:
 * conflicts recorded by the manual and merge policies, listed and read, and resolved by
 * keeping the server's row, taking the client's, or merged data, each once. */
#include "sync/conflicts.h"
#include "sync/sync_fixture.h"

/* Makes a manual-policy conflict on orders row id; returns its id (caller frees). */
static char *make_conflict(struct sync_fixture *f, int id)
{
    char ops[512];
    struct err err = {0};
    json_t *ans = NULL;
    snprintf(ops, sizeof(ops),
             "[{\"table\":\"orders\",\"action\":\"insert\",\"data\":{\"id\":%d,\"item\":\"i\","
             "\"qty\":0}}]",
             id);
    sync_push_ok(f, "phone", ops);
    snprintf(ops, sizeof(ops),
             "[{\"table\":\"orders\",\"action\":\"update\",\"data\":{\"id\":%d,\"qty\":10}}]", id);
    sync_push_ok(f, "tablet", ops);
    snprintf(ops, sizeof(ops),
             "[{\"table\":\"orders\",\"action\":\"update\",\"base_version\":1,"
             "\"data\":{\"id\":%d,\"item\":\"phone\",\"qty\":20}}]",
             id);
    assert_int_equal(sync_push(f, "phone", ops, true, &ans, &err), FERRY_OK);
    json_t *cf = json_array_get(json_object_get(ans, "conflicts"), 0);
    assert_non_null(cf);
    char *cid = xstrdup(json_string_value(json_object_get(cf, "id")));
    json_decref(ans);
    return cid;
}

static void test_list_and_get(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    char *id = make_conflict(f, 1);
    json_t *list = NULL, *one = NULL;
    char owner[128];
    struct conflict_filter alice = {"alice", "open", NULL, NULL}, bob = {"bob", NULL, NULL, NULL};
    assert_int_equal(conflicts_list(f->store.c, &f->set, &alice, &list, &err), FERRY_OK);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    assert_int_equal(conflicts_list(f->store.c, &f->set, &bob, &list, &err), FERRY_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    /* a credential's table scope is part of the query */
    struct conflict_filter scoped = {"alice", NULL, "notes,keep", NULL},
                           orders = {NULL, NULL, "orders", NULL};
    assert_int_equal(conflicts_list(f->store.c, &f->set, &scoped, &list, &err), FERRY_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    assert_int_equal(conflicts_list(f->store.c, &f->set, &orders, &list, &err), FERRY_OK);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    assert_int_equal(conflicts_get(f->store.c, &f->set, id, &one, owner, &err), FERRY_OK);
    assert_string_equal(owner, "alice");
    assert_int_equal(json_integer_value(json_object_get(one, "serverVersion")), 2);
    json_t *server = json_object_get(one, "serverData");
    assert_int_equal(json_integer_value(json_object_get(server, "qty")), 10);
    json_decref(one);
    assert_int_equal(conflicts_get(f->store.c, &f->set, "cf_nope", &one, owner, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    free(id);
}

static void test_resolutions(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    char *keep = make_conflict(f, 1), *take = make_conflict(f, 2), *merge = make_conflict(f, 3);
    json_t *out = NULL;

    assert_int_equal(conflicts_resolve(f->store.c, &f->set, keep, "keep_server", NULL, "alice",
                                       NULL, &out, &err),
                     FERRY_OK);
    assert_string_equal(json_string_value(json_object_get(out, "status")), "resolved");
    json_decref(out);
    assert_int_equal(sync_int(f, "SELECT qty FROM orders WHERE id = 1"), 10);
    assert_int_equal(sync_int(f, "SELECT version FROM ferry_changes WHERE tbl = 'orders'"
                                 " AND pk = '1'"),
                     3); /* a resolution is a change in the feed */

    assert_int_equal(conflicts_resolve(f->store.c, &f->set, take, "take_client", NULL, "alice",
                                       NULL, &out, &err),
                     FERRY_OK);
    json_decref(out);
    assert_int_equal(sync_int(f, "SELECT qty FROM orders WHERE id = 2"), 20);

    json_t *data = json_pack("{s:i}", "qty", 15);
    assert_int_equal(
        conflicts_resolve(f->store.c, &f->set, merge, "merge", data, "alice", NULL, &out, &err),
        FERRY_OK);
    json_decref(out);
    assert_int_equal(sync_int(f, "SELECT qty FROM orders WHERE id = 3"), 15);

    /* once only; unknown ids and resolutions are refused */
    assert_int_equal(conflicts_resolve(f->store.c, &f->set, keep, "take_client", NULL, "alice",
                                       NULL, &out, &err),
                     FERRY_ERR);
    assert_int_equal(err.code, ERR_CONFLICT);
    assert_int_equal(conflicts_resolve(f->store.c, &f->set, "cf_nope", "keep_server", NULL, "alice",
                                       NULL, &out, &err),
                     FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    json_t *bad = json_pack("{s:s}", "colour", "red");
    char *fourth = make_conflict(f, 4);
    assert_int_equal(
        conflicts_resolve(f->store.c, &f->set, fourth, "merge", bad, "alice", NULL, &out, &err),
        FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    assert_int_equal(sync_int(f, "SELECT qty FROM orders WHERE id = 4"), 10);
    json_decref(bad);
    json_decref(data);
    free(keep);
    free(take);
    free(merge);
    free(fourth);
}

static void test_merge_policy_records_fields(void **state)
{
    struct sync_fixture *f = *state;
    struct err err = {0};
    json_t *ans = NULL;
    sync_push_ok(f, "phone",
                 "[{\"table\":\"merged\",\"action\":\"insert\",\"data\":{\"id\":\"m\","
                 "\"title\":\"t0\",\"body\":\"b0\"}}]");
    sync_push_ok(f, "tablet",
                 "[{\"table\":\"merged\",\"action\":\"update\",\"base_version\":1,"
                 "\"data\":{\"id\":\"m\",\"title\":\"tablet\"}}]");
    /* different fields merge; the same field changed on both sides is a conflict */
    assert_int_equal(sync_push(f, "phone",
                               "[{\"table\":\"merged\",\"action\":\"update\",\"base_version\":1,"
                               "\"data\":{\"id\":\"m\",\"title\":\"phone\",\"body\":\"b1\"}}]",
                               true, &ans, &err),
                     FERRY_OK);
    json_t *cf = json_array_get(json_object_get(ans, "conflicts"), 0);
    assert_non_null(cf);
    json_t *fields = json_object_get(cf, "fields");
    assert_int_equal(json_array_size(fields), 1);
    assert_string_equal(json_string_value(json_array_get(fields, 0)), "title");
    json_decref(ans);
    assert_int_equal(sync_int(f, "SELECT COUNT(*) FROM merged WHERE title = 'tablet'"
                                 " AND body = 'b1'"),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SYNC_TEST(test_list_and_get),
        SYNC_TEST(test_resolutions),
        SYNC_TEST(test_merge_policy_records_fields),
    };
    return SYNC_RUN_BOTH(tests);
}
