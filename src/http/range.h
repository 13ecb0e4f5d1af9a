/* range.h - the parts of HTTP conditional and range requests (RFC 9110 sections 13 and
 * 14) that downloads need: one byte range, and entity-tag lists. */
#ifndef FERRY_RANGE_H
#define FERRY_RANGE_H

#include <stdbool.h>
#include <stdint.h>

enum range_result {
    RANGE_SERVE,         /* a satisfiable single range: serve *start, *len */
    RANGE_IGNORE,        /* malformed, or several ranges: send the whole representation */
    RANGE_UNSATISFIABLE, /* 416 */
};

/* Parses a Range header ("bytes=a-b", "bytes=a-", "bytes=-n") against a size. */
enum range_result http_parse_range(const char *header, uint64_t size, uint64_t *start,
                                   uint64_t *len);

/* Whether an If-None-Match list names etag (a quoted tag) or is "*"; weak tags (W/"x")
 * match by value, the weak comparison RFC 9110 asks for. */
bool http_etag_listed(const char *list, const char *etag);

#endif
