/* server.c - libmicrohttpd glue: turns MHD's callbacks into one struct request per
 * request, routes it, enforces the body limit and Content-Type, authenticates, lends the
 * route a store connection, runs the handler and renders the error it returns, sends what
 * it left in req->resp, and writes one JSON log line when MHD is done with the request.
 * MHD runs its own epoll thread pool. */
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "app.h"
#include "ops/metrics.h"
#include "http/auth.h"
#include "http/headwatch.h"
#include "http/netlimit.h"
#include "http/server.h"
#include "http/tls.h"
#include "http/waiter.h"
#include "sync/watch.h"
#include "util/crypto.h"
#include "util/jsonutil.h"
#include "util/jsonw.h"
#include "util/log.h"
#include "util/strlist.h"
#include "util/timeutil.h"
#include "util/utf8.h"

/* A request or answer at least this large gives its memory back to the system when it
 * ends (malloc_trim): glibc otherwise keeps a parsed 10 MB body's heap for good. */
#define TRIM_AFTER_BYTES (1024 * 1024)
/* Files, database connections and pipes besides the client connections. */
#define SPARE_FDS 256

struct server {
    struct MHD_Daemon *daemon;
    struct app *app;
    struct headwatch *heads; /* request heads are due within body-timeout */
    struct netlimit *nets;   /* open connections per IPv6 /64 */
    int port;
};

/* --- request lifecycle -------------------------------------------------------------- */

struct joined_header {
    const char *name;
    struct buf value; /* every line of the header, joined by commas */
};

static enum MHD_Result join_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct joined_header *h = cls;
    (void)kind;
    if (key && value && !strcasecmp(key, h->name)) {
        if (h->value.len)
            buf_puts(&h->value, ",");
        buf_puts(&h->value, value);
    }
    return MHD_YES;
}

static char *header_lines(struct MHD_Connection *conn, const char *name)
{
    struct joined_header h = {.name = name};
    buf_init(&h.value);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, join_header, &h);
    if (h.value.len)
        return buf_steal(&h.value);
    buf_cleanup(&h.value);
    return NULL;
}

/* The one place req->client_addr is decided: the socket's peer, or behind a trusted
 * proxy the address it forwarded for (proxies.h). */
static void client_address(const struct app *app, struct MHD_Connection *conn, char *out,
                           size_t len)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, len, "unknown");
    if (!info || !info->client_addr)
        return;
    if (app->proxies) {
        char *chain = header_lines(conn, proxies_header_name(app->proxies));
        proxies_client_addr(app->proxies, info->client_addr, chain, out, len);
        free(chain);
        return;
    }
    socklen_t alen = info->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                              : sizeof(struct sockaddr_in);
    getnameinfo(info->client_addr, alen, out, (socklen_t)len, NULL, 0, NI_NUMERICHOST);
}

/* Echoes a client's X-Request-Id when it is short and plain, otherwise makes one, so a
 * request can be followed from client to log line. */
/* A new request id: 16 random bytes in hex. The bytes come from a per-thread pool filled
 * by the CSPRNG a kilobyte at a time, since one RAND_bytes call per request cost a
 * small read a twentieth of its time. */
static void fresh_id(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    static __thread unsigned char pool[1024];
    static __thread size_t used = sizeof(pool);
    if (used + 16 > sizeof(pool)) {
        crypto_random(pool, sizeof(pool));
        used = 0;
    }
    for (size_t i = 0; i < 16; i++) {
        out[2 * i] = hex[pool[used + i] >> 4];
        out[2 * i + 1] = hex[pool[used + i] & 15];
    }
    out[32] = '\0';
    used += 16;
}

static void assign_request_id(struct request *req)
{
    const char *given = http_header(req, "X-Request-Id");
    if (given && *given && strlen(given) < sizeof(req->request_id)) {
        bool plain = true;
        for (const char *p = given; *p && plain; p++)
            plain = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= 'A' && *p <= 'Z') || strchr("-_.:", *p);
        if (plain) {
            snprintf(req->request_id, sizeof(req->request_id), "%s", given);
            return;
        }
    }
    fresh_id(req->request_id);
}

