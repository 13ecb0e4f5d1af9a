/* azure.c - the Azure Blob Storage provider: block blobs in one container, requests
 * signed with SharedKey (sign.c) from the account key in a standard connection string,
 * shared links as read-only service SAS URLs. Files larger than one block go up as blocks
 * with ids derived from the file, committed by one block list; the count of blocks sent
 * is recorded, so a retry continues. The container is created on first use. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cloud/cloud_internal.h"
#include "cloud/sign.h"
#include "cloud/transfer.h"
#include "util/base64.h"
#include "util/crashpoint.h"
#include "util/crypto.h"
#include "util/timeutil.h"

#define API_VERSION "2020-10-02"
#define MAX_BLOCKS 50000 /* Azure's limit */
#define MAX_QUERY 6
#define MAX_MS 24
/* The account key of Azure's storage emulators (azurite), which everyone uses by name. */
#define DEV_ACCOUNT "devstoreaccount1"
#define DEV_KEY                                                                                    \
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

struct azure {
    char *account, *key; /* key: base64, as the connection string gives it */
    char *base;          /* blob endpoint without a trailing '/' */
    char *prefix;        /* its path ("/devstoreaccount1" for azurite, "" on Azure) */
};

/* One call being put together: the transfer and what its signature covers. */
struct call {
    struct transfer t;
    const char *method;
    char *path; /* the URL's path as sent */
    const char *std[AZ_N_STD];
    char content_length[24], range[64], if_match[140];
    char *ms[MAX_MS];
    size_t n_ms;
    const char *query[MAX_QUERY]; /* "name=value", value decoded */
    size_t n_query;
};

static void add_ms(struct call *a, const char *fmt, const char *value)
{
    if (a->n_ms < MAX_MS)
        a->ms[a->n_ms++] = xasprintf(fmt, value);
}

/* Starts a call on key (NULL: the container) with query pairs ("name=value", decoded). */
static void start(struct cloud *c, struct call *a, const char *method, const char *key,
                  const char *const *query, size_t n_query)
{
    struct azure *z = c->impl;
    struct buf url;
    memset(a, 0, sizeof(*a));
    a->method = method;
    char *enc = sign_uri_encode(key ? key : "", true);
    a->path = xasprintf("%s/%s%s%s", z->prefix, c->s.azure_container, key ? "/" : "", enc);
    buf_init(&url);
    buf_printf(&url, "%s/%s%s%s", z->base, c->s.azure_container, key ? "/" : "", enc);
    for (size_t i = 0; i < n_query && i < MAX_QUERY; i++) {
        const char *eq = strchr(query[i], '=');
        char *v = sign_uri_encode(eq + 1, false);
        buf_printf(&url, "%c%.*s=%s", i ? '&' : '?', (int)(eq - query[i]), query[i], v);
        free(v);
        a->query[a->n_query++] = query[i];
    }
    free(enc);
    transfer_init(&a->t, method, buf_steal(&url), c->s.timeout_s);
    buf_cleanup(&url);
    a->t.stop = c->s.stop;
    /* A block waits for no 100-continue round trip (not signed: Expect is no x-ms-). */
    transfer_header(&a->t, "Expect:");
}

static void call_cleanup(struct call *a)
{
    for (size_t i = 0; i < a->n_ms; i++)
        free(a->ms[i]);
    free(a->path);
    transfer_cleanup(&a->t);
}

/* Signs and sends the call. */
static int run(struct cloud *c, struct call *a, struct err *err)
{
    struct azure *z = c->impl;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    add_ms(a, "x-ms-date:%s", date);
    add_ms(a, "x-ms-version:%s", API_VERSION);
    uint64_t len = a->t.mem ? a->t.mem_len : a->t.fd >= 0 ? a->t.len : 0;
    if (len)
        snprintf(a->content_length, sizeof(a->content_length), "%llu", (unsigned long long)len);
    a->std[AZ_CONTENT_LENGTH] = a->content_length;
    for (size_t i = 0; i < a->n_ms; i++)
        transfer_header(&a->t, "%s", a->ms[i]);
    char *to_sign = sign_azure_string_to_sign(a->method, a->std, (const char *const *)a->ms,
                                              a->n_ms, z->account, a->path, a->query, a->n_query);
    char *sig = sign_hmac_b64(z->key, to_sign);
    free(to_sign);
    if (!sig)
        return err_set(err, ERR_CLOUD, "azure: the connection string's AccountKey is not base64");
    transfer_header(&a->t, "Authorization: SharedKey %s:%s", z->account, sig);
    free(sig);
    return transfer_run(&a->t, "azure", err);
}

