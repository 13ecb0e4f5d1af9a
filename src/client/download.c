/* download.c - ferry_download(): a file entry's content to a local file, resumed with a
 * Range request from what an earlier, interrupted download left in FILE.part (when the
 * server still has the same content: If-Range on its ETag), and verified against the
 * entry's SHA-256 before it is renamed into place. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/replica.h"
#include "client/transport.h"
#include "ferry.h"
#include "util/crypto.h"

struct fetch {
    FILE *out;
    ferry_progress_fn fn;
    void *ctx;
    int64_t base, total; /* bytes already in the .part file; the whole size */
    int64_t got;         /* bytes of this answer's body */
    ferry_replica *r;
};

char *fc_escape_path(CURL *c, const char *path)
{
    char *out = xstrdup(""), *copy = xstrdup(path), *save = NULL;
    for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        char *e = curl_easy_escape(c, seg, 0), *next = xasprintf("%s%s%s", out, *out ? "/" : "", e);
        curl_free(e);
        free(out);
        out = next;
    }
    free(copy);
    return out;
}

/* An answer longer than the whole file (a hostile or broken server) is cut off at once:
 * its bytes could only fail the SHA-256 check, after filling the disk. */
static size_t on_bytes(char *data, size_t size, size_t n, void *ctx)
{
    struct fetch *f = ctx;
    f->got += (int64_t)(size * n);
    if (f->got > f->total)
        return 0;
    return fwrite(data, size, n, f->out) * size;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ut,
                       curl_off_t un)
{
    struct fetch *f = ctx;
    (void)dltotal, (void)ut, (void)un;
    if (f->fn && f->fn(f->ctx, f->base + (int64_t)dlnow, f->total))
        f->r->stop = 1;
    return f->r->stop;
}

/* The entry of path: its size and sha256. */
static int entry(ferry_replica *r, const char *escaped, int64_t *size, char sha[65])
{
    char *api = xasprintf("/api/v1/files/%s", escaped);
    json_t *answer = NULL;
    long status = 0;
    int rc = fc_http(r, "GET", api, NULL, &status, &answer);
    const char *hex = json_string_value(json_object_get(answer, "sha256"));
    if (rc == FERRY_CLIENT_OK && status != 200)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "HTTP %ld: %s", status, fc_answer_message(answer));
    else if (rc == FERRY_CLIENT_OK && !fc_is_sha256(hex))
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "the file entry has no sha256");
    if (rc == FERRY_CLIENT_OK) {
        *size = json_integer_value(json_object_get(answer, "size"));
        memcpy(sha, hex, 65);
    }
    json_decref(answer);
    free(api);
    return rc;
}

static int file_sha256(const char *file, char out[65])
{
    FILE *in = fopen(file, "rb");
    char buf[65536];
    size_t n;
    if (!in)
        return -1;
    EVP_MD_CTX *md = crypto_digest_new(EVP_sha256());
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        EVP_DigestUpdate(md, buf, n);
    crypto_sha256_final_hex(md, out);
    EVP_MD_CTX_free(md);
    fclose(in);
    return 0;
}

/* One ranged GET of the rest of the content into f->out (from f->base). */
static int fetch_rest(ferry_replica *r, const char *escaped, const char *sha, struct fetch *f,
                      long *status)
{
    char *url = xasprintf("%s/api/v1/sync/download/%s", r->url, escaped);
    char *if_range = xasprintf("If-Range: \"%s\"", sha), range[64];
    struct curl_slist *h = fc_curl_base(r, url, curl_slist_append(NULL, if_range));
    snprintf(range, sizeof(range), "%lld-", (long long)f->base);
    CURL *c = r->curl;
    /* no overall timeout for a large file: only a stalled one gives up */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->timeout_ms / 1000 + 1);
    if (f->base)
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, f);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    free(if_range);
    free(url);
    if (cc == CURLE_WRITE_ERROR && f->got > f->total)
        return fc_fail(r, FERRY_CLIENT_ESERVER,
                       "download: the server sent more than the file's "
                       "%lld bytes",
                       (long long)f->total);
    if (cc != CURLE_OK)
        return fc_fail(r, FERRY_CLIENT_ENETWORK, "download: %s (rerun to resume)",
                       curl_easy_strerror(cc));
    return FERRY_CLIENT_OK;
}

