/*
 * evbus.c: the `evbus` program: main() and the subcommand table.
 *
 * Adding a subcommand is one line in s_commands plus its cmd_<name>.c (and
 * its prototype in cli.h). Each command parses its own flags with cli_parse
 * and returns one of the exit codes in cli.h, so every command behaves the
 * same way: -h/--help, `--flag VALUE` or `--flag=VALUE`, messages on stderr
 * prefixed with the full command name.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command_t;

static const command_t s_commands[] = {
    {"log", cmd_log, "inspect a service's log directory:"}, /* + its verbs */
    {"bench", cmd_bench, "measure the store next to raw LevelDB, in one run"},
    {"serve", cmd_serve, "serve a log on the bus: live on PUB, catch-up on ROUTER"},
    {"append", cmd_append, "append events read as JSON lines (to a log, or a service)"},
    {"mirror", cmd_mirror, "keep a copy of a publisher's events in a log of its own"},
    {"status", cmd_status, "ask a running service for its status (feeds, log)"},
    {"feed", cmd_feed, "retry or skip a stalled feed of a running subscriber"},
    {"sniff", cmd_sniff, "watch events on the bus (filters, history, stats), store-less"},
    {"call", cmd_call, "send any command to a service's command socket, print the reply"},
    {"cert", cmd_cert, "make CURVE certificates, show their public keys"},
    {"peers", cmd_peers, "list the services heard announcing themselves (beacons)"},
    {"context", cmd_context, "save endpoints under a name, for --context NAME (-C)"},
};

#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

/* log's line names every verb, from log's own table (so it cannot miss one),
 * wrapped under the summary at 79 columns; used: the summary's length. */
static void s_log_verbs(FILE *f, size_t used)
{
    const cli_verb *verbs;
    size_t n = cmd_log_verbs(&verbs);
    size_t col = 11 + used;
    for (size_t i = 0; i < n; i++) {
        size_t w = strlen(verbs[i].name) + (i + 1 < n ? 1 : 0);
        if (col + 1 + w > 79) {
            fprintf(f, "\n%11s", "");
            col = 11;
        } else {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%s%s", verbs[i].name, i + 1 < n ? "," : "");
        col += w;
    }
}

static void s_usage(FILE *f)
{
    fprintf(f, "Usage: evbus COMMAND [ARGS...]\n"
               "       evbus COMMAND --help\n\n"
               "Commands:\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++) {
        fprintf(f, "  %-8s %s", s_commands[i].name, s_commands[i].summary);
        if (s_commands[i].run == cmd_log) s_log_verbs(f, strlen(s_commands[i].summary));
        fputc('\n', f);
    }
    fprintf(f,
            "\nOptions:\n"
            "  -h, --help  show this help and exit\n"
            "  --version   print the version and exit\n\n"
            "Every command takes --help. Flags are GNU style: --flag VALUE or\n"
            "--flag=VALUE. Colour is used only when stdout is a terminal and\n"
            "NO_COLOR is not set.\n\n");
    cli_exit_codes_print(f, CLI_EXITS_ALL);
    fprintf(f, "(5 to 8 only from `evbus call`. Each command's --help lists the codes\n"
               "it can return.)\n");
}

static void s_list_commands(FILE *f)
{
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf(f, "%s%s", i > 0 ? ", " : "", s_commands[i].name);
}

int main(int argc, char **argv)
{
    /* A closed stdout pipe must show up as EPIPE on write, so `evbus log cat
     * DIR | head` ends quietly instead of dying on the signal. */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        fprintf(stderr, "evbus: missing command (one of: ");
        s_list_commands(stderr);
        fprintf(stderr, ")\nTry 'evbus --help'.\n");
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
        strcmp(cmd, "help") == 0) {
        s_usage(stdout);
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("evbus %s\n", EVBUS_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp(cmd, s_commands[i].name) == 0)
            return s_commands[i].run(argc - 1, argv + 1);

    if (cmd[0] == '-')
        fprintf(stderr, "evbus: unknown option '%s' (commands: ", cmd);
    else
        fprintf(stderr, "evbus: unknown command '%s' (available: ", cmd);
    s_list_commands(stderr);
    fprintf(stderr, ")\nTry 'evbus --help'.\n");
    return CLI_EXIT_USAGE;
}
