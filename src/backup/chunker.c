/* chunker.c - FastCDC (Xia et al., USENIX ATC 2016) with normalised chunking, level 2.
 * Hand-written: Debian packages no C library for content-defined chunking (restic's and
 * borg's chunkers live inside their programs), and the whole algorithm is one loop over a
 * 256-entry table. The fingerprint is a gear hash, fp = (fp << 1) + gear[byte], so bit k
 * of fp depends on the last k + 1 bytes; the masks therefore take the high bits, which
 * see a 64-byte window. Before the average size a harder mask (2 more bits) makes a cut
 * less likely, after it an easier one (2 fewer bits) more likely, which narrows the spread
 * of chunk sizes around the average. */
#include <pthread.h>

#include "backup/chunker.h"

#define AVG_BITS 20 /* log2(CHUNKER_AVG) */
#define MASK_HARD (((1ULL << (AVG_BITS + 2)) - 1) << (64 - (AVG_BITS + 2)))
#define MASK_EASY (((1ULL << (AVG_BITS - 2)) - 1) << (64 - (AVG_BITS - 2)))

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

/* splitmix64 from a fixed seed: a table anyone can regenerate from the seed. */
static void gear_fill(void)
{
    uint64_t state = CHUNKER_GEAR_SEED;
    for (int i = 0; i < 256; i++) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        gear[i] = z ^ (z >> 31);
    }
}

uint64_t chunker_gear(uint8_t b)
{
    pthread_once(&gear_once, gear_fill);
    return gear[b];
}

size_t chunker_cut(const uint8_t *data, size_t len, int at_eof)
{
    pthread_once(&gear_once, gear_fill);
    if (len <= CHUNKER_MIN)
        return at_eof ? len : 0;
    size_t end = len < CHUNKER_MAX ? len : CHUNKER_MAX;
    size_t normal = end < CHUNKER_AVG ? end : CHUNKER_AVG;
    uint64_t fp = 0;
    size_t i = CHUNKER_MIN;
    /* The window before the minimum does not matter: only the last 64 bytes do. */
    for (size_t j = CHUNKER_MIN - 64; j < CHUNKER_MIN; j++)
        fp = (fp << 1) + gear[data[j]];
    for (; i < normal; i++) {
        fp = (fp << 1) + gear[data[i]];
        if (!(fp & MASK_HARD))
            return i + 1;
    }
    for (; i < end; i++) {
        fp = (fp << 1) + gear[data[i]];
        if (!(fp & MASK_EASY))
            return i + 1;
    }
    if (end == CHUNKER_MAX || at_eof)
        return end;
    return 0;
}
