/* ferry/client.h - libferry: a device's local SQLite replica of the tables it syncs with
 * a ferry server.
 *
 * The app reads and writes the replica with plain SQL (any SQLite connection, any
 * thread); triggers that libferry installs record each local insert, update and delete
 * in an outbox. ferry_sync() pushes the outbox in batches, pulls every other change by
 * cursor and applies it in one local transaction per page without recording it again,
 * then acknowledges the cursor.
 *
 * Threads: a ferry_replica is used by one thread at a time (calls on one handle must not
 * overlap); different handles are independent, even on the same file. Between
 * ferry_start() and ferry_stop() the handle belongs to libferry's background thread: the
 * app calls nothing on it but ferry_stop() (from any one thread), and its callbacks run
 * on that thread. The app's own SQLite connections to the file are never affected. libferry keeps no
 * global state apart from libcurl's, which ferry_replica_open initialises once, thread-
 * safely (curl_global_init through pthread_once).
 *
 * Errors: functions return FERRY_CLIENT_OK (0) or a negative enum ferry_client_status;
 * ferry_replica_error() then describes the failure in English. Nothing a failed call did
 * is half-applied: local changes are kept in the outbox until the server has them, a
 * pulled page is applied whole or not at all, and the next ferry_sync() goes on from
 * where the last one stopped.
 *
 * Strings passed in are copied when kept; strings returned are owned by the handle and
 * valid until the next call on it. */
#ifndef FERRY_CLIENT_H
#define FERRY_CLIENT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_CLIENT_VERSION_MAJOR 0
#define FERRY_CLIENT_VERSION_MINOR 1

#if defined(__GNUC__)
#define FERRY_CLIENT_API __attribute__((visibility("default")))
#else
#define FERRY_CLIENT_API
#endif

enum ferry_client_status {
    FERRY_CLIENT_OK = 0,
    FERRY_CLIENT_EINVAL = -1,   /* a bad argument or option */
    FERRY_CLIENT_ELOCAL = -2,   /* the replica file: cannot open, read or write it */
    FERRY_CLIENT_ENETWORK = -3, /* the server could not be reached (after the retries) */
    FERRY_CLIENT_EAUTH = -4,    /* 401 or 403: the token is wrong, expired or not allowed */
    FERRY_CLIENT_ESERVER = -5,  /* the server refused a request (4xx) or kept failing (5xx) */
    FERRY_CLIENT_ESCHEMA = -6,  /* a local table does not match the server's schema */
};

struct ferry_client_options {
    const char *url;     /* the server, e.g. "https://sync.example.com" (required) */
    const char *token;   /* a device token (fyd_...) or a JWT (required) */
    const char *ca_file; /* PEM bundle to trust for HTTPS; NULL: the system's */
    long timeout_ms;     /* per request; 0: 30000 */
    int max_attempts;    /* per request, network errors, 429 and 5xx; 0: 6 */
    int batch_size;      /* operations per push; 0: 500 */
    int page_size;       /* changes per page of a pull; 0: 1000 */
    int poll_s;          /* background mode: longest wait for remote changes; 0: 25 */
    const char *device_id; /* with a user token or JWT: the registered device this replica
                              is (sent as deviceId); NULL with a device token */
};

/* What one ferry_sync() did. */
struct ferry_sync_stats {
    int64_t pushed;    /* local operations the server accepted (applied, merged or not) */
    int64_t conflicts; /* of those, recorded as conflicts on the server */
    int64_t pulled;    /* remote changes applied to the replica */
    int64_t skipped;   /* remote changes not applied: the row has local changes not yet pushed */
    int64_t cursor;    /* the replica's cursor after the sync */
    int resynced;      /* 1 when the server answered 410 and the replica was rebuilt */
};

typedef struct ferry_replica ferry_replica;

/* Opens (creating if needed) the replica at path and makes it ready: asks the server for
 * the tables this token syncs, creates the missing ones, installs the capture triggers
 * and libferry's own tables (named ferry_client_*). A replica set up before opens when the
 * server cannot be reached, from the schema it kept (the app works offline; ferry_sync()
 * fails with FERRY_CLIENT_ENETWORK until the server is back, losing nothing). On success
 * *out is a handle to close
 * with ferry_replica_close. On failure *out is NULL and, when errbuf is not NULL, the
 * reason is written there (at most errlen bytes, NUL-terminated). */
FERRY_CLIENT_API int ferry_replica_open(const char *path, const struct ferry_client_options *opts,
                                        ferry_replica **out, char *errbuf, unsigned errlen);

/* One round: push every local change, pull every remote one, acknowledge. stats may be
 * NULL. Safe to call again after any failure. */
FERRY_CLIENT_API int ferry_sync(ferry_replica *r, struct ferry_sync_stats *stats);

