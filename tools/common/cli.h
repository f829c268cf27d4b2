/*
 * cli.h (private to the evbus program): what every subcommand shares: one
 * flag parser (GNU long options, `--flag VALUE` and `--flag=VALUE`, -h/--help
 * everywhere), the exit codes, error messages that start with the command's
 * full name ("evbus log cat: ..."), colour only for a terminal with NO_COLOR
 * unset, and stdout writes that treat a closed pipe (`| head`) as a normal end.
 *
 * Thread rules: the program is single-threaded on its side; none of this is
 * thread-safe. Limits: CLI_MAX_POSITIONAL positional arguments per command.
 */
#ifndef EVB_TOOLS_CLI_H
#define EVB_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <evbus/evbus_bus.h>
#include <evbus/evbus_store.h>

/* Exit codes of every evbus command (also in `evbus --help` and README.md). */
enum {
    CLI_EXIT_OK = 0,       /* done, nothing wrong */
    CLI_EXIT_PROBLEMS = 1, /* the operation found problems (verify: damage) */
    CLI_EXIT_USAGE = 2,    /* bad command, flag or argument */
    CLI_EXIT_OPEN = 3,     /* the log cannot be opened: locked, missing, ... */
    CLI_EXIT_RUNTIME = 4   /* any other runtime error */
};

/* evbus call only: what went wrong with a command, in the classes scripts
 * branch on (CLI_EXIT_RUNTIME for any other error reply). */
enum {
    CLI_EXIT_REJECTED = 5,    /* the domain said no (EVB_EREJECTED, EVB_ECONFLICT) */
    CLI_EXIT_BAD_REQUEST = 6, /* EVB_EINVAL, EVB_EDECODE, EVB_ETOOBIG, unknown command */
    CLI_EXIT_UNREACHABLE = 7, /* no reply after all attempts, or a bad endpoint */
    CLI_EXIT_AUTH = 8         /* the service refused our CURVE handshake (EVB_EAUTH) */
};

/* Bit of exit code c in an exit-code set (cli_usage.exit_codes). */
#define CLI_EXITS(c) (1u << (c))
/* What every command can return: 0, 2 (usage) and 4 (at least: stdout
 * cannot be written). */
#define CLI_EXITS_BASE                                                                   \
    (CLI_EXITS(CLI_EXIT_OK) | CLI_EXITS(CLI_EXIT_USAGE) | CLI_EXITS(CLI_EXIT_RUNTIME))
/* Every code, 0..8 (`evbus --help`, and a help that names no codes). */
#define CLI_EXITS_ALL 0x1ffu

/* Print "Exit codes:" and one line for each code in the set `codes` (the
 * same text for a code in every help screen); 0 prints every code. */
void cli_exit_codes_print(FILE *f, unsigned codes);

#define CLI_MAX_POSITIONAL 8

typedef struct cli {
    char name[96];       /* "evbus log cat": prefix of every message */
    bool out_tty;        /* stdout is a terminal */
    bool err_tty;        /* stderr is a terminal */
    bool color;          /* out_tty and NO_COLOR unset (or empty) */
    bool write_failed;   /* a stdout write failed otherwise (reported once) */
    bool pipe_closed;    /* stdout's reader went away (EPIPE); stop quietly */
    bool progress_shown; /* a progress line is on stderr and needs clearing */
    /* Not NULL: cli_help adds the usage's exit codes here and prints nothing
     * (cli_dispatch's help asks each verb for its codes this way). */
    unsigned *collect_exits;
    /* Not NULL ("1.0.0"): cli_parse answers --version with "NAME VERSION"
     * (exit 0) and the help lists it, unless the command has a flag of that
     * name (`evbus log state --version V`). A daemon sets it after cli_init;
     * evbus's subcommands leave it NULL (`evbus --version` answers). */
    const char *version;
    /* Not NULL: where the value in question came from ("FILE:LINE"), put
     * after the name in messages; usage errors then add no "Try --help". */
    const char *where;
} cli_t;

/* Fill cli for the command called `name` (copied). */
void cli_init(cli_t *cli, const char *name);

/* ---- flags ---- */

typedef enum cli_kind {
    CLI_FLAG, /* bool, no value */
    CLI_U64,  /* uint64_t, decimal digits only */
    CLI_STR,  /* const char *, borrowed from argv */
    CLI_LIST, /* cli_list: a flag given more than once, each value kept */
    /* uint64_t milliseconds, from a duration with a unit ("500ms", "3s",
     * "2m": evb_duration_parse). A bare number is refused with a hint; the
     * _MS and _S kinds name the unit the flag took before units (hints only,
     * nothing is reinterpreted). */
    CLI_DUR,
    CLI_DUR_MS,
    CLI_DUR_S
} cli_kind;

/* Values of a repeatable flag (--category A --category B), borrowed from
 * argv. More than CLI_MAX_LIST values is a usage error. */