/* Azure metadata names must be C# identifiers: every byte but a-z and 0-9 (and a leading
 * digit) travels as _XX, which decode_name reverses. Names are lower-cased, as S3 does. */
static char *encode_name(const char *name)
{
    char *out = xmalloc(strlen(name) * 3 + 1), *o = out;
    for (const char *p = name; *p; p++) {
        char ch = (char)tolower((unsigned char)*p);
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9' && p != name))
            *o++ = ch;
        else
            o += sprintf(o, "_%02x", (unsigned char)ch);
    }
    *o = '\0';
    return out;
}

static char *decode_name(const char *name)
{
    char *out = xmalloc(strlen(name) + 1), *o = out;
    for (const char *p = name; *p; p++) {
        unsigned v;
        if (*p == '_' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]) &&
            sscanf(p + 1, "%2x", &v) == 1) {
            *o++ = (char)v;
            p += 2;
        } else {
            *o++ = (char)tolower((unsigned char)*p);
        }
    }
    *o = '\0';
    return out;
}

static void meta_headers(struct call *a, const json_t *meta)
{
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)meta, name, v)
    {
        char *enc = encode_name(name);
        char *line = xasprintf("x-ms-meta-%s:%s", enc, json_string_value(v));
        if (a->n_ms < MAX_MS - 2) /* room for x-ms-date and x-ms-version */
            a->ms[a->n_ms++] = line;
        else
            free(line);
        free(enc);
    }
}

static json_t *decode_meta(json_t *raw)
{
    json_t *meta = json_object(), *v;
    const char *name;
    json_object_foreach(raw, name, v)
    {
        char *plain = decode_name(name);
        json_object_set(meta, plain, v);
        free(plain);
    }
    json_decref(raw);
    return meta;
}

static int create_container(struct cloud *c, struct err *err)
{
    struct call a;
    static const char *const q[] = {"restype=container"};
    start(c, &a, "PUT", NULL, q, 1);
    int rc = run(c, &a, err);
    if (rc == FERRY_OK && a.t.status != 201 && a.t.status != 409)
        rc = transfer_fail(&a.t, "azure", "creating the container", err);
    call_cleanup(&a);
    return rc;
}

/* Runs a call that may find the container missing: creates it and tries once more. */
typedef int (*attempt_fn)(struct cloud *c, void *ctx, struct err *err);
static int with_container(struct cloud *c, attempt_fn fn, void *ctx, struct err *err)
{
    if (fn(c, ctx, err) == FERRY_OK)
        return FERRY_OK;
    if (err->code != ERR_NOT_FOUND || !strstr(err->msg, "ContainerNotFound") ||
        create_container(c, err) != FERRY_OK)
        return FERRY_ERR;
    return fn(c, ctx, err);
}

struct put_args {
    const char *key;
    const struct cloud_source *src;
    const json_t *meta;
    struct cloud_put_result *res;
    unsigned block;
    char *block_id;
    struct cloud_state *st;
};

static int put_blob(struct cloud *c, void *ctx, struct err *err)
{
    struct put_args *p = ctx;
    struct call a;
    start(c, &a, "PUT", p->key, NULL, 0);
    add_ms(&a, "x-ms-blob-type:%s", "BlockBlob");
    meta_headers(&a, p->meta);
    a.t.fd = p->src->fd;
    a.t.len = p->src->size;
    a.t.moved = p->src->sent;
    a.t.moved_ctx = p->src->sent_ctx;
    int rc = run(c, &a, err);
    if (rc == FERRY_OK && a.t.status != 201)
        rc = transfer_fail(&a.t, "azure", "upload", err);
    if (rc == FERRY_OK) {
        transfer_etag(transfer_resp_header(&a.t, "etag"), p->res->etag);
        p->res->parts = 1;
    }
    call_cleanup(&a);
    return rc;
}

/* Block ids must all have the same length: "ferry-" + the file's hash + the index. */
static char *block_id(const struct cloud_source *src, unsigned i)
{
    char h[65], raw[64];
    crypto_sha256_hex(src->fingerprint, strlen(src->fingerprint), h);
    snprintf(raw, sizeof(raw), "ferry-%.16s-%06u", h, i);
    return base64_encode(raw, strlen(raw));
}

