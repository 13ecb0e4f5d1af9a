/* transport.h - libferry's requests to the server: JSON over libcurl on the replica's one
 * connection, retried with exponential backoff and jitter. */
#ifndef FERRY_CLIENT_TRANSPORT_H
#define FERRY_CLIENT_TRANSPORT_H

#include <jansson.h>

#include "client/replica.h"

/* Sends method path (under the server's URL) with body (NULL: none) and waits for the
 * final answer: network errors, 429 and 5xx are retried up to max_attempts times
 * (honouring Retry-After). FERRY_CLIENT_OK with *status and *answer (the parsed body,
 * NULL when empty or not JSON; the caller releases it) for any other answer; 401 and 403
 * are FERRY_CLIENT_EAUTH. */
int fc_http(ferry_replica *r, const char *method, const char *path, json_t *body, long *status,
            json_t **answer);

/* The message of an error answer in any of ferry's error formats, for fc_fail. */
const char *fc_answer_message(json_t *answer);

#endif
