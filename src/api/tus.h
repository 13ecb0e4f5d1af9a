/* tus.h - what the rest of ferry needs of the tus surface. */
#ifndef FERRY_API_TUS_H
#define FERRY_API_TUS_H

/* Drops what this process keeps in memory for upload id (its running hash), unless a
 * PATCH of it is in progress; housekeeping calls it for expired uploads. */
void tus_forget(const char *id);

#endif
