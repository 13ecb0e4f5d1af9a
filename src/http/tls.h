/* tls.h - the HTTPS certificate and key ferry serves (--tls-cert, --tls-key): loaded and
 * checked at start, handed to each TLS handshake by libmicrohttpd's certificate callback,
 * and replaced on reload (SIGHUP) without touching open connections. */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

#include <stdbool.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#include "ferry.h"

struct tls;

/* Loads the PEM certificate chain at cert_path and the unencrypted PEM private key at
 * key_path, checks that the key is the certificate's, and makes them the credentials
 * every new handshake gets. min_version is "1.2" or "1.3". One struct tls serves at a
 * time (GnuTLS's callback has no context pointer). On failure *out is NULL and err says
 * which file is wrong and how. Release with tls_close(). */
int tls_open(const char *cert_path, const char *key_path, const char *min_version, struct tls **out,
             struct err *err);

/* Reads both files again. When they changed and are good, new handshakes get the new
 * pair at once; connections already open keep theirs. On failure the old pair stays in
 * use and err says why. *changed tells whether anything was replaced. */
int tls_reload(struct tls *tls, bool *changed, struct err *err);

/* The GnuTLS priority string for libmicrohttpd (MHD_OPTION_HTTPS_PRIORITIES). */
const char *tls_priorities(const struct tls *tls);

/* The callback for MHD_OPTION_HTTPS_CERT_CALLBACK: the current pair. */
int tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                 const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                 gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey);

/* Frees everything, also pairs replaced by reloads. Call after the server has stopped.
 * tls_close(NULL) does nothing. */
void tls_close(struct tls *tls);

#endif
