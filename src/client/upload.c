/* upload.c - ferry_upload(): a local file to a file entry with tus 1.0.0 (the server's
 * /tus/), in checksummed PATCHes of CHUNK bytes. The upload's URL is kept in a state
 * file with the file's size, time and SHA-256, so a later call (after Ctrl-C, a lost
 * connection, a new process) asks the server for the offset and goes on from there. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"
#include "util/base64.h"
#include "util/crypto.h"

#define CHUNK (1024 * 1024)

struct tus {
    ferry_replica *r;
    char *url; /* the upload's URL */
    int64_t size, offset;
    char sha[65];
    long status;
    char location[1024];
    int64_t reply_offset;
};

static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
    struct tus *t = ctx;
    size_t len = size * n;
    if (len > 9 && !strncasecmp(line, "Location:", 9)) {
        char *v = line + 9;
        while (*v == ' ')
            v++;
        snprintf(t->location, sizeof(t->location), "%.*s", (int)strcspn(v, "\r\n"), v);
    } else if (len > 14 && !strncasecmp(line, "Upload-Offset:", 14)) {
        t->reply_offset = strtoll(line + 14, NULL, 10);
    }
    return len;
}

static size_t discard(char *data, size_t size, size_t n, void *ctx)
{
    (void)data, (void)ctx;
    return size * n;
}

/* One tus request; extra headers, an optional body. */
static int tus_call(struct tus *t, const char *method, const char *url, struct curl_slist *h,
                    const void *body, size_t len)
{
    ferry_replica *r = t->r;
    CURL *c = r->curl;
    h = fc_curl_base(r, url, curl_slist_append(h, "Tus-Resumable: 1.0.0"));
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    if (!body && strcmp(method, "POST"))
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
    t->location[0] = '\0';
    t->reply_offset = -1;
    CURLcode cc = curl_easy_perform(c);
    t->status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t->status);
    curl_slist_free_all(h);
    if (cc != CURLE_OK)
        return fc_fail(r, FERRY_CLIENT_ENETWORK, "upload: %s %s: %s (run again to resume)", method,
                       url, curl_easy_strerror(cc));
    return FERRY_CLIENT_OK;
}

static void save_state(struct tus *t, const char *state, const char *path, time_t mtime)
{
    json_t *s = json_pack("{s:s, s:s, s:I, s:I, s:s}", "url", t->url, "path", path, "size",
                          (json_int_t)t->size, "mtime", (json_int_t)mtime, "sha256", t->sha);
    char *tmp = xasprintf("%s.tmp", state);
    if (json_dump_file(s, tmp, JSON_COMPACT) == 0)
        rename(tmp, state);
    free(tmp);
    json_decref(s);
}

/* The upload an earlier call began for the same file and path, with the server's offset;
 * false when there is none (or the server forgot it). */
static bool resume(struct tus *t, const char *state, const char *path, time_t mtime)
{
    json_t *s = json_load_file(state, 0, NULL);
    const char *url = json_string_value(json_object_get(s, "url"));
    bool same = url && !strcmp(json_string_value(json_object_get(s, "path")) ?: "", path) &&
                json_integer_value(json_object_get(s, "size")) == t->size &&
                json_integer_value(json_object_get(s, "mtime")) == mtime &&
                !strcmp(json_string_value(json_object_get(s, "sha256")) ?: "", t->sha);
    if (same) {
        t->url = xstrdup(url);
        same = tus_call(t, "HEAD", t->url, NULL, NULL, 0) == FERRY_CLIENT_OK && t->status == 200 &&
               t->reply_offset >= 0;
        t->offset = same ? t->reply_offset : 0;
    }
    json_decref(s);
    return same;
}

static int create(struct tus *t, const char *path)
{
    char *b64 = base64_encode(path, strlen(path)),
         *meta = xasprintf("Upload-Metadata: path %s", b64);
    char length[64], *post = xasprintf("%s/tus/", t->r->url);
    snprintf(length, sizeof(length), "Upload-Length: %lld", (long long)t->size);
    struct curl_slist *h = curl_slist_append(NULL, length);
    h = curl_slist_append(h, meta);
    int rc = tus_call(t, "POST", post, h, NULL, 0);
    if (rc == FERRY_CLIENT_OK && (t->status != 201 || !t->location[0]))
        rc = fc_fail(t->r, FERRY_CLIENT_ESERVER, "upload: POST /tus/: HTTP %ld", t->status);
    if (rc == FERRY_CLIENT_OK)
        t->url = strncmp(t->location, "http", 4) ? xasprintf("%s%s", t->r->url, t->location)
                                                 : xstrdup(t->location);
    t->offset = 0;
    free(post);
    free(meta);
    free(b64);
    return rc;
}

/* PATCHes one chunk at t->offset; t->offset moves to the server's answer. */
static int patch(struct tus *t, const unsigned char *data, size_t len)
{
    unsigned char digest[32];
    unsigned int dlen = 0;
    EVP_Digest(data, len, digest, &dlen, EVP_sha256(), NULL);
    char *b64 = base64_encode(digest, dlen), *sum = xasprintf("Upload-Checksum: sha256 %s", b64);
    char off[64];
    snprintf(off, sizeof(off), "Upload-Offset: %lld", (long long)t->offset);
    struct curl_slist *h = curl_slist_append(NULL, off);
    h = curl_slist_append(h, sum);
    h = curl_slist_append(h, "Content-Type: application/offset+octet-stream");
    int rc = tus_call(t, "PATCH", t->url, h, data, len);
    if (rc == FERRY_CLIENT_OK && t->status != 204)
        rc = fc_fail(t->r, FERRY_CLIENT_ESERVER, "upload: PATCH: HTTP %ld", t->status);
    if (rc == FERRY_CLIENT_OK)
        t->offset = t->reply_offset;
    free(sum);
    free(b64);
    return rc;
}

