/* netlimit.h - open connections per IPv6 network. libmicrohttpd's per-address limit
 * (--max-connections-per-ip) counts each address, but one IPv6 client holds a whole /64
 * (2^64 addresses): counted per address, it could take every connection the server has.
 * Here an IPv6 address counts for its /64, which gets the per-address limit; IPv4
 * addresses (IPv4-mapped ones too) are left to libmicrohttpd's count. */
#ifndef FERRY_HTTP_NETLIMIT_H
#define FERRY_HTTP_NETLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct netlimit;

/* A count with per_net connections allowed per /64 (0: no limit; every call then does
 * nothing). Free with netlimit_free() once the daemon has stopped. */
struct netlimit *netlimit_new(unsigned per_net);
void netlimit_free(struct netlimit *nl);

/* Whether a connection from addr may be accepted now (libmicrohttpd's accept policy). */
bool netlimit_admits(struct netlimit *nl, const struct sockaddr *addr);

/* A connection from addr was opened / closed. */
void netlimit_opened(struct netlimit *nl, const struct sockaddr *addr);
void netlimit_closed(struct netlimit *nl, const struct sockaddr *addr);

/* The key an address text counts under for failed authentications: an IPv6 address's /64
 * ("2001:db8:1:2::/64"), any other text as it is. out has cap bytes. */
void netlimit_key(const char *addr, char *out, size_t cap);

#endif
