/* progress.c - see progress.h. The bar goes to stderr, the JSON lines to stdout. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/progress.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void human(double bytes, char *out, size_t len, bool counts)
{
    if (counts) {
        snprintf(out, len, "%.0f", bytes);
        return;
    }
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4)
        bytes /= 1024, u++;
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

void progress_start(struct progress *p, const char *what, bool json, int items_total)
{
    p->what = what;
    p->tty = !json && isatty(STDERR_FILENO);
    p->started_ms = now_ms();
    p->last_ms = 0;
    p->first_done = -1;
    p->items_done = 0;
    p->items_total = items_total;
    p->last_done = 0;
    p->last_total = -1;
    p->counts = false;
}

static void draw(const struct progress *p, int64_t done, int64_t total, double rate)
{
    char d[32], t[32], r[32], eta[32] = "--:--";
    human((double)done, d, sizeof(d), p->counts);
    human(total >= 0 ? (double)total : 0, t, sizeof(t), p->counts);
    human(rate, r, sizeof(r), p->counts);
    if (total > 0 && rate > 0) {
        long s = (long)((double)(total - done) / rate);
        snprintf(eta, sizeof(eta), "%02ld:%02ld", s / 60, s % 60);
    }
    if (total < 0) { /* an unknown end: what is done and how fast */
        fprintf(stderr, "\r\033[2K%s  %s done  %s/s", p->what, d, r);
        fflush(stderr);
        return;
    }
    int pct = total > 0 ? (int)(done * 100 / total) : 0, fill = pct / 5;
    char bar[21];
    for (int i = 0; i < 20; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    /* \r and "erase line" then the new text: one write, no blank frame */
    fprintf(stderr, "\r\033[2K%s [%s] %3d%% %s / %s  %s/s  ETA %s", p->what, bar, pct, d, t, r,
            eta);
    if (p->items_total > 1)
        fprintf(stderr, "  %d/%d items", p->items_done, p->items_total);
    fflush(stderr);
}

void progress_update(struct progress *p, int64_t done, int64_t total, bool final)
{
    int64_t now = now_ms();
    p->last_done = done;
    p->last_total = total;
    if (p->first_done < 0)
        p->first_done = done; /* a resume's bytes do not count toward the rate */
    if (!final && now - p->last_ms < 100)
        return;
    p->last_ms = now;
    double secs = (double)(now - p->started_ms) / 1000.0;
    double rate = secs > 0 ? (double)(done - p->first_done) / secs : 0;
    if (p->tty) {
        draw(p, done, total, rate);
        return;
    }
    json_t *line = json_pack("{s:s, s:s, s:I, s:I, s:i, s:i, s:f, s:f}", "event", "progress",
                             "what", p->what, "bytes", (json_int_t)done, "total", (json_int_t)total,
                             "items", p->items_done, "itemsTotal", p->items_total, "rate", rate,
                             "eta", total > 0 && rate > 0 ? (double)(total - done) / rate : -1.0);
    json_dumpf(line, stdout, JSON_COMPACT);
    json_decref(line);
    fputc('\n', stdout);
    fflush(stdout);
}

void progress_end(struct progress *p)
{
    if (p->tty)
        fputc('\n', stderr);
}
