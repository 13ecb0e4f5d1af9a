/* backup.h - EonaCat.Sync's backup surface: the job kind that runs backups, restores and
 * prunes (for the server's job worker). */
#ifndef FERRY_API_BACKUP_H
#define FERRY_API_BACKUP_H

#include "jobs/jobs.h"

struct app;

/* The job kind "backup" (its params say which operation). */
struct job_kind apibackup_job_kind(const struct app *app);

#endif
