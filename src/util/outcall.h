/* outcall.h - the policy every outgoing HTTP call (other sites, webhooks) shares: which
 * addresses it must not reach unless the configuration allows it, and the libcurl options
 * that keep it to the address checked. */
#ifndef FERRY_OUTCALL_H
#define FERRY_OUTCALL_H

#include <stdbool.h>

#include <sys/socket.h>

/* Whether sa is an address ordinary outgoing calls must not reach: loopback, private
 * (RFC 1918, unique local), link-local, carrier-grade NAT, multicast, unspecified, and
 * IPv4 ones hidden in IPv6 forms. Any family other than IPv4 and IPv6 counts as one. */
bool outcall_non_public(const struct sockaddr *sa);

/* Sets the options every outgoing call has: http and https only, no redirects, no proxy
 * from the environment (it would connect past the checked address), no signals, and
 * timeout_s for the whole call (connecting: at most 10 s of it). curl is a CURL *. */
void outcall_curl_defaults(void *curl, long timeout_s);

#endif
