/* merge.c - `ferry merge BASE SOURCE TARGET`: the 3-way merge of POST /api/v1/merge/files
 * on local files, without a server or database. Prints the merged text (or writes it
 * with --output), or the API's JSON with --json. Exit 0 when no conflict remains, 1 when
 * conflicts remain (favor none) or the merge failed, 2 on a wrong command line. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "merge/merge.h"

struct merge_args {
    enum merge_favor favor;
    const char *output;
    bool json;
    const char *paths[3]; /* base, source, target */
};

static void merge_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry merge [--favor source|target|union|none] [--output FILE] [--json]\n"
            "                   BASE SOURCE TARGET\n\n"
            "Merges the changes from BASE to SOURCE and from BASE to TARGET, line by line, as\n"
            "`git merge-file SOURCE BASE TARGET` does (SOURCE is git's \"ours\").\n"
            "  --favor F     how conflicts resolve: source (default), target, union, or none\n"
            "                (none keeps them with diff3-style markers)\n"
            "  --output FILE write the merged text to FILE (atomically) instead of stdout\n"
            "  --json        print the API's response (mergedContent, conflicts, ...)\n"
            "Exit status: 0 merged, 1 conflicts remain or the merge failed, 2 usage error.\n"
            "Inputs must be UTF-8 text of at most %lld bytes each.\n",
            MERGE_MAX_INPUT);
}

/* Returns -1 to go on, or the exit code to return at once. */
static int parse_args(int argc, char **argv, struct merge_args *a)
{
    static const struct option options[] = {
        {"favor", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct err err = {0};
    int opt;

    a->favor = MERGE_FAVOR_SOURCE;
    optind = 0; /* getopt_long restarts on this argument vector */
    while ((opt = getopt_long(argc + 1, argv - 1, "f:o:jh", options, NULL)) != -1) {
        if (opt == 'h') {
            merge_usage(stdout);
            return 0;
        }
        if (opt == 'f' && merge_favor_parse(optarg, &a->favor, &err) != FERRY_OK) {
            fprintf(stderr, "ferry merge: %s\n", err.msg);
            return 2;
        }
        if (opt == 'o')
            a->output = optarg;
        else if (opt == 'j')
            a->json = true;
        else if (opt == '?')
            return 2; /* getopt_long said what was wrong */
    }
    if (argc + 1 - optind != 3) {
        fprintf(stderr, "ferry merge: expected BASE SOURCE TARGET (see ferry merge --help)\n");
        return 2;
    }
    for (int i = 0; i < 3; i++)
        a->paths[i] = argv[optind - 1 + i];
    return -1;
}

static int print_result(const struct merge_args *a, const struct merge_result *r, struct err *err)
{
    if (a->output && merge_write_file(a->output, r->merged, r->merged_len, err) != FERRY_OK)
        return FERRY_ERR;
    if (a->json) {
        size_t len = 0;
        char *text = merge_result_dump(r, a->favor, &len);
        fwrite(text, 1, len, stdout);
        putchar('\n');
        free(text);
    } else if (!a->output) {
        fwrite(r->merged, 1, r->merged_len, stdout);
    }
    if (fflush(stdout) != 0)
        return err_set(err, ERR_INVALID, "cannot write the result to standard output");
    return FERRY_OK;
}

static void *init_merge(void *arg)
{
    (void)arg;
    merge_init();
    return NULL;
}

/* Reads and checks the three inputs while libgit2 sets itself up on another thread. */
static int read_inputs(const struct merge_args *a, struct merge_text texts[3], char *data[3],
                       struct err *err)
{
    static const char *const what[3] = {"BASE", "SOURCE", "TARGET"};
    pthread_t thread;
    bool threaded = pthread_create(&thread, NULL, init_merge, NULL) == 0;
    int rc = FERRY_OK;

    for (int i = 0; i < 3 && rc == FERRY_OK; i++) {
        char *name = xasprintf("%s (%s)", what[i], a->paths[i]);
        rc = merge_read_file(a->paths[i], name, &data[i], &texts[i].len, err);
        free(name);
        texts[i].data = data[i];
    }
    if (threaded)
        pthread_join(thread, NULL);
    return rc;
}

static int run(int argc, char **argv)
{
    struct merge_args a = {0};
    struct merge_text texts[3] = {{0}};
    char *data[3] = {NULL, NULL, NULL};
    struct merge_result r = {0};
    struct err err = {0};
    int rc = parse_args(argc, argv, &a);

    if (rc >= 0)
        return rc;
    rc = 1;
    if (read_inputs(&a, texts, data, &err) != FERRY_OK)
        goto out;
    /* Without --json nothing shows the conflict list: one merge, as git makes. */
    if ((a.json ? merge_texts : merge_texts_only)(&texts[0], &texts[1], &texts[2], a.favor, &r,
                                                  &err) != FERRY_OK ||
        print_result(&a, &r, &err) != FERRY_OK)
        goto out;
    rc = r.success ? 0 : 1;
out:
    if (err.msg[0])
        cli_fail(&err);
    merge_result_cleanup(&r);
    for (int i = 0; i < 3; i++)
        free(data[i]);
    return rc;
}

const struct cli_command cli_merge = {"merge", "three-way merge of text files (as git merge-file)",
                                      run, merge_usage};