/* After a failed PATCH: the offset the server has (tus: resume from HEAD's answer). */
static int resync(struct tus *t)
{
    int rc = tus_call(t, "HEAD", t->url, NULL, NULL, 0);
    if (rc == FERRY_CLIENT_OK && (t->status != 200 || t->reply_offset < 0))
        rc = fc_fail(t->r, FERRY_CLIENT_ESERVER, "upload: HEAD: HTTP %ld", t->status);
    if (rc == FERRY_CLIENT_OK)
        t->offset = t->reply_offset;
    return rc;
}

static int send_all(struct tus *t, FILE *in, ferry_progress_fn fn, void *ctx)
{
    unsigned char *buf = xmalloc(CHUNK);
    int rc = FERRY_CLIENT_OK, failures = 0;
    while (rc == FERRY_CLIENT_OK && t->offset < t->size) {
        if (fn && fn(ctx, t->offset, t->size)) {
            rc = fc_fail(t->r, FERRY_CLIENT_EINVAL, "upload: stopped (run again to resume)");
            break;
        }
        size_t want = t->size - t->offset < CHUNK ? (size_t)(t->size - t->offset) : CHUNK;
        if (fseeko(in, t->offset, SEEK_SET) != 0 || fread(buf, 1, want, in) != want) {
            rc = fc_fail(t->r, FERRY_CLIENT_ELOCAL, "upload: cannot read the file");
            break;
        }
        if (patch(t, buf, want) == FERRY_CLIENT_OK) {
            failures = 0;
            continue;
        }
        /* a lost connection, a 409 (offset), 423 (busy), 460 (checksum), 5xx: ask again */
        if (++failures >= t->r->max_attempts || t->status == 404 || t->status == 410 ||
            t->status == 413 || t->status == 401 || t->status == 403)
            rc = FERRY_CLIENT_ESERVER;
        else
            usleep(200000u * (unsigned)failures), rc = resync(t);
    }
    if (rc == FERRY_CLIENT_OK && fn)
        fn(ctx, t->offset, t->size);
    free(buf);
    return rc;
}

/* The server's entry for path must have the file's SHA-256. */
static int verify(struct tus *t, const char *path)
{
    char *escaped = fc_escape_path(t->r->curl, path), *api = xasprintf("/api/v1/files/%s", escaped);
    json_t *answer = NULL;
    long status = 0;
    int rc = fc_http(t->r, "GET", api, NULL, &status, &answer);
    const char *sha = json_string_value(json_object_get(answer, "sha256"));
    if (rc == FERRY_CLIENT_OK && (status != 200 || !sha || strcmp(sha, t->sha)))
        rc = fc_fail(t->r, FERRY_CLIENT_ESERVER,
                     "upload: the server's file does not have the"
                     " file's SHA-256 (HTTP %ld)",
                     status);
    json_decref(answer);
    free(api);
    free(escaped);
    return rc;
}

static int file_digest(FILE *in, char out[65])
{
    unsigned char buf[65536];
    size_t n;
    EVP_MD_CTX *md = crypto_digest_new(EVP_sha256());
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        EVP_DigestUpdate(md, buf, n);
    crypto_sha256_final_hex(md, out);
    EVP_MD_CTX_free(md);
    return ferror(in) ? -1 : 0;
}

int ferry_upload(const struct ferry_client_options *opts, const char *file, const char *path,
                 const char *state, ferry_progress_fn fn, void *ctx, char *errbuf, unsigned errlen)
{
    int rc = FERRY_CLIENT_EINVAL;
    struct tus t = {.r = fc_bare_open(opts, &rc)};
    struct stat st;
    FILE *in = NULL;
    if (rc == FERRY_CLIENT_OK && (!file || !path || !*path || !state))
        rc = fc_fail(t.r, FERRY_CLIENT_EINVAL,
                     "a file, a remote path and a state file are required");
    if (rc == FERRY_CLIENT_OK &&
        (!(in = fopen(file, "rb")) || fstat(fileno(in), &st) != 0 || file_digest(in, t.sha) != 0))
        rc = fc_fail(t.r, FERRY_CLIENT_ELOCAL, "cannot read %s: %s", file, strerror(errno));
    if (rc == FERRY_CLIENT_OK) {
        t.size = st.st_size;
        if (!resume(&t, state, path, st.st_mtime) && (rc = create(&t, path)) == FERRY_CLIENT_OK)
            save_state(&t, state, path, st.st_mtime);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = send_all(&t, in, fn, ctx);
    if (rc == FERRY_CLIENT_OK && (rc = verify(&t, path)) == FERRY_CLIENT_OK)
        unlink(state);
    if (rc != FERRY_CLIENT_OK && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", t.r->error);
    if (in)
        fclose(in);
    free(t.url);
    ferry_replica_close(t.r);
    return rc;
}
