/* proxies.c - see proxies.h. Hand-written: no Debian library parses RFC 7239 or matches
 * CIDR ranges for a C server; inet_pton and inet_ntop do the address work. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/proxies.h"

/* Forwarding hops looked at, from the right; a longer chain is cut on the left. */
#define MAX_HOPS 32
#define MAX_ENTRIES 256

struct ip {
    int family; /* AF_INET or AF_INET6; an IPv4-mapped IPv6 address is AF_INET */
    unsigned char b[16];
};

struct range {
    struct ip ip;
    int bits;
};

struct proxies {
    enum proxies_header header;
    size_t n;
    struct range ranges[];
};

static void from_in6(const struct in6_addr *a, struct ip *out)
{
    if (IN6_IS_ADDR_V4MAPPED(a)) {
        out->family = AF_INET;
        memcpy(out->b, a->s6_addr + 12, 4);
    } else {
        out->family = AF_INET6;
        memcpy(out->b, a->s6_addr, 16);
    }
}

/* Parses a bare address (no port, no brackets). */
static bool parse_bare(const char *text, struct ip *out)
{
    struct in6_addr a6;
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, out->b) == 1) {
        out->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, &a6) != 1)
        return false;
    from_in6(&a6, out);
    return true;
}

/* Parses an address as forwarding headers write it: 192.0.2.1, 192.0.2.1:8080,
 * 2001:db8::1, [2001:db8::1] or [2001:db8::1]:8080. */
static bool parse_hop(const char *text, size_t len, struct ip *out)
{
    char buf[PROXIES_ADDR_LEN];
    while (len && isspace((unsigned char)*text))
        text++, len--;
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *start = buf;
    if (*start == '[') {
        char *close = strchr(start, ']');
        if (!close || (close[1] && close[1] != ':'))
            return false;
        *close = '\0';
        start++;
    } else {
        char *colon = strchr(start, ':');
        if (colon && !strchr(colon + 1, ':')) /* one colon: IPv4 with a port */
            *colon = '\0';
    }
    return parse_bare(start, out);
}

static int parse_range(const char *text, struct range *r, struct err *err)
{
    char buf[PROXIES_ADDR_LEN + 8];
    snprintf(buf, sizeof(buf), "%s", text);
    char *slash = strchr(buf, '/'), *end = NULL;
    long bits = -1;
    if (slash) {
        *slash = '\0';
        bits = strtol(slash + 1, &end, 10);
    }
    if (strlen(text) >= sizeof(buf) - 1 || !parse_bare(buf, &r->ip) ||
        (slash && (end == slash + 1 || *end)))
        return err_set(err, ERR_INVALID, "trusted-proxies: '%s' is not an address or CIDR range",
                       text);
    int max = r->ip.family == AF_INET ? 32 : 128;
    if (slash && strchr(buf, '.') && r->ip.family == AF_INET && strchr(buf, ':'))
        bits -= 96; /* ::ffff:10.0.0.0/104 is 10.0.0.0/8 */
    if (!slash)
        bits = max;
    if (bits < 0 || bits > max)
        return err_set(err, ERR_INVALID, "trusted-proxies: '%s' has a prefix length out of range",
                       text);
    r->bits = (int)bits;
    return FERRY_OK;
}

int proxies_parse(const char *list, const char *header, struct proxies **out, struct err *err)
{
    struct proxies *p = xcalloc(1, sizeof(*p) + MAX_ENTRIES * sizeof(struct range));
    char *copy = xstrdup(list ? list : ""), *save = NULL;
    int rc = FERRY_ERR;

    *out = NULL;
    if (header && !strcasecmp(header, "forwarded"))
        p->header = PROXIES_FORWARDED;
    else if (header && strcasecmp(header, "x-forwarded-for") != 0) {
        err_set(err, ERR_INVALID, "forwarded-header must be x-forwarded-for or forwarded");
        goto out;
    }
    for (char *e = strtok_r(copy, ", ", &save); e; e = strtok_r(NULL, ", ", &save)) {
        if (p->n == MAX_ENTRIES) {
            err_set(err, ERR_INVALID, "trusted-proxies: at most %d entries", MAX_ENTRIES);
            goto out;
        }
        if (parse_range(e, &p->ranges[p->n++], err) != FERRY_OK)
            goto out;
    }
    if (p->n) {
        *out = p;
        p = NULL;
    }
    rc = FERRY_OK;
out:
    free(p);
    free(copy);
    return rc;
}

