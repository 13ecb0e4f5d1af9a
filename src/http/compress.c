/* compress.c - see compress.h. Content negotiation is parsed here by hand (a dozen lines:
 * no Debian library parses Accept-Encoding); the encoding itself is zlib's and libzstd's. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>
#include <zstd.h>

#include "ferry.h"
#include "http/compress.h"

/* Levels chosen by measuring a 1,000-row feed page (docs/operations.md, "Compression"):
 * higher levels cost several times the CPU for a few percent smaller JSON. */
#define GZIP_LEVEL 1
#define ZSTD_LEVEL 1

/* q-values in thousandths; -1: the coding is not named. */
struct weights {
    int gzip, zstd, identity, any;
};

/* Parses "q=0.5" style weights: 0 to 1 with at most three decimals. */
static bool parse_q(const char *s, size_t len, int *q)
{
    if (len < 1 || (s[0] != '0' && s[0] != '1'))
        return false;
    int value = (s[0] - '0') * 1000, scale = 100;
    if (len > 1 && (s[1] != '.' || len > 5))
        return false;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        value += (s[i] - '0') * scale;
    }
    if (value > 1000)
        return false;
    *q = value;
    return true;
}

/* The q of one entry's parameters (";q=0.5"), 1000 when none; false when malformed. */
static bool entry_q(const char *params, size_t len, int *q)
{
    *q = 1000;
    while (len && (*params == ';' || *params == ' ' || *params == '\t'))
        params++, len--;
    while (len && (params[len - 1] == ' ' || params[len - 1] == '\t'))
        len--;
    if (!len)
        return true;
    if (len < 2 || tolower((unsigned char)params[0]) != 'q' || params[1] != '=')
        return false;
    return parse_q(params + 2, len - 2, q);
}

static void weigh(struct weights *w, const char *entry, size_t len)
{
    while (len && (*entry == ' ' || *entry == '\t'))
        entry++, len--;
    size_t name_len = 0;
    while (name_len < len && entry[name_len] != ';' && entry[name_len] != ' ' &&
           entry[name_len] != '\t')
        name_len++;
    int q;
    if (!name_len || !entry_q(entry + name_len, len - name_len, &q))
        return;
#define IS(token) (name_len == strlen(token) && strncasecmp(entry, token, name_len) == 0)
    if (IS("gzip") || IS("x-gzip"))
        w->gzip = q;
    else if (IS("zstd"))
        w->zstd = q;
    else if (IS("identity"))
        w->identity = q;
    else if (IS("*"))
        w->any = q;
#undef IS
}

enum coding compress_choose(const char *accept_encoding)
{
    struct weights w = {-1, -1, -1, -1};
    if (!accept_encoding)
        return CODING_IDENTITY;
    for (const char *p = accept_encoding; *p;) {
        size_t len = strcspn(p, ",");
        weigh(&w, p, len);
        p += len + (p[len] == ',');
    }
    int gzip = w.gzip >= 0 ? w.gzip : (w.any > 0 ? w.any : 0);
    int zstd = w.zstd >= 0 ? w.zstd : (w.any > 0 ? w.any : 0);
    int best = zstd >= gzip ? zstd : gzip;
    if (best == 0 || w.identity > best)
        return CODING_IDENTITY;
    return zstd >= gzip ? CODING_ZSTD : CODING_GZIP;
}

const char *compress_name(enum coding coding)
{
    switch (coding) {
    case CODING_GZIP:
        return "gzip";
    case CODING_ZSTD:
        return "zstd";
    case CODING_IDENTITY:
        break;
    }
    return NULL;
}

