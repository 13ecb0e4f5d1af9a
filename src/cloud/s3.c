/* s3.c - the S3 provider, for any S3-compatible endpoint (path-style URLs:
 * ENDPOINT/BUCKET/KEY). Requests are signed by libcurl (CURLOPT_AWS_SIGV4); shared links
 * are SigV4 presigned URLs (sign.c). Files larger than one part go up as a multipart
 * upload whose upload id and part etags are recorded, so a retry continues.
 * libcurl 7.88 signs the query string as given, so every query here is built in
 * canonical form: names in byte order, values encoded, "name=" for a bare name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cloud/cloud_internal.h"
#include "cloud/sign.h"
#include "cloud/transfer.h"
#include "util/buf.h"
#include "util/crashpoint.h"
#include "util/timeutil.h"

#define MAX_PARTS 10000 /* S3's limit */

struct s3 {
    char *base;   /* endpoint URL without a trailing '/' */
    char *host;   /* Host header: host[:port] */
    char *prefix; /* the endpoint's own path ("" usually) */
    char *sigv4;  /* "aws:amz:REGION:s3" */
    char *userpwd;
};

/* A call on key (NULL: the bucket) with a canonical query (NULL: none). */
static void start(struct cloud *c, struct transfer *t, const char *method, const char *key,
                  const char *query)
{
    struct s3 *s = c->impl;
    char *enc = sign_uri_encode(key ? key : "", true);
    transfer_init(t, method,
                  xasprintf("%s/%s%s%s%s%s", s->base, c->s.s3_bucket, key ? "/" : "", enc,
                            query ? "?" : "", query ? query : ""),
                  c->s.timeout_s);
    free(enc);
    t->sigv4 = s->sigv4;
    t->userpwd = s->userpwd;
    t->stop = c->s.stop;
    /* Bodies stream from files: their hash is not known before they are sent. */
    transfer_header(t, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
}

static void meta_headers(struct transfer *t, const json_t *meta)
{
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)meta, name, v)
    {
        char *lower = xstrdup(name);
        for (char *p = lower; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        transfer_header(t, "x-amz-meta-%s: %s", lower, json_string_value(v));
        free(lower);
    }
}

static int put_single(struct cloud *c, const char *key, const struct cloud_source *src,
                      const json_t *meta, struct cloud_put_result *res, struct err *err)
{
    struct transfer t;
    start(c, &t, "PUT", key, NULL);
    meta_headers(&t, meta);
    t.fd = src->fd;
    t.len = src->size;
    t.moved = src->sent;
    t.moved_ctx = src->sent_ctx;
    int rc = transfer_run(&t, "s3", err);
    if (rc == FERRY_OK && t.status != 200)
        rc = transfer_fail(&t, "s3", "upload", err);
    if (rc == FERRY_OK) {
        transfer_etag(transfer_resp_header(&t, "etag"), res->etag);
        res->parts = 1;
    }
    transfer_cleanup(&t);
    return rc;
}

/* Starts a multipart upload; its id goes into the record. */
static int initiate(struct cloud *c, const char *key, const json_t *meta, struct cloud_state *st,
                    struct err *err)
{
    struct transfer t;
    char *id = NULL;
    start(c, &t, "POST", key, "uploads=");
    meta_headers(&t, meta);
    int rc = transfer_run(&t, "s3", err);
    if (rc == FERRY_OK && t.status != 200)
        rc = transfer_fail(&t, "s3", "starting a multipart upload", err);
    xmlDocPtr doc = rc == FERRY_OK ? transfer_xml(&t) : NULL;
    if (doc)
        id = transfer_xml_text(xmlDocGetRootElement(doc), "UploadId");
    xmlFreeDoc(doc);
    if (rc == FERRY_OK && !id)
        rc = err_set(err, ERR_CLOUD, "s3: starting a multipart upload gave no upload id");
    if (rc == FERRY_OK) {
        json_object_set_new(st->rec, "uploadId", json_string(id));
        json_object_set_new(st->rec, "parts", json_array());
        rc = cloud_state_save(st, err);
    }
    free(id);
    transfer_cleanup(&t);
    return rc;
}

