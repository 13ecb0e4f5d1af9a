/* test_cloud.c - unit tests for the cloud interface (src/cloud/cloud.c) through its local
 * provider (local.c) in a temporary folder: put with metadata, head, ranged get, list by
 * prefix, delete, signed links, and the checks every provider shares. (The S3 and Azure
 * providers are driven against their emulators by tests/api/test_cloud.py.) */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cloud/cloud.h"
#include "util/buf.h"

struct fixture {
    char dir[64];
    struct cloud *cloud;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct err err;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-cloud-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char *local = xasprintf("%s/store", f->dir), *state_dir = xasprintf("%s/state", f->dir);
    struct cloud_settings s = {.local_dir = local,
                               .link_base = "http://ferry.test",
                               .link_key = "k3y",
                               .state_dir = state_dir,
                               .part_size = 1024,
                               .timeout_s = 5};
    int rc = cloud_open(CLOUD_LOCAL, &s, &f->cloud, &err);
    free(local);
    free(state_dir);
    *state = f;
    return rc == FERRY_OK ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char *cmd = xasprintf("rm -rf %s", f->dir);
    cloud_close(f->cloud);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(f);
    return 0;
}

/* Puts text as key from a file in the fixture's folder. */
static void put(struct fixture *f, const char *key, const char *text, const json_t *meta)
{
    struct err err;
    struct cloud_put_result res;
    char *path = xasprintf("%s/src", f->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    struct cloud_source src = {fd, strlen(text), "src", NULL, NULL};
    assert_int_equal(cloud_put(f->cloud, key, &src, meta, &res, &err), FERRY_OK);
    assert_int_equal(strlen(res.etag), 32);
    close(fd);
    free(path);
}

static int collect(void *ctx, const void *data, size_t len)
{
    buf_append(ctx, data, len);
    return FERRY_OK;
}

static int add_key(void *ctx, const struct cloud_object *o)
{
    buf_printf(ctx, "%s(%llu) ", o->key, (unsigned long long)o->size);
    return FERRY_OK;
}

static void test_put_head_get_ranges(void **state)
{
    struct fixture *f = *state;
    struct err err;
    struct cloud_object o;
    struct buf got;
    json_t *meta = json_pack("{s:s}", "backup-type", "full");
    put(f, "a/b/c.txt", "0123456789", meta);

    assert_int_equal(cloud_head(f->cloud, "a/b/c.txt", &o, &err), FERRY_OK);
    assert_int_equal(o.size, 10);
    assert_true(json_equal(o.metadata, meta));
    buf_init(&got);
    struct cloud_range r = {3, 4};
    assert_int_equal(cloud_get(f->cloud, "a/b/c.txt", &r, o.etag, collect, &got, &err), FERRY_OK);
    assert_string_equal(got.data, "3456");
    got.len = 0;
    r = (struct cloud_range){7, 0};
    assert_int_equal(cloud_get(f->cloud, "a/b/c.txt", &r, NULL, collect, &got, &err), FERRY_OK);
    assert_memory_equal(got.data, "789", 3);
    r = (struct cloud_range){10, 0};
    assert_int_equal(cloud_get(f->cloud, "a/b/c.txt", &r, NULL, collect, &got, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_RANGE);
    assert_int_equal(cloud_get(f->cloud, "a/b/c.txt", NULL, "other", collect, &got, &err),
                     FERRY_ERR);
    assert_int_equal(err.code, ERR_PRECONDITION);
    cloud_object_cleanup(&o);
    assert_int_equal(cloud_head(f->cloud, "a/none", &o, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_NOT_FOUND);
    buf_cleanup(&got);
    json_decref(meta);
}

static void test_list_and_delete(void **state)
{
    struct fixture *f = *state;
    struct err err;
    struct buf keys;
    put(f, "x/2.txt", "22", NULL);
    put(f, "x/1.txt", "1", NULL);
    put(f, "y/3.txt", "333", NULL);
    buf_init(&keys);
    assert_int_equal(cloud_list(f->cloud, "x/", add_key, &keys, &err), FERRY_OK);
    assert_string_equal(keys.data, "x/1.txt(1) x/2.txt(2) ");
    assert_int_equal(cloud_delete(f->cloud, "x/1.txt", &err), FERRY_OK);
    assert_int_equal(cloud_delete(f->cloud, "x/1.txt", &err), FERRY_OK); /* gone already */
    keys.len = 0;
    assert_int_equal(cloud_list(f->cloud, "", add_key, &keys, &err), FERRY_OK);
    assert_string_equal(keys.data, "x/2.txt(2) y/3.txt(3) "); /* .ferry-meta is not listed */
    buf_cleanup(&keys);
}

static void test_links_are_signed_and_expire(void **state)
{
    struct fixture *f = *state;
    struct err err;
    char *url = NULL;
    put(f, "l.txt", "link", NULL);
    assert_int_equal(cloud_presign(f->cloud, "l.txt", 2000000000, &url, &err), FERRY_OK);
    const char *sig = strstr(url, "signature=") + 10;
    assert_non_null(
        strstr(url, "http://ferry.test/api/v1/cloud/local/shared/l.txt?expires=2000000000"));
    assert_true(cloud_local_link_valid("k3y", "l.txt", 2000000000, sig));
    assert_false(cloud_local_link_valid("k3y", "l.txt", 2000000001, sig));
    assert_false(cloud_local_link_valid("k3y", "m.txt", 2000000000, sig));
    assert_false(cloud_local_link_valid("other", "l.txt", 2000000000, sig));
    free(url);
}

static void test_shared_checks(void **state)
{
    (void)state;
    struct err err;
    enum cloud_provider p;
    assert_int_equal(cloud_provider_parse("azure", &p, &err), FERRY_OK);
    assert_int_equal(p, CLOUD_AZURE);
    assert_int_equal(cloud_provider_parse("gcs", &p, &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "s3, azure or local"));
    json_t *bad = json_pack("{s:i}", "n", 1), *bad_name = json_pack("{s:s}", "a b", "x");
    json_t *bad_value = json_pack("{s:s}", "a", "caf\xc3\xa9");
    assert_int_equal(cloud_check_metadata(bad, &err), FERRY_ERR);
    assert_int_equal(cloud_check_metadata(bad_name, &err), FERRY_ERR);
    assert_int_equal(cloud_check_metadata(bad_value, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_INVALID);
    struct cloud_settings none = {0};
    struct cloud *c = NULL;
    assert_int_equal(cloud_open(CLOUD_S3, &none, &c, &err), FERRY_ERR);
    assert_int_equal(err.code, ERR_CLOUD);
    assert_int_equal(cloud_open(CLOUD_AZURE, &none, &c, &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "azure-connection-string"));
    json_decref(bad);
    json_decref(bad_name);
    json_decref(bad_value);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_head_get_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_are_signed_and_expire, setup, teardown),
        cmocka_unit_test(test_shared_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
