/* strlist.c - see strlist.h. */
#include <string.h>

#include "util/strlist.h"

bool strlist_has(const char *list, const char *item)
{
    size_t len = strlen(item);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && last[-1] == ' ')
            last--;
        if ((size_t)(last - p) == len && !strncmp(p, item, len))
            return true;
        p = end;
    }
    return false;
}
