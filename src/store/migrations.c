/* migrations.c - ferry's own tables, one entry per schema version, with the SQL for
 * each dialect side by side so the two stay in step. Append only: a released
 * migration is never edited. Times are milliseconds since the Unix epoch (BIGINT). */
#include "store/store_internal.h"

const struct migration store_migrations[] = {
    {1,
     /* SQLite */
     "CREATE TABLE ferry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
     "CREATE TABLE ferry_users ("
     " id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL);"
     "CREATE TABLE ferry_tokens ("
     " id TEXT PRIMARY KEY,"
     " name TEXT NOT NULL,"
     " role TEXT NOT NULL CHECK (role IN ('admin', 'user', 'device')),"
     " user_id TEXT, device_id TEXT,"
     " token_hash TEXT NOT NULL UNIQUE,"
     " prefix TEXT NOT NULL,"
     " created_at BIGINT NOT NULL, expires_at BIGINT, last_used_at BIGINT,"
     " revoked_at BIGINT);"
     "CREATE INDEX ferry_tokens_user ON ferry_tokens(user_id);",
     /* PostgreSQL */
     "CREATE TABLE ferry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
     "CREATE TABLE ferry_users ("
     " id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL);"
     "CREATE TABLE ferry_tokens ("
     " id TEXT PRIMARY KEY,"
     " name TEXT NOT NULL,"
     " role TEXT NOT NULL CHECK (role IN ('admin', 'user', 'device')),"
     " user_id TEXT, device_id TEXT,"
     " token_hash TEXT NOT NULL UNIQUE,"
     " prefix TEXT NOT NULL,"
     " created_at BIGINT NOT NULL, expires_at BIGINT, last_used_at BIGINT,"
     " revoked_at BIGINT);"
     "CREATE INDEX ferry_tokens_user ON ferry_tokens(user_id);"},
};

const size_t store_n_migrations = sizeof(store_migrations) / sizeof(store_migrations[0]);
