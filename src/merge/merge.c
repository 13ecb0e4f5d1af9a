/* merge.c - 3-way merge of texts with libgit2's git_merge_file: the favored result, the
 * list of conflicts with their three sides (parsed from git's diff3 output), the checks
 * that keep binary, non-UTF-8 and oversize input out, and the atomic write of a result. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>
#include <jansson.h>

#include "merge/merge.h"
#include "util/jsonutil.h"
#include "util/utf8.h"

/* The labels on conflict markers: "<<<<<<< source", "||||||| base", ">>>>>>> target". */
#define LABEL_BASE "base"
#define LABEL_SOURCE "source"
#define LABEL_TARGET "target"
/* Longest conflict marker ferry asks libgit2 for (its marker_size is an unsigned short). */
#define MARKER_MAX 1000

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

/* libgit2 sets up its allocator and globals in git_libgit2_init; ferry never shuts it
 * down (it holds nothing worth releasing before exit). */
static void git_start(void)
{
    git_libgit2_init();
}

void merge_init(void)
{
    pthread_once(&git_once, git_start);
}

static const char *const favor_names[] = {"none", "source", "target", "union"};

int merge_favor_parse(const char *name, enum merge_favor *out, struct err *err)
{
    for (size_t i = 0; i < sizeof(favor_names) / sizeof(favor_names[0]); i++)
        if (!strcmp(name, favor_names[i])) {
            *out = (enum merge_favor)i;
            return FERRY_OK;
        }
    return err_set(err, ERR_INVALID, "favor must be \"source\", \"target\", \"union\" or \"none\"");
}

int merge_check_text(const struct merge_text *t, const char *what, struct err *err)
{
    if ((long long)t->len > MERGE_MAX_INPUT)
        return err_set(err, ERR_INVALID, "%s is larger than the merge limit of %lld bytes", what,
                       MERGE_MAX_INPUT);
    if (memchr(t->data, '\0', t->len))
        return err_set(err, ERR_INVALID, "%s is binary (it holds a NUL byte); only text is merged",
                       what);
    /* The rules are jansson's (RFC 3629), so the texts, and the merge made of their lines,
     * go into JSON strings unchecked; jansson's own check copies and costs a third of a
     * merge on large files. */
    if (!utf8_valid(t->data, t->len))
        return err_set(err, ERR_INVALID, "%s is not valid UTF-8 text", what);
    return FERRY_OK;
}

