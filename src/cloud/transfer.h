/* transfer.h - one HTTP call to a cloud provider through libcurl, with the request body
 * streamed from a file range (or a small buffer) and the answer's body streamed to a
 * callback, and the few XML reads the providers' answers need (libxml2). */
#ifndef FERRY_CLOUD_TRANSFER_H
#define FERRY_CLOUD_TRANSFER_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libxml/tree.h>

#include "cloud/cloud.h"
#include "util/buf.h"

struct transfer {
    const char *method;
    char *url; /* owned */
    struct curl_slist *headers;
    /* request body: mem (when not NULL) or len bytes of fd from offset (when fd >= 0) */
    const char *mem;
    size_t mem_len;
    int fd;
    uint64_t offset, len, sent;
    void (*moved)(void *ctx, uint64_t n); /* told of fd body bytes as they go (may be NULL) */
    void *moved_ctx;
    /* a 2xx answer's body goes to write when set, else into body (capped) */
    cloud_write_fn write;
    void *write_ctx;
    bool write_failed;
    long status;
    struct buf body;
    json_t *resp_headers;        /* lower-cased name -> value */
    const char *sigv4, *userpwd; /* S3: CURLOPT_AWS_SIGV4 and the key pair */
    const atomic_bool *stop;     /* ends the call early when it turns true */
    long timeout_s;
    uint64_t bytes; /* body bytes sent and received */
};

void transfer_init(struct transfer *t, const char *method, char *url, long timeout_s);
void transfer_cleanup(struct transfer *t);
void transfer_header(struct transfer *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Performs the call. FERRY_OK when the provider answered (any status; see t->status);
 * ERR_CLOUD naming the provider when it could not be reached or the transfer broke off;
 * ERR_UNAVAILABLE when *t->stop ended it. */
int transfer_run(struct transfer *t, const char *provider, struct err *err);

/* Turns an unsuccessful answer into an error: 404 is ERR_NOT_FOUND, 412 ERR_PRECONDITION,
 * anything else ERR_CLOUD with the provider's error code (from its XML body). */
int transfer_fail(const struct transfer *t, const char *provider, const char *what,
                  struct err *err);

/* A response header (lower-case name), or NULL. */
const char *transfer_resp_header(const struct transfer *t, const char *name);
/* The answer's metadata headers (names after prefix, e.g. "x-amz-meta-") as an object. */
json_t *transfer_resp_metadata(const struct transfer *t, const char *prefix);

/* The answer's body parsed as XML (NULL when it is not XML). Free with xmlFreeDoc. */
xmlDocPtr transfer_xml(const struct transfer *t);
/* The first child element of parent named name, or NULL. */
xmlNodePtr transfer_xml_child(xmlNodePtr parent, const char *name);
/* The text of that child as a new string (NULL when absent). */
char *transfer_xml_text(xmlNodePtr parent, const char *name);

/* The element names of a listed object in a provider's listing: key, size, date and etag
 * (the last three under the element props names, or under the object's own element when
 * props is NULL); iso_date says whether the date is ISO 8601 (S3) or an HTTP date (Azure). */
struct transfer_listing {
    const char *object, *props, *key, *size, *date, *etag;
    bool iso_date;
};

/* Hands fn every object element (l->object) under parent, in order. FERRY_ERR when fn
 * stopped the listing. */
int transfer_xml_objects(xmlNodePtr parent, const struct transfer_listing *l, cloud_list_fn fn,
                         void *ctx);

/* Strips the quotes around an ETag value into out (which holds 130 bytes). */
void transfer_etag(const char *value, char out[130]);
/* Parses an HTTP date ("Wed, 15 Jan 2024 10:00:00 GMT") to ms since the epoch, 0 if not. */
int64_t transfer_http_date(const char *value);

#endif
