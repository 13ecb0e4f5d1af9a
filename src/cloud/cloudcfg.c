/* cloudcfg.c - see cloudcfg.h. One place turns ferry's cloud options into a provider's
 * settings, so the cloud API and sessions cannot drift apart on what a provider is. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cloud/cloudcfg.h"
#include "util/crypto.h"

#define LINK_KEY_FILE "cloud-link.key"
#define STATE_DIR "cloud-uploads"

/* Writes a fresh key under a temporary name and links it into place, so a racing caller
 * either wins or finds the whole key of the one that did. */
static void make_link_key(const char *path)
{
    char fresh[65], rnd[17];
    crypto_random_hex(fresh, 32);
    crypto_random_hex(rnd, 8);
    char *tmp = xasprintf("%s.%s", path, rnd);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, fresh, 64) == 64 && fsync(fd) == 0)
            (void)link(tmp, path); /* EEXIST: another caller made it first */
        close(fd);
        unlink(tmp);
    }
    OPENSSL_cleanse(fresh, sizeof(fresh));
    free(tmp);
}

int cloudcfg_link_key(const char *data_dir, char out[65], struct err *err)
{
    char *path = xasprintf("%s/" LINK_KEY_FILE, data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        make_link_key(path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    int rc = fd >= 0 && read(fd, out, 64) == 64
                 ? FERRY_OK
                 : err_set(err, ERR_INTERNAL, "cannot read or create %s", LINK_KEY_FILE);
    out[64] = '\0';
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

int cloudcfg_open(const struct config *cfg, enum cloud_provider p, const char *link_base,
                  const atomic_bool *stop, struct cloudcfg *own, struct cloud **out,
                  struct err *err)
{
    return cloudcfg_open_at(cfg, p, NULL, link_base, stop, own, out, err);
}

int cloudcfg_open_at(const struct config *cfg, enum cloud_provider p, const char *container,
                     const char *link_base, const atomic_bool *stop, struct cloudcfg *own,
                     struct cloud **out, struct err *err)
{
    const char *configured[CLOUD_N_PROVIDERS] = {cfg->s3_bucket, cfg->azure_container,
                                                 cfg->local_cloud_dir};
    memset(own, 0, sizeof(*own));
    *out = NULL;
    if (p == CLOUD_LOCAL && cloudcfg_link_key(cfg->data_dir, own->link_key, err) != FERRY_OK)
        return FERRY_ERR;
    own->state_dir = xasprintf("%s/" STATE_DIR, cfg->data_dir);
    own->link_base = xstrdup(link_base);
    own->container = container ? xstrdup(container) : configured[p] ? xstrdup(configured[p]) : NULL;
    struct cloud_settings s = {
        .s3_endpoint = cfg->s3_endpoint,
        .s3_region = cfg->s3_region,
        .s3_access_key_id = cfg->s3_access_key_id,
        .s3_secret_access_key = cfg->s3_secret_access_key,
        .s3_bucket = p == CLOUD_S3 ? own->container : cfg->s3_bucket,
        .azure_connection_string = cfg->azure_connection_string,
        .azure_container = p == CLOUD_AZURE ? own->container : cfg->azure_container,
        .local_dir = p == CLOUD_LOCAL ? own->container : cfg->local_cloud_dir,
        .link_base = own->link_base,
        .link_key = own->link_key,
        .state_dir = own->state_dir,
        .part_size = (uint64_t)cfg->cloud_part_size,
        .timeout_s = (long)cfg->cloud_timeout,
        .stop = stop,
    };
    return cloud_open(p, &s, out, err);
}

void cloudcfg_clear(struct cloudcfg *own)
{
    free(own->state_dir);
    free(own->link_base);
    free(own->container);
    OPENSSL_cleanse(own->link_key, sizeof(own->link_key));
    memset(own, 0, sizeof(*own));
}