int merge_read_file(const char *path, const char *what, char **data, size_t *len, struct err *err)
{
    /* O_NONBLOCK: opening a FIFO waits for a writer, which may never come (nor the
     * server's shutdown); the fstat below refuses what is not a regular file. */
    int rc = FERRY_ERR, fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    char *buf = NULL;
    size_t got = 0;

    *data = NULL;
    if (fd < 0) {
        err_set(err, errno == ENOENT ? ERR_NOT_FOUND : ERR_INVALID, "cannot open %s: %s", what,
                strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set(err, ERR_INVALID, "%s is not a regular file", what);
        goto out;
    }
    if (st.st_size > MERGE_MAX_INPUT) {
        err_set(err, ERR_INVALID, "%s is larger than the merge limit of %lld bytes", what,
                MERGE_MAX_INPUT);
        goto out;
    }
    buf = xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a file that shrank while read is taken as it was read */
        got += (size_t)n;
    }
    buf[got] = '\0';
    struct merge_text t = {buf, got};
    if (merge_check_text(&t, what, err) != FERRY_OK)
        goto out;
    *data = buf;
    *len = got;
    buf = NULL;
    rc = FERRY_OK;
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* One libgit2 merge. Flags always include SIMPLIFY_ALNUM: `git merge-file` merges at
 * xdiff's XDL_MERGE_ZEALOUS_ALNUM level, and libgit2 uses that level only with it. */
static int run_merge(const struct merge_text *base, const struct merge_text *source,
                     const struct merge_text *target, git_merge_file_favor_t favor, uint32_t flags,
                     unsigned marker, git_merge_file_result *res, struct err *err)
{
    git_merge_file_input in[3];
    const struct merge_text *texts[3] = {base, source, target};
    git_merge_file_options o;

    git_merge_file_options_init(&o, GIT_MERGE_FILE_OPTIONS_VERSION);
    for (int i = 0; i < 3; i++) {
        git_merge_file_input_init(&in[i], GIT_MERGE_FILE_INPUT_VERSION);
        in[i].ptr = texts[i]->len ? texts[i]->data : "";
        in[i].size = texts[i]->len;
    }
    o.ancestor_label = LABEL_BASE;
    o.our_label = LABEL_SOURCE;
    o.their_label = LABEL_TARGET;
    o.favor = favor;
    o.flags = GIT_MERGE_FILE_SIMPLIFY_ALNUM | flags;
    o.marker_size = (unsigned short)marker;
    if (git_merge_file(res, &in[0], &in[1], &in[2], &o) < 0) {
        const git_error *e = git_error_last();
        return err_set(err, ERR_INTERNAL, "the merge failed: %s",
                       e && e->message ? e->message : "libgit2 gave no reason");
    }
    return FERRY_OK;
}

/* The length of the longest run of one marker character ('<', '|', '=', '>') at the
 * start of a line of t. */
static size_t longest_marker_run(const struct merge_text *t)
{
    size_t longest = 0;
    for (size_t i = 0; i < t->len;) {
        char c = t->data[i];
        size_t run = 0;
        if (c == '<' || c == '|' || c == '=' || c == '>')
            while (i + run < t->len && t->data[i + run] == c)
                run++;
        if (run > longest)
            longest = run;
        const char *nl = memchr(t->data + i, '\n', t->len - i);
        i = nl ? (size_t)(nl - t->data) + 1 : t->len;
    }
    return longest;
}

/* Whether the line (without its end of line) is the marker: size times c, then a space
 * and label when label is not NULL. */
static bool is_marker(const char *line, size_t len, char c, unsigned size, const char *label)
{
    size_t label_len = label ? strlen(label) + 1 : 0;
    if (len != size + label_len)
        return false;
    for (unsigned i = 0; i < size; i++)
        if (line[i] != c)
            return false;
    return !label || (line[size] == ' ' && !memcmp(line + size + 1, label, label_len - 1));
}

static void add_conflict(struct merge_result *r, const struct merge_conflict *c)
{
    r->conflicts = xrealloc(r->conflicts, (r->n_conflicts + 1) * sizeof(*r->conflicts));
    r->conflicts[r->n_conflicts++] = *c;
}

/* What the pass over a diff3 merge writes besides the conflict list: nothing (the merge
 * is the answer as it is), the merge with git's 7-character markers in place of the longer
 * ones it was made with, or the merge with each conflict resolved to one side or to the
 * union of both. */
enum emit { EMIT_NOTHING, EMIT_MARKERS, EMIT_SOURCE, EMIT_TARGET, EMIT_UNION };
enum region { CLEAN, SOURCE, BASE, TARGET };

struct pass {
    unsigned size; /* of the markers in the merge read */
    enum emit emit;
    char *out; /* room for the whole merge read: what is written is never longer */
    size_t out_len;
    /* EMIT_UNION: the clean lines since the last conflict, and whether two conflicts were
     * near enough for git to join them (then the union written is not git's) */
    size_t gap_lines;
    bool gap_alnum, near;
};

static bool has_ascii_alnum(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i], lower = c | 0x20;
        if ((c >= '0' && c <= '9') || (lower >= 'a' && lower <= 'z'))
            return true;
    }
    return false;
}

/* Follows the clean lines between conflicts for EMIT_UNION (n_conflicts: those read so
 * far). git's refinement joins two conflicts at most three lines apart, or apart only by
 * lines without a letter or digit (xdiff's isalnum; an ASCII one counts in any locale).
 * Four clean lines or more with one keep them apart, whatever refinement finds inside
 * them, and a change of one side between two conflicts keeps them apart too. */
static void follow_gap(struct pass *ps, enum region was, enum region now, const char *p, size_t n,
                       size_t n_conflicts)
{
    if (was == CLEAN && now == CLEAN) {
        ps->gap_lines++;
        ps->gap_alnum = ps->gap_alnum || has_ascii_alnum(p, n);
        return;
    }
    if (was == CLEAN && n_conflicts && (ps->gap_lines <= 3 || !ps->gap_alnum))
        ps->near = true;
    ps->gap_lines = 0;
    ps->gap_alnum = false;
}

/* Writes what git's --union makes of one conflict: its two sides merged from an empty
 * base, which is the refinement git applies to that conflict alone (a 2-way diff of the
 * sides, keeping the lines they share once), given no other conflict is near. */
