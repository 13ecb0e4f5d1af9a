/* main.c - the ferry command: finds the subcommand and hands it its arguments. Each
 * command family lives in src/cli/ (serve, token, sites). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct cli_command *const commands[] = {
    &cli_serve, &cli_token,  &cli_sites,     &cli_merge,   &cli_sync,   &cli_login,
    &cli_push,  &cli_pull,   &cli_conflicts, &cli_resolve, &cli_upload, &cli_download,
    &cli_ls,    &cli_mirror, &cli_jobs,      &cli_backup};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fprintf(out,
            "ferry %s - a sync server\n\n"
            "usage: ferry COMMAND [arguments] [settings]\n"
            "       ferry COMMAND --help | ferry help COMMAND\n"
            "       ferry --version | --help\n\n"
            "commands:\n",
            FERRY_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\nsettings, for every command (flags override FERRY_* variables, which\n"
                 "override the config file):\n");
    config_print_help(out);
}

static const struct cli_command *find(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i]->name, name))
            return commands[i];
    return NULL;
}

/* `ferry help [COMMAND]` */
static int help(int argc, char **argv)
{
    if (argc == 0) {
        usage(stdout);
        return CLI_OK;
    }
    const struct cli_command *cmd = find(argv[0]);
    if (!cmd)
        fprintf(stderr, "ferry help: no command '%s' (see 'ferry --help')\n", argv[0]);
    else if (argc > 1)
        fprintf(stderr, "ferry help: unexpected argument '%s' (see 'ferry --help')\n", argv[1]);
    if (!cmd || argc > 1)
        return CLI_USAGE;
    cmd->usage(stdout);
    return CLI_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "ferry: no command given; usage: ferry COMMAND [arguments] "
                        "(see 'ferry --help')\n");
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("ferry %s\n", FERRY_VERSION);
        return CLI_OK;
    }
    if (!strcmp(name, "--help") || !strcmp(name, "-h"))
        return help(0, NULL);
    if (!strcmp(name, "help"))
        return help(argc - 2, argv + 2);
    const struct cli_command *cmd = find(name);
    if (!cmd) {
        fprintf(stderr, "ferry: unknown command '%s' (see 'ferry --help')\n", name);
        return CLI_USAGE;
    }
    return cmd->run(argc - 2, argv + 2);
}