#define CLI_MAX_LIST 64
typedef struct cli_list {
    const char *v[CLI_MAX_LIST];
    size_t n;
} cli_list;

typedef struct cli_opt {
    const char *name; /* long name without "--" */
    cli_kind kind;
    void *target;     /* bool *, uint64_t * (U64, DUR*), const char ** or cli_list * */
    bool *seen;       /* set to true when given (may be NULL) */
    const char *meta; /* value's name in help ("SEQ"); NULL for flags */
    const char *help; /* one line */
} cli_opt;

/* Short flags are one table for every command, so a letter means the same
 * everywhere: -f --follow, -c --count, -j --json, -q --quiet, -C --context,
 * -n --limit, -t --timeout. A command has the short form of each of these
 * long options it takes. Flags bundle (-jq); values follow (-c 5, -c5). */
char cli_short_for(const char *long_name);

typedef struct cli_usage {
    /* The exit codes this command can return (CLI_EXITS bits: its help
     * lists just these). First, so that giving it added one line to each
     * command's initialiser. 0: every code is listed. */
    unsigned exit_codes;
    const char *synopsis;    /* after the command name: "DIR [--json]" */
    const char *description; /* a paragraph (may be NULL) */
    const char *notes;       /* printed after the options (may be NULL) */
} cli_usage;

/*
 * Parse argv[1..argc) (argv[0] is the command word) against opts, a table
 * ended by an entry with name == NULL. -h and --help are always accepted;
 * --version when cli->version is set.
 * Options and positional arguments may be mixed; "--" ends the options.
 * Positional arguments are stored in pos[0..*npos); more than max_pos, or
 * fewer than min_pos, is a usage error.
 * Returns -1 to go on, or the exit code to return now: CLI_EXIT_OK after
 * printing help (or the version) to stdout, CLI_EXIT_USAGE after naming the problem on stderr.
 */
int cli_parse(cli_t *cli, int argc, char **argv, const cli_opt *opts,
              const cli_usage *usage, size_t min_pos, size_t max_pos, const char **pos,
              size_t *npos);

/* ---- --config FILE (evbus serve, evbus mirror, evbus-bridge) ----
 * The file's grammar is evb_conf_read's (services/README.md "Config
 * files"): `name = value` lines, names as the long flags. */

/* cli_parse, with the settings of the file named by the CLI_STR option
 * "config" of opts (when given) under the command line's: a value from the
 * command line wins, and a list (CLI_LIST) comes whole from the command
 * line when it gives one, else from the file. Same returns as cli_parse;
 * errors in the file read "NAME: FILE:LINE: ...". */
int cli_parse_config(cli_t *cli, int argc, char **argv, const cli_opt *opts,
                     const cli_usage *usage, size_t min_pos, size_t max_pos,
                     const char **pos, size_t *npos);

/* Set opts' targets from the file at path, in file order, as the same flags
 * would: every option but "config" may be named; a CLI_LIST one on several
 * lines; a CLI_FLAG one takes true or false (yes/no, on/off, 1/0). The
 * strings stay valid until the program exits. Returns -1, or CLI_EXIT_USAGE
 * after naming the problem ("NAME: FILE:LINE: ..."). At most 4 files a
 * program. */
int cli_config_apply(cli_t *cli, const char *path, const cli_opt *opts);

/* Print the help screen of a command (as -h does) to stdout. */
void cli_help(const cli_t *cli, const cli_opt *opts, const cli_usage *usage);

/* Parse a decimal unsigned integer (no sign, no spaces, no overflow).
 * EVB_EINVAL otherwise. */
int cli_parse_u64(const char *s, uint64_t *out);

/* ---- messages ---- */