static int emit_union(struct pass *ps, const struct merge_conflict *c, struct err *err)
{
    struct merge_text empty = {"", 0}, s = {c->source, strlen(c->source)},
                      t = {c->target, strlen(c->target)};
    git_merge_file_result g = {0};
    if (ps->near)
        return FERRY_OK; /* the side merge gives the result */
    if (run_merge(&empty, &s, &t, GIT_MERGE_FILE_FAVOR_UNION, 0, 0, &g, err) != FERRY_OK)
        return FERRY_ERR;
    if (g.len)
        memcpy(ps->out + ps->out_len, g.ptr, g.len); /* at most s and t: it fits */
    ps->out_len += g.len;
    git_merge_file_result_free(&g);
    return FERRY_OK;
}

/* Writes the line [p, next) when the pass keeps it, a marker line with git's size. */
static void emit_line(struct pass *ps, enum region where, bool marker, const char *p,
                      const char *next)
{
    bool keep = ps->emit == EMIT_MARKERS ||
                (!marker && (where == CLEAN || (ps->emit == EMIT_SOURCE && where == SOURCE) ||
                             (ps->emit == EMIT_TARGET && where == TARGET)));
    if (ps->emit == EMIT_NOTHING || !keep)
        return;
    if (marker) {
        memset(ps->out + ps->out_len, *p, GIT_MERGE_CONFLICT_MARKER_SIZE);
        ps->out_len += GIT_MERGE_CONFLICT_MARKER_SIZE;
        p += ps->size;
    }
    memcpy(ps->out + ps->out_len, p, (size_t)(next - p));
    ps->out_len += (size_t)(next - p);
}

/* Collects the conflict regions of a diff3-style merge made with markers of ps->size, and
 * writes what ps->emit asks for, in one pass. libgit2 reports conflicts only as markers in
 * the merged text, so ferry reads them back from there; markers longer than any
 * marker-like line of the inputs make this unambiguous. */
static int parse_conflicts(const char *text, size_t len, struct pass *ps, struct merge_result *r,
                           struct err *err)
{
    enum region state = CLEAN;
    struct merge_conflict c = {0};
    const char *section = text, *end = text + len;
    size_t line = 0;
    unsigned size = ps->size;

    for (const char *p = text, *next; p < end; p = next) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        enum region was = state;
        next = nl ? nl + 1 : end;
        line++;
        if (n && p[n - 1] == '\r')
            n--; /* xdiff ends markers with "\r\n" in files that use it */
        if (state == CLEAN && is_marker(p, n, '<', size, LABEL_SOURCE)) {
            c.line_number = line;
            state = SOURCE;
        } else if (state == SOURCE && is_marker(p, n, '|', size, LABEL_BASE)) {
            c.source = xstrndup(section, (size_t)(p - section));
            state = BASE;
        } else if (state == BASE && is_marker(p, n, '=', size, NULL)) {
            c.base = xstrndup(section, (size_t)(p - section));
            state = TARGET;
        } else if (state == TARGET && is_marker(p, n, '>', size, LABEL_TARGET)) {
            c.target = xstrndup(section, (size_t)(p - section));
            add_conflict(r, &c);
            memset(&c, 0, sizeof(c));
            state = CLEAN;
        }
        emit_line(ps, was, state != was, p, next);
        if (ps->emit == EMIT_UNION) {
            follow_gap(ps, was, state, p, n, r->n_conflicts);
            if (was == TARGET && state == CLEAN &&
                emit_union(ps, &r->conflicts[r->n_conflicts - 1], err) != FERRY_OK)
                return FERRY_ERR;
        }
        if (state != was)
            section = next;
    }
    if (state == CLEAN)
        return FERRY_OK;
    free(c.source);
    free(c.base);
    return err_set(err, ERR_INTERNAL, "the merge left an unterminated conflict region");
}

static git_merge_file_favor_t git_favor(enum merge_favor favor)
{
    switch (favor) {
    case MERGE_FAVOR_SOURCE:
        return GIT_MERGE_FILE_FAVOR_OURS;
    case MERGE_FAVOR_TARGET:
        return GIT_MERGE_FILE_FAVOR_THEIRS;
    case MERGE_FAVOR_UNION:
        return GIT_MERGE_FILE_FAVOR_UNION;
    default:
        return GIT_MERGE_FILE_FAVOR_NORMAL;
    }
}

