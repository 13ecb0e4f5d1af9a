/* fuzz_tokens.c - credentials and cursors as they arrive: bearer tokens
 * (src/auth/tokens.c), HS256 JWTs (src/http/auth.c), change-feed cursors
 * (src/sync/feed.c) and site URLs (src/sites/sites.c). Input: one line each. */
#include "auth/tokens.h"
#include "fuzz.h"
#include "http/auth.h"
#include "sites/sites.h"
#include "sync/feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *token = fuzz_string(data, size);
    char *jwt = fuzz_split(token);
    char *cursor = fuzz_split(jwt);
    char *url = fuzz_split(cursor);
    struct err err = {0};
    struct credential cred;
    int64_t seq = -1;
    tokens_well_formed(token);
    tokens_parse_role(token);
    memset(&cred, 0, sizeof(cred));
    if (auth_verify_jwt(jwt, "fuzz-secret", 1700000000, &cred, &err) == FERRY_OK &&
        cred.role != ROLE_USER)
        abort();
    if (feed_parse_cursor(cursor, &seq, &err) == FERRY_OK && seq < 0)
        abort();
    sites_valid_url(url);
    free(token);
    return 0;
}
