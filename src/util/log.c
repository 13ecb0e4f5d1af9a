/* log.c - see log.h. The log is process-wide, like stderr itself: its state (the file,
 * its path, level and format) lives in this file's one context and is changed only under
 * its lock. Lines are built in the caller's thread and written with one write(2). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/timeutil.h"

#define LINE_STACK 4096 /* most lines fit; longer ones are built on the heap */

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"json", "text"};

static struct {
    pthread_mutex_t lock; /* guards fd and path, and keeps lines whole */
    int fd;               /* STDERR_FILENO, or the open log file */
    char *path;           /* NULL: stderr */
    atomic_int min_level;
    atomic_int format;
} the_log = {PTHREAD_MUTEX_INITIALIZER, STDERR_FILENO, NULL, LOG_LEVEL_INFO, LOG_FORMAT_JSON};

static int parse_name(const char *name, const char *const *names, int n)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

int log_parse_level(const char *name, enum log_level *out)
{
    int i = parse_name(name, level_names, 4);
    if (i < 0)
        return FERRY_ERR;
    *out = (enum log_level)i;
    return FERRY_OK;
}

int log_parse_format(const char *name, enum log_format *out)
{
    int i = parse_name(name, format_names, 2);
    if (i < 0)
        return FERRY_ERR;
    *out = (enum log_format)i;
    return FERRY_OK;
}

static int open_file(const char *path, int *fd, struct err *err)
{
    *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (*fd < 0)
        return err_set(err, ERR_INVALID, "cannot open log file %s: %s", path, strerror(errno));
    return FERRY_OK;
}

/* Puts fd (and path, taken over) in place of the current file and closes the old one. */
static void swap_file(int fd, char *path)
{
    pthread_mutex_lock(&the_log.lock);
    int old_fd = the_log.fd;
    char *old_path = the_log.path;
    the_log.fd = fd;
    the_log.path = path;
    pthread_mutex_unlock(&the_log.lock);
    if (old_fd != STDERR_FILENO)
        close(old_fd);
    free(old_path);
}

int log_open(enum log_level min_level, enum log_format format, const char *path, struct err *err)
{
    int fd = STDERR_FILENO;
    if (path && *path && open_file(path, &fd, err) != FERRY_OK)
        return FERRY_ERR;
    atomic_store(&the_log.min_level, (int)min_level);
    atomic_store(&the_log.format, (int)format);
    swap_file(fd, path && *path ? xstrdup(path) : NULL);
    return FERRY_OK;
}

int log_reopen(struct err *err)
{
    pthread_mutex_lock(&the_log.lock);
    char *path = the_log.path ? xstrdup(the_log.path) : NULL;
    pthread_mutex_unlock(&the_log.lock);
    int fd;
    if (!path)
        return FERRY_OK;
    if (open_file(path, &fd, err) != FERRY_OK) {
        free(path);
        return FERRY_ERR;
    }
    swap_file(fd, path);
    return FERRY_OK;
}

void log_close(void)
{
    swap_file(STDERR_FILENO, NULL);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&the_log.min_level);
}