static void take_result(struct merge_result *r, git_merge_file_result *g)
{
    free(r->merged);
    r->merged = xstrndup(g->ptr ? g->ptr : "", g->len);
    r->merged_len = g->len;
}

/* Reads the diff3 merge g: its conflicts into r, and r->merged as ps->emit makes it (a
 * copy of g for EMIT_NOTHING). */
static int read_merge(git_merge_file_result *g, struct pass *ps, struct merge_result *r,
                      struct err *err)
{
    if (ps->emit != EMIT_NOTHING)
        ps->out = xmalloc(g->len + 1);
    if (parse_conflicts(g->ptr ? g->ptr : "", g->len, ps, r, err) != FERRY_OK) {
        free(ps->out);
        return FERRY_ERR;
    }
    if (ps->emit == EMIT_NOTHING) {
        take_result(r, g);
        return FERRY_OK;
    }
    ps->out[ps->out_len] = '\0';
    r->merged = ps->out;
    r->merged_len = ps->out_len;
    return FERRY_OK;
}

/* What the favor makes of each conflict region: its source or target side, or for union
 * the region's three sides merged again with the union favor (git refines a union the
 * same way inside a region, keeping the lines both sides share once). The sides are not
 * merged again for source and target: a region that differs only in a missing final
 * newline would look unchanged on one side once markers separate it. */
static int resolve_each(struct merge_result *r, enum merge_favor favor, struct err *err)
{
    for (size_t i = 0; i < r->n_conflicts; i++) {
        struct merge_conflict *c = &r->conflicts[i];
        struct merge_text b = {c->base, strlen(c->base)}, s = {c->source, strlen(c->source)},
                          t = {c->target, strlen(c->target)};
        git_merge_file_result g = {0};
        if (favor != MERGE_FAVOR_UNION) {
            c->resolution = xstrdup(favor == MERGE_FAVOR_SOURCE ? c->source : c->target);
            continue;
        }
        if (run_merge(&b, &s, &t, git_favor(favor), 0, 0, &g, err) != FERRY_OK)
            return FERRY_ERR;
        c->resolution = xstrndup(g.ptr ? g.ptr : "", g.len);
        git_merge_file_result_free(&g);
    }
    return FERRY_OK;
}

/* The merge with the favor, on its own thread while the diff3 merge that lists the
 * conflicts runs, for the favors whose result cannot be read off the diff3 merge. */
struct side_merge {
    const struct merge_text *base, *source, *target;
    enum merge_favor favor;
    git_merge_file_result res;
    struct err err;
    int rc;
};

static void *side_merge_run(void *arg)
{
    struct side_merge *m = arg;
    m->rc = run_merge(m->base, m->source, m->target, git_favor(m->favor), 0, 0, &m->res, &m->err);
    return NULL;
}

static bool lacks_final_newline(const struct merge_text *t)
{
    return t->len && t->data[t->len - 1] != '\n';
}

/* Whether the favored result needs a merge of its own from the start. Otherwise it is
 * the diff3 merge with each conflict replaced: the conflicts git resolves are the diff3
 * regions, split and joined again by refinement, which changes no line of either side,
 * so for source and target by that side, and for union by emit_union. Not so when a side
 * taken lacks a final newline: the diff3 markers add one after it. */
static bool side_needed(enum merge_favor favor, const struct merge_text *source,
                        const struct merge_text *target)
{
    switch (favor) {
    case MERGE_FAVOR_SOURCE:
        return lacks_final_newline(source);
    case MERGE_FAVOR_TARGET:
        return lacks_final_newline(target);
    case MERGE_FAVOR_UNION:
        return lacks_final_newline(source) || lacks_final_newline(target);
    default:
        return false;
    }
}

static enum emit emit_for(enum merge_favor favor, unsigned marker, bool need_side)
{
    if (need_side)
        return EMIT_NOTHING;
    if (favor == MERGE_FAVOR_SOURCE)
        return EMIT_SOURCE;
    if (favor == MERGE_FAVOR_TARGET)
        return EMIT_TARGET;
    if (favor == MERGE_FAVOR_UNION)
        return EMIT_UNION;
    return marker == GIT_MERGE_CONFLICT_MARKER_SIZE ? EMIT_NOTHING : EMIT_MARKERS;
}

/* Marker size for the diff3 merge that is parsed: git's 7, or longer than any
 * marker-like run at a line start in the inputs, so no input line reads as a marker. */
