/* devices.h - the devices that sync: each belongs to a user, has its own tokens
 * (fyd_...), an acknowledged cursor that never moves backwards, and optionally a list of
 * tables it may sync. */
#ifndef FERRY_DEVICES_H
#define FERRY_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry.h"
#include "store/store.h"

struct device_spec {
    const char *id; /* NULL: ferry makes one */
    const char *name;
    const char *platform;
    const char *app_version;
    const char *tables; /* comma list; NULL: every synced table */
    const char *attrs;  /* its token's attributes (JSON object text; NULL: none) */
};

/* Registers a device for user_id and makes its first token, in one transaction.
 * *device is the device as JSON and *token its secret (shown once). ERR_CONFLICT when
 * the id is taken. */
int devices_register(struct store_conn *c, const char *user_id, const struct device_spec *spec,
                     json_t **device, char **token, struct err *err);

/* The device as JSON, and its owner in owner[128]. ERR_NOT_FOUND when unknown. */
int devices_get(struct store_conn *c, const char *id, json_t **device, char owner[128],
                struct err *err);

/* Devices of user_id (every device when NULL), oldest first. */
int devices_list(struct store_conn *c, const char *user_id, json_t **list, struct err *err);

/* Changes name, platform and app version (NULL fields stay). */
int devices_update(struct store_conn *c, const char *id, const struct device_spec *spec,
                   struct err *err);

/* Deletes the device and revokes its tokens. */
int devices_delete(struct store_conn *c, const char *id, struct err *err);

/* Revokes every token of the device and makes a new one, with the attributes of the
 * newest one. */
int devices_new_token(struct store_conn *c, const char *id, char **token, struct err *err);

/* Records that the device has applied every change up to cursor. The stored cursor
 * only moves forward; *stored gets its value after the call. ERR_INVALID for a cursor
 * beyond the newest change. */
int devices_ack(struct store_conn *c, const char *id, int64_t cursor, int64_t *stored,
                struct err *err);

/* The lowest acknowledged cursor of the devices seen since `since_ms`, and whether
 * there is any such device. */
int devices_min_cursor(struct store_conn *c, int64_t since_ms, int64_t *cursor, bool *any,
                       struct err *err);

/* Notes the device was seen now (written at most once a minute). */
void devices_seen(struct store_conn *c, const char *id);

#endif
