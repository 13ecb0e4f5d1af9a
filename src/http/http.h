/* http.h - the request and response as handlers see them, the route table entry, and
 * the reply helpers. Handlers (src/api/) never touch libmicrohttpd directly; the
 * server (server.c) turns what a handler leaves in the request into a response. */
#ifndef FERRY_HTTP_H
#define FERRY_HTTP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "util/buf.h"

struct app; /* the running server's shared state (app.h) */
struct MHD_Connection;
struct MHD_Response;
struct http_stream;
struct store_conn;

/* The error format a path belongs to (DESIGN.md section 1). */
enum surface {
    SURFACE_V1,     /* {"errorCode","message","details","timestamp"} */
    SURFACE_LEGACY, /* {"success":false,"error":"..."}: cloud-sync-api and PhoenixKit */
    SURFACE_TUS,    /* plain text, tus headers */
    SURFACE_PLAIN,  /* plain text (Prometheus, static files) */
};

enum method {
    M_GET = 1 << 0,
    M_POST = 1 << 1,
    M_PUT = 1 << 2,
    M_PATCH = 1 << 3,
    M_DELETE = 1 << 4,
    M_HEAD = 1 << 5,
    M_OPTIONS = 1 << 6,
};

/* Roles a credential can have; a route lists the roles it admits (admin always). */
enum role {
    ROLE_NONE = 0,
    ROLE_ADMIN = 1 << 0,
    ROLE_USER = 1 << 1,
    ROLE_DEVICE = 1 << 2,
};
#define ROLES_ANY (ROLE_ADMIN | ROLE_USER | ROLE_DEVICE)

struct credential {
    enum role role;
    char id[140];      /* token id, or "jwt:<sub>"; safe to log */
    char user_id[128]; /* owner user, empty for admin tokens without one */
    char device_id[128];
    char tables[1024]; /* tables it may sync (comma list); empty: every synced table */
    /* Claims the sync rules may use, as a compact JSON object of strings and numbers:
     * a JWT's claims, or the attributes a ferry token was created with. "" when none. */
    char claims[1024];
};

/* Success statuses, by name: handlers answer with these; error statuses come only from
 * an err_code (http_status_of). */
enum http_ok {
    HTTP_OK = 200,
    HTTP_CREATED = 201,
    HTTP_ACCEPTED = 202,
    HTTP_NO_CONTENT = 204,
    HTTP_PARTIAL = 206,
};

struct request;
/* A handler answers with http_reply_* and returns FERRY_OK, or returns FERRY_ERR with *err
 * set and no reply: the server then answers with err in the route's surface's format. */
typedef int (*handler_fn)(struct request *req, struct err *err);

/* A route that takes a large body (file uploads) streams it instead of buffering it:
 * open runs once the request is admitted, before any body (it may reply to refuse it);
 * write gets the bytes as they arrive and returns false after replying to refuse them
 * (the rest of the body is then read and dropped, and the reply sent at its end);
 * the handler then runs at the end of the body as usual (unless a reply was set). release runs when
 * the request ends while req->sink_ctx is still set (the client went away, or a reply came early),
 * so partial state is dealt with; a handler that finishes the upload clears sink_ctx.
 * The body limit of such a route is the sink's business, not max-body's. */
struct body_sink {
    void (*open)(struct request *req);
    bool (*write)(struct request *req, const char *data, size_t len);
    void (*release)(struct request *req);
};

enum route_flags {
    ROUTE_PUBLIC = 1 << 0,       /* no credential needed */
    ROUTE_JSON = 1 << 1,         /* body, when present, must be application/json */
    ROUTE_METRICS_AUTH = 1 << 2, /* public unless metrics-auth is set */
    ROUTE_LEGACY_AUTH = 1 << 3,  /* needs a credential unless legacy-auth is off */
    ROUTE_STORE = 1 << 4,        /* the server lends the handler a store connection (req->db) */
    /* The body is small by nature (PhoenixKit actions, token requests) and is read before
     * any credential can be checked: capped by max-small-body as well as max-body. */
    ROUTE_SMALL_BODY = 1 << 5,
    /* A PhoenixKit action: answered 503 before its body is read when sites are off. */
    ROUTE_SITES = 1 << 6,
};

/* One row of a surface's route table. Patterns are literal segments, {name} for one
 * segment, and a final * for the rest of the path. */
struct route {
    unsigned methods;
    const char *pattern;
    handler_fn handler;
    unsigned roles; /* ignored for ROUTE_PUBLIC */
    enum surface surface;
    unsigned flags;
    const struct body_sink *sink; /* NULL: the body is buffered (up to max-body) */
};

#define MAX_PATH_PARAMS 8
#define MAX_RESP_HEADERS 16

/* The compressed forms of one body that lives as long as the process, made once, by the
 * first request that asks for them (http_reply_static); indexed by enum coding. */
struct http_codings {
    pthread_mutex_t lock;
    bool made;
    char *body[3]; /* NULL: the coding failed or was not smaller */
    size_t len[3];
};
#define HTTP_CODINGS_INIT                                                                          \
    {                                                                                              \
        .lock = PTHREAD_MUTEX_INITIALIZER                                                          \
    }

struct response {
    int status;
    char *body; /* owned, unless borrowed */
    size_t body_len;
    bool borrowed;                /* body lives as long as the process: never freed */
    struct http_codings *codings; /* a borrowed body's compressed forms */
    const char *content_type;
    int fd; /* >= 0: the body is fd_len bytes of this file from fd_offset */
    uint64_t fd_offset, fd_len;
    struct {
        char *name, *value; /* owned */
    } headers[MAX_RESP_HEADERS];
    int n_headers;
    struct http_stream *stream; /* owned until sent: a body written while it is sent */
};

