/* netlimit.c - see netlimit.h. Owns a small hash table of /64 networks with open
 * connections, guarded by one mutex (a few operations per connection opened or closed);
 * a network with none left is removed, so the table holds only networks connected now. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "http/netlimit.h"

#define BUCKETS 1024

struct net {
    uint64_t prefix;
    unsigned open;
    struct net *next;
};

struct netlimit {
    unsigned per_net;
    pthread_mutex_t lock;
    struct net *buckets[BUCKETS];
};

struct netlimit *netlimit_new(unsigned per_net)
{
    struct netlimit *nl = xcalloc(1, sizeof(*nl));
    nl->per_net = per_net;
    pthread_mutex_init(&nl->lock, NULL);
    return nl;
}

void netlimit_free(struct netlimit *nl)
{
    if (!nl)
        return;
    for (size_t i = 0; i < BUCKETS; i++)
        while (nl->buckets[i]) {
            struct net *n = nl->buckets[i];
            nl->buckets[i] = n->next;
            free(n);
        }
    pthread_mutex_destroy(&nl->lock);
    free(nl);
}

/* The /64 of an IPv6 address that is not IPv4-mapped (false for anything else). */
static bool prefix_of(const struct sockaddr *addr, uint64_t *prefix)
{
    if (!addr || addr->sa_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
        return false;
    uint64_t p = 0;
    for (int i = 0; i < 8; i++)
        p = p << 8 | a->s6_addr[i];
    *prefix = p;
    return true;
}

static struct net **slot_of(struct netlimit *nl, uint64_t prefix)
{
    struct net **at = &nl->buckets[(prefix ^ prefix >> 29) * 0x9E3779B97F4A7C15ULL >> 54];
    while (*at && (*at)->prefix != prefix)
        at = &(*at)->next;
    return at;
}

bool netlimit_admits(struct netlimit *nl, const struct sockaddr *addr)
{
    uint64_t prefix;
    if (!nl || !nl->per_net || !prefix_of(addr, &prefix))
        return true;
    pthread_mutex_lock(&nl->lock);
    struct net *n = *slot_of(nl, prefix);
    bool ok = !n || n->open < nl->per_net;
    pthread_mutex_unlock(&nl->lock);
    return ok;
}

void netlimit_opened(struct netlimit *nl, const struct sockaddr *addr)
{
    uint64_t prefix;
    if (!nl || !nl->per_net || !prefix_of(addr, &prefix))
        return;
    pthread_mutex_lock(&nl->lock);
    struct net **at = slot_of(nl, prefix);
    if (!*at) {
        *at = xcalloc(1, sizeof(**at));
        (*at)->prefix = prefix;
    }
    (*at)->open++;
    pthread_mutex_unlock(&nl->lock);
}

void netlimit_closed(struct netlimit *nl, const struct sockaddr *addr)
{
    uint64_t prefix;
    if (!nl || !nl->per_net || !prefix_of(addr, &prefix))
        return;
    pthread_mutex_lock(&nl->lock);
    struct net **at = slot_of(nl, prefix);
    if (*at && --(*at)->open == 0) {
        struct net *gone = *at;
        *at = gone->next;
        free(gone);
    }
    pthread_mutex_unlock(&nl->lock);
}

void netlimit_key(const char *addr, char *out, size_t cap)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    uint64_t prefix;
    if (inet_pton(AF_INET6, addr, &sa.sin6_addr) != 1 ||
        !prefix_of((const struct sockaddr *)&sa, &prefix)) {
        snprintf(out, cap, "%s", addr);
        return;
    }
    memset(sa.sin6_addr.s6_addr + 8, 0, 8);
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &sa.sin6_addr, text, sizeof(text));
    snprintf(out, cap, "%s/64", text);
}
