/* repo.c - opening, creating and locking a backup repository. The config file is
 * plaintext JSON: nothing in it is secret (the master key in it is wrapped). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "backup/chunker.h"
#include "backup/fsio.h"
#include "backup/repo.h"
#include "util/base64.h"
#include "util/crypto.h"

#define CONFIG_MAX (64u * 1024)
#define WRAPPED_LEN (SEAL_KEY_LEN + SEAL_OVERHEAD)

static const char *const subdirs[] = {"packs", "index", "snapshots"};

static json_t *wrap_json(struct repo *r, const char *password, struct err *err)
{
    struct seal_kdf kdf;
    uint8_t pw_key[SEAL_KEY_LEN], wrapped[WRAPPED_LEN];
    seal_new_master(pw_key, &kdf); /* only the salt and limits: the key is derived next */
    if (seal_derive(password, &kdf, pw_key, err) != FERRY_OK)
        return NULL;
    seal_encrypt(pw_key, "master-key", 10, r->master, SEAL_KEY_LEN, wrapped);
    sodium_memzero(pw_key, sizeof(pw_key));
    char *salt = base64_encode(kdf.salt, sizeof(kdf.salt));
    char *key = base64_encode(wrapped, sizeof(wrapped));
    json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "cipher", "xchacha20poly1305-ietf",
                          "kdf", "argon2id13", "opsLimit", (json_int_t)kdf.ops_limit, "memLimit",
                          (json_int_t)kdf.mem_limit, "salt", salt, "wrappedKey", key);
    free(salt);
    free(key);
    return j;
}

static int write_config(struct repo *r, json_t *encryption, struct err *err)
{
    json_t *j = json_pack("{s:s, s:i, s:s, s:{s:s, s:i, s:i, s:i, s:s}, s:o}", "format",
                          "ferry-backup", "version", REPO_FORMAT, "id", r->id, "chunker",
                          "algorithm", "fastcdc-gear", "minSize", CHUNKER_MIN, "avgSize",
                          CHUNKER_AVG, "maxSize", CHUNKER_MAX, "gearSeed", "0x6665727279636463",
                          "encryption", encryption ? encryption : json_null());
    char *text = json_dumps(j, JSON_INDENT(2));
    char *path = xasprintf("%s/config", r->path);
    int rc = fsio_write_atomic(path, text, strlen(text), err);
    free(path);
    free(text);
    json_decref(j);
    return rc;
}

static int create(struct repo *r, const char *password, bool plaintext, struct err *err)
{
    json_t *encryption = NULL;
    if (!plaintext && (!password || !*password))
        return err_set(err, ERR_INVALID,
                       "creating an encrypted backup repository needs a password (a password "
                       "file or FERRY_BACKUP_PASSWORD); --insecure-no-encryption makes a "
                       "plaintext one");
    if (fsio_mkdirs(r->path, 0700, err) != FERRY_OK)
        return FERRY_ERR;
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        char *dir = xasprintf("%s/%s", r->path, subdirs[i]);
        int rc = fsio_mkdirs(dir, 0700, err);
        free(dir);
        if (rc != FERRY_OK)
            return FERRY_ERR;
    }
    crypto_random_hex(r->id, 16);
    if (!plaintext) {
        crypto_aead_xchacha20poly1305_ietf_keygen(r->master);
        r->key = r->master;
        if (!(encryption = wrap_json(r, password, err)))
            return FERRY_ERR;
    }
    return write_config(r, encryption, err);
}

static int unwrap(struct repo *r, json_t *enc, const char *password, struct err *err)
{
    struct seal_kdf kdf = {0};
    uint8_t pw_key[SEAL_KEY_LEN], wrapped[WRAPPED_LEN + 4];
    const char *salt = json_string_value(json_object_get(enc, "salt"));
    const char *key = json_string_value(json_object_get(enc, "wrappedKey"));
    kdf.ops_limit = (uint64_t)json_integer_value(json_object_get(enc, "opsLimit"));
    kdf.mem_limit = (size_t)json_integer_value(json_object_get(enc, "memLimit"));
    if (!salt || !key ||
        base64_decode(salt, strlen(salt), kdf.salt, sizeof(kdf.salt)) != SEAL_SALT_LEN ||
        base64_decode(key, strlen(key), wrapped, sizeof(wrapped)) != WRAPPED_LEN)
        return err_set(err, ERR_INVALID, "%s/config: the encryption settings are damaged", r->path);
    if (!password || !*password)
        return err_set(err, ERR_INVALID,
                       "the backup repository %s is encrypted: give its password (a password "
                       "file or FERRY_BACKUP_PASSWORD)",
                       r->path);
    if (seal_derive(password, &kdf, pw_key, err) != FERRY_OK)
        return FERRY_ERR;
    long n = seal_decrypt(pw_key, "master-key", 10, wrapped, WRAPPED_LEN, r->master);
    sodium_memzero(pw_key, sizeof(pw_key));
    if (n != SEAL_KEY_LEN)
        return err_set(err, ERR_INVALID, "wrong password for the backup repository %s", r->path);
    r->key = r->master;
    return FERRY_OK;
}

