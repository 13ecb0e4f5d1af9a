/* ferry.h - what every module needs: result codes, the error record, and the
 * allocation policy. Nothing else belongs here. */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>

#define FERRY_VERSION "0.1.0"

enum {
    FERRY_OK = 0,
    FERRY_ERR = -1,
};

/* Error kinds. http/response.c maps each to its HTTP status in one table, and renders
 * it in the error format of the request's surface. */
enum err_code {
    ERR_NONE = 0,
    ERR_INVALID,           /* 400 INVALID_REQUEST */
    ERR_UNAUTHORIZED,      /* 401 */
    ERR_FORBIDDEN,         /* 403 */
    ERR_NOT_FOUND,         /* 404 */
    ERR_METHOD,            /* 405 */
    ERR_CONFLICT,          /* 409 */
    ERR_GONE,              /* 410 */
    ERR_PRECONDITION,      /* 412: a required precondition header is missing or wrong (tus) */
    ERR_TOO_LARGE,         /* 413 */
    ERR_MEDIA_TYPE,        /* 415: the body's Content-Type is not one the route takes */
    ERR_RANGE,             /* 416 */
    ERR_LOCKED,            /* 423: another request holds the resource (a tus PATCH) */
    ERR_HEADERS_TOO_LARGE, /* 431 */
    ERR_RATE_LIMITED,      /* 429 */
    ERR_DATABASE,          /* 500 DATABASE_ERROR */
    ERR_INTERNAL,          /* 500 SYNC_FAILED */
    ERR_BAD_GATEWAY,       /* 502: another site refused or failed */
    ERR_UNAVAILABLE,       /* 503 */
    ERR_CLOUD,             /* 503 CLOUD_ERROR: a cloud storage provider is down or refused */
    ERR_STORAGE_FULL,      /* 507 */
    ERR_CHECKSUM,          /* 460: the body does not match its declared checksum (tus) */
};

/* An error for the user: a code and a message that says what was wrong and where.
 * Messages must never contain a secret. */
struct err {
    enum err_code code;
    char msg[512];
};

/* Sets *e (when e is not NULL) and returns FERRY_ERR, so callers can write
 * `return err_set(err, ERR_INVALID, "...")`. */
int err_set(struct err *e, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Out-of-memory policy: ferry aborts. A sync server that cannot allocate a few bytes
 * cannot answer correctly either, and aborting keeps every caller free of a failure
 * path that would never be tested. These wrappers never return NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
