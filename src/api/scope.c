/* scope.c - see scope.h. */
#include "api/scope.h"
#include "http/auth.h"

static int claim_of(const void *ctx, const char *name, char *out, size_t n)
{
    return credential_claim(ctx, name, out, n);
}

void scope_caller(const struct request *req, struct rules_caller *who)
{
    who->admin = req->cred.role == ROLE_ADMIN;
    who->user_id = req->cred.user_id;
    who->claim = claim_of;
    who->ctx = &req->cred;
}