const char *proxies_header_name(const struct proxies *p)
{
    return p->header == PROXIES_FORWARDED ? "Forwarded" : "X-Forwarded-For";
}

void proxies_free(struct proxies *p)
{
    free(p);
}

static bool in_range(const struct range *r, const struct ip *ip)
{
    if (r->ip.family != ip->family)
        return false;
    int full = r->bits / 8, rest = r->bits % 8;
    if (memcmp(r->ip.b, ip->b, (size_t)full) != 0)
        return false;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return rest == 0 || (r->ip.b[full] & mask) == (ip->b[full] & mask);
}

static bool trusted(const struct proxies *p, const struct ip *ip)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (in_range(&p->ranges[i], ip))
            return true;
    return false;
}

/* Splits a header value at every comma, quoted or not; returns the hop count, the last
 * MAX_HOPS hops being kept. The client writes the left of the chain: honouring its quotes
 * would let one it leaves open swallow the hop the proxy appends after it. No address
 * (for=) value holds a comma, so the proxies' own elements split right. */
static size_t split_hops(const char *v, const char *starts[], size_t lens[])
{
    size_t n = 0;
    const char *start = v;
    for (const char *c = v;; c++) {
        if (*c && *c != ',')
            continue;
        if (n == MAX_HOPS) { /* keep the right-most hops */
            memmove(starts, starts + 1, (MAX_HOPS - 1) * sizeof(*starts));
            memmove(lens, lens + 1, (MAX_HOPS - 1) * sizeof(*lens));
            n--;
        }
        starts[n] = start;
        lens[n++] = (size_t)(c - start);
        if (!*c)
            return n;
        start = c + 1;
    }
}

/* The for= value of one Forwarded element ("for=192.0.2.1;proto=https"), unquoted,
 * parsed. False when it has none or it is no address ("unknown", "_hidden"). */
static bool forwarded_for(const char *elem, size_t len, struct ip *out)
{
    const char *end = elem + len;
    for (const char *pair = elem; pair < end;) {
        while (pair < end && isspace((unsigned char)*pair))
            pair++;
        const char *semi = memchr(pair, ';', (size_t)(end - pair));
        const char *pair_end = semi ? semi : end;
        if (pair_end - pair > 4 && !strncasecmp(pair, "for=", 4)) {
            const char *v = pair + 4;
            size_t vlen = (size_t)(pair_end - v);
            while (vlen && isspace((unsigned char)v[vlen - 1]))
                vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"')
                v++, vlen -= 2;
            return parse_hop(v, vlen, out);
        }
        pair = pair_end + 1;
    }
    return false;
}

static void print_ip(const struct ip *ip, char *out, size_t len)
{
    if (!inet_ntop(ip->family, ip->b, out, (socklen_t)len))
        snprintf(out, len, "unknown");
}

void proxies_client_addr(const struct proxies *p, const struct sockaddr *peer, const char *chain,
                         char *out, size_t len)
{
    struct ip cur = {0}, hop;
    const char *starts[MAX_HOPS];
    size_t lens[MAX_HOPS], n = 0;

    if (peer->sa_family == AF_INET) {
        cur.family = AF_INET;
        memcpy(cur.b, &((const struct sockaddr_in *)peer)->sin_addr, 4);
    } else if (peer->sa_family == AF_INET6) {
        from_in6(&((const struct sockaddr_in6 *)peer)->sin6_addr, &cur);
    } else {
        snprintf(out, len, "unknown");
        return;
    }
    if (chain && trusted(p, &cur))
        n = split_hops(chain, starts, lens);
    for (size_t i = n; i-- > 0;) {
        bool ok = p->header == PROXIES_FORWARDED ? forwarded_for(starts[i], lens[i], &hop)
                                                 : parse_hop(starts[i], lens[i], &hop);
        if (!ok)
            break; /* the proxy that reported it is the best we know */
        cur = hop;
        if (!trusted(p, &cur))
            break;
    }
    print_ip(&cur, out, len);
}