/* Fetches into part (resuming it) and checks its SHA-256. */
static int fetch_checked(ferry_replica *r, const char *escaped, const char *part, const char *sha,
                         struct fetch *f)
{
    struct stat st;
    long status = 0;
    /* The part's name is the content's SHA-256, which anyone can know: what is planted
     * there that is no regular file (a link out of the folder) is removed, not written
     * through, and the part is opened without following a link. */
    if (lstat(part, &st) == 0 && !S_ISREG(st.st_mode))
        unlink(part);
    f->base =
        lstat(part, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < f->total ? st.st_size : 0;
    int fd = open(
        part, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (f->base ? O_APPEND : O_TRUNC), 0644);
    f->out = fd >= 0 ? fdopen(fd, f->base ? "ab" : "wb") : NULL;
    if (!f->out) {
        if (fd >= 0)
            close(fd);
        return fc_fail(r, FERRY_CLIENT_ELOCAL, "cannot write %s: %s", part, strerror(errno));
    }
    int rc = f->base == f->total ? FERRY_CLIENT_OK : fetch_rest(r, escaped, sha, f, &status);
    if (rc == FERRY_CLIENT_OK && status == 200 && f->base) {
        /* the content changed since the .part was begun: the whole file came, start over */
        fclose(f->out);
        f->out = NULL;
        return fc_fail(r, FERRY_CLIENT_ESERVER, "the file changed during the download; run again");
    }
    if (rc == FERRY_CLIENT_OK && status != 200 && status != 206)
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "download: HTTP %ld", status);
    if (fclose(f->out) != 0 && rc == FERRY_CLIENT_OK)
        rc = fc_fail(r, FERRY_CLIENT_ELOCAL, "cannot write %s: %s", part, strerror(errno));
    f->out = NULL;
    if (f->got > f->total)
        unlink(part); /* not the file's bytes: never resumed from */
    char got[65];
    if (rc == FERRY_CLIENT_OK && (file_sha256(part, got) != 0 || strcmp(got, sha) != 0)) {
        unlink(part); /* wrong bytes are never resumed from */
        rc = fc_fail(r, FERRY_CLIENT_ESERVER, "download: SHA-256 mismatch (got %s, want %s)", got,
                     sha);
    }
    return rc;
}

int fc_fetch_file(ferry_replica *r, const char *path, const char *part, const char *sha,
                  int64_t size, ferry_progress_fn fn, void *ctx)
{
    char *escaped = fc_escape_path(r->curl, path);
    struct fetch f = {.fn = fn, .ctx = ctx, .r = r, .total = size};
    int rc = fetch_checked(r, escaped, part, sha, &f);
    free(escaped);
    return rc;
}

int ferry_download(const struct ferry_client_options *opts, const char *path, const char *file,
                   ferry_progress_fn fn, void *ctx, char *errbuf, unsigned errlen)
{
    int rc = FERRY_CLIENT_EINVAL;
    ferry_replica *r = fc_bare_open(opts, &rc);
    char sha[65] = "", *escaped = NULL, *part = NULL;
    struct fetch f = {.fn = fn, .ctx = ctx, .r = r};
    if (rc == FERRY_CLIENT_OK && (!path || !*path || !file || !*file))
        rc = fc_fail(r, FERRY_CLIENT_EINVAL, "a remote path and a local file are required");
    if (rc == FERRY_CLIENT_OK) {
        escaped = fc_escape_path(r->curl, path);
        part = xasprintf("%s.part", file);
        rc = entry(r, escaped, &f.total, sha);
    }
    if (rc == FERRY_CLIENT_OK)
        rc = fetch_checked(r, escaped, part, sha, &f);
    if (rc == FERRY_CLIENT_OK && rename(part, file) != 0)
        rc = fc_fail(r, FERRY_CLIENT_ELOCAL, "cannot write %s: %s", file, strerror(errno));
    if (rc != FERRY_CLIENT_OK && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", r ? r->error : "out of memory");
    free(escaped);
    free(part);
    ferry_replica_close(r);
    return rc;
}
