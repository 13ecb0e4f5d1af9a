/* values.c - see values.h. The date and time checks are hand-written: they are a few
 * lines of fixed-format scanning, and the library alternatives (strptime) accept far
 * more than ISO-8601 (leading spaces, one-digit fields, trailing text). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sync/values.h"
#include "util/base64.h"
#include "util/jsonutil.h"
#include "util/jsonw.h"

enum col_kind values_kind_of(const char *t)
{
    if (!t || !*t)
        return KIND_TEXT;
    if (strstr(t, "timestamp") || strstr(t, "datetime"))
        return KIND_TIMESTAMP;
    if (!strncmp(t, "date", 4))
        return KIND_DATE;
    if (!strncmp(t, "time", 4))
        return KIND_TIME;
    if (!strncmp(t, "bool", 4))
        return KIND_BOOLEAN;
    if (!strcmp(t, "uuid"))
        return KIND_UUID;
    if (!strcmp(t, "json") || !strcmp(t, "jsonb"))
        return KIND_JSON;
    if (strstr(t, "blob") || !strcmp(t, "bytea"))
        return KIND_BLOB;
    if (!strncmp(t, "interval", 8) || !strcmp(t, "point"))
        return KIND_TEXT; /* PostgreSQL types whose names merely contain "int" */
    if (strstr(t, "int") || strstr(t, "serial")) /* SQLite's rule: any "INT" is integer */
        return KIND_INTEGER;
    if (strstr(t, "char") || strstr(t, "clob") || strstr(t, "text"))
        return KIND_TEXT;
    if (strstr(t, "real") || strstr(t, "floa") || strstr(t, "doub"))
        return KIND_REAL;
    if (strstr(t, "numeric") || strstr(t, "decimal"))
        return KIND_NUMERIC;
    return KIND_TEXT;
}

const char *values_kind_name(enum col_kind kind)
{
    static const char *names[] = {"an integer",
                                  "a number",
                                  "a decimal number or numeric string",
                                  "a boolean",
                                  "a string",
                                  "a date (YYYY-MM-DD)",
                                  "an ISO-8601 timestamp",
                                  "a time (HH:MM:SS)",
                                  "a UUID string",
                                  "any JSON value",
                                  "a base64 string"};
    return names[kind];
}

const char *values_kind_label(enum col_kind kind)
{
    static const char *labels[] = {"integer",   "real", "numeric", "boolean", "text", "date",
                                   "timestamp", "time", "uuid",    "json",    "blob"};
    return labels[kind];
}

/* Reads exactly n digits at *p into *out and advances. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool parse_date(const char **p)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;
    if (!digits(p, 4, &y) || *(*p)++ != '-' || !digits(p, 2, &m) || *(*p)++ != '-' ||
        !digits(p, 2, &d))
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int last = m >= 1 && m <= 12 ? days[m - 1] + (m == 2 && leap) : 0;
    return y >= 1 && d >= 1 && d <= last;
}

static bool parse_time(const char **p)
{
    int h, mi, s = 0;
    if (!digits(p, 2, &h) || *(*p)++ != ':' || !digits(p, 2, &mi))
        return false;
    if (**p == ':') {
        (*p)++;
        if (!digits(p, 2, &s))
            return false;
        if (**p == '.') {
            (*p)++;
            if (!isdigit((unsigned char)**p))
                return false;
            while (isdigit((unsigned char)**p))
                (*p)++;
        }
    }
    return h <= 23 && mi <= 59 && s <= 60;
}

static bool parse_offset(const char **p)
{
    int h, m = 0;
    if (**p == 'Z' || **p == 'z') {
        (*p)++;
        return true;
    }
    if (**p != '+' && **p != '-')
        return true; /* no offset: local (SQLite) or timestamp without time zone */
    (*p)++;
    if (!digits(p, 2, &h))
        return false;
    if (**p == ':')
        (*p)++;
    if (isdigit((unsigned char)**p) && !digits(p, 2, &m))
        return false;
    return h <= 23 && m <= 59;
}

static bool valid_temporal(enum col_kind kind, const char *s)
{
    const char *p = s;
    switch (kind) {
    case KIND_DATE:
        return parse_date(&p) && !*p;
    case KIND_TIME:
        return parse_time(&p) && parse_offset(&p) && !*p;
    default:
        if (!parse_date(&p))
            return false;
        if (!*p)
            return true; /* a date alone is midnight */
        if (*p != 'T' && *p != 't' && *p != ' ')
            return false;
        p++;
        return parse_time(&p) && parse_offset(&p) && !*p;
    }
}

static bool valid_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* A plain decimal: [+-]digits[.digits][e[+-]digits] (strtod would also take hex,
 * "inf" and "nan", which no SQL decimal column stores). */
