/* scope.h - the credential of a request as the sync rules see it (sync/rules.h): admin or
 * not, its user id, and its claims, handed to the domain as plain strings. */
#ifndef FERRY_API_SCOPE_H
#define FERRY_API_SCOPE_H

#include "http/http.h"
#include "sync/rules.h"

/* Fills who from req's credential; who points into req, so it lives as long as req. */
void scope_caller(const struct request *req, struct rules_caller *who);

#endif