static struct request *request_new(struct app *app, struct MHD_Connection *conn, const char *method,
                                   const char *url)
{
    struct request *req = xcalloc(1, sizeof(*req));
    req->app = app;
    req->conn = conn;
    req->method = method;
    req->method_bit = router_method(method);
    req->path = xstrdup(url);
    req->start_us = time_mono_us();
    req->resp.fd = -1;
    buf_init(&req->body);
    client_address(app, conn, req->client_addr, sizeof(req->client_addr));
    assign_request_id(req);
    return req;
}

/* Lends a ROUTE_STORE route's code a pooled connection in req->db. When none can be had,
 * answers 503 (if reply) and returns false. */
static bool take_store(struct request *req, bool reply)
{
    struct err err = {0};
    if (!(req->route->flags & ROUTE_STORE) || req->db)
        return true;
    if (store_acquire(req->app->store, &req->db, &err) == FERRY_OK)
        return true;
    if (reply)
        http_reply_error(req, ERR_UNAVAILABLE, err.msg);
    return false;
}

static void return_store(struct request *req)
{
    store_release(req->db); /* rolls back a transaction left open */
    req->db = NULL;
}

static void request_free(struct request *req)
{
    if (req->sink_ctx && req->route && req->route->sink) {
        take_store(req, false); /* without one the sink settles what it can */
        req->route->sink->release(req);
    }
    return_store(req);
    if (req->resp.fd >= 0)
        close(req->resp.fd);
    for (int i = 0; i < req->n_params; i++)
        free(req->param_values[i]);
    for (int i = 0; i < req->resp.n_headers; i++) {
        free(req->resp.headers[i].name);
        free(req->resp.headers[i].value);
    }
    if (!req->resp.borrowed)
        free(req->resp.body);
    http_stream_free(req->resp.stream);
    buf_cleanup(&req->body);
    json_decref(req->json);
    free((char *)req->path);
    free(req);
}

static uint64_t response_bytes(const struct request *req)
{
    return req->resp.fd_len ? req->resp.fd_len : req->resp.body_len;
}

/* ,"key": then the text as a JSON string (the member left out when it is not UTF-8). */
static void put_member(struct buf *b, const char *key, const char *text)
{
    size_t mark = b->len;
    buf_printf(b, "%s\"%s\":", b->len ? "," : "", key);
    if (!jsonw_text(b, text))
        jsonw_truncate(b, mark);
}

/* One line per request, printed straight into its text (util/jsonw.h): the log is on
 * every request's path. */
static void log_request(const struct request *req, int64_t duration_us)
{
    if (!log_enabled(LOG_LEVEL_INFO))
        return;
    struct buf b;
    buf_init(&b);
    char *path = xstrdup(req->path); /* decoded from the URL: any bytes at all */
    utf8_scrub(path);
    put_member(&b, "requestId", req->request_id);
    put_member(&b, "method", req->method);
    put_member(&b, "path", path);
    buf_printf(&b, ",\"status\":%d,\"durationMs\":", req->resp.status);
    jsonw_real_digits(&b, (double)duration_us / 1000.0, 6);
    buf_printf(&b, ",\"bytesIn\":%llu,\"bytesOut\":%llu", (unsigned long long)req->bytes_in,
               (unsigned long long)response_bytes(req));
    put_member(&b, "credential", req->cred.id);
    put_member(&b, "remote", req->client_addr);
    log_write_members(LOG_LEVEL_INFO, "request", b.data, b.len);
    buf_cleanup(&b);
    free(path);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct app *app = cls;
    struct request *req = *con_cls;
    (void)toe;
    headwatch_request_done(conn);
    if (!req)
        return;
    int64_t duration = time_mono_us() - req->start_us;
    if (!req->resp.status)
        req->resp.status = 499; /* the client went away before an answer */
    log_request(req, duration);
    /* Unknown methods share one label so a client cannot grow the series without bound. */
    metrics_request(req->app->metrics, req->method_bit ? req->method : "OTHER",
                    req->route ? req->route->pattern : "unmatched", req->resp.status, duration,
                    req->bytes_in, response_bytes(req));
    bool large = req->bytes_in >= TRIM_AFTER_BYTES || req->resp.body_len >= TRIM_AFTER_BYTES;
    request_free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&app->in_flight, 1);
    if (large)
        malloc_trim(0);
}

