/* clientconf.c - see clientconf.h. The file holds `key = value` lines (url, token,
 * cacert); it is written to a temporary file made with mode 0600 and renamed over. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/clientconf.h"
#include "ferry.h"
#include "util/crypto.h"

char *clientconf_path(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg && *xdg == '/')
        return xasprintf("%s/ferry/client.conf", xdg);
    return home && *home ? xasprintf("%s/.config/ferry/client.conf", home) : NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static void load_file(struct client_conf *file)
{
    char *path = clientconf_path(), line[4096];
    FILE *f = path ? fopen(path, "r") : NULL;
    while (f && fgets(line, sizeof(line), f)) {
        char *eq = strchr(line, '='), *key = line;
        if (*trim(line) == '#' || !eq)
            continue;
        *eq = '\0';
        key = trim(key);
        char *value = trim(eq + 1), **slot = NULL;
        if (!strcmp(key, "url"))
            slot = &file->url;
        else if (!strcmp(key, "token"))
            slot = &file->token;
        else if (!strcmp(key, "cacert"))
            slot = &file->ca_file;
        if (slot && *value) {
            free(*slot);
            *slot = xstrdup(value);
        }
    }
    if (f)
        fclose(f);
    free(path);
}

static char *pick(const char *flag, const char *env, char *file)
{
    const char *v = flag ? flag : (getenv(env) && *getenv(env) ? getenv(env) : file);
    return v ? xstrdup(v) : NULL;
}

void clientconf_resolve(struct client_conf *c, const char *url, const char *token,
                        const char *ca_file)
{
    struct client_conf file = {0};
    load_file(&file);
    c->url = pick(url, "FERRY_URL", file.url);
    c->token = pick(token, "FERRY_TOKEN", file.token);
    c->ca_file = pick(ca_file, "FERRY_CACERT", file.ca_file);
    clientconf_free(&file);
}

static int make_folder(const char *path)
{
    char *dir = xstrdup(path);
    int rc = 0;
    for (char *p = dir + 1; rc == 0 && (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            rc = -1;
        *p = '/';
    }
    free(dir);
    return rc;
}

int clientconf_save(const struct client_conf *c, char *why, size_t whylen)
{
    char *path = clientconf_path(), *tmp = path ? xasprintf("%s.tmp", path) : NULL;
    int rc = -1, fd = -1;
    FILE *f = NULL;
    if (!path)
        snprintf(why, whylen, "neither HOME nor XDG_CONFIG_HOME is set");
    else if (make_folder(path) != 0 || (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
             fchmod(fd, 0600) != 0 || !(f = fdopen(fd, "w")))
        snprintf(why, whylen, "cannot write %s: %s", path, strerror(errno));
    else {
        fd = -1;
        fprintf(f, "# written by ferry login\nurl = %s\ntoken = %s\n", c->url, c->token);
        if (c->ca_file)
            fprintf(f, "cacert = %s\n", c->ca_file);
        rc = fflush(f) == 0 && fsync(fileno(f)) == 0 && rename(tmp, path) == 0 ? 0 : -1;
        if (rc)
            snprintf(why, whylen, "cannot write %s: %s", path, strerror(errno));
    }
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    if (rc && tmp)
        unlink(tmp);
    free(tmp);
    free(path);
    return rc;
}

void clientconf_free(struct client_conf *c)
{
    free(c->url);
    free(c->token);
    free(c->ca_file);
    memset(c, 0, sizeof(*c));
}

char *clientconf_upload_state(const char *file, const char *path)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char *real = realpath(file, NULL), hex[65];
    if (!real)
        real = xstrdup(file);
    char *key = xasprintf("%s\n%s", real, path);
    crypto_sha256_hex(key, strlen(key), hex);
    char *state = xdg && *xdg == '/' ? xasprintf("%s/ferry/uploads/%s.json", xdg, hex)
                  : home && *home    ? xasprintf("%s/.local/state/ferry/uploads/%s.json", home, hex)
                                     : NULL;
    if (state)
        make_folder(state);
    free(key);
    free(real);
    return state;
}
