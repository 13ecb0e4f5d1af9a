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

/* Notes the replica file's data_version: fc_wait_changes ends on any commit by another
 * connection after this (taken before a sync, so a write during it is not missed). */
void fc_snapshot_local(ferry_replica *r);

/* Waits (one long poll, no retries) until the feed has changes after cursor, poll_s
 * passes, another connection commits to the replica file (since fc_snapshot_local), or
 * a stop is asked for. */
void fc_wait_changes(ferry_replica *r, int64_t cursor);

/* Resets r's libcurl handle for a request to url: the token added to headers (returned,
 * for the caller to free after the request), TLS trust, connect timeout, HTTP(S) only. */
struct curl_slist *fc_curl_base(ferry_replica *r, const char *url, struct curl_slist *headers);

/* Whether answer is a whole page of the feed: changes, cursor, hasMore. */
bool fc_is_page(json_t *answer);

/* Whether s is a SHA-256 in hex (64 lower-case hex digits, as the server writes it). The server's
 * hashes name partial files and go into headers: anything else (a path, a line break) is refused.
 */
bool fc_is_sha256(const char *s);

/* The message of an error answer in any of ferry's error formats, for fc_fail. */
const char *fc_answer_message(json_t *answer);

#endif