/* --- CORS ----------------------------------------------------------------------------- */

static bool origin_allowed(const struct app *app, const char *origin)
{
    const char *list = app->cfg->cors_origins;
    if (!origin || !list || !*list)
        return false;
    if (strcmp(list, "*") == 0)
        return true;
    return strlist_has(list, origin);
}

static void add_cors_headers(struct request *req)
{
    const char *origin = http_header(req, "Origin");
    if (!origin_allowed(req->app, origin))
        return;
    bool any = strcmp(req->app->cfg->cors_origins, "*") == 0;
    http_add_header(req, "Access-Control-Allow-Origin", any ? "*" : origin);
    if (!any)
        http_add_header(req, "Vary", "Origin");
    http_add_header(req, "Access-Control-Expose-Headers",
                    "X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, Retry-After, "
                    "ETag, Location, Content-Range, X-File-Version, Upload-Offset, Upload-Length, "
                    "Upload-Metadata, Upload-Expires, Tus-Resumable, Tus-Version, "
                    "Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm");
}

static void reply_preflight(struct request *req, unsigned allowed)
{
    char methods[128];
    router_allow_header(allowed | M_OPTIONS, methods, sizeof(methods));
    http_add_header(req, "Allow", methods);
    if (origin_allowed(req->app, http_header(req, "Origin"))) {
        http_add_header(req, "Access-Control-Allow-Methods", methods);
        http_add_header(req, "Access-Control-Allow-Headers",
                        "Authorization, Content-Type, X-Request-Id, Range, If-None-Match, "
                        "If-Range, Tus-Resumable, Upload-Length, Upload-Metadata, "
                        "Upload-Offset, Upload-Checksum, Upload-Defer-Length");
        http_add_header(req, "Access-Control-Max-Age", "600");
    }
    http_reply_text(req, 204, "text/plain", "", 0);
}

/* --- sending ---------------------------------------------------------------------- */

