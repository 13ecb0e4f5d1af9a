/* proxies.h - trusted reverse proxies (trusted-proxies): which peers' X-Forwarded-For and
 * Forwarded (RFC 7239) headers are believed, and the client address that follows. */
#ifndef FERRY_PROXIES_H
#define FERRY_PROXIES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "ferry.h"

/* Longest address text written (an IPv6 address, without zone). */
#define PROXIES_ADDR_LEN 64

struct proxies;

/* Parses a comma-separated list of IPv4 and IPv6 addresses and CIDR ranges (spaces
 * allowed). NULL or empty text gives *out = NULL: no proxy is trusted. On failure err
 * names the entry. Free with proxies_free (NULL: nothing). */
int proxies_parse(const char *list, struct proxies **out, struct err *err);
void proxies_free(struct proxies *p);

/* The client's address as text into out (len >= PROXIES_ADDR_LEN): the peer's, unless
 * the peer is a trusted proxy; then the right-most address of the forwarding chain that
 * is not itself a trusted proxy (Forwarded's for= when that header is present, else
 * X-Forwarded-For; each NULL when absent, several header lines joined by commas). An
 * entry that is not an address ends the walk at the proxy that reported it. */
void proxies_client_addr(const struct proxies *p, const struct sockaddr *peer,
                         const char *forwarded, const char *xff, char *out, size_t len);

#endif
