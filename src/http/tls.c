/* tls.c - see tls.h. Owns the certificate/key pairs: the one being served (published
 * through an atomic pointer that handshakes read on MHD's threads) and the ones reloads
 * replaced. Those are kept until tls_close: GnuTLS borrows the pair a handshake got
 * (retrieve_function2 does not copy it) for as long as that handshake may last, which
 * only the library knows; a pair is a few KB and is replaced only when its files change. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "http/tls.h"
#include "util/crypto.h"
#include "util/log.h"
#include "util/timeutil.h"

#define MAX_CHAIN 16               /* certificates in tls-cert */
#define MAX_PEM_BYTES (256 * 1024) /* a chain of 16 is far less */

struct pair {
    gnutls_pcert_st chain[MAX_CHAIN];
    unsigned n_chain;
    gnutls_privkey_t key;
    char digest[65]; /* of both files' bytes, to tell an unchanged pair */
    struct pair *replaced_next;
};

struct tls {
    char *cert_path, *key_path;
    char *priorities;
    struct pair *replaced; /* pairs no longer served, freed by tls_close */
};

/* The pair new handshakes get. GnuTLS's callback has no context pointer, so it is
 * reached here; written by tls_open/tls_reload (main thread), read by MHD's threads. */
static _Atomic(struct pair *) serving;

static void pair_free(struct pair *p)
{
    if (!p)
        return;
    for (unsigned i = 0; i < p->n_chain; i++)
        gnutls_pcert_deinit(&p->chain[i]);
    gnutls_privkey_deinit(p->key);
    free(p);
}

/* Reads a whole PEM file into *out (malloc'd, NUL-terminated). */
static int read_pem(const char *setting, const char *path, gnutls_datum_t *out, struct err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, ERR_INVALID, "cannot read %s %s: %s", setting, path, strerror(errno));
    char *data = xmalloc(MAX_PEM_BYTES + 1);
    size_t n = fread(data, 1, MAX_PEM_BYTES + 1, f);
    bool failed = ferror(f);
    fclose(f);
    if (failed || n > MAX_PEM_BYTES) {
        free(data);
        return err_set(err, ERR_INVALID, "cannot read %s %s: %s", setting, path,
                       failed ? "read error" : "larger than 256K, not a PEM file");
    }
    data[n] = '\0';
    out->data = (unsigned char *)data;
    out->size = (unsigned)n;
    return FERRY_OK;
}

/* True when key is the private key of the certificate's public key. */
static bool key_matches(gnutls_privkey_t key, gnutls_pubkey_t cert_pub)
{
    gnutls_pubkey_t pub = NULL;
    unsigned char a[64], b[64];
    size_t a_len = sizeof(a), b_len = sizeof(b);
    bool same = gnutls_pubkey_init(&pub) == 0 &&
                gnutls_pubkey_import_privkey(pub, key, 0, 0) == 0 &&
                gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &a_len) == 0 &&
                gnutls_pubkey_get_key_id(cert_pub, GNUTLS_KEYID_USE_SHA256, b, &b_len) == 0 &&
                a_len == b_len && memcmp(a, b, a_len) == 0;
    gnutls_pubkey_deinit(pub);
    return same;
}