static enum MHD_Result send_reply(struct request *req)
{
    struct response *r = &req->resp;
    if (!req->replied)
        http_reply_error(req, ERR_INTERNAL, "the handler gave no answer");
    add_cors_headers(req);
    if (req->app->cfg->compress)
        http_compress_reply(req, req->app->cfg->compress_min_size);
    struct MHD_Response *resp;
    bool streamed = r->stream != NULL;
    if (streamed) {
        resp = http_stream_response(req);
    } else if (r->fd >= 0) {
        /* MHD sends it with sendfile and closes fd when done */
        resp = MHD_create_response_from_fd_at_offset64(r->fd_len, r->fd, r->fd_offset);
        if (resp)
            r->fd = -1; /* else request_free closes it */
    } else if (r->borrowed) {
        resp = MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_MUST_FREE);
        r->body = NULL; /* MHD frees it; body_len stays for the log */
    }
    if (!resp)
        return MHD_NO;
    req->sent = true;
    if (r->content_type && (r->body_len || r->fd_len || streamed))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    if (req->surface == SURFACE_TUS) /* every tus answer says which version it speaks */
        MHD_add_response_header(resp, "Tus-Resumable", "1.0.0");
    for (int i = 0; i < r->n_headers; i++)
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    enum MHD_Result ok = MHD_queue_response(req->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* --- the access handler ---------------------------------------------------------- */

static bool content_type_is_json(const char *ct)
{
    if (!ct)
        return false;
    size_t len = strcspn(ct, ";");
    while (len && ct[len - 1] == ' ')
        len--;
    if (len == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return true;
    /* application/<anything>+json, e.g. application/merge-patch+json */
    return len > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + len - 5, "+json", 5) == 0;
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

/* Size of the request line and headers as sent (near enough: MHD has parsed them). */
static size_t header_bytes(const struct request *req)
{
    size_t n = strlen(req->method) + strlen(req->path) + 12;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &n);
    return n;
}

/* Finding a NUL inside a header value. libmicrohttpd 0.9.75 reports value lengths cut at
 * the NUL (value_size is strlen(value)), so MHD_get_connection_values_n alone cannot see
 * it; but it parses the header block in place, turning each line end into NULs, so the
 * bytes between a value's end and the next key (or the end of the block) are NULs and
 * whitespace only. Anything else is the rest of a value that a NUL cut ("tok\0 junk" and
 * "tok\0\0junk" alike). The block is [method, method + header size): the request line
 * starts MHD's read buffer. A value outside it (MHD built it elsewhere) gets the one-byte
 * check. A later MHD that keeps the true length is caught by the length itself. */
struct nul_scan {
    const char *block, *block_end; /* the header block as MHD parsed it in place */
    const char *value_end;         /* the terminator of the previous header's value */
    bool found;
};

static bool in_block(const struct nul_scan *scan, const char *p)
{
    return scan->block && p >= scan->block && p < scan->block_end;
}

/* Whether the bytes after value_end, up to next (a key, or NULL for the block's end), hold
 * more than line ends and whitespace. */
static bool cut_value(const struct nul_scan *scan, const char *next)
{
    const char *p = scan->value_end + 1;
    const char *end = next ? next : scan->block_end;

    if (!in_block(scan, scan->value_end) || !end || end < p || end > scan->block_end)
        return *p && !strchr("\r\n \t", *p) && p != next;
    for (; p < end; p++)
        if (*p && !strchr("\r\n \t", *p))
            return true;
    return false;
}

static enum MHD_Result find_nul(void *cls, enum MHD_ValueKind kind, const char *key,
                                size_t key_size, const char *value, size_t value_size)
{
    struct nul_scan *scan = cls;
    (void)kind;
    if (strlen(key) != key_size || (value && strlen(value) != value_size) ||
        (scan->value_end && cut_value(scan, key))) {
        scan->found = true;
        return MHD_NO;
    }
    scan->value_end = value ? value + value_size : NULL;
    return MHD_YES;
}

/* A NUL byte inside a header would cut its value short unseen (an Authorization of
 * "Bearer good\0junk" would read as "Bearer good"), and an HTTP/1.1 request must name
 * its Host (RFC 9112 3.2): both are refused. Returns false after replying. */
static bool headers_well_formed(struct request *req, const char *version)
{
    struct nul_scan scan = {NULL, NULL, NULL, false};
    const union MHD_ConnectionInfo *size =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (size && size->header_size) {
        scan.block = req->method;
        scan.block_end = req->method + size->header_size;
    }
    MHD_get_connection_values_n(req->conn, MHD_HEADER_KIND, find_nul, &scan);
    if (scan.found || (scan.value_end && cut_value(&scan, NULL))) {
        /* A folded header (obs-fold) gets here too: MHD joins its lines elsewhere. */
        http_reply_error(req, ERR_INVALID,
                         "a request header contains a NUL byte or is folded over lines");
        return false;
    }
    if (version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0 && !http_header(req, "Host")) {
        http_reply_error(req, ERR_INVALID, "an HTTP/1.1 request needs a Host header");
        return false;
    }
    return true;
}

/* The largest body the route may buffer: max-body, and max-small-body for the routes
 * whose bodies are small by nature. */
static long long body_limit(const struct request *req)
{
    const struct config *cfg = req->app->cfg;
    if (req->route && (req->route->flags & ROUTE_SMALL_BODY) && cfg->max_small_body < cfg->max_body)
        return cfg->max_small_body;
    return cfg->max_body;
}

/* What can be refused from the headers alone, before a body is read: a declared body
 * over the route's limit, and a PhoenixKit action while the module is off (its
 * credential is in the body, so this is all there is to check first). */
static bool expects_body(const struct request *req)
{
    const char *length = http_header(req, "Content-Length");
    return (length && strcmp(length, "0") != 0) || http_header(req, "Transfer-Encoding");
}

static bool body_admissible(struct request *req)
{
    const char *length = http_header(req, "Content-Length");
    if ((req->route->flags & ROUTE_SITES) && !req->app->cfg->sites_enabled) {
        http_reply_error(req, ERR_UNAVAILABLE, "DB Sync module is disabled");
        return false;
    }
    /* ferry decodes no request body: a compressed one would be taken as it is, and an
     * upload stored as its compressed bytes */
    const char *coding = http_header(req, "Content-Encoding");
    if (coding && strcasecmp(coding, "identity") != 0 && expects_body(req)) {
        char *msg =
            xasprintf("Content-Encoding '%.40s' is not supported: send the body as it is", coding);
        http_reply_error(req, ERR_MEDIA_TYPE, msg);
        free(msg);
        return false;
    }
    if (!req->route->sink && length && strtoll(length, NULL, 10) > body_limit(req)) {
        char *msg = xasprintf("request body of %s bytes is over the limit of %lld bytes", length,
                              body_limit(req));
        http_reply_error(req, ERR_TOO_LARGE, msg);
        free(msg);
        return false;
    }
    return true;
}

/* Runs on the first callback, before any body is read: routing, the declared size,
 * the credential. Returns false when a reply is already set. */
static bool admit(struct request *req, const char *version)
{
    struct app *app = req->app;
    unsigned allowed = 0;
    enum match_result m;

    req->surface = router_surface_of(req->path, app->cfg->sites_prefix);
    m = router_match(app->tables, app->n_tables, req->method_bit, req->path, &req->route,
                     req->param_names, req->param_values, &req->n_params, &allowed);
    if (m == MATCH_OK)
        req->surface = req->route->surface;
    if (!headers_well_formed(req, version))
        return false;
    /* a CORS preflight is answered here even where the path has its own OPTIONS (tus) */
    bool preflight = req->method_bit == M_OPTIONS &&
                     http_header(req, "Access-Control-Request-Method") &&
                     origin_allowed(app, http_header(req, "Origin"));
    if (req->method_bit == M_OPTIONS && allowed && (m != MATCH_OK || preflight)) {
        reply_preflight(req, allowed);
        return false;
    }
    if (m == MATCH_NO_PATH) {
        http_reply_error(req, ERR_NOT_FOUND, "no such endpoint");
        return false;
    }
    if (m == MATCH_NO_METHOD) {
        char methods[128];
        router_allow_header(allowed | M_OPTIONS, methods, sizeof(methods));
        http_add_header(req, "Allow", methods);
        char *msg = xasprintf("method %s is not allowed here; allowed: %s", req->method, methods);
        http_reply_error(req, ERR_METHOD, msg);
        free(msg);
        return false;
    }
    if (header_bytes(req) > (size_t)app->cfg->max_header) {
        char *msg = xasprintf("request line and headers are over the limit of %lld bytes",
                              app->cfg->max_header);
        http_reply_error(req, ERR_HEADERS_TOO_LARGE, msg);
        free(msg);
        return false;
    }
    if (!body_admissible(req) || !auth_check(req))
        return false;
    if (req->route->sink && take_store(req, true))
        req->route->sink->open(req);
    return_store(req);
    return !req->replied;
}

static void dispatch(struct request *req)
{
    struct app *app = req->app;
    struct err err = {0};

    if (req->body_too_large) {
        char *msg = xasprintf("request body is over the limit of %lld bytes", body_limit(req));
        http_reply_error(req, ERR_TOO_LARGE, msg);
        free(msg);
        return;
    }
    if ((req->route->flags & ROUTE_JSON) && req->body.len > 0 && !req->json) {
        if (!content_type_is_json(http_header(req, "Content-Type"))) {
            http_reply_error(req, ERR_INVALID, "Content-Type must be application/json");
            return;
        }
        if (jsonutil_parse_capped(req->body.data, req->body.len, (int)app->cfg->max_json_depth,
                                  (size_t)app->cfg->max_json_values, &req->json,
                                  &err) != FERRY_OK) {
            http_reply_err(req, &err);
            return;
        }
    }
    if (!take_store(req, true))
        return;
    if (req->route->handler(req, &err) != FERRY_OK)
        http_reply_err(req, &err); /* no effect when the handler replied */
    return_store(req);
    /* A write may have moved the log: its long-polls are woken now, not at the next poll. */
    if ((req->route->flags & ROUTE_STORE) && !(req->method_bit & (M_GET | M_HEAD | M_OPTIONS)))
        watch_poke(app->watch);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct app *app = cls;
    struct request *req = *con_cls;
    if (!req) {
        headwatch_head_done(conn);
        req = request_new(app, conn, method, url);
        *con_cls = req;
        atomic_fetch_add(&app->in_flight, 1);
        /* A refusal is sent at once only when a body is on its way, so that it is not
         * read; otherwise at the final callback, which keeps the connection alive. */
        if (!admit(req, version) && expects_body(req))
            return send_reply(req);
        return MHD_YES;
    }
    if (*upload_data_size && req->route && req->route->sink) {
        size_t len = *upload_data_size;
        req->bytes_in += len;
        *upload_data_size = 0;
        if (req->replied) /* refused earlier: the rest is read and dropped */
            return MHD_YES;
        /* A refusal in the middle of a body is sent once the body has ended: MHD will not
         * queue a response while the upload is still arriving. */
        req->route->sink->write(req, upload_data, len);
        return MHD_YES;
    }
    if (*upload_data_size) {
        req->bytes_in += *upload_data_size;
        /* A buffered body has a deadline, so a client trickling bytes cannot hold the
         * connection (and its buffer) for long; MHD's idle timeout only sees silence. */
        if (time_mono_us() - req->start_us > app->cfg->body_timeout * 1000000)
            return MHD_NO;
        if (req->body.len + *upload_data_size > (size_t)body_limit(req))
            req->body_too_large = true;
        else if (!req->replied)
            buf_append(&req->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->sent) /* refusal already queued at admission */
        return MHD_YES;
    if (!req->replied)
        dispatch(req);
    if (req->wait_requested && !req->replied) {
        req->wait_requested = false;
        waiter_park(req->app->waiter, req, req->wait_head);
        return MHD_YES;
    }
    return send_reply(req);
}

/* --- start and stop --------------------------------------------------------------- */

/* MHD's own unescaping turns %00 into a NUL, which would cut "a%00b" short to "a"
 * without anyone noticing. %00 becomes DEL (0x7f) instead, a control byte that every
 * path and name check refuses, so such a request fails loudly. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    for (char *p = s; (p = strstr(p, "%00")) != NULL; p += 3)
        memcpy(p, "%7f", 3);
    return MHD_http_unescape(s);
}

static int resolve(const char *host, int port, struct sockaddr_storage *addr, bool *ipv6,
                   struct err *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int gai = getaddrinfo(*host ? host : NULL, service, &hints, &res);
    if (gai != 0)
        return err_set(err, ERR_INVALID, "cannot resolve listen address '%s': %s", host,
                       gai_strerror(gai));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *ipv6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return FERRY_OK;
}

/* libmicrohttpd's own messages (a connection it dropped, headers far over the limit)
 * go to the log like everything else. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    utf8_scrub(msg);
    log_warn("httpd", json_pack("{s:s}", "msg", msg));
}

/* Binds the listening socket here rather than in libmicrohttpd, so that a port in use
 * (or not permitted) reaches the user as such; *port gets the port bound. */
static int listen_socket(const struct sockaddr_storage *addr, bool ipv6, const char *listen_on,
                         int *fd_out, int *port, struct err *err)
{
    int one = 1;
    socklen_t len = ipv6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_set(err, ERR_INTERNAL, "cannot listen on %s: %s", listen_on, strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ipv6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof(bound);
    if (bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &bound_len) != 0) {
        int saved = errno;
        close(fd);
        return err_set(err, ERR_INTERNAL, "cannot listen on %s: %s", listen_on, strerror(saved));
    }
    *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
    *fd_out = fd;
    return FERRY_OK;
}

/* Raises the open-file limit so that max-connections connections fit beside the files
 * ferry opens itself; returns how many connections the limit allows (max-connections,
 * or fewer when the hard limit is lower). */
static unsigned connection_capacity(const struct config *cfg)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_connections + SPARE_FDS;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return (unsigned)cfg->max_connections;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur >= want)
        return (unsigned)cfg->max_connections;
    unsigned fit = rl.rlim_cur > 2 * SPARE_FDS ? (unsigned)(rl.rlim_cur - SPARE_FDS) : 16;
    log_warn("open_file_limit", json_pack("{s:s, s:I, s:i, s:I}", "msg",
                                          "the open-file limit allows fewer connections", "limit",
                                          (json_int_t)rl.rlim_cur, "connections", (int)fit,
                                          "maxConnections", (json_int_t)cfg->max_connections));
    return fit;
}

