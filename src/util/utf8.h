/* utf8.h - making text safe for JSON: request paths, query values and error messages
 * can hold any bytes (they arrive percent-decoded, or are cut at a byte count), and
 * jansson refuses strings that are not UTF-8. */
#ifndef FERRY_UTF8_H
#define FERRY_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Replaces, in place, every byte that does not start or continue a valid UTF-8
 * sequence with '?'. A sequence cut short at the end of the string is replaced too. */
void utf8_scrub(char *s);

/* Whether the len bytes at s are valid UTF-8 by the same rules (a NUL byte is valid). */
bool utf8_valid(const char *s, size_t len);

#endif
