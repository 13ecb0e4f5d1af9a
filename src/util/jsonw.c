/* jsonw.c - see jsonw.h. Hand-written because jansson can only print a tree it has built,
 * and building one per row (an allocation per key and value) cost a pull most of its time;
 * the rules below follow jansson 2.14's dump.c, utf.c and strconv.c, and the unit test
 * compares both byte for byte. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "util/jsonw.h"

/* The length of the UTF-8 sequence starting at s (at most n bytes), 0 when invalid. */
static size_t sequence_len(const unsigned char *s, size_t n)
{
    unsigned char u = s[0];
    size_t len;
    uint32_t cp;
    if (u < 0x80)
        return 1;
    if (u >= 0xC2 && u <= 0xDF) {
        len = 2;
        cp = u & 0x1F;
    } else if (u >= 0xE0 && u <= 0xEF) {
        len = 3;
        cp = u & 0x0F;
    } else if (u >= 0xF0 && u <= 0xF4) {
        len = 4;
        cp = u & 0x07;
    } else {
        return 0; /* a continuation byte, C0/C1 (overlong ASCII) or above F4 */
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
        return 0; /* overlong */
    return len;
}

bool jsonw_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = sequence_len(p + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

void jsonw_string(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;
    buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!needs_escape(c))
            continue;
        buf_append(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        buf_append(b, esc, n);
    }
    buf_append(b, s + run, len - run);
    buf_append(b, "\"", 1);
}

bool jsonw_text(struct buf *b, const char *s)
{
    size_t len = strlen(s);
    if (!jsonw_utf8_valid(s, len))
        return false;
    jsonw_string(b, s, len);
    return true;
}

void jsonw_int(struct buf *b, int64_t v)
{
    char digits[24];
    size_t at = sizeof(digits);
    /* unsigned arithmetic: -INT64_MIN does not fit an int64_t */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[--at] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        digits[--at] = '-';
    buf_append(b, digits + at, sizeof(digits) - at);
}

void jsonw_real(struct buf *b, double d)
{
    jsonw_real_digits(b, d, 17);
}

void jsonw_real_digits(struct buf *b, double d, int digits)
{
    char text[64];
    if (!isfinite(d)) {
        buf_append(b, "null", 4);
        return;
    }
    int n = snprintf(text, sizeof(text) - 3, "%.*g", digits, d);
    if (!strchr(text, '.') && !strchr(text, 'e')) {
        memcpy(text + n, ".0", 3);
        n += 2;
    }
    /* jansson drops a '+' and leading zeros from the exponent: 1e+300 -> 1e300 */
    char *exp = strchr(text, 'e');
    if (exp) {
        char *start = exp + 1, *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, (size_t)(text + n - end) + 1);
            n -= (int)(end - start);
        }
    }
    buf_append(b, text, (size_t)n);
}

void jsonw_bool(struct buf *b, bool v)
{
    if (v)
        buf_append(b, "true", 4);
    else
        buf_append(b, "false", 5);
}

static int dump_into(const char *chunk, size_t len, void *ctx)
{
    buf_append(ctx, chunk, len);
    return 0;
}

void jsonw_value(struct buf *b, const json_t *v)
{
    if (json_dump_callback(v, dump_into, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        abort(); /* jansson fails only on allocation; see ferry.h's policy */
}

void jsonw_truncate(struct buf *b, size_t len)
{
    if (b->len > len) {
        b->len = len;
        b->data[len] = '\0';
    }
}
