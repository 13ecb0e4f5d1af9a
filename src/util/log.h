/* log.h - the server's log: every line is one event with a time (RFC 3339, UTC, ms), a
 * level and an event name, plus fields; written as one JSON object (default) or as one
 * human-readable text line, to stderr or to a file that SIGHUP reopens.
 *
 * Until log_open() is called, lines go to stderr as JSON at level info. Every function
 * is thread-safe; a line is written with one write(2) call, so lines never interleave. */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdbool.h>

#include <jansson.h>

#include "ferry.h"

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

enum log_format {
    LOG_FORMAT_JSON,
    LOG_FORMAT_TEXT,
};

/* "debug", "info", "warn" or "error" / "json" or "text". FERRY_ERR on anything else. */
int log_parse_level(const char *name, enum log_level *out);
int log_parse_format(const char *name, enum log_format *out);

/* Sends lines of at least min_level, in format, to path (appended to, created 0640) or
 * to stderr when path is NULL or empty. On failure the log is unchanged and err says
 * why. */
int log_open(enum log_level min_level, enum log_format format, const char *path, struct err *err);

/* Opens the log file's path again (after logrotate moved it) and writes there from now
 * on. With no file (stderr) it does nothing. On failure the old file stays in use. */
int log_reopen(struct err *err);

/* Goes back to stderr, closing the file. */
void log_close(void);

/* Whether a line of this level would be written: check it before building costly
 * fields. */
bool log_enabled(enum log_level level);

/* Writes one line. event is a plain lower_case name (a literal). fields (an object, or
 * NULL) is consumed: its keys, none of them time, level or event, follow those three in
 * order. A "msg" field is the human sentence of the event. */
void log_write(enum log_level level, const char *event, json_t *fields);

/* log_write for fields already printed as JSON object members ("k":v,... without the
 * braces; util/jsonw.h), which the JSON format copies as they are: the request log's
 * line costs no JSON tree. */
void log_write_members(enum log_level level, const char *event, const char *members, size_t len);

void log_debug(const char *event, json_t *fields);
void log_info(const char *event, json_t *fields);
void log_warn(const char *event, json_t *fields);
void log_error(const char *event, json_t *fields);

/* For the last words before abort(): writes an error line without allocating. msg is
 * plain ASCII text without quotes or backslashes. */
void log_fatal(const char *event, const char *msg);

#endif
