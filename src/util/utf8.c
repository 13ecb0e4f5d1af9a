/* utf8.c - see utf8.h. Hand-written: the check is a dozen lines, and neither jansson nor
 * OpenSSL exports one. It follows RFC 3629 (no overlongs, no surrogates, at most
 * U+10FFFF). */
#include <stddef.h>
#include <stdint.h>

#include "util/utf8.h"

/* Length of the valid sequence at s, or 0 when it is not one. */
static size_t sequence_len(const unsigned char *s)
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
        size_t n = sequence_len(p);
        if (n == 0) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}
