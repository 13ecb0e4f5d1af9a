/* test_cloudrepo.c - unit tests for a backup repository kept in a cloud location
 * (src/backup/cloudrepo.c), through the local provider in a temporary folder and a real
 * SQLite store: only a repository's files move (never the lock, temporary files, damaged
 * manifests or strangers), pull fetches the kinds asked for and drops what the cloud lost,
 * push with remove deletes what the folder lost, and the stored bytes are recorded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../store_fixture.h"
#include "backup/cloudrepo.h"
#include "cloud/cloud.h"
#include "cloud/usage.h"

#define PACK "packs/ab/ab0123456789abcdef0123456789abcd.pack"
#define INDEX "index/ab0123456789abcdef0123456789abcd.idx"
#define SNAP "snapshots/0b7c9c1e-5f8e-4a8e-9d3c-1f2e3d4c5b6a.snap"

struct fixture {
    struct store_fixture db;
    char *cloud_dir, *state_dir, *repo, *copy;
    struct cloud *cloud;
};

static void put_file(const char *dir, const char *rel, const char *text)
{
    char *path = xasprintf("%s/%s", dir, rel);
    for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0700);
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(path);
}

static bool exists(const char *dir, const char *rel)
{
    struct stat st;
    char *path = xasprintf("%s/%s", dir, rel);
    bool there = stat(path, &st) == 0;
    free(path);
    return there;
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct err err;
    *state = f;
    if (store_fixture_open(&f->db, "cloudrepo") != 0)
        return -1;
    f->cloud_dir = xasprintf("%s/cloud", f->db.dir);
    f->state_dir = xasprintf("%s/state", f->db.dir);
    f->repo = xasprintf("%s/repo", f->db.dir);
    f->copy = xasprintf("%s/copy", f->db.dir);
    struct cloud_settings s = {.local_dir = f->cloud_dir,
                               .link_base = "http://ferry.test",
                               .link_key = "k3y",
                               .state_dir = f->state_dir,
                               .part_size = 1024,
                               .timeout_s = 5};
    if (cloud_open(CLOUD_LOCAL, &s, &f->cloud, &err) != FERRY_OK)
        return -1;
    put_file(f->repo, "config", "{\"format\":\"ferry-backup\"}");
    put_file(f->repo, PACK, "FERRYPK1 chunk bytes");
    put_file(f->repo, INDEX, "index bytes");
    put_file(f->repo, SNAP, "snapshot bytes");
    put_file(f->repo, "lock", "pid 1 on here");
    put_file(f->repo, INDEX ".tmp-42", "half an index");
    put_file(f->repo, SNAP ".damaged", "set aside");
    put_file(f->repo, "notes.txt", "not the repository's");
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char *cmd = xasprintf("rm -rf %s %s %s %s", f->cloud_dir, f->state_dir, f->repo, f->copy);
    cloud_close(f->cloud);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    store_fixture_close(&f->db);
    free(f->cloud_dir);
    free(f->state_dir);
    free(f->repo);
    free(f->copy);
    free(f);
    return 0;
}

static struct cloudrepo on(struct fixture *f, const char *dir)
{
    return (struct cloudrepo){
        .cloud = f->cloud, .container = "c", .prefix = "vault/", .dir = dir, .db = f->db.c};
}

static uint64_t stored(struct fixture *f)
{
    uint64_t bytes[CLOUD_N_PROVIDERS];
    struct err err;
    assert_int_equal(cloudusage_totals(f->db.c, bytes, &err), FERRY_OK);
    return bytes[CLOUD_LOCAL];
}

static void test_only_repository_files_move(void **state)
{
    struct fixture *f = *state;
    struct err err;
    struct cloudrepo up = on(f, f->repo);
    assert_int_equal(cloudrepo_push(&up, false, &err), FERRY_OK);
    assert_int_equal(up.files_up, 4);
    assert_true(exists(f->cloud_dir, "vault/config") && exists(f->cloud_dir, "vault/" PACK) &&
                exists(f->cloud_dir, "vault/" INDEX) && exists(f->cloud_dir, "vault/" SNAP));
    assert_false(exists(f->cloud_dir, "vault/lock"));
    assert_false(exists(f->cloud_dir, "vault/notes.txt"));
    assert_false(exists(f->cloud_dir, "vault/" INDEX ".tmp-42"));
    assert_false(exists(f->cloud_dir, "vault/" SNAP ".damaged"));
    assert_int_equal(stored(f), up.bytes_up);
    assert_int_equal(up.bytes_up, strlen("{\"format\":\"ferry-backup\"}") +
                                      strlen("FERRYPK1 chunk bytes") + strlen("index bytes") +
                                      strlen("snapshot bytes"));

    /* a second push finds everything there */
    struct cloudrepo again = on(f, f->repo);
    assert_int_equal(cloudrepo_push(&again, false, &err), FERRY_OK);
    assert_int_equal(again.files_up, 0);
}

static void test_pull_fetches_the_kinds_asked_for(void **state)
{
    struct fixture *f = *state;
    struct err err;
    struct cloudrepo up = on(f, f->repo), down = on(f, f->copy);
    assert_int_equal(cloudrepo_push(&up, false, &err), FERRY_OK);
    assert_int_equal(cloudrepo_pull(&down, 0, &err), FERRY_OK);
    assert_true(exists(f->copy, "config") && exists(f->copy, SNAP));
    assert_false(exists(f->copy, INDEX) || exists(f->copy, PACK));
    assert_int_equal(cloudrepo_pull(&down, CLOUDREPO_INDEX, &err), FERRY_OK);
    assert_true(exists(f->copy, INDEX));
    assert_false(exists(f->copy, PACK));
    assert_int_equal(cloudrepo_pull(&down, CLOUDREPO_INDEX | CLOUDREPO_PACKS, &err), FERRY_OK);
    assert_true(exists(f->copy, PACK));
    assert_int_equal(down.files_down, 4);
}

static void test_removals_go_both_ways(void **state)
{
    struct fixture *f = *state;
    struct err err;
    struct cloudrepo up = on(f, f->repo), down = on(f, f->copy);
    assert_int_equal(cloudrepo_push(&up, false, &err), FERRY_OK);
    uint64_t before = stored(f);
    assert_int_equal(cloudrepo_pull(&down, CLOUDREPO_INDEX | CLOUDREPO_PACKS, &err), FERRY_OK);
    put_file(f->copy, "lock", "mine");

    /* a push without remove keeps what the folder lost; with remove it goes */
    char *snap = xasprintf("%s/" SNAP, f->repo);
    assert_int_equal(unlink(snap), 0);
    free(snap);
    assert_int_equal(cloudrepo_push(&up, false, &err), FERRY_OK);
    assert_true(exists(f->cloud_dir, "vault/" SNAP));
    assert_int_equal(cloudrepo_push(&up, true, &err), FERRY_OK);
    assert_false(exists(f->cloud_dir, "vault/" SNAP));
    assert_int_equal(up.files_removed, 1);
    assert_int_equal(stored(f), before - strlen("snapshot bytes"));

    /* the other copy drops it on its next pull, and keeps its own lock */
    assert_int_equal(cloudrepo_pull(&down, 0, &err), FERRY_OK);
    assert_false(exists(f->copy, SNAP));
    assert_true(exists(f->copy, "lock") && exists(f->copy, PACK));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_only_repository_files_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_fetches_the_kinds_asked_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removals_go_both_ways, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
