/* outcall.c - see outcall.h. */
#include <arpa/inet.h>
#include <string.h>

#include <curl/curl.h>

#include "util/outcall.h"

bool outcall_non_public(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 ||
               (a >> 16) == 0xa9fe /* 169.254 */ || (a >> 20) == 0xac1 /* 172.16/12 */ ||
               (a >> 16) == 0xc0a8 /* 192.168 */ || (a >> 22) == 0x191 /* 100.64/10 */ ||
               (a >> 8) == 0xc00000 /* 192.0.0/24 */ || (a >> 17) == 0x6309 /* 198.18/15 */ ||
               (a >> 28) >= 0xe /* multicast, reserved */;
    }
    if (sa->sa_family != AF_INET6)
        return true;
    const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const unsigned char zero[10] = {0};
    if (!memcmp(b, zero, 10) && ((b[10] == 0xff && b[11] == 0xff) || (!b[10] && !b[11]))) {
        struct sockaddr_in v4 = {.sin_family = AF_INET};
        memcpy(&v4.sin_addr, b + 12, 4); /* ::ffff:a.b.c.d and ::a.b.c.d (and ::, ::1) */
        return outcall_non_public((struct sockaddr *)&v4) || (!b[10] && !b[11]);
    }
    return (b[0] & 0xfe) == 0xfc /* fc00::/7 */ || (b[0] == 0xfe && (b[1] & 0x80) == 0x80) ||
           /* fe80::/10 link-local and fec0::/10 site-local */
           (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) /* Teredo 2001::/32 */ ||
           (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0x00 &&
            b[5] == 0x01) /* 64:ff9b:1::/48 */
           || b[0] == 0xff /* multicast */ || (b[0] == 0x20 && b[1] == 0x02) /* 6to4 */ ||
           (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) /* NAT64 */;
}

void outcall_curl_defaults(void *curl, long timeout_s)
{
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, timeout_s < 10 ? timeout_s : 10L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_s);
}
