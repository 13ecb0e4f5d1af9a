/* fuzz_tokens.c - credentials and cursors as they arrive: bearer tokens
 * (src/auth/tokens.c), HS256 JWTs (src/http/auth.c), change-feed cursors
 * (src/sync/feed.c), site URLs (src/sites/sites.c, src/util/url.c) and a site's IP
 * allowlist against an address. Input: one line each. */
#include "auth/tokens.h"
#include "config.h"
#include "fuzz.h"
#include "http/auth.h"
#include "sites/sites.h"
#include "sync/feed.h"
#include "util/url.h"

/* The HS256 verifier, made once: it holds no state between calls. */
static struct auth_jwt *verifier(void)
{
    static struct auth_jwt *j;
    if (!j) {
        struct config cfg;
        struct err err = {0};
        memset(&cfg, 0, sizeof(cfg));
        cfg.jwt_secret = "fuzz-secret";
        cfg.jwt_user_claim = "sub";
        if (auth_jwt_open(&cfg, &j, &err) != FERRY_OK)
            abort();
    }
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *token = fuzz_string(data, size);
    char *jwt = fuzz_split(token);
    char *cursor = fuzz_split(jwt);
    char *url = fuzz_split(cursor);
    char *allowlist = fuzz_split(url);
    struct site site = {0};
    char *path = NULL;
    struct err err = {0};
    struct credential cred;
    int64_t seq = -1;
    tokens_well_formed(token);
    enum token_role role = tokens_parse_role(token);
    if (role != TOKEN_ROLE_NONE && strcmp(tokens_role_name(role), token) != 0)
        abort(); /* a role must be named as it was parsed */
    memset(&cred, 0, sizeof(cred));
    if (auth_verify_jwt(verifier(), jwt, 1700000000, &cred, &err) == FERRY_OK &&
        cred.role != ROLE_USER)
        abort();
    if (feed_parse_cursor(cursor, &seq, &err) == FERRY_OK && seq < 0)
        abort();
    sites_valid_url(url);
    if (url_parse_http(url, &path))
        free(url_with_path(url, path));
    free(path);
    site.ip_allowlist = allowlist;
    sites_ip_allowed(&site, token);
    sites_ip_allowed(&site, "127.0.0.1");
    sites_ip_allowed(&site, "2001:db8::1");
    free(token);
    return 0;
}