static int put_block(struct cloud *c, void *ctx, struct err *err)
{
    struct put_args *p = ctx;
    struct call a;
    char *q_id = xasprintf("blockid=%s", p->block_id);
    const char *q[] = {"comp=block", q_id};
    start(c, &a, "PUT", p->key, q, 2);
    a.t.fd = p->src->fd;
    a.t.moved = p->src->sent;
    a.t.moved_ctx = p->src->sent_ctx;
    a.t.offset = (uint64_t)p->block * c->s.part_size;
    a.t.len =
        p->src->size - a.t.offset < c->s.part_size ? p->src->size - a.t.offset : c->s.part_size;
    int rc = run(c, &a, err);
    if (rc == FERRY_OK && a.t.status != 201)
        rc = transfer_fail(&a.t, "azure", "uploading a block", err);
    call_cleanup(&a);
    free(q_id);
    return rc;
}

static int commit_blocks(struct cloud *c, struct put_args *p, unsigned n, struct err *err)
{
    struct call a;
    struct buf body;
    static const char *const q[] = {"comp=blocklist"};
    buf_init(&body);
    buf_puts(&body, "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for (unsigned i = 0; i < n; i++) {
        char *id = block_id(p->src, i);
        buf_printf(&body, "<Latest>%s</Latest>", id);
        free(id);
    }
    buf_puts(&body, "</BlockList>");
    start(c, &a, "PUT", p->key, q, 1);
    meta_headers(&a, p->meta);
    transfer_header(&a.t, "Content-Type: application/xml");
    a.std[AZ_CONTENT_TYPE] = "application/xml";
    a.t.mem = body.data;
    a.t.mem_len = body.len;
    int rc = run(c, &a, err);
    if (rc == FERRY_OK && a.t.status != 201)
        rc = transfer_fail(&a.t, "azure", "committing the blocks", err);
    if (rc == FERRY_OK)
        transfer_etag(transfer_resp_header(&a.t, "etag"), p->res->etag);
    call_cleanup(&a);
    buf_cleanup(&body);
    return rc;
}

static int put_blocks(struct cloud *c, struct put_args *p, struct err *err)
{
    unsigned n = cloud_n_parts(c, p->src);
    json_int_t done = json_integer_value(json_object_get(p->st->rec, "blocks"));
    p->res->parts_resumed = (unsigned)done;
    for (p->block = (unsigned)done; p->block < n; p->block++) {
        p->block_id = block_id(p->src, p->block);
        int rc = with_container(c, put_block, p, err);
        free(p->block_id);
        if (rc != FERRY_OK)
            return FERRY_ERR;
        json_object_set_new(p->st->rec, "blocks", json_integer(p->block + 1));
        if (cloud_state_save(p->st, err) != FERRY_OK)
            return FERRY_ERR;
        p->res->parts++;
        CRASH_AT("cloud_part_done");
    }
    if (commit_blocks(c, p, n, err) == FERRY_OK)
        return FERRY_OK;
    if (strstr(err->msg, "InvalidBlockList")) { /* the blocks expired: start over next time */
        json_object_clear(p->st->rec);
        cloud_state_save(p->st, NULL);
    }
    return FERRY_ERR;
}

static int azure_put(struct cloud *c, const char *key, const struct cloud_source *src,
                     const json_t *meta, struct cloud_put_result *res, struct err *err)
{
    struct cloud_state st;
    struct put_args p = {key, src, meta, res, 0, NULL, &st};
    if (src->size <= c->s.part_size)
        return with_container(c, put_blob, &p, err);
    if (cloud_n_parts(c, src) > MAX_BLOCKS)
        return err_set(err, ERR_INVALID,
                       "the file needs more than %d blocks: raise cloud-part-size", MAX_BLOCKS);
    if (cloud_state_open(c, key, src, &st, err) != FERRY_OK)
        return FERRY_ERR;
    int rc = put_blocks(c, &p, err);
    cloud_state_close(c, key, src, &st, rc == FERRY_OK);
    return rc;
}

