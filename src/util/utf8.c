/* utf8.c - see utf8.h. Hand-written: the check is a dozen lines, and neither jansson nor
 * OpenSSL exports one. It follows RFC 3629 (no overlongs, no surrogates, at most
 * U+10FFFF). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/utf8.h"

/* The top bit of each byte of a 64-bit word: set in none of an ASCII word. */
#define HIGH_BITS 0x8080808080808080ULL

/* Length of the valid sequence at s, of which avail bytes may be read, or 0 when it is
 * not one. */
static size_t sequence_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

void utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = sequence_len(p, SIZE_MAX); /* the NUL stops a sequence cut short */
        if (n == 0) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

/* The eight bytes at p as one word (memcpy: p need not be aligned). */
static uint64_t load64(const unsigned char *p)
{
    uint64_t word;
    memcpy(&word, p, sizeof(word));
    return word;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        /* ASCII, the bulk of most text, 32 then 8 bytes at a time: this check runs over
         * whole files (merge inputs), where a byte at a time costs as much as the merge,
         * and one test per 32 bytes takes half the instructions of one per 8. */
        while (end - p >= 32 &&
               !((load64(p) | load64(p + 8) | load64(p + 16) | load64(p + 24)) & HIGH_BITS))
            p += 32;
        while (end - p >= 8 && !(load64(p) & HIGH_BITS))
            p += 8;
        if (p == end)
            break;
        size_t n = *p < 0x80 ? 1 : sequence_len(p, (size_t)(end - p));
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}