static unsigned parse_marker_size(const struct merge_text *base, const struct merge_text *source,
                                  const struct merge_text *target)
{
    size_t run = longest_marker_run(base);
    if (longest_marker_run(source) > run)
        run = longest_marker_run(source);
    if (longest_marker_run(target) > run)
        run = longest_marker_run(target);
    if (run < GIT_MERGE_CONFLICT_MARKER_SIZE)
        return GIT_MERGE_CONFLICT_MARKER_SIZE;
    return run < MARKER_MAX ? (unsigned)run + 1 : MARKER_MAX;
}

/* How it works: one merge with favor none in diff3 style gives git's conflict regions with
 * all three sides (libgit2 has no other way to list them), read back by parse_conflicts,
 * which in the same pass writes the result: byte for byte what `git merge-file
 * --diff3/--ours/--theirs/--union` prints. Where the pass cannot (a side taken without a
 * final newline, known at once, or for union two conflicts git joins, known after the
 * pass) the result is libgit2's merge with the favor, on a second thread or after. */
int merge_texts(const struct merge_text *base, const struct merge_text *source,
                const struct merge_text *target, enum merge_favor favor, struct merge_result *out,
                struct err *err)
{
    git_merge_file_result g = {0};
    unsigned marker = parse_marker_size(base, source, target);
    struct side_merge side = {base, source, target, favor, {0}, {0}, FERRY_OK};
    bool need_side = side_needed(favor, source, target), threaded = false;
    struct pass ps = {.size = marker, .emit = emit_for(favor, marker, need_side)};
    pthread_t thread;
    int rc = FERRY_ERR;

    merge_init();
    memset(out, 0, sizeof(*out));
    if (need_side)
        threaded = pthread_create(&thread, NULL, side_merge_run, &side) == 0;
    if (run_merge(base, source, target, GIT_MERGE_FILE_FAVOR_NORMAL, GIT_MERGE_FILE_STYLE_DIFF3,
                  marker, &g, err) == FERRY_OK)
        rc = read_merge(&g, &ps, out, err);
    if (threaded)
        pthread_join(thread, NULL);
    else if (rc == FERRY_OK && !g.automergeable && (need_side || ps.near)) {
        need_side = true; /* for union, conflicts git joins: the pass could not write it */
        side_merge_run(&side);
    }
    if (rc != FERRY_OK)
        goto out;
    rc = FERRY_ERR;
    if (!g.automergeable && !out->n_conflicts) {
        err_set(err, ERR_INTERNAL, "the merge reported conflicts but marked none");
        goto out;
    }
    out->success = g.automergeable || favor != MERGE_FAVOR_NONE;
    if (!g.automergeable && need_side) { /* a clean merge is the same whatever the favor */
        if (side.rc != FERRY_OK) {
            *err = side.err;
            goto out;
        }
        take_result(out, &side.res);
    }
    if (favor != MERGE_FAVOR_NONE) {
        if (resolve_each(out, favor, err) != FERRY_OK)
            goto out;
        out->n_resolved = out->n_conflicts;
    }
    rc = FERRY_OK;
out:
    git_merge_file_result_free(&g);
    git_merge_file_result_free(&side.res);
    if (rc != FERRY_OK)
        merge_result_cleanup(out);
    return rc;
}

int merge_texts_only(const struct merge_text *base, const struct merge_text *source,
                     const struct merge_text *target, enum merge_favor favor,
                     struct merge_result *out, struct err *err)
{
    git_merge_file_result g = {0};
    uint32_t style = favor == MERGE_FAVOR_NONE ? GIT_MERGE_FILE_STYLE_DIFF3 : 0;

    merge_init();
    memset(out, 0, sizeof(*out));
    if (run_merge(base, source, target, git_favor(favor), style, 0, &g, err) != FERRY_OK)
        return FERRY_ERR;
    out->success = g.automergeable || favor != MERGE_FAVOR_NONE;
    out->held = xmalloc(sizeof(g));
    memcpy(out->held, &g, sizeof(g));
    out->merged = (char *)(g.ptr ? g.ptr : ""); /* held: cleanup frees the buffer, not this */
    out->merged_len = g.len;
    return FERRY_OK;
}

