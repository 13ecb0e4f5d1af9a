/* range.c - see range.h. Hand-written: libmicrohttpd leaves ranges to the application,
 * and the grammar needed here is a few lines. */
#include <stdio.h>
#include <string.h>

#include "http/range.h"

/* Reads a run of digits at *p into *out; false when there is none or it overflows. */
static bool read_number(const char **p, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *out = v;
    return true;
}

enum range_result http_parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len)
{
    uint64_t a = 0, b = 0;
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return RANGE_IGNORE;
    const char *p = h + 6;
    if (*p == '-') { /* the last b bytes */
        p++;
        if (!read_number(&p, &b) || *p)
            return RANGE_IGNORE;
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        *start = b >= size ? 0 : size - b;
        *len = size - *start;
        return RANGE_SERVE;
    }
    if (!read_number(&p, &a) || *p++ != '-')
        return RANGE_IGNORE;
    if (*p) {
        if (!read_number(&p, &b) || *p || b < a)
            return RANGE_IGNORE;
    } else {
        b = UINT64_MAX;
    }
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    if (b >= size)
        b = size - 1;
    *start = a;
    *len = b - a + 1;
    return RANGE_SERVE;
}

bool http_etag_listed(const char *list, const char *etag)
{
    size_t n = strlen(etag);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!strncmp(p, "W/", 2))
            p += 2;
        size_t len = strcspn(p, ",");
        while (len && p[len - 1] == ' ')
            len--;
        if ((len == 1 && *p == '*') || (len == n && !strncmp(p, etag, n)))
            return true;
        p += strcspn(p, ",");
    }
    return false;
}
