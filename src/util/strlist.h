/* strlist.h - comma-separated lists as settings write them ("a, b,c"). */
#ifndef FERRY_STRLIST_H
#define FERRY_STRLIST_H

#include <stdbool.h>

/* Whether list names item exactly, items trimmed of the spaces around them. */
bool strlist_has(const char *list, const char *item);

#endif
