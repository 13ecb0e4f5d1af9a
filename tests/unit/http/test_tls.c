/* test_tls.c - unit tests for src/http/tls.c: the checks on the certificate and key files,
 * and what a reload serves (a changed pair, the same pair, a refused pair). Certificates
 * and keys are made here with GnuTLS, self-signed, in a temporary folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/abstract.h>
#include <gnutls/x509.h>

#include "http/tls.h"

struct files {
    char dir[64];
    char cert[96], key[96];
};

static void write_file(const char *path, const gnutls_datum_t *d)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(d->data, 1, d->size, f), d->size);
    fclose(f);
}

/* A self-signed ECDSA P-256 certificate for cn and its key, as PEM files. */
static void make_pair(const char *cert_path, const char *key_path, const char *cn)
{
    gnutls_x509_privkey_t key;
    gnutls_x509_crt_t crt;
    gnutls_datum_t pem;
    unsigned char serial[8] = {1, 2, 3, 4, 5, 6, 7, (unsigned char)cn[0]};
    assert_int_equal(gnutls_x509_privkey_init(&key), 0);
    assert_int_equal(gnutls_x509_privkey_generate(
                         key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                     0);
    assert_int_equal(gnutls_x509_crt_init(&crt), 0);
    gnutls_x509_crt_set_version(crt, 3);
    gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
    gnutls_x509_crt_set_activation_time(crt, time(NULL) - 60);
    gnutls_x509_crt_set_expiration_time(crt, time(NULL) + 86400);
    assert_int_equal(
        gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn)), 0);
    assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
    assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), 0);
    assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem), 0);
    write_file(cert_path, &pem);
    gnutls_free(pem.data);
    assert_int_equal(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &pem), 0);
    write_file(key_path, &pem);
    gnutls_free(pem.data);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
}

static void copy_file(const char *from, const char *to)
{
    char buf[16384];
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    size_t n = fread(buf, 1, sizeof(buf), in);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* a/ and b/ pairs, and the serving pair (a copy of a) that tls_open is given */
static int setup(void **state)
{
    struct files *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-test-tls-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char a_cert[96], a_key[96], b_cert[96], b_key[96];
    snprintf(a_cert, sizeof(a_cert), "%s/a.crt", f->dir);
    snprintf(a_key, sizeof(a_key), "%s/a.key", f->dir);
    snprintf(b_cert, sizeof(b_cert), "%s/b.crt", f->dir);
    snprintf(b_key, sizeof(b_key), "%s/b.key", f->dir);
    make_pair(a_cert, a_key, "alpha");
    make_pair(b_cert, b_key, "beta");
    snprintf(f->cert, sizeof(f->cert), "%s/serving.crt", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/serving.key", f->dir);
    copy_file(a_cert, f->cert);
    copy_file(a_key, f->key);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct files *f = *state;
    const char *names[] = {"a.crt", "a.key", "b.crt", "b.key", "serving.crt", "serving.key"};
    char path[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void path_of(const struct files *f, const char *name, char out[128])
{
    snprintf(out, 128, "%s/%s", f->dir, name);
}

/* The common name of the certificate a handshake would get now. */
static void served_cn(char *out, size_t len)
{
    gnutls_pcert_st *chain = NULL;
    unsigned n = 0;
    gnutls_privkey_t key = NULL;
    gnutls_x509_crt_t crt;
    assert_int_equal(tls_retrieve(NULL, NULL, 0, NULL, 0, &chain, &n, &key), 0);
    assert_int_equal(n, 1);
    assert_non_null(key);
    assert_int_equal(gnutls_x509_crt_init(&crt), 0);
    assert_int_equal(gnutls_x509_crt_import(crt, &chain[0].cert, GNUTLS_X509_FMT_DER), 0);
    assert_int_equal(
        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, out, &len), 0);
    gnutls_x509_crt_deinit(crt);
}

static void test_open_checks_the_files(void **state)
{
    struct files *f = *state;
    struct tls *tls = NULL;
    struct err err = {0};
    char a_cert[128], b_key[128], missing[128];
    path_of(f, "a.crt", a_cert);
    path_of(f, "b.key", b_key);
    path_of(f, "nope.crt", missing);

    assert_int_equal(tls_open(a_cert, b_key, "1.2", &tls, &err), FERRY_ERR);
    assert_null(tls);
    assert_non_null(strstr(err.msg, "is not the private key of the certificate"));
    assert_int_equal(tls_open(missing, b_key, "1.2", &tls, &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "cannot read tls-cert"));
    assert_int_equal(tls_open(b_key, b_key, "1.2", &tls, &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "holds no usable PEM certificate"));
    assert_int_equal(tls_open(a_cert, a_cert, "1.2", &tls, &err), FERRY_ERR);
    assert_non_null(strstr(err.msg, "is not a usable unencrypted PEM private key"));

    assert_int_equal(tls_open(f->cert, f->key, "1.3", &tls, &err), FERRY_OK);
    assert_string_equal(tls_priorities(tls), "NORMAL:-VERS-ALL:+VERS-TLS1.3:%SERVER_PRECEDENCE");
    char cn[64];
    served_cn(cn, sizeof(cn));
    assert_string_equal(cn, "alpha");
    tls_close(tls);
    tls_close(NULL);
}

static void test_reload(void **state)
{
    struct files *f = *state;
    struct tls *tls = NULL;
    struct err err = {0};
    bool changed = true;
    char cn[64], b_cert[128], b_key[128], a_key[128];
    path_of(f, "b.crt", b_cert);
    path_of(f, "b.key", b_key);
    path_of(f, "a.key", a_key);
    assert_int_equal(tls_open(f->cert, f->key, "1.2", &tls, &err), FERRY_OK);
    assert_non_null(strstr(tls_priorities(tls), "+VERS-TLS1.2"));

    /* the same files: nothing replaced */
    assert_int_equal(tls_reload(tls, &changed, &err), FERRY_OK);
    assert_false(changed);
    /* a new pair: served from now on */
    copy_file(b_cert, f->cert);
    copy_file(b_key, f->key);
    assert_int_equal(tls_reload(tls, &changed, &err), FERRY_OK);
    assert_true(changed);
    served_cn(cn, sizeof(cn));
    assert_string_equal(cn, "beta");
    /* a key that does not match: refused, beta stays */
    copy_file(a_key, f->key);
    assert_int_equal(tls_reload(tls, &changed, &err), FERRY_ERR);
    assert_false(changed);
    assert_non_null(strstr(err.msg, "is not the private key"));
    served_cn(cn, sizeof(cn));
    assert_string_equal(cn, "beta");
    tls_close(tls); /* frees the replaced alpha pair too (LeakSanitizer checks) */
}

int main(void)
{
    gnutls_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_checks_the_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gnutls_global_deinit();
    return rc;
}
