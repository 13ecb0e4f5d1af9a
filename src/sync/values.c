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

/* PostgreSQL prints "2024-01-15 10:30:00+00"; the feed speaks ISO-8601. */
static json_t *iso_timestamp(const char *text)
{
    char buf[64];
    size_t len = strlen(text);
    if (len >= sizeof(buf) - 4)
        return json_string(text);
    memcpy(buf, text, len + 1);
    if (len > 10 && buf[10] == ' ')
        buf[10] = 'T';
    if (len > 3 && (buf[len - 3] == '+' || buf[len - 3] == '-') && buf[len - 3 - 1] != ':' &&
        isdigit((unsigned char)buf[len - 1]) && len > 19)
        memcpy(buf + len, ":00", 4);
    return json_string(buf);
}

static json_t *blob_json(const struct store_rows *rows, int col)
{
    size_t len = 0;
    const void *bytes = store_rows_blob(rows, col, &len);
    char *enc = base64_encode(bytes, len);
    json_t *v = json_string(enc);
    free(enc);
    return v;
}

json_t *values_to_json(enum col_kind kind, const struct store_rows *rows, int col)
{
    enum store_type stored = store_rows_type(rows, col);
    if (stored == SV_NULL)
        return json_null();
    switch (kind) {
    case KIND_BOOLEAN:
        return json_boolean(store_rows_int(rows, col) != 0);
    case KIND_JSON: {
        json_t *v = json_loads(store_rows_text(rows, col), JSON_DECODE_ANY, NULL);
        return v ? v : json_string(store_rows_text(rows, col));
    }
    case KIND_BLOB:
        return blob_json(rows, col);
    case KIND_NUMERIC:
        return json_string(store_rows_text(rows, col));
    case KIND_TIMESTAMP:
        if (stored == SV_TEXT)
            return iso_timestamp(store_rows_text(rows, col));
        break;
    default:
        break;
    }
    /* Otherwise the value's own class decides: SQLite may hold what another program
     * wrote, and the feed reports it faithfully rather than guessing a conversion. */
    if (stored == SV_INT || (kind == KIND_INTEGER && stored != SV_REAL && stored != SV_TEXT))
        return json_integer(store_rows_int(rows, col));
    if (stored == SV_REAL || kind == KIND_REAL) {
        double d = store_rows_real(rows, col);
        return isfinite(d) ? json_real(d) : json_null();
    }
    if (stored == SV_BLOB)
        return blob_json(rows, col);
    return json_string(store_rows_text(rows, col));
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
