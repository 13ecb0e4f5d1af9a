/* fuzz_path.c - request paths (src/util/path.c). A cleaned relative path has no empty,
 * "." or ".." segment, stays under a root it is joined to, and cleaning it again
 * changes nothing. */
#include "fuzz.h"
#include "util/path.h"

static bool segments_plain(const char *clean)
{
    for (const char *p = clean;;) {
        size_t len = strcspn(p, "/");
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!p[len])
            return true;
        p += len + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *rel = fuzz_string(data, size);
    char *clean = NULL, *again = NULL;
    struct err err = {0};
    if (path_clean_relative(rel, &clean, &err) == FERRY_OK) {
        char *joined = xasprintf("/srv/root/%s", clean);
        if (!path_within("/srv/root", joined) || !segments_plain(clean) ||
            path_clean_relative(clean, &again, &err) != FERRY_OK || strcmp(clean, again) != 0)
            abort();
        free(joined);
    }
    path_within("/srv/root", rel);
    path_within(rel, "/srv/root/x");
    free(again);
    free(clean);
    free(rel);
    return 0;
}