/* HTTPS when a TLS pair is given: it goes to GnuTLS through tls_retrieve, so that a
 * reload reaches new handshakes without restarting the daemon. */
static void tls_options(struct tls *tls, struct MHD_OptionItem opts[3], unsigned *flags)
{
    opts[0] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    if (!tls)
        return;
    opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)tls_retrieve};
    opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)tls_priorities(tls)};
    opts[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    *flags |= MHD_USE_TLS;
}

/* An IPv6 client holds a /64: it gets one address's share of connections, not 2^64. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct server *srv = cls;
    (void)addrlen;
    return netlimit_admits(srv->nets, addr) ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct server *srv = cls;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *addr = info ? info->client_addr : NULL;
    headwatch_notify(srv->heads, conn, socket_context, code);
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        netlimit_opened(srv->nets, addr);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        netlimit_closed(srv->nets, addr);
}

/* Per-connection memory of libmicrohttpd (see start_daemon). */
static size_t connection_pool_size(const struct config *cfg)
{
    return (size_t)cfg->max_header * 2 + 16384;
}

static struct MHD_Daemon *start_daemon(struct server *srv, unsigned flags, int port, int fd,
                                       struct MHD_OptionItem *tls_opts)
{
    struct app *app = srv->app;
    return MHD_start_daemon(
        flags, (uint16_t)port, accept_policy, srv, on_request, app, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, /* first, so that every message goes there */ MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, app, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)app->cfg->threads,
        /* Room for twice the header limit, so that oversize headers usually reach
         * admit() and get ferry's own 431 (far beyond it MHD answers 431 itself), and no
         * more: libmicrohttpd zeroes the whole pool after every request of a keep-alive
         * connection, and a touched pool stays resident while the connection lives (an
         * idle long-poll), so its size is paid per request and per connection. Uploads
         * then arrive in reads of about half of it. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, connection_pool_size(app->cfg),
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
        /* Denial of service (docs/operations.md, "Limits and denial of service"): MHD's
         * default of FD_SETSIZE - 4 connections is far too few with epoll; one address may
         * hold only its share; a silent connection is closed (a suspended long-poll is not
         * timed, MHD takes it off its timeout list while it waits). */
        MHD_OPTION_CONNECTION_LIMIT, connection_capacity(app->cfg),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)app->cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)app->cfg->idle_timeout,
        /* ... and a connection never silent must still send each request head in time */
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
}

