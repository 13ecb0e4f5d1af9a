/* files.h - what the file surfaces (files.c, tus.c, dirsync.c) share. */
#ifndef FERRY_API_FILES_H
#define FERRY_API_FILES_H

#include <stdbool.h>
#include <stdint.h>

#include "files/filescope.h"
#include "files/uploads.h"
#include "http/http.h"
#include "store/store.h"

/* Whether the credential may use the files namespace; replies 403 when not. */
bool apifiles_allowed(struct request *req);

/* A request's file path, cleaned (no "..", not absolute, no control bytes, UTF-8);
 * replies 400 and returns NULL when it is not one. The caller frees. */
char *apifiles_clean_path(struct request *req, const char *raw);

/* The caller's scope over the file entries (files/filescope.h). */
struct filescope apifiles_scope(const struct request *req);

/* The namespace path names for the caller: for an admin the one its "owner" query
 * parameter names ("" for the common one) when given, else as filescope_owner says. */
const char *apifiles_owner(const struct request *req, const struct filescope *s, const char *path);

/* The credential's device, NULL when it is not a device's. */
const char *apifiles_device_of(const struct request *req);

/* Loads upload id of the given kind for this caller: 404 when unknown, of the other
 * kind or someone else's, 410 when expired (in the surface's error format). Returns
 * false after replying. */
bool apifiles_load_upload(struct request *req, struct store_conn *c, const char *id,
                          enum upload_kind kind, struct upload *u);

#endif