static int put_part(struct cloud *c, const char *key, const struct cloud_source *src,
                    const char *upload_id, unsigned i, char etag[130], struct err *err)
{
    struct transfer t;
    char *id_enc = sign_uri_encode(upload_id, false);
    char *query = xasprintf("partNumber=%u&uploadId=%s", i + 1, id_enc);
    start(c, &t, "PUT", key, query);
    free(query);
    free(id_enc);
    t.fd = src->fd;
    t.moved = src->sent;
    t.moved_ctx = src->sent_ctx;
    t.offset = (uint64_t)i * c->s.part_size;
    t.len = src->size - t.offset < c->s.part_size ? src->size - t.offset : c->s.part_size;
    int rc = transfer_run(&t, "s3", err);
    if (rc == FERRY_OK && t.status != 200)
        rc = transfer_fail(&t, "s3", "uploading a part", err);
    if (rc == FERRY_OK)
        transfer_etag(transfer_resp_header(&t, "etag"), etag);
    transfer_cleanup(&t);
    return rc;
}

static int complete(struct cloud *c, const char *key, const json_t *rec,
                    struct cloud_put_result *res, struct err *err)
{
    struct transfer t;
    struct buf body;
    size_t i;
    json_t *etag;
    buf_init(&body);
    buf_puts(&body, "<CompleteMultipartUpload>");
    json_array_foreach(json_object_get(rec, "parts"), i, etag)
    {
        buf_printf(&body, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
                   json_string_value(etag));
    }
    buf_puts(&body, "</CompleteMultipartUpload>");
    char *id_enc = sign_uri_encode(json_string_value(json_object_get(rec, "uploadId")), false);
    char *query = xasprintf("uploadId=%s", id_enc);
    start(c, &t, "POST", key, query);
    transfer_header(&t, "Content-Type: application/xml");
    t.mem = body.data;
    t.mem_len = body.len;
    int rc = transfer_run(&t, "s3", err);
    /* S3 may answer 200 and still fail: the body is then an Error document. */
    xmlDocPtr doc = rc == FERRY_OK ? transfer_xml(&t) : NULL;
    xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (rc == FERRY_OK && (t.status != 200 || !root || !strcmp((char *)root->name, "Error")))
        rc = transfer_fail(&t, "s3", "completing a multipart upload", err);
    char *final_etag = root ? transfer_xml_text(root, "ETag") : NULL;
    transfer_etag(final_etag, res->etag);
    free(final_etag);
    xmlFreeDoc(doc);
    free(query);
    free(id_enc);
    buf_cleanup(&body);
    transfer_cleanup(&t);
    return rc;
}

/* Sends the parts the record does not list yet; a recorded upload S3 no longer knows
 * (aborted, expired) starts over once. */
static int put_parts(struct cloud *c, const char *key, const struct cloud_source *src,
                     const json_t *meta, struct cloud_state *st, struct cloud_put_result *res,
                     struct err *err)
{
    unsigned n = cloud_n_parts(c, src);
    bool fresh = !json_is_string(json_object_get(st->rec, "uploadId"));
    if (fresh && initiate(c, key, meta, st, err) != FERRY_OK)
        return FERRY_ERR;
    json_t *parts = json_object_get(st->rec, "parts");
    res->parts_resumed = (unsigned)json_array_size(parts);
    for (unsigned i = (unsigned)json_array_size(parts); i < n; i++) {
        char etag[130];
        const char *id = json_string_value(json_object_get(st->rec, "uploadId"));
        if (put_part(c, key, src, id, i, etag, err) != FERRY_OK) {
            if (err->code != ERR_NOT_FOUND || fresh)
                return FERRY_ERR;
            json_object_clear(st->rec);
            return put_parts(c, key, src, meta, st, res, err);
        }
        json_array_append_new(parts, json_string(etag));
        if (cloud_state_save(st, err) != FERRY_OK)
            return FERRY_ERR;
        res->parts++;
        CRASH_AT("cloud_part_done");
    }
    return complete(c, key, st->rec, res, err);
}

