/* leases.c - see leases.h. Acquiring is a compare-and-swap on the row's token, so two
 * nodes that both find a lease stale cannot both take it; the token is the lease's
 * generation, which renewals and fencing checks compare. Owns the keepers' threads. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files/leases.h"
#include "util/crypto.h"
#include "util/timeutil.h"

/* The start time of process pid in clock ticks since boot (field 22 of
 * /proc/PID/stat), 0 when there is no such process. */
static unsigned long long start_time(long pid)
{
    char path[64], buf[1024];
    unsigned long long t = 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p)
        t = strtoull(p + 1, NULL, 10);
    return t;
}

/* This host: its name and boot id (a reboot makes every earlier process gone). */
static void host_id(char *out, size_t cap)
{
    char name[64] = "", boot[40] = "";
    gethostname(name, sizeof(name) - 1);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f) {
        if (!fgets(boot, sizeof(boot), f))
            boot[0] = '\0';
        fclose(f);
    }
    boot[strcspn(boot, "\n")] = '\0';
    for (char *p = name; *p; p++)
        if (*p == ' ')
            *p = '_';
    snprintf(out, cap, "%s %s", name[0] ? name : "-", boot[0] ? boot : "-");
}

void leases_self(char out[LEASES_OWNER_MAX])
{
    char host[120];
    long pid = (long)getpid();
    host_id(host, sizeof(host));
    snprintf(out, LEASES_OWNER_MAX, "%s %ld %llu", host, pid, start_time(pid));
}

bool leases_owner_alive(const char *self, const char *owner)
{
    char host[120], self_host[120];
    long pid = 0;
    unsigned long long started = 0;
    if (sscanf(owner, "%59s %39s %ld %llu", host, host + 60, &pid, &started) != 4 ||
        sscanf(self, "%59s %39s", self_host, self_host + 60) != 2)
        return true; /* not ours to judge: the expiry decides */
    if (strcmp(host, self_host) != 0 || strcmp(host + 60, self_host + 60) != 0)
        return true;
    return start_time(pid) == started && started != 0;
}

/* The current holder of name: *found, its owner, token and expiry. */
static int read_lease(struct store_conn *c, const char *name, bool *found, char owner[160],
                      char token[33], int64_t *expires, struct err *err)
{
    struct store_rows *rows = NULL;
    struct store_val v = sv_text(name);
    int step = -1;
    *found = false;
    if (store_query(c, "SELECT owner, token, expires_at FROM ferry_leases WHERE name = $1", &v, 1,
                    &rows, err) == FERRY_OK &&
        (step = store_rows_next(rows, err)) == 1) {
        snprintf(owner, LEASES_OWNER_MAX, "%s", store_rows_text(rows, 0));
        snprintf(token, 33, "%s", store_rows_text(rows, 1));
        *expires = store_rows_int(rows, 2);
        *found = true;
    }
    store_rows_free(rows);
    return step < 0 ? FERRY_ERR : FERRY_OK;
}

int leases_acquire(struct store_conn *c, const char *self, const char *name, struct lease *l,
                   bool *got, struct err *err)
{
    char owner[LEASES_OWNER_MAX], old[33];
    int64_t expires = 0, changed = 0, now = time_now_ms();
    bool found = false;
    *got = false;
    if (read_lease(c, name, &found, owner, old, &expires, err) != FERRY_OK)
        return FERRY_ERR;
    if (found && expires >= now && leases_owner_alive(self, owner))
        return FERRY_OK;
    snprintf(l->name, sizeof(l->name), "%s", name);
    crypto_random_hex(l->token, 16);
    struct store_val v[] = {sv_text(name), sv_text(self), sv_text(l->token),
                            sv_int(now + LEASES_TTL_MS), sv_text(old)};
    int rc = found ? store_run(c,
                               "UPDATE ferry_leases SET owner = $2, token = $3, expires_at = $4"
                               " WHERE name = $1 AND token = $5",
                               v, 5, &changed, err)
                   : store_run(c,
                               "INSERT INTO ferry_leases(name, owner, token, expires_at)"
                               " VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                               v, 4, &changed, err);
    l->renewed_ms = now;
    *got = rc == FERRY_OK && changed == 1;
    return rc;
}

int leases_renew(struct store_conn *c, struct lease *l, bool force, struct err *err)
{
    int64_t now = time_now_ms(), changed = 0;
    if (!force && now - l->renewed_ms < LEASES_RENEW_MS)
        return FERRY_OK;
    struct store_val v[] = {sv_text(l->name), sv_text(l->token), sv_int(now + LEASES_TTL_MS)};
    if (store_run(c, "UPDATE ferry_leases SET expires_at = $3 WHERE name = $1 AND token = $2", v, 3,
                  &changed, err) != FERRY_OK)
        return FERRY_ERR;
    if (changed != 1)
        return err_set(err, ERR_CONFLICT, "lease %s was taken over", l->name);
    l->renewed_ms = now;
    return FERRY_OK;
}

void leases_release(struct store_conn *c, struct lease *l)
{
    struct store_val v[] = {sv_text(l->name), sv_text(l->token)};
    if (l->token[0])
        store_run(c, "DELETE FROM ferry_leases WHERE name = $1 AND token = $2", v, 2, NULL, NULL);
    l->token[0] = '\0';
}

int leases_held(struct store_conn *c, const char *self, const char *name, bool *held,
                struct err *err)
{
    char owner[LEASES_OWNER_MAX], token[33];
    int64_t expires = 0;
    bool found = false;
    *held = false;
    if (read_lease(c, name, &found, owner, token, &expires, err) != FERRY_OK)
        return FERRY_ERR;
    *held = found && expires >= time_now_ms() && leases_owner_alive(self, owner);
    return FERRY_OK;
}

/* --- keepers ------------------------------------------------------------------------- */

struct lease_keeper {
    struct store *st;
    struct lease lease; /* the keeper's own copy: the holder's is never touched here */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool done;
    atomic_bool lost;
};

static void *keeper_main(void *arg)
{
    struct lease_keeper *k = arg;
    pthread_mutex_lock(&k->lock);
    while (!k->done && !atomic_load(&k->lost)) {
        struct timespec until = time_after_ms(CLOCK_REALTIME, LEASES_RENEW_MS);
        if (pthread_cond_timedwait(&k->wake, &k->lock, &until) == 0 || k->done)
            continue;
        pthread_mutex_unlock(&k->lock);
        struct store_conn *c = NULL;
        struct err err = {0};
        if (store_acquire(k->st, &c, NULL) == FERRY_OK &&
            leases_renew(c, &k->lease, true, &err) != FERRY_OK && err.code == ERR_CONFLICT)
            atomic_store(&k->lost, true);
        store_release(c); /* a database that failed once is tried again next time */
        pthread_mutex_lock(&k->lock);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

struct lease_keeper *leases_keep(struct store *st, const struct lease *l)
{
    struct lease_keeper *k = xcalloc(1, sizeof(*k));
    k->st = st;
    k->lease = *l;
    atomic_init(&k->lost, false);
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->wake, NULL);
    if (pthread_create(&k->thread, NULL, keeper_main, k) != 0) {
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->wake);
        free(k);
        return NULL;
    }
    return k;
}

bool leases_keep_lost(struct lease_keeper *k)
{
    return k && atomic_load(&k->lost);
}

void leases_keep_stop(struct lease_keeper *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    k->done = true;
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_mutex_destroy(&k->lock);
    pthread_cond_destroy(&k->wake);
    free(k);
}
