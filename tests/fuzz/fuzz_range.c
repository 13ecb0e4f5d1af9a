/* fuzz_range.c - Range and If-None-Match parsing (src/http/range.c). Input: the Range
 * header, a newline, an If-None-Match list. A served range must lie inside the file. */
#include "fuzz.h"
#include "http/range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t sizes[] = {0, 1, 100, 1u << 20, UINT64_MAX / 2, UINT64_MAX};
    char *range = fuzz_string(data, size);
    char *etags = fuzz_split(range);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t start = 0, len = 0;
        if (http_parse_range(range, sizes[i], &start, &len) == RANGE_SERVE &&
            (len == 0 || start >= sizes[i] || len > sizes[i] - start))
            abort(); /* a range outside the representation */
    }
    http_etag_listed(etags, "\"abc\"");
    http_etag_listed(etags, "W/\"abc\"");
    free(range);
    return 0;
}