static int s3_put(struct cloud *c, const char *key, const struct cloud_source *src,
                  const json_t *meta, struct cloud_put_result *res, struct err *err)
{
    struct cloud_state st;
    if (src->size <= c->s.part_size)
        return put_single(c, key, src, meta, res, err);
    if (cloud_n_parts(c, src) > MAX_PARTS)
        return err_set(err, ERR_INVALID, "the file needs more than %d parts: raise cloud-part-size",
                       MAX_PARTS);
    if (cloud_state_open(c, key, src, &st, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = put_parts(c, key, src, meta, &st, res, err);
    cloud_state_close(c, key, src, &st, rc == FERRY_OK);
    return rc;
}

static int s3_head(struct cloud *c, const char *key, struct cloud_object *out, struct err *err)
{
    struct transfer t;
    char etag[130];
    start(c, &t, "HEAD", key, NULL);
    int rc = transfer_run(&t, "s3", err);
    if (rc == FERRY_OK && t.status != 200)
        rc = transfer_fail(&t, "s3", "reading the file's properties", err);
    if (rc == FERRY_OK) {
        const char *len = transfer_resp_header(&t, "content-length");
        transfer_etag(transfer_resp_header(&t, "etag"), etag);
        out->key = xstrdup(key);
        out->size = len ? strtoull(len, NULL, 10) : 0;
        out->modified_ms = transfer_http_date(transfer_resp_header(&t, "last-modified"));
        out->etag = xstrdup(etag);
        out->metadata = transfer_resp_metadata(&t, "x-amz-meta-");
    }
    transfer_cleanup(&t);
    return rc;
}

static int s3_get(struct cloud *c, const char *key, const struct cloud_range *r, const char *etag,
                  cloud_write_fn write, void *ctx, struct err *err)
{
    struct transfer t;
    char range[64];
    bool partial = cloud_range_header(r, range);
    start(c, &t, "GET", key, NULL);
    if (partial)
        transfer_header(&t, "Range: %s", range);
    if (etag)
        transfer_header(&t, "If-Match: \"%s\"", etag);
    t.write = write;
    t.write_ctx = ctx;
    int rc = transfer_run(&t, "s3", err);
    if (rc == FERRY_OK && t.status != (partial ? 206 : 200))
        rc = t.status == 416 ? err_set(err, ERR_RANGE, "s3: the range starts past the end")
                             : transfer_fail(&t, "s3", "download", err);
    transfer_cleanup(&t);
    return rc;
}

/* Hands one page's objects to fn; *next is the continuation token (NULL at the end). */
static int list_page(xmlNodePtr root, cloud_list_fn fn, void *ctx, char **next, struct err *err)
{
    static const struct transfer_listing names = {"Contents",     NULL,   "Key", "Size",
                                                  "LastModified", "ETag", true};
    if (transfer_xml_objects(root, &names, fn, ctx) != FERRY_OK)
        return err_set(err, ERR_INTERNAL, "the listing was cut short");
    char *truncated = transfer_xml_text(root, "IsTruncated");
    bool more = truncated && !strcmp(truncated, "true");
    free(truncated);
    if (more)
        *next = transfer_xml_text(root, "NextContinuationToken");
    /* A truncated page with no way on (a server that ignores list-type=2 answers so) is
     * no whole listing: taken as one, a session would delete what the rest holds. */
    if (more && (!*next || !**next))
        return err_set(err, ERR_CLOUD,
                       "s3: the listing is truncated without a continuation "
                       "token (does the endpoint support list-type=2?)");
    return FERRY_OK;
}

static int s3_list(struct cloud *c, const char *prefix, cloud_list_fn fn, void *ctx,
                   struct err *err)
{
    char *token = NULL, *asked = NULL; /* the next page's token, the one just asked with */
    int rc = FERRY_OK;
    do {
        struct transfer t;
        char *tok_enc = token ? sign_uri_encode(token, false) : NULL;
        char *pre_enc = sign_uri_encode(prefix ? prefix : "", false);
        char *query = xasprintf("%s%s%slist-type=2&prefix=%s", token ? "continuation-token=" : "",
                                token ? tok_enc : "", token ? "&" : "", pre_enc);
        free(asked);
        asked = token;
        token = NULL;
        start(c, &t, "GET", NULL, query);
        rc = transfer_run(&t, "s3", err);
        if (rc == FERRY_OK && t.status != 200)
            rc = transfer_fail(&t, "s3", "listing", err);
        xmlDocPtr doc = rc == FERRY_OK ? transfer_xml(&t) : NULL;
        if (rc == FERRY_OK && !doc)
            rc = err_set(err, ERR_CLOUD, "s3: the listing is not XML");
        if (rc == FERRY_OK)
            rc = list_page(xmlDocGetRootElement(doc), fn, ctx, &token, err);
        if (rc == FERRY_OK && token && asked && !strcmp(token, asked)) /* round in circles */
            rc = err_set(err, ERR_CLOUD,
                         "s3: the listing gives the same continuation token "
                         "again");
        xmlFreeDoc(doc);
        free(query);
        free(tok_enc);
        free(pre_enc);
        transfer_cleanup(&t);
    } while (rc == FERRY_OK && token);
    free(token);
    free(asked);
    return rc;
}

static int s3_del(struct cloud *c, const char *key, struct err *err)
{
    struct transfer t;
    start(c, &t, "DELETE", key, NULL);
    int rc = transfer_run(&t, "s3", err);
    if (rc == FERRY_OK && t.status != 204 && t.status != 200 && t.status != 404)
        rc = transfer_fail(&t, "s3", "delete", err);
    transfer_cleanup(&t);
    return rc;
}

static int s3_presign(struct cloud *c, const char *key, int64_t expires_at, char **url,
                      struct err *err)
{
    struct s3 *s = c->impl;
    int64_t now = time_now_ms() / 1000;
    if (expires_at - now > 604800)
        return err_set(err, ERR_INVALID, "an S3 link may last at most 7 days (604800 seconds)");
    char *enc = sign_uri_encode(key, true);
    char *path = xasprintf("%s/%s/%s", s->prefix, c->s.s3_bucket, enc);
    struct sign_sigv4 p = {
        c->s.s3_access_key_id, c->s.s3_secret_access_key, c->s.s3_region, "s3", s->host, path, now,
        expires_at - now};
    char *query = sign_sigv4_presign_query(&p);
    *url = xasprintf("%s/%s/%s?%s", s->base, c->s.s3_bucket, enc, query);
    free(query);
    free(path);
    free(enc);
    return FERRY_OK;
}

static void s3_close(struct cloud *c)
{
    struct s3 *s = c->impl;
    free(s->base);
    free(s->host);
    free(s->prefix);
    free(s->sigv4);
    if (s->userpwd)
        OPENSSL_cleanse(s->userpwd, strlen(s->userpwd));
    free(s->userpwd);
    free(s);
}

static const struct cloud_ops ops = {s3_put, s3_head,    s3_get,  s3_list,
                                     s3_del, s3_presign, s3_close};

/* Host header and path prefix of the endpoint, as curl's URL parser reads them. */
static int parse_endpoint(struct s3 *s, const char *endpoint, struct err *err)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *path = NULL;
    int rc = FERRY_ERR;
    if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        err_set(err, ERR_CLOUD, "s3: s3-endpoint is not a URL");
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0); /* only when the URL names one */
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    s->host = port ? xasprintf("%s:%s", host, port) : xstrdup(host);
    size_t len = path ? strlen(path) : 0;
    while (len && path[len - 1] == '/')
        len--;
    s->prefix = xstrndup(path ? path : "", len);
    len = strlen(endpoint);
    while (len && endpoint[len - 1] == '/')
        len--;
    s->base = xstrndup(endpoint, len);
    rc = FERRY_OK;
out:
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

int s3_open(struct cloud *c, struct err *err)
{
    const struct cloud_settings *cs = &c->s;
    if (!cs->s3_endpoint || !cs->s3_bucket || !cs->s3_access_key_id || !cs->s3_secret_access_key)
        return err_set(err, ERR_CLOUD,
                       "s3 is not configured (s3-endpoint, s3-bucket, s3-access-key-id and "
                       "s3-secret-access-key)");
    struct s3 *s = xcalloc(1, sizeof(*s));
    if (parse_endpoint(s, cs->s3_endpoint, err) != FERRY_OK) {
        free(s);
        return FERRY_ERR;
    }
    s->sigv4 = xasprintf("aws:amz:%s:s3", cs->s3_region);
    s->userpwd = xasprintf("%s:%s", cs->s3_access_key_id, cs->s3_secret_access_key);
    c->impl = s;
    c->ops = &ops;
    return FERRY_OK;
}