void merge_result_cleanup(struct merge_result *r)
{
    for (size_t i = 0; i < r->n_conflicts; i++) {
        free(r->conflicts[i].base);
        free(r->conflicts[i].source);
        free(r->conflicts[i].target);
        free(r->conflicts[i].resolution);
    }
    free(r->conflicts);
    if (r->held) {
        git_merge_file_result_free(r->held);
        free(r->held);
    } else {
        free(r->merged);
    }
    memset(r, 0, sizeof(*r));
}

/* A JSON string of text, which merge_check_text made sure is UTF-8, as is a merge made of
 * its lines and ASCII markers (so jansson's check is not run again); null for NULL. */
static json_t *text_json(const char *text, size_t len)
{
    return text ? json_stringn_nocheck(text, len) : json_null();
}

/* A conflict region as the seed shows it: its lines joined by "\n", without a final
 * newline ("original", not "original\n"); null for a missing resolution. */
static json_t *region_json(const char *region)
{
    size_t len = region ? strlen(region) : 0;
    if (len && region[len - 1] == '\n')
        len--;
    return text_json(region, len);
}

/* The response without success and mergedContent, which merge_result_dump writes itself. */
static json_t *rest_json(const struct merge_result *r, enum merge_favor favor)
{
    json_t *conflicts = json_array();
    for (size_t i = 0; i < r->n_conflicts; i++) {
        const struct merge_conflict *c = &r->conflicts[i];
        json_t *o = json_object();
        json_object_set_new(o, "lineNumber", json_integer((json_int_t)c->line_number));
        json_object_set_new(o, "baseContent", region_json(c->base));
        json_object_set_new(o, "sourceContent", region_json(c->source));
        json_object_set_new(o, "targetContent", region_json(c->target));
        json_object_set_new(o, "resolution", region_json(c->resolution));
        json_array_append_new(conflicts, o);
    }
    json_t *o = json_object();
    json_object_set_new(o, "conflicts", conflicts);
    json_object_set_new(o, "conflictResolutionCount", json_integer((json_int_t)r->n_resolved));
    json_object_set_new(o, "favor", json_string(favor_names[favor]));
    return o;
}

/* The two-character escape of c in a JSON string, or NULL when it takes "\u00XX". */
static const char *short_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    default:
        return NULL;
    }
}

static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* The bytes of w that needs_escape, as the top bit of each: a byte below 0x20, or one that
 * is zero once xored with '"' or '\\', borrows into a clear top bit. The constants have
 * clear top bits, so one ~w serves the three tests. A borrow can also mark a byte above
 * (later in memory, on a little-endian machine) a marked one, never below it, so the
 * lowest mark is always a byte that needs escaping. */
static uint64_t escape_marks(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, tops = 0x8080808080808080ULL;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    return ((w - ones * 0x20) | (quote - ones) | (backslash - ones)) & ~w & tops;
}

/* The length of the run at p, of at most n bytes, that needs no escape, eight bytes at
 * a time: text is mostly such runs, a line long. Where a word holds the run's end, its
 * lowest mark says which byte (on a big-endian machine the bytes are tested one by one). */
static size_t plain_run(const char *p, size_t n)
{
    size_t i = 0;
    uint64_t w, marks;
    for (; n - i >= 8; i += 8) {
        memcpy(&w, p + i, 8);
        if ((marks = escape_marks(w)) != 0) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return i + (size_t)__builtin_ctzll(marks) / 8;
#else
            break;
#endif
        }
    }
    while (i < n && !needs_escape((unsigned char)p[i]))
        i++;
    return i;
}

static size_t quoted_len(const char *text, size_t len)
{
    size_t n = len + 2;
    for (size_t i = plain_run(text, len); i < len; i += 1 + plain_run(text + i + 1, len - i - 1))
        n += short_escape((unsigned char)text[i]) ? 1 : 5;
    return n;
}

/* Writes text as a JSON string at dst and returns the end, or NULL when it would go past
 * limit (quoted_len bytes from dst always suffice). Hand-written: jansson's encoder decodes
 * every character and stops at each newline, 57 ms for a 4 MB text, as long as the merge
 * itself. The text is UTF-8, so, as jansson does, only '"', '\\' and control characters
 * are escaped. */
