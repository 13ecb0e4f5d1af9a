/* files.h - what the file surfaces (files.c, tus.c, dirsync.c) share. */
#ifndef FERRY_API_FILES_H
#define FERRY_API_FILES_H

#include <stdbool.h>
#include <stdint.h>

#include "files/uploads.h"
#include "http/http.h"
#include "store/store.h"

/* Whether the credential may use the files namespace; replies 403 when not. */
bool apifiles_allowed(struct request *req);

/* A request's file path, cleaned (no "..", not absolute, no control bytes, UTF-8);
 * replies 400 and returns NULL when it is not one. The caller frees. */
char *apifiles_clean_path(struct request *req, const char *raw);

/* The credential's device, NULL when it is not a device's. */
const char *apifiles_device_of(const struct request *req);

/* Loads upload id of the given kind for this caller: 404 when unknown, of the other
 * kind or someone else's, 410 when expired (in the surface's error format). Returns
 * false after replying. */
bool apifiles_load_upload(struct request *req, struct store_conn *c, const char *id,
                          enum upload_kind kind, struct upload *u);

/* Removes a folder and everything in it (symlinks themselves, never their targets). */
void files_remove_tree(const char *dir);

/* The folder of upload id's bytes, DATA_DIR/uploads/<id> (newly allocated). */
char *files_upload_dir(const struct app *app, const char *id);
/* Removes upload id's folder and everything in it. */
void files_remove_upload(const struct app *app, const char *id);

struct files_swept {
    int64_t uploads; /* expired upload sessions whose data was removed */
    int64_t blobs;   /* unreferenced blobs removed */
};

/* Removes the data of expired upload sessions, finished jobs older than the tombstone
 * retention and stale blob temporaries, and collects unreferenced blobs; run by the
 * purge thread and by POST /api/v1/admin/purge. */
void files_housekeeping(struct app *app, struct store_conn *c, struct files_swept *out);

#endif
