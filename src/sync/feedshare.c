/* feedshare.c - see feedshare.h. A direct-mapped table under one mutex: a lookup costs a
 * hash, a compare and a copy of a small page, and a collision only costs a read. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "sync/feedshare.h"

#define SHARE_SLOTS 64
#define SHARE_MAX_TEXT 65536 /* larger pages are read by each reader */

struct slot {
    char *key;
    size_t key_len;
    char *text;
    struct feedshare_page page;
};

struct feedshare {
    pthread_mutex_t lock;
    struct slot slots[SHARE_SLOTS];
};

struct feedshare *feedshare_new(void)
{
    struct feedshare *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void feedshare_free(struct feedshare *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < SHARE_SLOTS; i++) {
        free(s->slots[i].key);
        free(s->slots[i].text);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static struct slot *slot_of(struct feedshare *s, const char *key, size_t key_len)
{
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < key_len; i++)
        hash = (hash ^ (unsigned char)key[i]) * 1099511628211ULL;
    return &s->slots[hash % SHARE_SLOTS];
}

bool feedshare_get(struct feedshare *s, const char *key, size_t key_len, int64_t min_head,
                   struct buf *out, struct feedshare_page *page)
{
    struct slot *slot = slot_of(s, key, key_len);
    bool found = false;
    pthread_mutex_lock(&s->lock);
    if (slot->key && slot->key_len == key_len && !memcmp(slot->key, key, key_len) &&
        slot->page.head >= min_head) {
        size_t start = out->len;
        buf_append(out, slot->text, slot->page.len);
        *page = slot->page;
        page->text = out->data + start;
        found = true;
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

void feedshare_put(struct feedshare *s, const char *key, size_t key_len,
                   const struct feedshare_page *page)
{
    if (page->len > SHARE_MAX_TEXT)
        return;
    struct slot *slot = slot_of(s, key, key_len);
    char *key_copy = xmalloc(key_len + 1), *text = xmalloc(page->len + 1);
    memcpy(key_copy, key, key_len);
    memcpy(text, page->text, page->len);
    pthread_mutex_lock(&s->lock);
    bool same = slot->key && slot->key_len == key_len && !memcmp(slot->key, key, key_len);
    if (same && slot->page.head > page->head) { /* keep the newer page */
        pthread_mutex_unlock(&s->lock);
        free(key_copy);
        free(text);
        return;
    }
    char *old_key = slot->key, *old_text = slot->text;
    slot->key = key_copy;
    slot->key_len = key_len;
    slot->text = text;
    slot->page = *page;
    slot->page.text = text;
    pthread_mutex_unlock(&s->lock);
    free(old_key);
    free(old_text);
}