/* The two halves of ferry_sync(), for scripts and apps that want them apart: ferry_push()
 * pushes the outbox (and delivers conflicts), ferry_pull() pulls every remote change and
 * acknowledges the cursor. */
FERRY_CLIENT_API int ferry_push(ferry_replica *r, struct ferry_sync_stats *stats);
FERRY_CLIENT_API int ferry_pull(ferry_replica *r, struct ferry_sync_stats *stats);

/* One request to the server without a replica, with the token, TLS settings and retries
 * of opts (network errors, 429 and 5xx retried): method and path (under opts->url, e.g.
 * "/api/v1/sync/conflicts"), body JSON text or NULL. On FERRY_CLIENT_OK *status is the
 * HTTP status and *answer the body (NUL-terminated, malloc'd: the caller frees it; "" when
 * empty); 401 and 403 are returned as FERRY_CLIENT_OK with their status. On failure the
 * reason is written to errbuf. */
FERRY_CLIENT_API int ferry_request(const struct ferry_client_options *opts, const char *method,
                                   const char *path, const char *body, long *status,
                                   char **answer, char *errbuf, unsigned errlen);

/* Progress of a transfer: bytes done of total. A non-zero answer stops it (what arrived
 * is kept, and the next call resumes). */
typedef int (*ferry_progress_fn)(void *ctx, int64_t done, int64_t total);

/* Downloads the file entry at path (e.g. "docs/report.pdf") to file: into file.part,
 * resumed from what an earlier call left there (a Range request, as long as the server
 * still has the same content), then checked against the entry's SHA-256 and renamed to
 * file. fn (may be NULL) is called as bytes arrive. On failure the reason is in errbuf;
 * the .part file is kept for a resume unless its SHA-256 was wrong. */
FERRY_CLIENT_API int ferry_download(const struct ferry_client_options *opts, const char *path,
                                    const char *file, ferry_progress_fn fn, void *ctx,
                                    char *errbuf, unsigned errlen);

/* Uploads file to the file entry at path with tus (the server's /tus/), in checksummed
 * 1 MiB PATCHes. The upload's URL, with the file's size, time and SHA-256, is kept in
 * state (a file path the caller chooses, e.g. under ~/.local/state): a later call for the
 * same file and path, in any process, goes on from the offset the server has. When done,
 * the server's entry is checked to have the file's SHA-256 and state is removed. fn may
 * stop the upload (FERRY_CLIENT_EINVAL, "stopped"); state is kept then. */
FERRY_CLIENT_API int ferry_upload(const struct ferry_client_options *opts, const char *file,
                                  const char *path, const char *state, ferry_progress_fn fn,
                                  void *ctx, char *errbuf, unsigned errlen);

/* What one ferry_mirror() did. */
struct ferry_mirror_stats {
    int64_t downloaded; /* files written into the folder (new, changed, or changed locally) */
    int64_t removed;    /* files removed because the server deleted them */
    int64_t bytes;      /* the size of the files written */
    int64_t files;      /* files the folder holds from the server after the run */
    int64_t skipped;    /* server paths that cannot be a file there (a file and a folder of
                           the same name, or a name the folder reserves) */
    int64_t cursor;     /* the feed position the folder is equal to */
};

/* Progress of a mirror: path is the file in hand (NULL between files), files and bytes
 * count the run's downloads. A non-zero answer stops the run; the next call resumes it. */
typedef int (*ferry_mirror_fn)(void *ctx, const char *path, int64_t files_done,
                               int64_t files_total, int64_t bytes_done, int64_t bytes_total);

/* Makes the folder dir equal to the server's files under prefix (NULL or "": all of
 * them; "docs" maps docs/a/b.pdf to dir/a/b.pdf), from the files namespace of the change
 * feed: new and changed files are downloaded (Range-resumed, SHA-256 checked, renamed into
 * place atomically), files the server deleted are removed (and folders left empty), and a
 * file changed or removed locally is downloaded again. Files the server never had are left
 * alone. Nothing is written outside dir: every path is checked and opened segment by
 * segment without following symbolic links. The state (feed cursor, what was written,
 * partial downloads) lives in dir/.ferry-mirror/, so a run stopped by fn, a signal, a
 * crash or a lost connection resumes where it stopped. A folder mirrors one prefix
 * (another is FERRY_CLIENT_EINVAL); given another server URL it reads that server's feed
 * from the start and removes what that one does not have. Use a user's or a device's token: an
 * admin's feed holds every user's files, under the same paths.
 * Threads: any thread; calls on the same dir must not overlap. stats may be NULL. A file
 * that changes on the server during the run is fetched again from the feed; one that
 * keeps changing fails the run (FERRY_CLIENT_ESERVER; run again). On failure the reason
 * is in errbuf. */
FERRY_CLIENT_API int ferry_mirror(const struct ferry_client_options *opts, const char *dir,
                                  const char *prefix, ferry_mirror_fn fn, void *ctx,
                                  struct ferry_mirror_stats *stats, char *errbuf,
                                  unsigned errlen);

