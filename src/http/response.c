/* response.c - the reply helpers of http.h, the one place where error codes become
 * HTTP statuses and each surface's error body, and the one place where a buffered answer
 * is compressed for the client (http_compress_reply). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <microhttpd.h>

#include "http/compress.h"
#include "http/http.h"
#include "util/jsonutil.h"
#include "util/timeutil.h"
#include "util/utf8.h"

static const struct {
    enum err_code code;
    int status;
    const char *name;
    const char *text;
} error_table[] = {
    {ERR_INVALID, 400, "INVALID_REQUEST", "Invalid request parameters"},
    {ERR_UNAUTHORIZED, 401, "UNAUTHORIZED", "Missing or invalid authentication"},
    {ERR_FORBIDDEN, 403, "FORBIDDEN", "Insufficient permissions"},
    {ERR_NOT_FOUND, 404, "NOT_FOUND", "Resource not found"},
    {ERR_METHOD, 405, "METHOD_NOT_ALLOWED", "Method not allowed on this resource"},
    {ERR_CONFLICT, 409, "CONFLICT", "Conflict with the current state"},
    {ERR_GONE, 410, "GONE", "Resource expired"},
    {ERR_PRECONDITION, 412, "PRECONDITION_FAILED", "A precondition of the request failed"},
    {ERR_TOO_LARGE, 413, "PAYLOAD_TOO_LARGE", "Request body too large"},
    {ERR_MEDIA_TYPE, 415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported Content-Type"},
    {ERR_RANGE, 416, "RANGE_NOT_SATISFIABLE", "Requested range not satisfiable"},
    {ERR_LOCKED, 423, "LOCKED", "Resource is in use by another request"},
    {ERR_RATE_LIMITED, 429, "RATE_LIMITED", "Too many requests"},
    {ERR_HEADERS_TOO_LARGE, 431, "HEADERS_TOO_LARGE", "Request headers too large"},
    {ERR_CHECKSUM, 460, "CHECKSUM_MISMATCH", "The body does not match its checksum"},
    {ERR_DATABASE, 500, "DATABASE_ERROR", "Database operation error"},
    {ERR_INTERNAL, 500, "SYNC_FAILED", "Sync operation failed"},
    {ERR_BAD_GATEWAY, 502, "REMOTE_ERROR", "The remote site refused the request or failed"},
    {ERR_UNAVAILABLE, 503, "SERVICE_UNAVAILABLE", "Service unavailable"},
    {ERR_CLOUD, 503, "CLOUD_ERROR", "Cloud storage unavailable"},
    {ERR_STORAGE_FULL, 507, "INSUFFICIENT_STORAGE", "Not enough storage"},
};

#define N_ERRORS (sizeof(error_table) / sizeof(error_table[0]))

static size_t error_index(enum err_code code)
{
    for (size_t i = 0; i < N_ERRORS; i++)
        if (error_table[i].code == code)
            return i;
    return error_index(ERR_INTERNAL); /* an unmapped code is a server fault */
}

int http_status_of(enum err_code code)
{
    return error_table[error_index(code)].status;
}

const char *http_error_name(enum err_code code)
{
    return error_table[error_index(code)].name;
}

const char *http_error_text(enum err_code code)
{
    return error_table[error_index(code)].text;
}

const char *http_param(const struct request *req, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < req->n_params; i++) {
        const char *n = req->param_names[i];
        if (strncmp(n, name, len) == 0 && (n[len] == '}' || n[len] == '\0'))
            return req->param_values[i];
    }
    return NULL;
}