/* One write per line; a short write (a full pipe, a signal) goes on where it stopped. */
static void write_line(const char *line, size_t len)
{
    pthread_mutex_lock(&the_log.lock);
    while (len > 0) {
        ssize_t n = write(the_log.fd, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* nowhere left to say so */
        line += n;
        len -= (size_t)n;
    }
    pthread_mutex_unlock(&the_log.lock);
}

/* {"time":...,"level":...,"event":... then the fields' own members: the head is
 * printed (the event is a plain name) and the fields are serialised right after it, so
 * the line costs one serialisation and, most of the time, no allocation. */
static void write_json(const char *iso, enum log_level level, const char *event, json_t *fields)
{
    char stack[LINE_STACK];
    size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(6);
    int head = snprintf(stack, sizeof(stack), "{\"time\":\"%s\",\"level\":\"%s\",\"event\":\"%s\"",
                        iso, level_names[level], event);
    size_t room = sizeof(stack) - (size_t)head - 1; /* one byte kept for the newline */
    if (json_object_size(fields) == 0) {
        memcpy(stack + head, "}\n", 2); /* head is short: the time, a level, a name */
        write_line(stack, (size_t)head + 2);
        return;
    }
    size_t n = json_dumpb(fields, stack + head, room, flags);
    if (n > 0 && n <= room) {
        stack[head] = ','; /* in place of the fields' own '{' */
        stack[head + n] = '\n';
        write_line(stack, (size_t)head + n + 1);
        return;
    }
    char *text = json_dumps(fields, flags);
    if (!text)
        return;
    char *line = xasprintf("%.*s,%s\n", head, stack, text + 1);
    write_line(line, strlen(line));
    free(line);
    free(text);
}

/* A field's value in the text form: bare when it reads unambiguously, else as JSON. */
static void text_value(struct buf *b, json_t *v)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    bool bare = s && *s;
    for (const char *p = s; bare && *p; p++)
        bare = (unsigned char)*p > ' ' && *p != '"' && *p != '=' && *p != '\\';
    if (bare) {
        buf_puts(b, s);
        return;
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
    buf_puts(b, text ? text : "?");
    free(text);
}

/* TIME LEVEL event msg key=value ... */
static void write_text(const char *iso, enum log_level level, const char *event, json_t *fields)
{
    struct buf b;
    const char *key;
    json_t *v;
    buf_init(&b);
    buf_printf(&b, "%s %-5s %s", iso, level_names[level], event);
    json_t *msg = json_object_get(fields, "msg");
    if (json_is_string(msg) && strcmp(json_string_value(msg), event) != 0)
        buf_printf(&b, " %s", json_string_value(msg));
    json_object_foreach(fields, key, v)
    {
        if (v == msg)
            continue;
        buf_printf(&b, " %s=", key);
        text_value(&b, v);
    }
    buf_puts(&b, "\n");
    write_line(b.data, b.len);
    buf_cleanup(&b);
}

void log_write(enum log_level level, const char *event, json_t *fields)
{
    char iso[32];
    if (!log_enabled(level)) {
        json_decref(fields);
        return;
    }
    time_iso8601(time_now_ms(), 1, iso);
    if (atomic_load(&the_log.format) == LOG_FORMAT_TEXT)
        write_text(iso, level, event, fields);
    else
        write_json(iso, level, event, fields);
    json_decref(fields);
}

void log_write_members(enum log_level level, const char *event, const char *members, size_t len)
{
    char iso[32];
    if (!log_enabled(level))
        return;
    time_iso8601(time_now_ms(), 1, iso);
    if (atomic_load(&the_log.format) == LOG_FORMAT_TEXT) { /* the text form names fields */
        char *object = xasprintf("{%.*s}", (int)len, members);
        json_t *fields = json_loads(object, 0, NULL);
        free(object);
        log_write(level, event, fields ? fields : json_object());
        return;
    }
    struct buf b;
    char stack[LINE_STACK];
    int head = snprintf(stack, sizeof(stack), "{\"time\":\"%s\",\"level\":\"%s\",\"event\":\"%s\"",
                        iso, level_names[level], event);
    if ((size_t)head + len + 4 <= sizeof(stack)) { /* the usual line: no allocation */
        size_t n = (size_t)head;
        if (len)
            stack[n++] = ',';
        memcpy(stack + n, members, len);
        memcpy(stack + n + len, "}\n", 2);
        write_line(stack, n + len + 2);
        return;
    }
    buf_init(&b);
    buf_printf(&b, "%.*s%s%.*s}\n", head, stack, len ? "," : "", (int)len, members);
    write_line(b.data, b.len);
    buf_cleanup(&b);
}

void log_debug(const char *event, json_t *fields)
{
    log_write(LOG_LEVEL_DEBUG, event, fields);
}

void log_info(const char *event, json_t *fields)
{
    log_write(LOG_LEVEL_INFO, event, fields);
}

void log_warn(const char *event, json_t *fields)
{
    log_write(LOG_LEVEL_WARN, event, fields);
}

void log_error(const char *event, json_t *fields)
{
    log_write(LOG_LEVEL_ERROR, event, fields);
}

void log_fatal(const char *event, const char *msg)
{
    char iso[32], line[512];
    int n;
    time_iso8601(time_now_ms(), 1, iso);
    if (atomic_load(&the_log.format) == LOG_FORMAT_TEXT)
        n = snprintf(line, sizeof(line), "%s error %s %s\n", iso, event, msg);
    else
        n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"level\":\"error\",\"event\":\"%s\",\"msg\":\"%s\"}\n", iso,
                     event, msg);
    if (n > 0)
        write_line(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}