static int azure_head(struct cloud *c, const char *key, struct cloud_object *out, struct err *err)
{
    struct call a;
    char etag[130];
    start(c, &a, "HEAD", key, NULL, 0);
    int rc = run(c, &a, err);
    if (rc == FERRY_OK && a.t.status != 200)
        rc = transfer_fail(&a.t, "azure", "reading the file's properties", err);
    if (rc == FERRY_OK) {
        const char *len = transfer_resp_header(&a.t, "content-length");
        transfer_etag(transfer_resp_header(&a.t, "etag"), etag);
        out->key = xstrdup(key);
        out->size = len ? strtoull(len, NULL, 10) : 0;
        out->modified_ms = transfer_http_date(transfer_resp_header(&a.t, "last-modified"));
        out->etag = xstrdup(etag);
        out->metadata = decode_meta(transfer_resp_metadata(&a.t, "x-ms-meta-"));
    }
    call_cleanup(&a);
    return rc;
}

static int azure_get(struct cloud *c, const char *key, const struct cloud_range *r,
                     const char *etag, cloud_write_fn write, void *ctx, struct err *err)
{
    struct call a;
    start(c, &a, "GET", key, NULL, 0);
    bool partial = cloud_range_header(r, a.range);
    if (partial) {
        transfer_header(&a.t, "Range: %s", a.range);
        a.std[AZ_RANGE] = a.range;
    }
    if (etag) {
        snprintf(a.if_match, sizeof(a.if_match), "\"%s\"", etag);
        transfer_header(&a.t, "If-Match: %s", a.if_match);
        a.std[AZ_IF_MATCH] = a.if_match;
    }
    a.t.write = write;
    a.t.write_ctx = ctx;
    int rc = run(c, &a, err);
    if (rc == FERRY_OK && a.t.status != (partial ? 206 : 200))
        rc = a.t.status == 416 ? err_set(err, ERR_RANGE, "azure: the range starts past the end")
                               : transfer_fail(&a.t, "azure", "download", err);
    call_cleanup(&a);
    return rc;
}

static int list_page(xmlNodePtr root, cloud_list_fn fn, void *ctx, char **next)
{
    static const struct transfer_listing names = {
        "Blob", "Properties", "Name", "Content-Length", "Last-Modified", "Etag", false};
    if (transfer_xml_objects(transfer_xml_child(root, "Blobs"), &names, fn, ctx) != FERRY_OK)
        return FERRY_ERR;
    char *marker = transfer_xml_text(root, "NextMarker");
    if (marker && *marker)
        *next = marker;
    else
        free(marker);
    return FERRY_OK;
}

static int azure_list(struct cloud *c, const char *prefix, cloud_list_fn fn, void *ctx,
                      struct err *err)
{
    char *marker = NULL, *asked = NULL; /* the next page's marker, the one just asked with */
    int rc = FERRY_OK;
    do {
        struct call a;
        char *q_marker = xasprintf("marker=%s", marker ? marker : "");
        char *q_prefix = xasprintf("prefix=%s", prefix ? prefix : "");
        const char *q[] = {"restype=container", "comp=list", q_prefix, q_marker};
        start(c, &a, "GET", NULL, q, marker ? 4 : 3);
        free(asked);
        asked = marker;
        marker = NULL;
        rc = run(c, &a, err);
        bool missing = rc == FERRY_OK && a.t.status == 404; /* no container: nothing stored */
        if (rc == FERRY_OK && a.t.status != 200 && !missing)
            rc = transfer_fail(&a.t, "azure", "listing", err);
        xmlDocPtr doc = rc == FERRY_OK && !missing ? transfer_xml(&a.t) : NULL;
        if (rc == FERRY_OK && !missing && !doc)
            rc = err_set(err, ERR_CLOUD, "azure: the listing is not XML");
        if (doc && list_page(xmlDocGetRootElement(doc), fn, ctx, &marker) != FERRY_OK)
            rc = err_set(err, ERR_INTERNAL, "the listing was cut short");
        if (rc == FERRY_OK && marker && asked && !strcmp(marker, asked)) /* round in circles */
            rc = err_set(err, ERR_CLOUD, "azure: the listing gives the same marker again");
        xmlFreeDoc(doc);
        free(q_marker);
        free(q_prefix);
        call_cleanup(&a);
    } while (rc == FERRY_OK && marker);
    free(marker);
    free(asked);
    return rc;
}