/* Waits for the next change to the server's files after cursor (a ferry_mirror_stats
 * cursor): one long poll of the feed's files namespace, answered at once when a file
 * changed since, else held by the server until one does or wait_s seconds pass (at most
 * 60). 1 when a file changed (or the cursor is too old: either way call ferry_mirror()),
 * 0 (FERRY_CLIENT_OK) when wait_s passed without one. stop (may be NULL) is asked at
 * least once a second; a non-zero answer ends the wait at once (FERRY_CLIENT_EINVAL).
 * Changes outside a mirror's prefix end the wait too.
 * Threads: any thread. On failure the reason is in errbuf. */
FERRY_CLIENT_API int ferry_mirror_wait(const struct ferry_client_options *opts, int64_t cursor,
                                       int wait_s, int (*stop)(void *ctx), void *ctx,
                                       char *errbuf, unsigned errlen);

/* The number of local operations waiting to be pushed, or a negative status. */
FERRY_CLIENT_API int64_t ferry_pending(ferry_replica *r);

/* The last failure on r, in English; "" when none. */
FERRY_CLIENT_API const char *ferry_replica_error(const ferry_replica *r);

/* A conflict the server recorded for one of this replica's pushes. The strings are owned
 * by libferry and valid during the callback only. */
struct ferry_conflict {
    const char *id;      /* the server's conflict id, for ferry_resolve() */
    const char *table;   /* the synced table */
    const char *row_id;  /* the row's key, as text */
    const char *details; /* the server's description, JSON: action, baseVersion,
                            serverVersion, serverData, clientData, fields */
};

typedef void (*ferry_conflict_fn)(void *ctx, const struct ferry_conflict *conflict);

/* Calls fn(ctx, conflict) once for each conflict a push reports, after the push's answer
 * is recorded in the replica, on the thread running the sync; conflicts reported while
 * no handler was set (or before a crash) are delivered at the end of the next sync. fn
 * NULL: no callback (conflicts are still kept in the table ferry_client_conflicts).
 * fn must not call libferry on r. */
FERRY_CLIENT_API void ferry_set_conflict_handler(ferry_replica *r, ferry_conflict_fn fn,
                                                 void *ctx);

enum ferry_keep {
    FERRY_KEEP_SERVER = 0, /* the server's row stays (the replica already has it) */
    FERRY_KEEP_CLIENT = 1, /* the row this replica pushed is written on the server */
};

/* Resolves a conflict on the server (POST /api/v1/sync/conflicts/{id}/resolve); the row
 * the resolution writes reaches every replica, this one too, through the next sync.
 * FERRY_CLIENT_ESERVER with the server's reason when it refuses (404: no such open
 * conflict; 409: the row changed meanwhile, resolve again). */
FERRY_CLIENT_API int ferry_resolve(ferry_replica *r, const char *conflict_id, enum ferry_keep keep);

/* Progress of a sync: the local operations pushed and the remote changes applied so far
 * by the running ferry_sync(), ferry_push() or ferry_pull(), after each batch and each
 * page. A non-zero answer stops that call (FERRY_CLIENT_ENETWORK, "stopped"): what was
 * pushed or applied stays, and the next call goes on from there. */
typedef int (*ferry_sync_progress_fn)(void *ctx, int64_t pushed, int64_t pulled);

/* Calls fn(ctx, ...) during each sync on the thread running it (NULL: no calls). fn must
 * not call libferry on r, nor write the replica: it may run while the pull's transaction
 * holds the file's write lock, which a write from any connection would wait for. */
FERRY_CLIENT_API void ferry_set_progress_handler(ferry_replica *r, ferry_sync_progress_fn fn,
                                                 void *ctx);

/* Called after each background round with its status and what it did. */
typedef void (*ferry_round_fn)(void *ctx, int status, const struct ferry_sync_stats *stats);

/* Background mode: a thread syncs, then waits for remote changes (a long poll of up to
 * poll_s seconds) or a local write committed by any connection to the file (noticed
 * within about a second), and syncs again; after a failed round it waits 1 s doubling
 * to 30 s. fn (may be NULL) runs after every round. FERRY_CLIENT_EINVAL when already
 * started. */
FERRY_CLIENT_API int ferry_start(ferry_replica *r, ferry_round_fn fn, void *ctx);

/* Stops the background thread (an exchange under way is abandoned; nothing is lost: it
 * is redone by the next sync) and waits for it. The handle is the caller's again. */
FERRY_CLIENT_API int ferry_stop(ferry_replica *r);

/* Closes the replica's connection and frees r (stopping background mode). NULL is allowed. */
FERRY_CLIENT_API void ferry_replica_close(ferry_replica *r);

#ifdef __cplusplus
}
#endif

#endif
