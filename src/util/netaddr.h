/* netaddr.h - which addresses outgoing calls (other sites, webhooks) must not reach
 * unless the configuration allows it: the one check both callers share. */
#ifndef FERRY_NETADDR_H
#define FERRY_NETADDR_H

#include <stdbool.h>

#include <sys/socket.h>

/* Whether sa is an address ordinary outgoing calls must not reach: loopback, private
 * (RFC 1918, unique local), link-local, carrier-grade NAT, multicast, unspecified, and
 * IPv4 ones hidden in IPv6 forms. Any family other than IPv4 and IPv6 counts as one. */
bool netaddr_non_public(const struct sockaddr *sa);

#endif
