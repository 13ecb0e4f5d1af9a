/* cloud.h - EonaCat.Sync's cloud storage surface: the state its requests share (how many
 * transfers run inside requests). */
#ifndef FERRY_API_CLOUD_H
#define FERRY_API_CLOUD_H

/* Transfers run inside requests, each holding a request thread for as long as it takes:
 * at most half the threads (at least one) at once, so the rest stay free for other
 * requests; more get 429. Held by the app as app->cloud from routes_init() on. */
struct apicloud;
struct apicloud *apicloud_new(long long threads);
void apicloud_free(struct apicloud *c);

#endif
