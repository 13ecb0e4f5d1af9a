/* jsonw.h - the one JSON text writer: values appended to a buffer as compact JSON, byte for
 * byte as jansson's json_dumps(JSON_COMPACT) prints them, without building a jansson tree.
 * The feed writes its pages with it straight from the result rows. */
#ifndef FERRY_JSONW_H
#define FERRY_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/buf.h"

/* Whether s[0..len) is UTF-8 as jansson accepts it (no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
bool jsonw_utf8_valid(const char *s, size_t len);

/* Appends s[0..len) as a JSON string; s must be valid UTF-8 (jsonw_utf8_valid). Escapes
 * as jansson does: \" \\ \b \f \n \r \t and \u00XX for the other control characters. */
void jsonw_string(struct buf *b, const char *s, size_t len);

/* Appends the NUL-terminated text s as a JSON string and returns true; appends nothing
 * and returns false when s is not valid UTF-8 (jansson refuses such a string, and the
 * key that would have held it is left out). */
bool jsonw_text(struct buf *b, const char *s);

/* Appends a decimal integer. */
void jsonw_int(struct buf *b, int64_t v);

/* Appends a real as jansson prints it (%.17g, always with a '.' or an exponent); NaN and
 * infinities, which JSON cannot carry, as null. */
void jsonw_real(struct buf *b, double d);

/* jsonw_real with as many significant digits as JSON_REAL_PRECISION(digits) prints. */
void jsonw_real_digits(struct buf *b, double d, int digits);

/* Appends true or false. */
void jsonw_bool(struct buf *b, bool v);

/* Appends a jansson value, compact. */
void jsonw_value(struct buf *b, const json_t *v);

/* Cuts b back to its first len bytes (drops a key whose value could not be written). */
void jsonw_truncate(struct buf *b, size_t len);

#endif
