/* fuzz_config.c - the config file (src/config.c): "key = value" lines, every setting
 * and its value syntax (sizes, numbers, booleans, lists). */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("ferry-config", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    struct config cfg;
    struct err err = {0};
    memset(&cfg, 0, sizeof(cfg));
    config_load_file(&cfg, path, &err);
    config_cleanup(&cfg);
    return 0;
}