/* The most wake keys a parked request carries (sync/watch.h: WATCH_MAX_KEYS). */
#define HTTP_WAIT_KEYS 16

struct request {
    struct app *app;
    struct MHD_Connection *conn;
    const char *method;
    enum method method_bit;
    const char *path; /* decoded path, without the query */
    char request_id[72];
    char client_addr[64];
    const struct route *route;
    enum surface surface;
    const char *param_names[MAX_PATH_PARAMS];
    char *param_values[MAX_PATH_PARAMS]; /* owned, decoded */
    int n_params;
    struct credential cred;
    struct buf body;
    bool body_too_large;
    json_t *json;   /* parsed body for ROUTE_JSON routes with a body; owned */
    void *sink_ctx; /* a body_sink's state (see struct body_sink) */
    /* For ROUTE_STORE routes: a pooled connection the server acquires before the sink's
     * open, the handler and the sink's release, and returns as each of them ends (so a
     * parked long-poll or a streaming body holds none). Handlers never release it. */
    struct store_conn *db;
    int64_t start_us;
    uint64_t bytes_in;
    struct response resp;
    bool replied; /* a response is set */
    bool sent;    /* and queued with MHD */
    /* Long-poll: a handler that wants to wait calls http_wait; the server parks the
     * request and runs the handler again when the log moves or the deadline passes. */
    int64_t wait_deadline; /* ms since epoch; 0: not waiting */
    int64_t wait_head;     /* newest seq the handler saw */
    int64_t woke_head;     /* the head whose arrival woke the request (waiter); 0: none */
    bool wait_requested;
    bool wait_expired; /* set when the deadline passed (or the server is stopping) */
    /* What it waits for (waiter_wait_keys): a move of the log carrying none of these
     * keys leaves it parked. n_wait_keys 0: every move wakes it. */
    uint64_t wait_keys[HTTP_WAIT_KEYS];
    size_t n_wait_keys;
};

/* Asks the server to park the request until the change log moves past seen_head or
 * deadline_ms passes; the handler then runs again. Call only without a reply. */
void http_wait(struct request *req, int64_t deadline_ms, int64_t seen_head);

/* Path parameter by name, NULL when the route has none of that name. */
const char *http_param(const struct request *req, const char *name);
/* Query-string argument, NULL when absent. */
const char *http_query(const struct request *req, const char *name);
/* Request header, NULL when absent. */
const char *http_header(const struct request *req, const char *name);

/* Replies. Each sets the response once; a second reply is a programming error and is
 * ignored. reply_json takes a reference to value (steals it). */
void http_reply_json(struct request *req, int status, json_t *value);
void http_reply_text(struct request *req, int status, const char *content_type, const char *body,
                     size_t len);
/* Replies with len bytes that live as long as the process (a document built into the
 * binary), without copying them: every client, however slowly it reads, shares them.
 * codings keeps their compressed forms, made at the first request that wants one. */
void http_reply_static(struct request *req, int status, const char *content_type, const char *body,
                       size_t len, struct http_codings *codings);
/* Replies with JSON text already written (util/jsonw.h), taking text's bytes without a
 * copy; text is left empty. */
void http_reply_json_text(struct request *req, int status, struct buf *text);
/* Replies with the surface's error format. For the v1 format, message is the generic
 * description of the code and detail the specific one; for the legacy format, detail is
 * the "error" text. */
void http_reply_error(struct request *req, enum err_code code, const char *detail);
void http_reply_err(struct request *req, const struct err *err);
void http_add_header(struct request *req, const char *name, const char *value);
/* Replies with a body written while it is sent (chunked; encoded as it is written when
 * compression is on and the client asks, http_compress_reply): first is
 * its beginning (taken over), then fill(ctx, out) appends the next part to out and
 * returns 1 while more follows, 0 at the end, -1 on failure: the connection is then
 * closed before the body ends, so the client sees a cut answer, never a whole one.
 * done(ctx) runs once, when the answer is over or abandoned, maybe after the request is
 * freed (ctx must not need it). */
void http_reply_stream(struct request *req, int status, const char *content_type, struct buf *first,
                       int (*fill)(void *ctx, struct buf *out), void (*done)(void *ctx), void *ctx);
/* Makes the stream http_reply_stream set up an answer of exactly length bytes: sent with
 * Content-Length (so a client can show progress and knows a cut answer), never encoded. */
void http_stream_length(struct request *req, uint64_t length);
/* MHD's response for req's stream, which it owns from here (NULL on failure); and the
 * release of a stream never handed over (NULL: nothing). */
struct MHD_Response *http_stream_response(struct request *req);
void http_stream_free(struct http_stream *s);
/* Replies with len bytes of the open file fd from offset, sent with sendfile; the
 * server owns fd from here on and closes it. */
void http_reply_file(struct request *req, int status, const char *content_type, int fd,
                     uint64_t offset, uint64_t len);

/* The request's JSON object body in *body (borrowed from req); fails with ERR_INVALID
 * when the body is empty or not an object. */
int http_json_body(const struct request *req, json_t **body, struct err *err);
/* The same for handlers that reply themselves: replies 400 and returns NULL. */
json_t *http_json_object(struct request *req);

/* For the server, before sending: replaces a buffered body of a compressible type and at
 * least min_size bytes by its gzip or zstd encoding when the request's Accept-Encoding
 * asks for one, and sets Content-Encoding and Vary. Files, ranges and bodies that would
 * not shrink go out as they are. */
void http_compress_reply(struct request *req, long long min_size);

/* Maps an error code to its HTTP status and to its v1 errorCode and description. */
int http_status_of(enum err_code code);
const char *http_error_name(enum err_code code);
const char *http_error_text(enum err_code code);

#endif
