/* compress.h - response content codings: which one a client's Accept-Encoding asks for,
 * and gzip (zlib) and zstd (libzstd) encoders for a whole buffered body. */
#ifndef FERRY_COMPRESS_H
#define FERRY_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

enum coding {
    CODING_IDENTITY,
    CODING_GZIP,
    CODING_ZSTD,
};

/* The coding to answer with for an Accept-Encoding value (NULL: header absent), by
 * RFC 9110 12.5.3: the acceptable coding of highest q-value, zstd before gzip when they
 * tie, identity when the client names none we have, forbids them (q=0), or ranks an
 * explicit identity above them. Unparsable entries are ignored. */
enum coding compress_choose(const char *accept_encoding);

/* The token for Content-Encoding ("gzip", "zstd"; NULL for identity). */
const char *compress_name(enum coding coding);

/* True for media types worth compressing: text/..., JSON, JavaScript, XML, SVG. */
bool compress_type_ok(const char *content_type);

/* Encodes in[0..len) with coding into a new malloc'd *out of *out_len bytes. Returns
 * false (and *out NULL) when the coding fails or the result would not be smaller. */
bool compress_encode(enum coding coding, const char *in, size_t len, char **out, size_t *out_len);

/* An encoder for a body written in parts (a streamed answer); NULL for identity or when
 * the coding cannot start. compress_stream_write appends the encoding of in[0..len) to
 * out, with the coding's end when end (the body's last part); false when it fails. */
struct compress_stream;
struct compress_stream *compress_stream_new(enum coding coding);
bool compress_stream_write(struct compress_stream *cs, const char *in, size_t len, bool end,
                           struct buf *out);
void compress_stream_free(struct compress_stream *cs);

#endif