static char *lower_uuid(const char *s)
{
    char *out = xstrdup(s);
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}

static bool valid_numeric(const char *s)
{
    const char *p = s;
    bool any = false;
    if (*p == '+' || *p == '-')
        p++;
    for (; isdigit((unsigned char)*p); p++)
        any = true;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            any = true;
    if (!any)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

static int decode_base64(const char *s, struct owned_val *out)
{
    size_t len = strlen(s);
    unsigned char *bytes = xmalloc(len / 4 * 3 + 1);
    ssize_t n = base64_decode(s, len, bytes, len / 4 * 3);
    if (n < 0) {
        free(bytes);
        return FERRY_ERR;
    }
    out->owned = (char *)bytes;
    out->val = sv_blob(bytes, (size_t)n);
    return FERRY_OK;
}

static int mismatch(enum col_kind kind, json_t *value, struct err *err)
{
    return err_set(err, ERR_INVALID, "expected %s, got %s", values_kind_name(kind),
                   jsonutil_type_name(value));
}

static int from_string(enum col_kind kind, json_t *value, struct owned_val *out, struct err *err)
{
    const char *s = json_string_value(value);
    switch (kind) {
    case KIND_TEXT:
        break;
    case KIND_NUMERIC:
        if (!valid_numeric(s))
            return err_set(err, ERR_INVALID, "expected %s, got \"%.40s\"", values_kind_name(kind),
                           s);
        break;
    case KIND_DATE:
    case KIND_TIMESTAMP:
    case KIND_TIME:
        if (!valid_temporal(kind, s))
            return err_set(err, ERR_INVALID, "expected %s, got \"%.40s\"", values_kind_name(kind),
                           s);
        break;
    case KIND_UUID:
        if (!valid_uuid(s))
            return err_set(err, ERR_INVALID, "expected %s, got \"%.40s\"", values_kind_name(kind),
                           s);
        out->owned = lower_uuid(s); /* one spelling on both backends (PostgreSQL prints lower) */
        out->val = sv_text(out->owned);
        return FERRY_OK;
    case KIND_BLOB:
        if (decode_base64(s, out) != FERRY_OK)
            return err_set(err, ERR_INVALID, "expected %s", values_kind_name(kind));
        return FERRY_OK;
    default:
        return mismatch(kind, value, err);
    }
    out->val = sv_text(s);
    return FERRY_OK;
}

int values_from_json(enum col_kind kind, json_t *value, struct owned_val *out, struct err *err)
{
    memset(out, 0, sizeof(*out));
    out->val = sv_null();
    if (!value || json_is_null(value))
        return FERRY_OK;
    if (kind == KIND_JSON) {
        out->owned = jsonutil_to_string(value);
        out->val = sv_text(out->owned);
        return FERRY_OK;
    }
    if (json_is_string(value))
        return from_string(kind, value, out, err);
    if (json_is_integer(value) && (kind == KIND_INTEGER || kind == KIND_NUMERIC)) {
        out->val = sv_int(json_integer_value(value));
        return FERRY_OK;
    }
    if (json_is_number(value) && (kind == KIND_REAL || kind == KIND_NUMERIC)) {
        out->val = sv_real(json_number_value(value));
        return FERRY_OK;
    }
    if (json_is_boolean(value) && kind == KIND_BOOLEAN) {
        out->val = sv_int(json_is_true(value));
        return FERRY_OK;
    }
    return mismatch(kind, value, err);
}

void values_release(struct owned_val *v)
{
    free(v->owned);
    v->owned = NULL;
}

/* PostgreSQL prints "2024-01-15 10:30:00+00"; the feed speaks ISO-8601. Writes the
 * ISO form into out (64 bytes) and returns it, or returns text itself when too long. */
static const char *iso_timestamp(const char *text, char out[64])
{
    size_t len = strlen(text);
    if (len >= 64 - 4)
        return text;
    memcpy(out, text, len + 1);
    if (len > 10 && out[10] == ' ')
        out[10] = 'T';
    if (len > 3 && (out[len - 3] == '+' || out[len - 3] == '-') && out[len - 3 - 1] != ':' &&
        isdigit((unsigned char)out[len - 1]) && len > 19)
        memcpy(out + len, ":00", 4);
    return out;
}

static char *blob_text(const struct store_rows *rows, int col)
{
    size_t len = 0;
    const void *bytes = store_rows_blob(rows, col, &len);
    return base64_encode(bytes, len);
}

/* How a column's value is shown, from its declared kind and the class the database
 * returned. SQLite may hold what another program wrote, and the feed reports it
 * faithfully rather than guessing a conversion. */
enum shown {
    SHOWN_NULL,
    SHOWN_BOOL,
    SHOWN_JSON,
    SHOWN_BLOB,
    SHOWN_TEXT,
    SHOWN_TIMESTAMP,
    SHOWN_INT,
    SHOWN_REAL
};

static enum shown shown_as(enum col_kind kind, enum store_type stored)
{
    if (stored == SV_NULL)
        return SHOWN_NULL;
    switch (kind) {
    case KIND_BOOLEAN:
        return SHOWN_BOOL;
    case KIND_JSON:
        return SHOWN_JSON;
    case KIND_BLOB:
        return SHOWN_BLOB;
    case KIND_NUMERIC:
        return SHOWN_TEXT;
    case KIND_TIMESTAMP:
        if (stored == SV_TEXT)
            return SHOWN_TIMESTAMP;
        break;
    default:
        break;
    }
    if (stored == SV_INT || (kind == KIND_INTEGER && stored != SV_REAL && stored != SV_TEXT))
        return SHOWN_INT;
    if (stored == SV_REAL || kind == KIND_REAL)
        return SHOWN_REAL;
    if (stored == SV_BLOB)
        return SHOWN_BLOB;
    return SHOWN_TEXT;
}

json_t *values_to_json(enum col_kind kind, const struct store_rows *rows, int col)
{
    char iso[64];
    switch (shown_as(kind, store_rows_type(rows, col))) {
    case SHOWN_NULL:
        return json_null();
    case SHOWN_BOOL:
        return json_boolean(store_rows_int(rows, col) != 0);
    case SHOWN_JSON: {
        json_t *v = json_loads(store_rows_text(rows, col), JSON_DECODE_ANY, NULL);
        return v ? v : json_string(store_rows_text(rows, col));
    }
    case SHOWN_BLOB: {
        char *enc = blob_text(rows, col);
        json_t *v = json_string(enc);
        free(enc);
        return v;
    }
    case SHOWN_TIMESTAMP:
        return json_string(iso_timestamp(store_rows_text(rows, col), iso));
    case SHOWN_INT:
        return json_integer(store_rows_int(rows, col));
    case SHOWN_REAL: {
        double d = store_rows_real(rows, col);
        return isfinite(d) ? json_real(d) : json_null();
    }
    case SHOWN_TEXT:
        break;
    }
    return json_string(store_rows_text(rows, col));
}

bool values_write_json(struct buf *b, enum col_kind kind, const struct store_rows *rows, int col)
{
    char iso[64];
    switch (shown_as(kind, store_rows_type(rows, col))) {
    case SHOWN_NULL:
        buf_append(b, "null", 4);
        return true;
    case SHOWN_BOOL:
        jsonw_bool(b, store_rows_int(rows, col) != 0);
        return true;
    case SHOWN_JSON: {
        /* parsed and printed again, as values_to_json does, so what leaves is JSON even
         * when another program stored text that is not */
        json_t *v = json_loads(store_rows_text(rows, col), JSON_DECODE_ANY, NULL);
        if (!v)
            return jsonw_text(b, store_rows_text(rows, col));
        jsonw_value(b, v);
        json_decref(v);
        return true;
    }
    case SHOWN_BLOB: {
        char *enc = blob_text(rows, col);
        jsonw_string(b, enc, strlen(enc));
        free(enc);
        return true;
    }
    case SHOWN_TIMESTAMP:
        return jsonw_text(b, iso_timestamp(store_rows_text(rows, col), iso));
    case SHOWN_INT:
        jsonw_int(b, store_rows_int(rows, col));
        return true;
    case SHOWN_REAL:
        jsonw_real(b, store_rows_real(rows, col));
        return true;
    case SHOWN_TEXT:
        break;
    }
    return jsonw_text(b, store_rows_text(rows, col));
}

int values_pk_text(enum col_kind kind, json_t *value, char **out, struct err *err)
{
    *out = NULL;
    if (kind == KIND_INTEGER) {
        if (!json_is_integer(value))
            return mismatch(kind, value ? value : json_null(), err);
        *out = xasprintf("%lld", (long long)json_integer_value(value));
        return FERRY_OK;
    }
    if (!json_is_string(value) || !*json_string_value(value))
        return err_set(err, ERR_INVALID, "expected a non-empty string, got %s",
                       value ? jsonutil_type_name(value) : "nothing");
    if (kind == KIND_UUID && !valid_uuid(json_string_value(value)))
        return err_set(err, ERR_INVALID, "expected a UUID string");
    *out = kind == KIND_UUID ? lower_uuid(json_string_value(value))
                             : xstrdup(json_string_value(value));
    return FERRY_OK;
}
