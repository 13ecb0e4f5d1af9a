/* transfer.c - see transfer.h. One curl easy handle per call: the providers make few,
 * long calls (a part, a page of a listing), so a handle's reuse would save little. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libxml/parser.h>

#include "cloud/transfer.h"
#include "util/timeutil.h"

#define MAX_ERROR_BODY (1024 * 1024) /* an error document or a listing page */
#define MAX_RESP_HEADERS 200

void transfer_init(struct transfer *t, const char *method, char *url, long timeout_s)
{
    memset(t, 0, sizeof(*t));
    t->method = method;
    t->url = url;
    t->fd = -1;
    t->timeout_s = timeout_s;
    t->resp_headers = json_object();
    buf_init(&t->body);
}

void transfer_cleanup(struct transfer *t)
{
    free(t->url);
    curl_slist_free_all(t->headers);
    buf_cleanup(&t->body);
    json_decref(t->resp_headers);
    memset(t, 0, sizeof(*t));
    t->fd = -1;
}

void transfer_header(struct transfer *t, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    t->headers = curl_slist_append(t->headers, line);
}

static size_t on_read(char *dst, size_t size, size_t n, void *ctx)
{
    struct transfer *t = ctx;
    size_t want = size * n;
    if (want > t->len - t->sent)
        want = (size_t)(t->len - t->sent);
    if (!want)
        return 0;
    if (t->mem) {
        memcpy(dst, t->mem + t->sent, want);
    } else {
        ssize_t got = pread(t->fd, dst, want, (off_t)(t->offset + t->sent));
        if (got <= 0)
            return CURL_READFUNC_ABORT; /* the file shrank or failed under us */
        want = (size_t)got;
        if (t->moved)
            t->moved(t->moved_ctx, want);
    }
    t->sent += want;
    t->bytes += want;
    return want;
}

static size_t on_write(char *data, size_t size, size_t n, void *ctx)
{
    struct transfer *t = ctx;
    size_t len = size * n;
    if (t->status >= 200 && t->status < 300 && t->write) {
        t->bytes += len;
        if (t->write(t->write_ctx, data, len) != FERRY_OK) {
            t->write_failed = true;
            return 0;
        }
        return len;
    }
    if (t->body.len + len <= MAX_ERROR_BODY)
        buf_append(&t->body, data, len);
    return len;
}

/* Keeps the headers of the last answer (a 100 Continue's are replaced). */
static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
    struct transfer *t = ctx;
    size_t len = size * n;
    if (len > 5 && !strncmp(line, "HTTP/", 5)) {
        json_object_clear(t->resp_headers);
        const char *sp = memchr(line, ' ', len);
        t->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return len;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon || json_object_size(t->resp_headers) >= MAX_RESP_HEADERS)
        return len;
    char *name = xstrndup(line, (size_t)(colon - line));
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && isspace((unsigned char)end[-1]))
        end--;
    json_object_set_new(t->resp_headers, name, json_stringn(v, (size_t)(end - v)));
    free(name);
    return len;
}

/* curl calls this about once a second even while nothing moves, so a stop is seen soon. */
static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    const struct transfer *t = ctx;
    return t->stop && atomic_load(t->stop);
}

static void set_body(CURL *curl, struct transfer *t)
{
    if (!t->mem && t->fd < 0) {
        if (!strcmp(t->method, "HEAD"))
            curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
        else if (strcmp(t->method, "GET") != 0)
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, t->method);
        return;
    }
    if (t->mem)
        t->len = t->mem_len;
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, t);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)t->len);
    if (strcmp(t->method, "PUT") != 0)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, t->method);
}

int transfer_run(struct transfer *t, const char *provider, struct err *err)
{
    char curl_err[CURL_ERROR_SIZE] = "";
    CURL *curl = curl_easy_init();
    if (!curl)
        return err_set(err, ERR_CLOUD, "%s: cannot start an HTTP client", provider);
    curl_easy_setopt(curl, CURLOPT_URL, t->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, t->timeout_s);
    /* No total timeout: a large part may take long; a stalled one is cut off. */
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, t->timeout_s);
    if (t->sigv4) {
        curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, t->sigv4);
        curl_easy_setopt(curl, CURLOPT_USERPWD, t->userpwd);
    }
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    set_body(curl, t);
    CURLcode res = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &t->status);
    curl_easy_cleanup(curl);
    if (res == CURLE_OK)
        return FERRY_OK;
    if (res == CURLE_ABORTED_BY_CALLBACK)
        return err_set(err, ERR_UNAVAILABLE,
                       "%s: interrupted, the server is stopping; a retry continues", provider);
    if (t->write_failed)
        return err_set(err, ERR_INTERNAL, "%s: the downloaded bytes could not be written",
                       provider);
    /* curl's message names the host and the failure, never the request's credentials. */
    return err_set(err, ERR_CLOUD, "%s is unavailable: %s", provider,
                   curl_err[0] ? curl_err : curl_easy_strerror(res));
}