static int load_config(struct repo *r, const char *password, uint8_t *text, size_t len,
                       struct err *err)
{
    json_t *j = json_loadb((const char *)text, len, 0, NULL);
    const char *format = json_string_value(json_object_get(j, "format"));
    const char *id = json_string_value(json_object_get(j, "id"));
    json_t *enc = json_object_get(j, "encryption");
    int rc = FERRY_ERR;
    if (!format || strcmp(format, "ferry-backup") || !id) {
        err_set(err, ERR_INVALID, "%s is not a ferry backup repository", r->path);
        goto out;
    }
    if (json_integer_value(json_object_get(j, "version")) != REPO_FORMAT) {
        err_set(err, ERR_INVALID, "%s has a repository format this ferry does not read", r->path);
        goto out;
    }
    snprintf(r->id, sizeof(r->id), "%s", id);
    rc = json_is_object(enc) ? unwrap(r, enc, password, err) : FERRY_OK;
out:
    json_decref(j);
    return rc;
}

int repo_open(const char *path, const char *password, bool create_missing, bool plaintext,
              struct repo **out, struct err *err)
{
    struct repo *r = xcalloc(1, sizeof(*r));
    char *config = xasprintf("%s/config", path);
    uint8_t *text = NULL;
    size_t len = 0;
    struct err read_err = {0};
    int rc = FERRY_ERR;
    r->path = xstrdup(path);
    r->lock_fd = -1;
    if (seal_init(err) != FERRY_OK)
        goto out;
    if (fsio_read_all(config, CONFIG_MAX, &text, &len, &read_err) == FERRY_OK)
        rc = load_config(r, password, text, len, err);
    else if (read_err.code != ERR_NOT_FOUND)
        rc = err_set(err, read_err.code, "%s", read_err.msg);
    else if (!create_missing)
        rc = err_set(err, ERR_NOT_FOUND, "no backup repository at %s", path);
    else
        rc = create(r, password, plaintext, err);
out:
    free(config);
    free(text);
    if (rc != FERRY_OK) {
        repo_close(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

void repo_close(struct repo *r)
{
    if (!r)
        return;
    repo_unlock(r);
    sodium_memzero(r->master, sizeof(r->master));
    free(r->path);
    free(r);
}

/* What the lock file says about its holder, for the message when it is busy. */
static void holder(int fd, char *out, size_t cap)
{
    ssize_t n = pread(fd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = 0;
    out[strcspn(out, "\n")] = 0;
    if (!out[0])
        snprintf(out, cap, "a reader");
}

int repo_lock(struct repo *r, bool exclusive, int wait_ms, struct err *err)
{
    char *path = xasprintf("%s/lock", r->path);
    int rc = FERRY_ERR;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        err_set(err, ERR_INTERNAL, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    /* An open-file-description lock: released by the kernel when its holder dies, and
     * two runs in one process (the server's threads) exclude each other too. */
    struct flock fl = {.l_type = exclusive ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET};
    for (int waited = 0; fcntl(fd, F_OFD_SETLK, &fl) != 0; waited += 100) {
        if ((errno != EAGAIN && errno != EACCES) || waited >= wait_ms) {
            char who[256];
            holder(fd, who, sizeof(who));
            err_set(err, ERR_CONFLICT, "the backup repository %s is busy (held by %s)", r->path,
                    who);
            goto out;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (exclusive) {
        char host[128] = "?", line[256];
        gethostname(host, sizeof(host) - 1);
        int n = snprintf(line, sizeof(line), "pid %ld on %s\n", (long)getpid(), host);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n)
            (void)0; /* the note is only for messages; the lock itself is held */
    }
    r->lock_fd = fd;
    fd = -1;
    rc = FERRY_OK;
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

void repo_unlock(struct repo *r)
{
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* closing the description drops the lock */
    r->lock_fd = -1;
}

int repo_change_password(struct repo *r, const char *new_password, struct err *err)
{
    if (!r->key)
        return err_set(err, ERR_INVALID, "the backup repository %s is not encrypted", r->path);
    if (!new_password || !*new_password)
        return err_set(err, ERR_INVALID, "the new password is empty");
    json_t *enc = wrap_json(r, new_password, err);
    return enc ? write_config(r, enc, err) : FERRY_ERR;
}

int repo_read_password_file(const char *path, char **out, struct err *err)
{
    uint8_t *text = NULL;
    size_t len = 0;
    if (fsio_read_all(path, 4096, &text, &len, err) != FERRY_OK)
        return err_set(err, ERR_INVALID, "cannot read the password file %s", path);
    text[strcspn((char *)text, "\r\n")] = 0;
    if (!text[0]) {
        free(text);
        return err_set(err, ERR_INVALID, "the password file %s is empty", path);
    }
    *out = (char *)text;
    return FERRY_OK;
}

int repo_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        return 2;
    return cores + 1 > REPO_MAX_THREADS ? REPO_MAX_THREADS : (int)cores + 1;
}

void repo_parallel(void *(*fn)(void *), void *ctxs, size_t ctx_size, int n)
{
    pthread_t threads[REPO_MAX_THREADS];
    bool started[REPO_MAX_THREADS];
    for (int t = 0; t < n; t++) {
        void *ctx = (char *)ctxs + (size_t)t * ctx_size;
        started[t] = pthread_create(&threads[t], NULL, fn, ctx) == 0;
        if (!started[t])
            fn(ctx);
    }
    for (int t = 0; t < n; t++)
        if (started[t])
            pthread_join(threads[t], NULL);
}
