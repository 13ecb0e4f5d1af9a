/* dbrows.c - see dbrows.h. The type map follows SQLite's affinity rules (section 3.1 of
 * its datatype page) one way and PostgreSQL's built-in type names the other. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dbsync/dbrows.h"
#include "util/base64.h"
#include "util/crypto.h"

void dbrows_copy(struct store_rows *rows, int n, int key_col, struct dbrow *out)
{
    EVP_MD_CTX *md = crypto_digest_new(EVP_sha256());
    out->vals = xcalloc((size_t)n, sizeof(*out->vals));
    out->n_vals = (size_t)n;
    for (int i = 0; i < n; i++) {
        struct dbval *v = &out->vals[i];
        const void *p = NULL;
        char tag;
        if (store_rows_isnull(rows, i)) {
            v->type = SV_NULL, tag = 'N';
        } else if (store_rows_type(rows, i) == SV_BLOB) {
            p = store_rows_blob(rows, i, &v->len);
            v->type = SV_BLOB, tag = 'B';
        } else {
            p = store_rows_text(rows, i);
            v->len = strlen(p);
            v->type = SV_TEXT, tag = 'T';
        }
        v->bytes = xmalloc(v->len + 1);
        if (v->len)
            memcpy(v->bytes, p, v->len);
        v->bytes[v->len] = '\0';
        /* the tag and length keep ("ab","c") and ("a","bc") apart */
        uint64_t len = v->len;
        EVP_DigestUpdate(md, &tag, 1);
        EVP_DigestUpdate(md, &len, sizeof(len));
        EVP_DigestUpdate(md, v->bytes, v->len);
    }
    crypto_sha256_final_hex(md, out->hash);
    EVP_MD_CTX_free(md);
    out->key = out->vals[key_col].bytes;
}

void dbrows_clear(struct dbrow *row)
{
    for (size_t i = 0; i < row->n_vals; i++)
        free(row->vals[i].bytes);
    free(row->vals);
    memset(row, 0, sizeof(*row));
}

void dbrows_dup(const struct dbrow *row, struct dbrow *out)
{
    size_t key_col = 0;
    *out = *row;
    out->vals = xcalloc(row->n_vals, sizeof(*out->vals));
    for (size_t i = 0; i < row->n_vals; i++) {
        out->vals[i] = row->vals[i];
        out->vals[i].bytes = xmalloc(row->vals[i].len + 1);
        memcpy(out->vals[i].bytes, row->vals[i].bytes, row->vals[i].len + 1);
        if (row->key == row->vals[i].bytes)
            key_col = i;
    }
    out->key = out->vals[key_col].bytes;
}

json_t *dbrows_json(const struct dbrow *row, char *const *names)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < row->n_vals; i++) {
        const struct dbval *v = &row->vals[i];
        json_t *j = json_null();
        if (v->type == SV_BLOB) {
            char *b64 = base64_encode(v->bytes, v->len);
            j = json_string(b64);
            free(b64);
        } else if (v->type == SV_TEXT) {
            j = json_stringn(v->bytes, v->len);
        }
        json_object_set_new(obj, names[i], j ? j : json_null());
    }
    return obj;
}

int dbrows_key_cmp(const char *a, const char *b, bool int_key)
{
    if (int_key) {
        long long x = strtoll(a, NULL, 10), y = strtoll(b, NULL, 10);
        return x < y ? -1 : x > y;
    }
    return strcmp(a, b);
}

bool dbrows_is_int_type(const char *decl)
{
    return decl && strcasestr(decl, "int") != NULL;
}

enum affinity { AFF_INT, AFF_TEXT, AFF_BLOB, AFF_REAL, AFF_NUMERIC };

/* SQLite's rules for the affinity of a declared type, in their order. */
static enum affinity affinity_of(const char *decl)
{
    if (!decl || !*decl)
        return AFF_BLOB;
    if (strcasestr(decl, "int"))
        return AFF_INT;
    if (strcasestr(decl, "char") || strcasestr(decl, "clob") || strcasestr(decl, "text"))
        return AFF_TEXT;
    if (strcasestr(decl, "blob"))
        return AFF_BLOB;
    if (strcasestr(decl, "real") || strcasestr(decl, "floa") || strcasestr(decl, "doub"))
        return AFF_REAL;
    return AFF_NUMERIC;
}

