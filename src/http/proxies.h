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

/* The header a trusted proxy writes the chain into. Only that one is read: a client can
 * send the other itself, and a proxy that does not manage it passes it on unchanged. */
enum proxies_header { PROXIES_X_FORWARDED_FOR, PROXIES_FORWARDED };

/* Parses a comma-separated list of IPv4 and IPv6 addresses and CIDR ranges (spaces
 * allowed) and the header's name ("x-forwarded-for" or "forwarded", any case). NULL or
 * empty list gives *out = NULL: no proxy is trusted. On failure err names the entry.
 * Free with proxies_free (NULL: nothing). */
int proxies_parse(const char *list, const char *header, struct proxies **out, struct err *err);
void proxies_free(struct proxies *p);

/* The name of the header to read ("X-Forwarded-For" or "Forwarded"). */
const char *proxies_header_name(const struct proxies *p);

/* The client's address as text into out (len >= PROXIES_ADDR_LEN): the peer's, unless
 * the peer is a trusted proxy; then the right-most address of the forwarding chain (the
 * header's value, several lines joined by commas; NULL when absent) that is not itself a
 * trusted proxy. An entry that is not an address ends the walk at the proxy that
 * reported it. */
void proxies_client_addr(const struct proxies *p, const struct sockaddr *peer, const char *chain,
                         char *out, size_t len);

#endif
