/* test_ratelimit.c - unit tests for src/http/ratelimit.c. Time is simulated: every call
 * passes now_us explicitly, so the tests never sleep. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/ratelimit.h"

#define SEC INT64_C(1000000)
#define T0 (INT64_C(5000) * SEC) /* an arbitrary monotonic start */

/* A fresh 3-per-60-s limiter for the tests that use it; freed even when a test fails. */
static int setup(void **state)
{
    *state = ratelimit_new(3, 60);
    return 0;
}

static int teardown(void **state)
{
    ratelimit_free(*state);
    return 0;
}

/* 3 per 60 s: one request comes back every 20 s. */
static void test_three_then_refused(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;

    assert_int_equal(ratelimit_limit(rl), 3);
    for (int64_t want = 2; want >= 0; want--) {
        r = ratelimit_take(rl, "cred", T0);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 3);
        assert_int_equal(r.remaining, want);
        assert_int_equal(r.retry_after, 0);
    }
    r = ratelimit_take(rl, "cred", T0);
    assert_false(r.allowed);
    assert_int_equal(r.limit, 3);
    assert_int_equal(r.remaining, 0);
    /* The bucket is empty and refills one request per 20 s: one is available in 20 s. */
    if (r.retry_after != 20)
        fail_msg("retry_after is %lld; the next request is available in exactly 20 s",
                 (long long)r.retry_after);

    /* A refused take costs nothing: the wait is still measured from T0. */
    r = ratelimit_take(rl, "cred", T0);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after, 20);
}

/* Retry-After must be tight: waiting that long is enough, a second less is not. */
static void test_retry_after_is_tight(void **state)
{
    struct ratelimit *rl = *state;
    struct rl_result r;

    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "cred", T0).allowed);
    r = ratelimit_take(rl, "cred", T0);
    assert_false(r.allowed);
    assert_true(r.retry_after >= 1);
    if (!ratelimit_exhausted(rl, "cred", T0 + (r.retry_after - 1) * SEC))
        fail_msg("retry_after is %lld, but a request is already available after %lld s",
                 (long long)r.retry_after, (long long)r.retry_after - 1);
    r = ratelimit_take(rl, "cred", T0 + r.retry_after * SEC);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
}

static void test_retry_after_partial_wait(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(3, 60);
    struct rl_result r;

    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "cred", T0).allowed);
    /* 10.5 s into the 20 s refill the next request is 9.5 s away: 10 s rounded up. */
    r = ratelimit_take(rl, "cred", T0 + 10 * SEC + SEC / 2);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after, 10);
    /* 19.9 s: 0.1 s away, rounded up to 1. */
    r = ratelimit_take(rl, "cred", T0 + 19 * SEC + 9 * SEC / 10);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after, 1);
    ratelimit_free(rl);
}

static void test_refill(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(3, 60);
    struct rl_result r;

    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "cred", T0).allowed);
    assert_false(ratelimit_take(rl, "cred", T0 + 19 * SEC).allowed);

    /* 20 s: exactly one back. */
    r = ratelimit_take(rl, "cred", T0 + 20 * SEC);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_false(ratelimit_take(rl, "cred", T0 + 20 * SEC).allowed);

    /* 50 s after that: two and a half back. */
    r = ratelimit_take(rl, "cred", T0 + 70 * SEC);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 1);

    /* A long idle time refills only up to the limit. */
    r = ratelimit_take(rl, "cred", T0 + 3600 * SEC);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
    assert_int_equal(ratelimit_take(rl, "cred", T0 + 3600 * SEC).remaining, 1);
    assert_int_equal(ratelimit_take(rl, "cred", T0 + 3600 * SEC).remaining, 0);
    assert_false(ratelimit_take(rl, "cred", T0 + 3600 * SEC).allowed);

    /* Time going backwards (or standing still) gives nothing back. */
    assert_false(ratelimit_take(rl, "cred", T0).allowed);
    ratelimit_free(rl);
}

static void test_keys_independent(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(3, 60);

    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "alice", T0).allowed);
    assert_false(ratelimit_take(rl, "alice", T0).allowed);

    struct rl_result r = ratelimit_take(rl, "bob", T0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
    assert_false(ratelimit_exhausted(rl, "bob", T0));
    assert_true(ratelimit_exhausted(rl, "alice", T0));
    /* Keys are compared whole, not by prefix. */
    assert_int_equal(ratelimit_take(rl, "alice2", T0).remaining, 2);
    assert_int_equal(ratelimit_take(rl, "alic", T0).remaining, 2);
    ratelimit_free(rl);
}

static void test_limit_zero_disables(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(0, 60);

    assert_int_equal(ratelimit_limit(rl), 0);
    for (int i = 0; i < 1000; i++) {
        struct rl_result r = ratelimit_take(rl, "cred", T0);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 0);
        assert_int_equal(r.retry_after, 0);
    }
    assert_false(ratelimit_exhausted(rl, "cred", T0));
    ratelimit_free(rl);
}