static bool whole(const char *s, const char *end)
{
    return end != s && *end == '\0' && errno == 0;
}

/* PostgreSQL takes every value as text and converts it to the column's type itself;
 * SQLite keeps what it is given, so numbers are bound as numbers where the column's
 * affinity wants them (a PostgreSQL boolean's t/f becoming 1/0). */
struct store_val dbrows_bind(const struct dbval *v, const char *decl, enum store_dialect to)
{
    char *end;
    if (v->type == SV_NULL)
        return sv_null();
    if (v->type == SV_BLOB)
        return sv_blob(v->bytes, v->len);
    if (to == STORE_POSTGRES)
        return sv_text(v->bytes);
    enum affinity aff = affinity_of(decl);
    if (aff == AFF_TEXT || aff == AFF_BLOB)
        return sv_text(v->bytes);
    if (aff != AFF_REAL && (!strcmp(v->bytes, "t") || !strcmp(v->bytes, "true")))
        return sv_int(1);
    if (aff != AFF_REAL && (!strcmp(v->bytes, "f") || !strcmp(v->bytes, "false")))
        return sv_int(0);
    errno = 0;
    long long i = strtoll(v->bytes, &end, 10);
    if (aff != AFF_REAL && whole(v->bytes, end))
        return sv_int(i);
    errno = 0;
    double d = strtod(v->bytes, &end);
    if (whole(v->bytes, end))
        return sv_real(d);
    return sv_text(v->bytes);
}

static bool has(const char *decl, const char *word)
{
    return strcasestr(decl, word) != NULL;
}

static const char *sqlite_to_pg(const char *decl)
{
    if (has(decl, "int"))
        return "bigint";
    if (has(decl, "bool"))
        return "boolean";
    if (has(decl, "char") || has(decl, "clob") || has(decl, "text"))
        return "text";
    if (has(decl, "blob"))
        return "bytea";
    if (has(decl, "real") || has(decl, "floa") || has(decl, "doub"))
        return "double precision";
    if (has(decl, "timestamptz") || has(decl, "with time zone"))
        return "timestamp with time zone";
    if (has(decl, "timestamp") || has(decl, "datetime"))
        return "timestamp";
    if (has(decl, "date"))
        return "date";
    if (has(decl, "time"))
        return "time";
    if (has(decl, "numeric") || has(decl, "decimal"))
        return "numeric";
    return *decl ? "text" : "bytea"; /* no declared type: SQLite keeps anything; text fits */
}

static const char *pg_to_sqlite(const char *decl)
{
    if (has(decl, "interval") || has(decl, "point"))
        return "TEXT";
    if (has(decl, "int") || has(decl, "serial"))
        return "INTEGER";
    if (has(decl, "bool"))
        return "BOOLEAN";
    if (has(decl, "bytea"))
        return "BLOB";
    if (has(decl, "double") || has(decl, "real") || has(decl, "float"))
        return "REAL";
    if (has(decl, "numeric") || has(decl, "decimal"))
        return "NUMERIC";
    if (has(decl, "timestamp") && has(decl, "with time zone"))
        return "TIMESTAMPTZ";
    if (has(decl, "timestamp"))
        return "TIMESTAMP";
    if (has(decl, "date"))
        return "DATE";
    if (has(decl, "time"))
        return "TIME";
    return "TEXT"; /* text, varchar, char, uuid, json, jsonb, ... */
}

char *dbrows_map_type(const char *decl, enum store_dialect from, enum store_dialect to)
{
    const char *d = decl ? decl : "";
    if (from == to)
        return xstrdup(*d ? d : "text");
    return xstrdup(to == STORE_POSTGRES ? sqlite_to_pg(d) : pg_to_sqlite(d));
}