static int parse_pair(struct pair *p, const gnutls_datum_t *cert, const gnutls_datum_t *key,
                      const char *cert_path, const char *key_path, struct err *err)
{
    int rc;
    p->n_chain = MAX_CHAIN;
    rc = gnutls_pcert_list_import_x509_raw(p->chain, &p->n_chain, cert, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || p->n_chain == 0) {
        p->n_chain = 0;
        return err_set(err, ERR_INVALID, "tls-cert %s holds no usable PEM certificate (%s)",
                       cert_path, rc < 0 ? gnutls_strerror(rc) : "none found");
    }
    if ((rc = gnutls_privkey_init(&p->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(p->key, key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0)
        return err_set(err, ERR_INVALID,
                       "tls-key %s is not a usable unencrypted PEM private key (%s)", key_path,
                       gnutls_strerror(rc));
    if (!key_matches(p->key, p->chain[0].pubkey))
        return err_set(err, ERR_INVALID,
                       "tls-key %s is not the private key of the certificate in tls-cert %s",
                       key_path, cert_path);
    return FERRY_OK;
}

/* Reads and checks both files into a new pair. */
static int load_pair(const struct tls *tls, struct pair **out, struct err *err)
{
    gnutls_datum_t cert = {NULL, 0}, key = {NULL, 0};
    struct pair *p = xcalloc(1, sizeof(*p));
    int rc = FERRY_ERR;

    *out = NULL;
    if (read_pem("tls-cert", tls->cert_path, &cert, err) != FERRY_OK ||
        read_pem("tls-key", tls->key_path, &key, err) != FERRY_OK ||
        parse_pair(p, &cert, &key, tls->cert_path, tls->key_path, err) != FERRY_OK)
        goto out;
    char *both = xmalloc((size_t)cert.size + key.size);
    memcpy(both, cert.data, cert.size);
    memcpy(both + cert.size, key.data, key.size);
    crypto_sha256_hex(both, (size_t)cert.size + key.size, p->digest);
    free(both);
    *out = p;
    p = NULL;
    rc = FERRY_OK;
out:
    if (key.data)
        memset(key.data, 0, key.size); /* the key's PEM: not left in freed memory */
    free(key.data);
    free(cert.data);
    pair_free(p);
    return rc;
}

/* One log line naming the certificate now served, and a warning when it has expired. */
static void log_pair(const char *event, const struct pair *p)
{
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t dn = {NULL, 0};
    char not_after[32] = "";
    time_t expires = 0;
    if (gnutls_x509_crt_init(&crt) == 0 &&
        gnutls_x509_crt_import(crt, &p->chain[0].cert, GNUTLS_X509_FMT_DER) == 0) {
        expires = gnutls_x509_crt_get_expiration_time(crt);
        time_iso8601((int64_t)expires * 1000, 0, not_after);
        gnutls_x509_crt_get_dn3(crt, &dn, 0);
    }
    const char *subject = dn.data ? (const char *)dn.data : "";
    log_info(event, json_pack("{s:s, s:s, s:s, s:i}", "msg", "serving TLS certificate", "subject",
                              subject, "notAfter", not_after, "chain", (int)p->n_chain));
    if (expires && (int64_t)expires * 1000 < time_now_ms())
        log_warn("tls_expired", json_pack("{s:s, s:s, s:s}", "msg",
                                          "the TLS certificate has expired; clients will refuse it",
                                          "subject", subject, "notAfter", not_after));
    gnutls_free(dn.data);
    gnutls_x509_crt_deinit(crt);
}

int tls_open(const char *cert_path, const char *key_path, const char *min_version, struct tls **out,
             struct err *err)
{
    struct pair *p = NULL;
    *out = NULL;
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
        MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES)
        return err_set(err, ERR_INVALID,
                       "tls-cert is set, but this libmicrohttpd was built without TLS support");
    struct tls *tls = xcalloc(1, sizeof(*tls));
    tls->cert_path = xstrdup(cert_path);
    tls->key_path = xstrdup(key_path);
    /* GnuTLS's defaults minus everything before TLS 1.2 (or 1.3), our order first */
    tls->priorities =
        xstrdup(strcmp(min_version, "1.3") == 0
                    ? "NORMAL:-VERS-ALL:+VERS-TLS1.3:%SERVER_PRECEDENCE"
                    : "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE");
    if (load_pair(tls, &p, err) != FERRY_OK) {
        tls_close(tls);
        return FERRY_ERR;
    }
    atomic_store(&serving, p);
    log_pair("tls_loaded", p);
    *out = tls;
    return FERRY_OK;
}

int tls_reload(struct tls *tls, bool *changed, struct err *err)
{
    struct pair *p = NULL;
    *changed = false;
    if (load_pair(tls, &p, err) != FERRY_OK)
        return FERRY_ERR;
    struct pair *old = atomic_load(&serving);
    if (old && strcmp(old->digest, p->digest) == 0) {
        pair_free(p); /* the same files: logrotate's SIGHUP, not a new certificate */
        return FERRY_OK;
    }
    old = atomic_exchange(&serving, p);
    if (old) {
        old->replaced_next = tls->replaced;
        tls->replaced = old;
    }
    *changed = true;
    log_pair("tls_reloaded", p);
    return FERRY_OK;
}

const char *tls_priorities(const struct tls *tls)
{
    return tls->priorities;
}

int tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                 const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                 gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
    (void)session, (void)req_ca_dn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
    struct pair *p = atomic_load(&serving);
    if (!p)
        return -1; /* ends the handshake */
    *pcert = p->chain;
    *pcert_length = p->n_chain;
    *pkey = p->key;
    return 0;
}

void tls_close(struct tls *tls)
{
    if (!tls)
        return;
    pair_free(atomic_exchange(&serving, NULL));
    while (tls->replaced) {
        struct pair *next = tls->replaced->replaced_next;
        pair_free(tls->replaced);
        tls->replaced = next;
    }
    free(tls->cert_path);
    free(tls->key_path);
    free(tls->priorities);
    free(tls);
}