bool compress_type_ok(const char *content_type)
{
    if (!content_type)
        return false;
    size_t len = strcspn(content_type, ";");
    while (len && content_type[len - 1] == ' ')
        len--;
    static const char *const types[] = {"application/json", "application/javascript",
                                        "application/xml", "image/svg+xml"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (len == strlen(types[i]) && strncasecmp(content_type, types[i], len) == 0)
            return true;
    return (len > 5 && strncasecmp(content_type, "text/", 5) == 0) ||
           (len > 17 && strncasecmp(content_type, "application/", 12) == 0 &&
            strncasecmp(content_type + len - 5, "+json", 5) == 0);
}

static bool gzip_encode(const char *in, size_t len, char **out, size_t *out_len)
{
    z_stream zs = {0};
    bool ok = false;
    /* windowBits 15 + 16: a gzip header and trailer rather than zlib's */
    if (deflateInit2(&zs, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    size_t cap = deflateBound(&zs, (uLong)len);
    char *buf = xmalloc(cap);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)buf;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) == Z_STREAM_END && zs.total_out < len) {
        *out = buf;
        *out_len = zs.total_out;
        buf = NULL;
        ok = true;
    }
    deflateEnd(&zs);
    free(buf);
    return ok;
}

static bool zstd_encode(const char *in, size_t len, char **out, size_t *out_len)
{
    size_t cap = ZSTD_compressBound(len);
    char *buf = xmalloc(cap);
    size_t n = ZSTD_compress(buf, cap, in, len, ZSTD_LEVEL);
    if (ZSTD_isError(n) || n >= len) {
        free(buf);
        return false;
    }
    *out = buf;
    *out_len = n;
    return true;
}

bool compress_encode(enum coding coding, const char *in, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    /* zlib counts in uInt: a body that large is not buffered anyway (max-body is far less) */
    if (len > 0xffffffffu)
        return false;
    switch (coding) {
    case CODING_GZIP:
        return gzip_encode(in, len, out, out_len);
    case CODING_ZSTD:
        return zstd_encode(in, len, out, out_len);
    case CODING_IDENTITY:
        break;
    }
    return false;
}

struct compress_stream {
    enum coding coding;
    z_stream zs;
    ZSTD_CCtx *zc;
};

struct compress_stream *compress_stream_new(enum coding coding)
{
    struct compress_stream *cs = xcalloc(1, sizeof(*cs));
    cs->coding = coding;
    bool ok = false;
    if (coding == CODING_GZIP)
        ok = deflateInit2(&cs->zs, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    else if (coding == CODING_ZSTD && (cs->zc = ZSTD_createCCtx()))
        ok = !ZSTD_isError(ZSTD_CCtx_setParameter(cs->zc, ZSTD_c_compressionLevel, ZSTD_LEVEL));
    if (!ok) {
        ZSTD_freeCCtx(cs->zc);
        free(cs);
        return NULL;
    }
    return cs;
}

#define STREAM_OUT 16384

static bool gzip_write(z_stream *zs, const char *in, size_t len, bool end, struct buf *out)
{
    char part[STREAM_OUT];
    int rc;
    zs->next_in = (Bytef *)in;
    zs->avail_in = (uInt)len;
    do { /* until the input is taken and, at the end, the trailer written */
        zs->next_out = (Bytef *)part;
        zs->avail_out = sizeof(part);
        rc = deflate(zs, end ? Z_FINISH : Z_NO_FLUSH);
        if (rc == Z_STREAM_ERROR)
            return false;
        buf_append(out, part, sizeof(part) - zs->avail_out);
    } while (zs->avail_out == 0 || (end && rc != Z_STREAM_END));
    return true;
}

static bool zstd_write(ZSTD_CCtx *zc, const char *in, size_t len, bool end, struct buf *out)
{
    char part[STREAM_OUT];
    ZSTD_inBuffer from = {in, len, 0};
    for (;;) {
        ZSTD_outBuffer to = {part, sizeof(part), 0};
        size_t left = ZSTD_compressStream2(zc, &to, &from, end ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(left))
            return false;
        buf_append(out, part, to.pos);
        if (end ? left == 0 : from.pos == from.size && to.pos < to.size)
            return true;
    }
}

bool compress_stream_write(struct compress_stream *cs, const char *in, size_t len, bool end,
                           struct buf *out)
{
    if (len > 0xffffffffu)
        return false;
    return cs->coding == CODING_GZIP ? gzip_write(&cs->zs, in, len, end, out)
                                     : zstd_write(cs->zc, in, len, end, out);
}

void compress_stream_free(struct compress_stream *cs)
{
    if (!cs)
        return;
    if (cs->coding == CODING_GZIP)
        deflateEnd(&cs->zs);
    ZSTD_freeCCtx(cs->zc);
    free(cs);
}