static int azure_del(struct cloud *c, const char *key, struct err *err)
{
    struct call a;
    start(c, &a, "DELETE", key, NULL, 0);
    int rc = run(c, &a, err);
    if (rc == FERRY_OK && a.t.status != 202 && a.t.status != 404)
        rc = transfer_fail(&a.t, "azure", "delete", err);
    call_cleanup(&a);
    return rc;
}

static int azure_presign(struct cloud *c, const char *key, int64_t expires_at, char **url,
                         struct err *err)
{
    struct azure *z = c->impl;
    char expiry[32];
    time_iso8601(expires_at * 1000, 0, expiry);
    char *sig = sign_azure_sas(z->key, z->account, c->s.azure_container, key, expiry);
    if (!sig)
        return err_set(err, ERR_CLOUD, "azure: the connection string's AccountKey is not base64");
    char *enc = sign_uri_encode(key, true), *se = sign_uri_encode(expiry, false);
    char *sig_enc = sign_uri_encode(sig, false);
    *url = xasprintf("%s/%s/%s?sv=2020-12-06&sr=b&sp=r&se=%s&sig=%s", z->base, c->s.azure_container,
                     enc, se, sig_enc);
    free(sig);
    free(enc);
    free(se);
    free(sig_enc);
    return FERRY_OK;
}

static void azure_close(struct cloud *c)
{
    struct azure *z = c->impl;
    free(z->account);
    if (z->key)
        OPENSSL_cleanse(z->key, strlen(z->key));
    free(z->key);
    free(z->base);
    free(z->prefix);
    free(z);
}

static const struct cloud_ops ops = {azure_put, azure_head,    azure_get,  azure_list,
                                     azure_del, azure_presign, azure_close};

/* The value of name in a connection string ("A=1;B=2"), or NULL. Caller frees. */
static char *conn_value(const char *conn, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = conn; p && *p; p = strchr(p, ';'), p = p ? p + 1 : NULL) {
        while (*p == ' ')
            p++;
        if (!strncasecmp(p, name, n) && p[n] == '=') {
            const char *end = strchr(p + n + 1, ';');
            return end ? xstrndup(p + n + 1, (size_t)(end - p - n - 1)) : xstrdup(p + n + 1);
        }
    }
    return NULL;
}

/* Reads the connection string: AccountName, AccountKey and BlobEndpoint (or the endpoint
 * Azure derives from DefaultEndpointsProtocol and EndpointSuffix), or
 * UseDevelopmentStorage=true for the emulator. */
static int parse_connection(struct azure *z, const char *conn)
{
    char *dev = conn_value(conn, "UseDevelopmentStorage");
    bool use_dev = dev && !strcasecmp(dev, "true");
    free(dev);
    z->account = use_dev ? xstrdup(DEV_ACCOUNT) : conn_value(conn, "AccountName");
    z->key = use_dev ? xstrdup(DEV_KEY) : conn_value(conn, "AccountKey");
    z->base =
        use_dev ? xstrdup("http://127.0.0.1:10000/" DEV_ACCOUNT) : conn_value(conn, "BlobEndpoint");
    if (!z->account || !z->key)
        return FERRY_ERR;
    if (!z->base) {
        char *proto = conn_value(conn, "DefaultEndpointsProtocol");
        char *suffix = conn_value(conn, "EndpointSuffix");
        z->base = xasprintf("%s://%s.blob.%s", proto ? proto : "https", z->account,
                            suffix ? suffix : "core.windows.net");
        free(proto);
        free(suffix);
    }
    size_t len = strlen(z->base);
    while (len && z->base[len - 1] == '/')
        z->base[--len] = '\0';
    const char *scheme_end = strstr(z->base, "://");
    const char *path = scheme_end ? strchr(scheme_end + 3, '/') : NULL;
    z->prefix = xstrdup(path ? path : "");
    return FERRY_OK;
}

int azure_open(struct cloud *c, struct err *err)
{
    if (!c->s.azure_connection_string || !c->s.azure_container)
        return err_set(err, ERR_CLOUD,
                       "azure is not configured (azure-connection-string and azure-container)");
    struct azure *z = xcalloc(1, sizeof(*z));
    c->impl = z;
    c->ops = &ops;
    if (parse_connection(z, c->s.azure_connection_string) != FERRY_OK) {
        azure_close(c);
        c->impl = NULL;
        return err_set(err, ERR_CLOUD,
                       "azure: the connection string needs AccountName and AccountKey");
    }
    return FERRY_OK;
}