static void test_exhausted_does_not_consume(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(3, 60);

    /* An unknown key is not exhausted, and looking does not create a bucket. */
    for (int i = 0; i < 10; i++)
        assert_false(ratelimit_exhausted(rl, "cred", T0));
    assert_int_equal(ratelimit_take(rl, "cred", T0).remaining, 2);
    for (int i = 0; i < 10; i++)
        assert_false(ratelimit_exhausted(rl, "cred", T0));
    assert_int_equal(ratelimit_take(rl, "cred", T0).remaining, 1);
    assert_false(ratelimit_exhausted(rl, "cred", T0));
    struct rl_result r = ratelimit_take(rl, "cred", T0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    for (int i = 0; i < 10; i++)
        assert_true(ratelimit_exhausted(rl, "cred", T0));
    /* Looking sees the refill too. */
    assert_true(ratelimit_exhausted(rl, "cred", T0 + 19 * SEC));
    assert_false(ratelimit_exhausted(rl, "cred", T0 + 20 * SEC));
    assert_true(ratelimit_take(rl, "cred", T0 + 20 * SEC).allowed);
    ratelimit_free(rl);
}

/* Thousands of keys force the table to grow many times; growth drops full buckets and
 * must keep every partly used one. */
static void test_many_keys(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(3, 60);
    char key[32];
    int64_t now = T0;

    /* A key used up before the flood. */
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "hot", now).allowed);

    /* 5000 keys at the same instant: nothing refills, nothing may be dropped. */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "burst-%d", i);
        struct rl_result r = ratelimit_take(rl, key, now);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 2);
    }
    assert_true(ratelimit_exhausted(rl, "hot", now));
    for (int i = 0; i < 5000; i += 97) {
        snprintf(key, sizeof(key), "burst-%d", i);
        assert_int_equal(ratelimit_take(rl, key, now).remaining, 1);
    }

    /* 20000 more keys while time moves 10 ms per request, so older buckets refill and
     * are dropped as the table grows. */
    for (int i = 0; i < 20000; i++) {
        now += 10000;
        snprintf(key, sizeof(key), "flow-%d", i);
        struct rl_result r = ratelimit_take(rl, key, now);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 2);
        if (i % 1000 == 0) {
            /* A key seen again keeps its bucket until it has refilled. */
            assert_int_equal(ratelimit_take(rl, key, now).remaining, 1);
            assert_int_equal(ratelimit_take(rl, key, now).remaining, 0);
            assert_true(ratelimit_exhausted(rl, key, now));
        }
    }
    /* 200 s have passed: the early keys are full again, whether kept or dropped. */
    assert_false(ratelimit_exhausted(rl, "hot", now));
    assert_int_equal(ratelimit_take(rl, "hot", now).remaining, 2);
    assert_int_equal(ratelimit_take(rl, "burst-0", now).remaining, 2);
    assert_int_equal(ratelimit_take(rl, "flow-0", now).remaining, 2);
    /* The last exhausted key (flow-19000) went empty 9.99 s ago: still refused, and the
     * next request is 10.01 s away. */
    struct rl_result r = ratelimit_take(rl, "flow-19000", now);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after, 11);
    ratelimit_free(rl);
}

struct worker {
    struct ratelimit *rl;
    int allowed;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 1000; i++)
        w->allowed += ratelimit_take(w->rl, "shared", T0).allowed;
    return NULL;
}

static void test_threads_share_one_bucket(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(100, 60);
    struct worker workers[4];
    pthread_t threads[4];
    int total = 0;

    for (int i = 0; i < 4; i++) {
        workers[i] = (struct worker){rl, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, &workers[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        total += workers[i].allowed;
    }
    assert_int_equal(total, 100);
    ratelimit_free(rl);
}

static void test_free_null(void **state)
{
    (void)state;
    ratelimit_free(NULL);
}

/* A set hands out one limiter per distinct limit, each enforcing its own. */
static void test_set_one_limiter_per_limit(void **state)
{
    (void)state;
    struct ratelimit_set *set = ratelimit_set_new(60);
    struct ratelimit *two = ratelimit_set_for(set, 2), *five = ratelimit_set_for(set, 5);
    assert_ptr_equal(ratelimit_set_for(set, 2), two);
    assert_ptr_not_equal(two, five);
    assert_int_equal(ratelimit_limit(two), 2);
    assert_int_equal(ratelimit_limit(five), 5);
    int64_t now = 1000000;
    assert_true(ratelimit_take(two, "conn", now).allowed);
    assert_true(ratelimit_take(two, "conn", now).allowed);
    assert_false(ratelimit_take(two, "conn", now).allowed);
    for (int i = 0; i < 5; i++)
        assert_true(ratelimit_take(five, "conn", now).allowed);
    assert_false(ratelimit_take(five, "conn", now).allowed);
    ratelimit_set_free(set);
    ratelimit_set_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_three_then_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_is_tight, setup, teardown),
        cmocka_unit_test(test_retry_after_partial_wait),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_keys_independent),
        cmocka_unit_test(test_limit_zero_disables),
        cmocka_unit_test(test_exhausted_does_not_consume),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_threads_share_one_bucket),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_set_one_limiter_per_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
