/* fuzz_merge.c - the merge API's texts (src/merge/merge.c, util/utf8.c). Input: base, a
 * NUL, source, a NUL, target; the first byte also picks the favor. utf8_valid must
 * accept exactly what jansson accepts (the merge's JSON strings are made unchecked), and
 * the hand-escaped response must parse back to the merge's own bytes. */
#include <jansson.h>

#include "fuzz.h"
#include "merge/merge.h"
#include "util/utf8.h"

/* The next side: up to the next NUL (or the end). */
static struct merge_text side(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nul = memchr(*p, 0, (size_t)(end - *p));
    struct merge_text t = {(const char *)*p, (size_t)((nul ? nul : end) - *p)};
    *p = nul ? nul + 1 : end;
    return t;
}

static void same_as_jansson(const struct merge_text *t)
{
    json_t *s = json_stringn(t->data, t->len);
    if (utf8_valid(t->data, t->len) != (s != NULL))
        abort(); /* an invalid text would reach the response unchecked */
    json_decref(s);
}

/* The dumped response parses, and its mergedContent is the merge's text, byte for byte. */
static void check_dump(const struct merge_result *r, enum merge_favor favor)
{
    size_t len = 0;
    char *text = merge_result_dump(r, favor, &len);
    json_t *j = json_loadb(text, len, 0, NULL), *merged = json_object_get(j, "mergedContent");
    if (!j || strlen(text) != len || json_string_length(merged) != r->merged_len ||
        memcmp(json_string_value(merged), r->merged, r->merged_len) != 0 ||
        json_array_size(json_object_get(j, "conflicts")) != r->n_conflicts)
        abort();
    json_decref(j);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    enum merge_favor favor = size ? (enum merge_favor)(data[0] % 4) : MERGE_FAVOR_NONE;
    struct merge_text t[3];
    struct merge_result r = {0};
    struct err err = {0};
    bool ok = true;
    merge_init();
    for (int i = 0; i < 3; i++) {
        t[i] = side(&p, end);
        same_as_jansson(&t[i]);
        ok = ok && merge_check_text(&t[i], "text", &err) == FERRY_OK;
    }
    if (ok && merge_texts(&t[0], &t[1], &t[2], favor, &r, &err) == FERRY_OK) {
        check_dump(&r, favor);
        merge_result_cleanup(&r);
    }
    return 0;
}
