/* dbdump.h - a consistent copy of ferry's own database, taken while the server runs, as
 * a file a backup can store: SQLite's online backup API, or pg_dump for PostgreSQL. */
#ifndef FERRY_BACKUP_DBDUMP_H
#define FERRY_BACKUP_DBDUMP_H

#include "ferry.h"

/* Writes the database named by url (sqlite:PATH or postgres://...) into folder dir, as
 * dir/ferry.db (SQLite) or dir/ferry.pgdump (pg_dump's custom format, for pg_restore). */
int dbdump_write(const char *url, const char *dir, struct err *err);

#endif