const char *http_query(const struct request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(const struct request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void http_add_header(struct request *req, const char *name, const char *value)
{
    struct response *r = &req->resp;
    for (int i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) {
            free(r->headers[i].value);
            r->headers[i].value = xstrdup(value);
            return;
        }
    if (r->n_headers == MAX_RESP_HEADERS)
        return;
    r->headers[r->n_headers].name = xstrdup(name);
    r->headers[r->n_headers].value = xstrdup(value);
    r->n_headers++;
}

void http_reply_text(struct request *req, int status, const char *content_type, const char *body,
                     size_t len)
{
    if (req->replied)
        return;
    req->replied = true;
    req->resp.status = status;
    req->resp.content_type = content_type;
    req->resp.body = xmalloc(len + 1);
    memcpy(req->resp.body, body, len);
    req->resp.body[len] = '\0';
    req->resp.body_len = len;
}

void http_reply_static(struct request *req, int status, const char *content_type, const char *body,
                       size_t len, struct http_codings *codings)
{
    if (req->replied)
        return;
    req->replied = true;
    req->resp.status = status;
    req->resp.content_type = content_type;
    req->resp.body = (char *)body;
    req->resp.body_len = len;
    req->resp.borrowed = true;
    req->resp.codings = codings;
}

void http_reply_json_text(struct request *req, int status, struct buf *text)
{
    if (req->replied) {
        buf_cleanup(text);
        return;
    }
    req->replied = true;
    req->resp.status = status;
    req->resp.content_type = "application/json";
    req->resp.body_len = text->len;
    req->resp.body = buf_steal(text);
}

struct http_stream {
    struct buf raw;     /* written by fill, not yet encoded */
    struct buf pending; /* encoded, handed to MHD from sent on */
    size_t sent;
    bool ended;
    struct compress_stream *enc; /* NULL: sent as written */
    uint64_t length;             /* MHD_SIZE_UNKNOWN: sent chunked, as long as it is */
    size_t *bytes_out;           /* the request's count for the log, while it is being sent */
    int (*fill)(void *ctx, struct buf *out);
    void (*done)(void *ctx);
    void *ctx;
};

void http_reply_stream(struct request *req, int status, const char *content_type, struct buf *first,
                       int (*fill)(void *ctx, struct buf *out), void (*done)(void *ctx), void *ctx)
{
    if (req->replied) {
        buf_cleanup(first);
        done(ctx);
        return;
    }
    struct http_stream *s = xcalloc(1, sizeof(*s));
    s->raw = *first;
    buf_init(first);
    s->fill = fill;
    s->done = done;
    s->ctx = ctx;
    s->bytes_out = &req->resp.body_len;
    s->length = MHD_SIZE_UNKNOWN;
    req->replied = true;
    req->resp.status = status;
    req->resp.content_type = content_type;
    req->resp.stream = s;
}

void http_stream_length(struct request *req, uint64_t length)
{
    if (req->resp.stream)
        req->resp.stream->length = length;
}

void http_stream_free(struct http_stream *s)
{
    if (!s)
        return;
    s->done(s->ctx);
    compress_stream_free(s->enc);
    buf_cleanup(&s->raw);
    buf_cleanup(&s->pending);
    free(s);
}

/* Refills pending with the next part of the body (what fill writes, encoded); false
 * when fill or the encoder fails. */
static bool next_part(struct http_stream *s)
{
    int step = s->raw.len ? 1 : s->fill(s->ctx, &s->raw); /* the first part is given */
    if (step < 0)
        return false;
    s->ended = step == 0;
    s->pending.len = 0;
    s->sent = 0;
    if (s->enc) {
        if (!compress_stream_write(s->enc, s->raw.data, s->raw.len, s->ended, &s->pending))
            return false;
    } else {
        struct buf written = s->raw;
        s->raw = s->pending;
        s->pending = written;
    }
    s->raw.len = 0;
    return true;
}

/* MHD asks for the next bytes while the request is being answered (so bytes_out is
 * still the request's). */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct http_stream *s = cls;
    (void)pos;
    while (s->sent == s->pending.len) {
        if (s->ended) {
            s->bytes_out = NULL;
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (!next_part(s)) { /* closed before the body ends: a cut answer */
            s->bytes_out = NULL;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = s->pending.len - s->sent < max ? s->pending.len - s->sent : max;
    memcpy(out, s->pending.data + s->sent, n);
    s->sent += n;
    if (s->bytes_out)
        *s->bytes_out += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    http_stream_free(cls);
}

#define STREAM_BLOCK (64 * 1024)

struct MHD_Response *http_stream_response(struct request *req)
{
    struct http_stream *s = req->resp.stream;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(s->length, STREAM_BLOCK, stream_read, s, stream_free);
    if (resp)
        req->resp.stream = NULL; /* MHD frees it with the response */
    return resp;
}

void http_reply_file(struct request *req, int status, const char *content_type, int fd,
                     uint64_t offset, uint64_t len)
{
    if (req->replied) {
        close(fd);
        return;
    }
    req->replied = true;
    req->resp.status = status;
    req->resp.content_type = content_type;
    req->resp.fd = fd;
    req->resp.fd_offset = offset;
    req->resp.fd_len = len;
}

void http_reply_json(struct request *req, int status, json_t *value)
{
    if (req->replied) {
        json_decref(value);
        return;
    }
    if (!value) { /* json_pack refused a value (text that is not UTF-8): never abort */
        http_reply_error(req, ERR_INTERNAL, "the answer could not be encoded as JSON");
        return;
    }
    char *text = jsonutil_to_string(value);
    json_decref(value);
    req->replied = true;
    req->resp.status = status;
    req->resp.content_type = "application/json";
    req->resp.body = text;
    req->resp.body_len = strlen(text);
}

static void reply_error_text(struct request *req, enum err_code code, int status,
                             const char *detail, char iso[32]);

void http_reply_error(struct request *req, enum err_code code, const char *detail)
{
    int status = http_status_of(code);
    char iso[32];
    char *safe = xstrdup(detail);
    utf8_scrub(safe);
    reply_error_text(req, code, status, safe, iso);
    free(safe);
}

static void reply_error_text(struct request *req, enum err_code code, int status,
                             const char *detail, char iso[32])
{
    switch (req->surface) {
    case SURFACE_LEGACY:
        http_reply_json(req, status, json_pack("{s:b, s:s}", "success", 0, "error", detail));
        return;
    case SURFACE_TUS:
    case SURFACE_PLAIN: {
        char *text = xasprintf("%s\n", detail);
        http_reply_text(req, status, "text/plain; charset=utf-8", text, strlen(text));
        free(text);
        return;
    }
    case SURFACE_V1:
        break;
    }
    time_iso8601(time_now_ms(), 0, iso);
    http_reply_json(req, status,
                    json_pack("{s:s, s:s, s:s, s:s}", "errorCode", http_error_name(code), "message",
                              http_error_text(code), "details", detail, "timestamp", iso));
}

void http_reply_err(struct request *req, const struct err *err)
{
    http_reply_error(req, err->code == ERR_NONE ? ERR_INTERNAL : err->code, err->msg);
}

void http_wait(struct request *req, int64_t deadline_ms, int64_t seen_head)
{
    req->wait_deadline = deadline_ms;
    req->wait_head = seen_head;
    req->wait_requested = true;
}

int http_json_body(const struct request *req, json_t **body, struct err *err)
{
    *body = req->json;
    if (!req->json)
        return err_set(err, ERR_INVALID, "request body is empty; a JSON object was expected");
    if (!json_is_object(req->json))
        return err_set(err, ERR_INVALID, "request body must be a JSON object");
    return FERRY_OK;
}

json_t *http_json_object(struct request *req)
{
    json_t *body = NULL;
    struct err err = {0};
    if (http_json_body(req, &body, &err) != FERRY_OK) {
        http_reply_err(req, &err);
        return NULL;
    }
    return body;
}

static const char *response_header(const struct request *req, const char *name)
{
    for (int i = 0; i < req->resp.n_headers; i++)
        if (strcasecmp(req->resp.headers[i].name, name) == 0)
            return req->resp.headers[i].value;
    return NULL;
}

/* Adds field to Vary, keeping what is there (CORS's Origin). */
static void add_vary(struct request *req, const char *field)
{
    const char *vary = response_header(req, "Vary");
    if (!vary) {
        http_add_header(req, "Vary", field);
        return;
    }
    char *joined = xasprintf("%s, %s", vary, field);
    http_add_header(req, "Vary", joined);
    free(joined);
}

/* A streamed body is encoded as it is written, whatever its size (it is large). */
static void compress_stream_reply(struct request *req)
{
    struct response *r = &req->resp;
    if (!compress_type_ok(r->content_type) || response_header(req, "Content-Encoding") ||
        r->stream->length != MHD_SIZE_UNKNOWN)
        return;
    add_vary(req, "Accept-Encoding");
    enum coding coding = compress_choose(http_header(req, "Accept-Encoding"));
    if (coding != CODING_IDENTITY && (r->stream->enc = compress_stream_new(coding)))
        http_add_header(req, "Content-Encoding", compress_name(coding));
}

/* A borrowed body in coding: its form made once and shared, never one copy a request. */
static void borrowed_coding(struct request *req, enum coding coding)
{
    struct response *r = &req->resp;
    struct http_codings *c = r->codings;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    if (!c->made) {
        for (enum coding k = CODING_GZIP; k <= CODING_ZSTD; k++)
            if (!compress_encode(k, r->body, r->body_len, &c->body[k], &c->len[k]))
                c->body[k] = NULL;
        c->made = true;
    }
    pthread_mutex_unlock(&c->lock);
    if (!c->body[coding])
        return;
    r->body = c->body[coding];
    r->body_len = c->len[coding];
    http_add_header(req, "Content-Encoding", compress_name(coding));
}

void http_compress_reply(struct request *req, long long min_size)
{
    struct response *r = &req->resp;
    char *encoded = NULL;
    size_t encoded_len = 0;
    if (r->stream) {
        compress_stream_reply(req);
        return;
    }
    /* Files are sent as they are with sendfile (and are often compressed already); a
     * range or an answer the handler encoded itself is about the bytes as they are. */
    if (r->fd >= 0 || !r->body || (long long)r->body_len < min_size || r->status == HTTP_PARTIAL ||
        !compress_type_ok(r->content_type) || response_header(req, "Content-Range") ||
        response_header(req, "Content-Encoding"))
        return;
    /* From here the bytes depend on Accept-Encoding, for every client, so caches must key
     * on it even when this answer goes out as it is. */
    add_vary(req, "Accept-Encoding");
    enum coding coding = compress_choose(http_header(req, "Accept-Encoding"));
    if (coding == CODING_IDENTITY)
        return;
    if (r->borrowed) {
        borrowed_coding(req, coding);
        return;
    }
    if (!compress_encode(coding, r->body, r->body_len, &encoded, &encoded_len))
        return;
    free(r->body);
    r->body = encoded;
    r->body_len = encoded_len;
    http_add_header(req, "Content-Encoding", compress_name(coding));
}