int server_start(struct app *app, struct tls *tls, struct server **out, struct err *err)
{
    char host[256];
    int port, fd = -1;
    struct sockaddr_storage addr;
    bool ipv6 = false;
    struct MHD_OptionItem tls_opts[3];

    *out = NULL;
    unsigned flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (config_listen_addr(app->cfg, host, sizeof(host), &port, err) != FERRY_OK ||
        resolve(host, port, &addr, &ipv6, err) != FERRY_OK ||
        listen_socket(&addr, ipv6, app->cfg->listen, &fd, &port, err) != FERRY_OK)
        return FERRY_ERR;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    tls_options(tls, tls_opts, &flags);
    struct server *srv = xcalloc(1, sizeof(*srv));
    srv->app = app;
    srv->heads = headwatch_new(app->cfg->body_timeout);
    srv->nets = netlimit_new((unsigned)app->cfg->max_connections_per_ip);
    srv->daemon = start_daemon(srv, flags, port, fd, tls_opts);
    if (!srv->daemon) {
        headwatch_free(srv->heads);
        netlimit_free(srv->nets);
        close(fd);
        free(srv);
        return err_set(err, ERR_INTERNAL, "cannot start the HTTP server on %s", app->cfg->listen);
    }
    srv->port = port;
    *out = srv;
    return FERRY_OK;
}

int server_port(const struct server *srv)
{
    return srv->port;
}

void server_quiesce(struct server *srv)
{
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

void server_stop(struct server *srv)
{
    if (!srv)
        return;
    MHD_stop_daemon(srv->daemon);
    headwatch_free(srv->heads);
    netlimit_free(srv->nets);
    free(srv);
}
