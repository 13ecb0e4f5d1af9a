/* fuzz_tus.c - tus request headers (src/http/tusheader.c). Input: Upload-Offset, a
 * newline, Upload-Metadata, a newline, Upload-Checksum. */
#include "fuzz.h"
#include "http/tusheader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *offset = fuzz_string(data, size);
    char *meta = fuzz_split(offset);
    char *checksum = fuzz_split(meta);
    char *path = NULL, *name = NULL;
    const char *why = NULL;
    const EVP_MD *md = NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    int len = 0;
    if (tusheader_int(offset) < -1)
        abort();
    if (tusheader_metadata(meta, 64, &path, &name, &why) != 0 && (!why || path || name))
        abort();
    if ((path && strlen(path) > 64) || (name && strlen(name) > 64))
        abort();
    if (tusheader_checksum(checksum, &md, digest, sizeof(digest), &len, &why) == 0 &&
        len != EVP_MD_get_size(md))
        abort();
    free(path);
    free(name);
    free(offset);
    return 0;
}