/* "evbus log cat: <message>\n" on stderr (clears a progress line first). */
void cli_error(cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same as cli_error, plus "(try 'NAME --help')"; returns CLI_EXIT_USAGE. */
int cli_usage_error(cli_t *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Exit code for an evb_code: open failures map to CLI_EXIT_OPEN when
 * opening, everything else to CLI_EXIT_RUNTIME. */
int cli_exit_for_open(int code);

/* A command with verbs ("evbus log info", "evbus feed skip"). */
typedef struct cli_verb {
    const char *name;
    int (*run)(cli_t *cli, int argc, char **argv);
    const char *summary;
} cli_verb;

/* Run the verb named by argv[1] of command cmd ("evbus log"), or print the
 * command's help (help_head, then the verbs) for -h/--help; usage errors
 * list the verbs. Returns the exit code. */
int cli_dispatch(const char *cmd, const cli_verb *verbs, size_t n, const char *help_head,
                 int argc, char **argv);

/* The options cli_open_log opens a log with (EVB_INDEX_THREAD). */
evb_store_opts cli_log_opts(const char *dir, const char *service, bool create, int sync);
/* Open (with create: or create) the log in dir for writing, indexed by a
 * background thread. On failure print why, naming dir, and return NULL with
 * *exit_code set (cli_exit_for_open). */
evb_store_t *cli_open_log(cli_t *cli, const char *dir, const char *service, bool create,
                          int sync, int *exit_code);

/* Install a library log sink that prints WARN and above as
 * "evbus log cat: warning: ...". Keeps a pointer to cli. */
void cli_install_log_sink(cli_t *cli);

/* Progress on stderr, only when stderr is a terminal: "\r<text>" rewritten
 * in place. cli_progress_end clears the line. */
void cli_progress(cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_progress_end(cli_t *cli);

/* ---- stdout ---- */

/* Write n bytes to stdout. Returns 0, or -1 when stdout failed: after EPIPE
 * cli->pipe_closed is set and nothing is printed (the reader left, which is
 * how `| head` ends us); any other failure is reported on stderr. */
int cli_write(cli_t *cli, const void *p, size_t n);
int cli_printf(cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Flush stdout. Returns the exit code to use: rc unchanged when all went
 * well or the pipe was closed by its reader, CLI_EXIT_RUNTIME when a write
 * failed otherwise. Call once at the end of every command. */
int cli_finish(cli_t *cli, int rc);

/* Terminal width of stdout, 0 when it is not a terminal (no truncation). */
unsigned cli_term_width(const cli_t *cli);

/* ANSI attributes, or "" when colour is off. */
const char *cli_bold(const cli_t *cli);
const char *cli_red(const cli_t *cli);
const char *cli_green(const cli_t *cli);
const char *cli_dim(const cli_t *cli);
const char *cli_reset(const cli_t *cli);

/* ---- JSON and numbers ---- */

/* Append s as a JSON string (quotes included). Control characters are
 * escaped and invalid UTF-8 bytes become \ufffd, so the result is valid JSON
 * whatever s holds. */
int cli_json_str(evb_buf *b, const char *s, evb_err *err);

/* Decimal digits of v. */
int cli_digits(uint64_t v);

/* Append ev's payload as JSON, then a newline, to an event row in line.
 * width is the terminal's columns (0: never cut) and used the visible
 * columns the row already takes; a payload wider than the room left (at
 * least 12 columns) is cut to fit and ends with a dim "...". payload is
 * scratch (replaced). Returns EVB_OK, or the codec's or buffer's error. */
int cli_row_payload(const cli_t *cli, unsigned width, size_t used, const evb_event_t *ev,
                    evb_buf *line, evb_buf *payload, evb_err *err);

/* "1,234,567" into out (>= 32 bytes). */
const char *cli_group(uint64_t v, char out[32]);
/* "1.2 GiB" into out (>= 32 bytes). */
const char *cli_bytes(uint64_t v, char out[32]);

/* ---- commands ----
 * Each takes argv[0] = its own word ("log") and returns an exit code. */
int cmd_log(int argc, char **argv);
/* log's verbs (for `evbus --help`): sets *verbs, returns how many. */
size_t cmd_log_verbs(const cli_verb **verbs);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_append(int argc, char **argv);
int cmd_mirror(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_feed(int argc, char **argv);
int cmd_sniff(int argc, char **argv);
int cmd_call(int argc, char **argv);
int cmd_cert(int argc, char **argv);
int cmd_peers(int argc, char **argv);
int cmd_context(int argc, char **argv);

/* ---- shared by the commands that run until a signal ---- */

/* Install SIGINT/SIGTERM handlers that set a flag (no SA_RESTART, so a
 * blocking poll returns); cli_stop_requested() reads it. */
void cli_catch_stop_signals(void);
bool cli_stop_requested(void);

/* Parse "none", "every" or "group" into an evb_sync (as int). EVB_EINVAL
 * otherwise. */
int cli_parse_sync(const char *s, int *out);

/* ---- --follow PUB_EP,CATCHUP_EP[,SERVER_KEY] (mirror, sniff) ---- */

/* "PUB_EP,CATCHUP_EP" into pub and cu (EVB_BUS_MAX_ENDPOINT bytes each).
 * EVB_EINVAL unless there are two non-empty endpoints, one comma. */
int cli_split_follow(const char *v, char *pub, char *cu);

/* Cut the third element, a CURVE server key, off each --follow value in
 * place (the values point into argv) and set keys[i] to it (left alone
 * where there is none). has_cert: --cert was given, which a server key
 * needs. Returns -1, or CLI_EXIT_USAGE after naming the first bad value. */
int cli_follow_keys(cli_t *cli, const cli_list *follow, bool has_cert, const char **keys);

/* Check that each --follow value (keys cut off) is PUB_EP,CATCHUP_EP and,
 * when eps is not NULL, split value i into eps[i]. Returns -1, or
 * CLI_EXIT_USAGE after naming the first bad value. */
int cli_follow_split(cli_t *cli, const cli_list *follow,
                     char (*eps)[2][EVB_BUS_MAX_ENDPOINT]);

#endif
