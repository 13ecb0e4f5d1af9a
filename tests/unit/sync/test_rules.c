/* test_rules.c - sync rules: parsing one rule and a configured list, the text a rule is
 * stored as, and what a caller reaches under each rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sync/rules.h"

static void test_parse_each_rule(void **state)
{
    (void)state;
    struct {
        const char *text;
        enum rule_kind kind;
        const char *column, *claim;
    } good[] = {
        {"shared", RULE_SHARED, NULL, NULL},
        {"read-only", RULE_READONLY, NULL, NULL},
        {"owner:user_id", RULE_OWNER, "user_id", NULL},
        {"claim:tenant_id:tenant", RULE_CLAIM, "tenant", "tenant_id"},
        {"claim:org-id:Org_2", RULE_CLAIM, "Org_2", "org-id"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct sync_rule r;
        struct err err = {0};
        assert_int_equal(rules_parse(good[i].text, &r, &err), FERRY_OK);
        assert_int_equal(r.kind, good[i].kind);
        if (good[i].column)
            assert_string_equal(r.column, good[i].column);
        else
            assert_null(r.column);
        if (good[i].claim)
            assert_string_equal(r.claim, good[i].claim);
        else
            assert_null(r.claim);
        char *text = rules_text(&r); /* stored as configured */
        assert_string_equal(text, good[i].text);
        free(text);
        rules_cleanup(&r);
    }
    const char *bad[] = {"",        "owner",       "owner:",         "owner:a b",
                         "claim:x", "claim::col",  "claim:x:",       "claim:x:y:z",
                         "Shared",  "readonly",    "owner:a;drop",   "owner:\"x\"",
                         "private", "claim:x y:c", "owner:user_id ", NULL};
    for (size_t i = 0; bad[i]; i++) {
        struct sync_rule r;
        struct err err = {0};
        assert_int_equal(rules_parse(bad[i], &r, &err), FERRY_ERR);
        assert_int_equal(err.code, ERR_INVALID);
        assert_non_null(strstr(err.msg, "owner:COLUMN"));
        rules_cleanup(&r);
    }
}

static void test_lists(void **state)
{
    (void)state;
    struct err err = {0};
    struct sync_rule r;
    const char *list = " orders=owner:user_id , catalog=shared,docs=claim:tenant_id:tenant";
    assert_int_equal(rules_check_list(list, &err), FERRY_OK);
    assert_int_equal(rules_check_list(NULL, &err), FERRY_OK);
    assert_int_equal(rules_check_list("", &err), FERRY_OK);
    assert_int_equal(rules_find(list, "orders", &r, &err), FERRY_OK);
    assert_int_equal(r.kind, RULE_OWNER);
    assert_string_equal(r.column, "user_id");
    rules_cleanup(&r);
    assert_int_equal(rules_find(list, "docs", &r, &err), FERRY_OK);
    assert_int_equal(r.kind, RULE_CLAIM);
    rules_cleanup(&r);
    assert_int_equal(rules_find(list, "notes", &r, &err), FERRY_OK);
    assert_int_equal(r.kind, RULE_NONE); /* no rule: today's behaviour */
    rules_cleanup(&r);

    struct {
        const char *list, *says;
    } bad[] = {
        {"orders", "must be TABLE=RULE"},
        {"=shared", "must be TABLE=RULE"},
        {"orders=owner", "table 'orders'"},
        {"orders=shared,orders=read-only", "two sync rules"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rules_check_list(bad[i].list, &err), FERRY_ERR);
        assert_non_null(strstr(err.msg, bad[i].says));
    }
}

static int claim_of(const void *ctx, const char *name, char *out, size_t n)
{
    const char *tenant = ctx;
    if (strcmp(name, "tenant_id") != 0 || !tenant)
        return FERRY_ERR;
    snprintf(out, n, "%s", tenant);
    return FERRY_OK;
}

static void test_reach(void **state)
{
    (void)state;
    struct sync_rule owner = {RULE_OWNER, "user_id", NULL}, claim = {RULE_CLAIM, "t", "tenant_id"};
    struct sync_rule shared = {RULE_SHARED, NULL, NULL}, ro = {RULE_READONLY, NULL, NULL};
    struct sync_rule none = {RULE_NONE, NULL, NULL};
    struct rules_caller anna = {false, "anna", claim_of, "acme"};
    struct rules_caller nobody = {false, "", claim_of, NULL};
    struct rules_caller admin = {true, "", claim_of, NULL};
    char value[RULES_VALUE_MAX];

    assert_int_equal(rules_reach(&owner, &anna, value), REACH_VALUE);
    assert_string_equal(value, "anna");
    assert_int_equal(rules_reach(&claim, &anna, value), REACH_VALUE);
    assert_string_equal(value, "acme");
    assert_int_equal(rules_reach(&owner, &nobody, value), REACH_NONE);
    assert_int_equal(rules_reach(&claim, &nobody, value), REACH_NONE);
    for (int i = 0; i < 3; i++) {
        const struct sync_rule *open[] = {&shared, &ro, &none};
        assert_int_equal(rules_reach(open[i], &anna, value), REACH_ALL);
    }
    assert_int_equal(rules_reach(&owner, &admin, value), REACH_ALL);
    assert_int_equal(rules_reach(&claim, NULL, value), REACH_ALL);

    assert_true(rules_may_write(&owner, &anna));
    assert_true(rules_may_write(&shared, &anna));
    assert_false(rules_may_write(&ro, &anna));
    assert_true(rules_may_write(&ro, &admin));
    assert_true(rules_may_write(&ro, NULL));
    assert_true(rules_scoped(&owner) && rules_scoped(&claim));
    assert_false(rules_scoped(&shared) || rules_scoped(&ro) || rules_scoped(&none));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_each_rule),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_reach),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
