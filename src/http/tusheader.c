/* tusheader.c - see tusheader.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "http/tusheader.h"
#include "util/base64.h"

int64_t tusheader_int(const char *value)
{
    char *end;
    if (!value || *value < '0' || *value > '9')
        return -1;
    errno = 0;
    long long n = strtoll(value, &end, 10);
    return errno || *end ? -1 : n;
}

int tusheader_metadata(const char *meta, size_t max_value, char **path, char **filename,
                       const char **why)
{
    unsigned char *value = xmalloc(max_value + 1);
    const char *p = meta;
    int rc = -1;
    *path = *filename = NULL;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        const char *space = memchr(p, ' ', len);
        size_t key_len = space ? (size_t)(space - p) : len;
        const char *b64 = space ? space + 1 : p + len;
        size_t b64_len = space ? len - key_len - 1 : 0;
        int n = (int)base64_decode(b64, b64_len, value, max_value);
        if (key_len == 0 || n < 0) {
            *why = "Upload-Metadata must be 'key base64value' pairs";
            goto out;
        }
        if (memchr(value, '\0', (size_t)n)) {
            *why = "Upload-Metadata: a value contains a NUL byte";
            goto out;
        }
        if (key_len == 4 && !strncmp(p, "path", 4) && !*path)
            *path = xstrndup((char *)value, (size_t)n);
        else if (key_len == 8 && !strncmp(p, "filename", 8) && !*filename)
            *filename = xstrndup((char *)value, (size_t)n);
        p = end ? end + 1 : NULL;
    }
    rc = 0;
out:
    if (rc != 0) {
        free(*path);
        free(*filename);
        *path = *filename = NULL;
    }
    free(value);
    return rc;
}

int tusheader_checksum(const char *header, const EVP_MD **md, unsigned char *digest, size_t cap,
                       int *len, const char **why)
{
    const char *space = strchr(header, ' ');
    *md = NULL;
    if (space && space - header == 4 && !strncmp(header, "sha1", 4))
        *md = EVP_sha1();
    else if (space && space - header == 6 && !strncmp(header, "sha256", 6))
        *md = EVP_sha256();
    if (!*md) {
        *why = "Upload-Checksum: the algorithm must be sha1 or sha256";
        return -1;
    }
    *len = (int)base64_decode(space + 1, strlen(space + 1), digest, cap);
    if (*len != EVP_MD_get_size(*md)) {
        *why = "Upload-Checksum: the value is not a base64 digest";
        return -1;
    }
    return 0;
}
