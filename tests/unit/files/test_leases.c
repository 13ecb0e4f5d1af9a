/* test_leases.c - leases across processes (files/leases.c) on a real SQLite store: a
 * live holder keeps its lease, a holder of this host that is gone or an expired one
 * loses it at once, and a holder whose lease was taken over learns so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "files/leases.h"
#include "store_fixture.h"

static int setup(void **state)
{
    static struct store_fixture f;
    *state = &f;
    return store_fixture_open(&f, "leases");
}

static int teardown(void **state)
{
    store_fixture_close(*state);
    return 0;
}

/* An owner text for a process of this host that has exited. */
static void dead_owner(const char *self, char out[LEASES_OWNER_MAX])
{
    char host[60], boot[40];
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    assert_int_equal(sscanf(self, "%59s %39s", host, boot), 2);
    snprintf(out, LEASES_OWNER_MAX, "%s %s %ld 12345", host, boot, (long)pid);
}

static void test_owner_alive(void **state)
{
    (void)state;
    char self[LEASES_OWNER_MAX], dead[LEASES_OWNER_MAX];
    leases_self(self);
    assert_true(leases_owner_alive(self, self));
    dead_owner(self, dead);
    assert_false(leases_owner_alive(self, dead));
    assert_true(leases_owner_alive(self, "otherhost some-boot-id 1 1"));
}

static void test_live_holder_keeps_it(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    char self[LEASES_OWNER_MAX];
    struct lease a = {0}, b = {0};
    bool got = false, held = false;
    leases_self(self);
    assert_int_equal(leases_acquire(f->c, self, "patch:x", &a, &got, &err), FERRY_OK);
    assert_true(got);
    assert_int_equal(leases_acquire(f->c, self, "patch:x", &b, &got, &err), FERRY_OK);
    assert_false(got); /* another thread of this very process holds it */
    assert_int_equal(leases_held(f->c, self, "patch:x", &held, &err), FERRY_OK);
    assert_true(held);
    assert_int_equal(leases_renew(f->c, &a, true, &err), FERRY_OK);
    leases_release(f->c, &a);
    assert_int_equal(leases_held(f->c, self, "patch:x", &held, &err), FERRY_OK);
    assert_false(held);
    assert_int_equal(leases_acquire(f->c, self, "patch:x", &b, &got, &err), FERRY_OK);
    assert_true(got);
}

static void test_dead_or_expired_holder_loses_it(void **state)
{
    struct store_fixture *f = *state;
    struct err err = {0};
    char self[LEASES_OWNER_MAX], dead[LEASES_OWNER_MAX];
    struct lease a = {0}, b = {0};
    bool got = false;
    leases_self(self);
    dead_owner(self, dead);
    assert_int_equal(leases_acquire(f->c, dead, "complete:y", &a, &got, &err), FERRY_OK);
    assert_true(got);
    /* its owner is gone: free at once, long before the expiry */
    assert_int_equal(leases_acquire(f->c, self, "complete:y", &b, &got, &err), FERRY_OK);
    assert_true(got);
    assert_int_equal(leases_renew(f->c, &a, true, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_CONFLICT);
    leases_release(f->c, &a); /* changes nothing: b holds it */
    bool held = false;
    assert_int_equal(leases_held(f->c, self, "complete:y", &held, &err), FERRY_OK);
    assert_true(held);

    /* another host's holder is trusted until its expiry */
    const char *remote = "otherhost boot 1 1";
    struct lease r = {0};
    assert_int_equal(leases_acquire(f->c, remote, "patch:z", &r, &got, &err), FERRY_OK);
    assert_true(got);
    assert_int_equal(leases_acquire(f->c, self, "patch:z", &b, &got, &err), FERRY_OK);
    assert_false(got);
    assert_int_equal(store_exec(f->c, "UPDATE ferry_leases SET expires_at = 0", &err), FERRY_OK);
    assert_int_equal(leases_acquire(f->c, self, "patch:z", &b, &got, &err), FERRY_OK);
    assert_true(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owner_alive),
        cmocka_unit_test_setup_teardown(test_live_holder_keeps_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_or_expired_holder_loses_it, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