static char *quote_into(char *dst, const char *limit, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;

    if (limit - dst < 2)
        return NULL;
    *dst++ = '"';
    while (i < len) {
        size_t run = plain_run(text + i, len - i);
        if ((size_t)(limit - dst) < run + 1) /* and the closing quote */
            return NULL;
        memcpy(dst, text + i, run);
        dst += run;
        i += run;
        if (i == len)
            break;
        unsigned char c = (unsigned char)text[i++];
        const char *esc = short_escape(c);
        if (limit - dst < (esc ? 2 : 6) + 1)
            return NULL;
        if (esc) {
            memcpy(dst, esc, 2);
            dst += 2;
        } else {
            memcpy(dst, "\\u00", 4);
            dst[4] = hex[c >> 4];
            dst[5] = hex[c & 15];
            dst += 6;
        }
    }
    *dst++ = '"';
    return dst;
}

/* The length of a conflict region in the answer (region_json's text, quoted). */
static size_t region_quoted_len(const char *region)
{
    size_t len = region ? strlen(region) : 0;
    if (len && region[len - 1] == '\n')
        len--;
    return region ? quoted_len(region, len) : 4; /* null */
}

int merge_check_answer(const struct merge_result *r, struct err *err)
{
    size_t total = quoted_len(r->merged, r->merged_len);
    for (size_t i = 0; i < r->n_conflicts && total <= MERGE_MAX_ANSWER; i++) {
        const struct merge_conflict *c = &r->conflicts[i];
        total += region_quoted_len(c->base) + region_quoted_len(c->source) +
                 region_quoted_len(c->target) + region_quoted_len(c->resolution);
    }
    if (total <= MERGE_MAX_ANSWER)
        return FERRY_OK;
    return err_set(err, ERR_INVALID,
                   "the merge's answer would be over %lld bytes (its texts, escaped for JSON, "
                   "twice where they conflict), more than the limit of %lld",
                   (long long)total, MERGE_MAX_ANSWER);
}

char *merge_result_dump(const struct merge_result *r, enum merge_favor favor, size_t *len)
{
    const char *head = r->success ? "{\"success\":true,\"mergedContent\":"
                                  : "{\"success\":false,\"mergedContent\":";
    json_t *rest = rest_json(r, favor);
    char *tail = jsonutil_to_string(rest); /* {"conflicts":...}, spliced in after a comma */
    size_t head_len = strlen(head), tail_len = strlen(tail);
    /* One pass when the text needs at most one escape in eight bytes (text has a newline
     * every line, and few other escapes); otherwise it is measured, then written. */
    size_t room = r->merged_len + r->merged_len / 8 + 2;
    char *text = xmalloc(head_len + room + tail_len + 1), *p;

    json_decref(rest);
    memcpy(text, head, head_len);
    p = quote_into(text + head_len, text + head_len + room, r->merged, r->merged_len);
    if (!p) {
        room = quoted_len(r->merged, r->merged_len);
        text = xrealloc(text, head_len + room + tail_len + 1);
        p = quote_into(text + head_len, text + head_len + room, r->merged, r->merged_len);
    }
    *p++ = ',';
    memcpy(p, tail + 1, tail_len); /* and the NUL */
    free(tail);
    *len = (size_t)(p - text) + tail_len - 1;
    return text;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return FERRY_ERR;
        data += n;
        len -= (size_t)n;
    }
    return FERRY_OK;
}

int merge_write_file(const char *path, const char *data, size_t len, struct err *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
    char *tmp = xasprintf("%s/.ferry-tmp-merge-XXXXXX", dir);
    struct stat st;
    int rc = FERRY_ERR, fd = mkostemp(tmp, O_CLOEXEC), dfd = -1;

    if (fd < 0) {
        err_set(err, ERR_INVALID, "cannot write beside the output file: %s", strerror(errno));
        goto out;
    }
    /* A file replaced keeps its permissions; a new one is readable by all, as most
     * editors leave a text file. */
    bool written = fchmod(fd, stat(path, &st) == 0 ? st.st_mode & 07777 : 0644) == 0 &&
                   write_all(fd, data, len) == FERRY_OK && fsync(fd) == 0;
    if (close(fd) != 0)
        written = false;
    fd = -1;
    if (!written) {
        err_set(err, ERR_INVALID, "cannot write the output file: %s", strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        err_set(err, ERR_INVALID, "cannot replace the output file: %s", strerror(errno));
        goto out;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0)
        fsync(dfd); /* makes the rename durable */
    rc = FERRY_OK;
out:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (rc != FERRY_OK)
        unlink(tmp);
    free(tmp);
    free(dir);
    return rc;
}
