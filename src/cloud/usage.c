/* usage.c - see usage.h. */
#include <string.h>

#include "cloud/usage.h"

int cloudusage_stored(struct store_conn *c, enum cloud_provider p, const char *container,
                      const char *key, uint64_t size, struct err *err)
{
    struct store_val v[] = {sv_text(cloud_provider_name(p)), sv_text(container ? container : ""),
                            sv_text(key), sv_int((int64_t)size)};
    return store_run(c,
                     "INSERT INTO ferry_cloud_objects(provider, container, obj_key, size)"
                     " VALUES ($1, $2, $3, $4) ON CONFLICT (provider, container, obj_key)"
                     " DO UPDATE SET size = excluded.size",
                     v, 4, NULL, err);
}

int cloudusage_removed(struct store_conn *c, enum cloud_provider p, const char *container,
                       const char *key, struct err *err)
{
    struct store_val v[] = {sv_text(cloud_provider_name(p)), sv_text(container ? container : ""),
                            sv_text(key)};
    return store_run(c,
                     "DELETE FROM ferry_cloud_objects WHERE provider = $1 AND container = $2"
                     " AND obj_key = $3",
                     v, 3, NULL, err);
}

int cloudusage_totals(struct store_conn *c, uint64_t out[CLOUD_N_PROVIDERS], struct err *err)
{
    struct store_rows *rows = NULL;
    int got;
    memset(out, 0, CLOUD_N_PROVIDERS * sizeof(*out));
    if (store_query(c, "SELECT provider, SUM(size) FROM ferry_cloud_objects GROUP BY provider",
                    NULL, 0, &rows, err) != FERRY_OK)
        return FERRY_ERR;
    while ((got = store_rows_next(rows, err)) == 1) {
        enum cloud_provider p;
        if (cloud_provider_parse(store_rows_text(rows, 0), &p, NULL) == FERRY_OK)
            out[p] = (uint64_t)store_rows_int(rows, 1);
    }
    store_rows_free(rows);
    return got < 0 ? FERRY_ERR : FERRY_OK;
}
