/* buf.h - a growable byte buffer, always NUL-terminated so text can be read in place. */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

struct buf {
    char *data; /* NULL until the first append */
    size_t len, cap;
};

void buf_init(struct buf *b);
void buf_cleanup(struct buf *b);
void buf_append_grow(struct buf *b, const void *data, size_t len);

/* Appends len bytes. Inline for the common case of room to spare: the JSON writer
 * (util/jsonw.h) appends a few bytes at a time, a dozen times per row of a pull. */
static inline void buf_append(struct buf *b, const void *data, size_t len)
{
    if (b->len + len >= b->cap) {
        buf_append_grow(b, data, len);
        return;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes to the caller (who frees them) and leaves b empty. */
char *buf_steal(struct buf *b);

#endif