int transfer_fail(const struct transfer *t, const char *provider, const char *what, struct err *err)
{
    char *code = NULL, *message = NULL;
    xmlDocPtr doc = transfer_xml(t);
    if (doc) {
        xmlNodePtr root = xmlDocGetRootElement(doc);
        code = transfer_xml_text(root, "Code");
        message = transfer_xml_text(root, "Message");
        xmlFreeDoc(doc);
    }
    enum err_code kind = t->status == 404   ? ERR_NOT_FOUND
                         : t->status == 412 ? ERR_PRECONDITION
                                            : ERR_CLOUD;
    if (message) { /* the first line: Azure appends request ids and times */
        char *nl = strchr(message, '\n');
        if (nl)
            *nl = '\0';
    }
    err_set(err, kind, "%s: %s failed (HTTP %ld%s%s%s%s)", provider, what, t->status,
            code ? ", " : "", code ? code : "", message ? ": " : "", message ? message : "");
    free(code);
    free(message);
    return FERRY_ERR;
}

const char *transfer_resp_header(const struct transfer *t, const char *name)
{
    return json_string_value(json_object_get(t->resp_headers, name));
}

json_t *transfer_resp_metadata(const struct transfer *t, const char *prefix)
{
    json_t *meta = json_object(), *v;
    const char *name;
    size_t n = strlen(prefix);
    json_object_foreach(t->resp_headers, name, v)
    {
        if (!strncmp(name, prefix, n) && name[n])
            json_object_set(meta, name + n, v);
    }
    return meta;
}

xmlDocPtr transfer_xml(const struct transfer *t)
{
    if (!t->body.len)
        return NULL;
    return xmlReadMemory(t->body.data, (int)t->body.len, NULL, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

xmlNodePtr transfer_xml_child(xmlNodePtr parent, const char *name)
{
    if (!parent)
        return NULL;
    for (xmlNodePtr n = parent->children; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name))
            return n;
    return NULL;
}

char *transfer_xml_text(xmlNodePtr parent, const char *name)
{
    xmlNodePtr n = transfer_xml_child(parent, name);
    if (!n)
        return NULL;
    xmlChar *text = xmlNodeGetContent(n);
    char *out = xstrdup(text ? (const char *)text : "");
    xmlFree(text);
    return out;
}

static int one_object(xmlNodePtr n, const struct transfer_listing *l, cloud_list_fn fn, void *ctx)
{
    xmlNodePtr props = l->props ? transfer_xml_child(n, l->props) : n;
    char etag[130], *raw_etag = transfer_xml_text(props, l->etag);
    char *size = transfer_xml_text(props, l->size), *date = transfer_xml_text(props, l->date);
    struct cloud_object o = {0};
    transfer_etag(raw_etag, etag);
    o.key = transfer_xml_text(n, l->key);
    o.size = size ? strtoull(size, NULL, 10) : 0;
    if (l->iso_date && date)
        time_parse_iso8601(date, &o.modified_ms);
    else
        o.modified_ms = transfer_http_date(date);
    o.etag = xstrdup(etag);
    int rc = o.key ? fn(ctx, &o) : FERRY_OK;
    free(raw_etag);
    free(size);
    free(date);
    cloud_object_cleanup(&o);
    return rc;
}

int transfer_xml_objects(xmlNodePtr parent, const struct transfer_listing *l, cloud_list_fn fn,
                         void *ctx)
{
    for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, l->object) &&
            one_object(n, l, fn, ctx) != FERRY_OK)
            return FERRY_ERR;
    return FERRY_OK;
}

void transfer_etag(const char *value, char out[130])
{
    out[0] = '\0';
    if (!value)
        return;
    size_t len = strlen(value);
    if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
        value++;
        len -= 2;
    }
    snprintf(out, 130, "%.*s", (int)(len < 129 ? len : 129), value);
}

int64_t transfer_http_date(const char *value)
{
    time_t t = value ? curl_getdate(value, NULL) : -1;
    return t < 0 ? 0 : (int64_t)t * 1000;
}
