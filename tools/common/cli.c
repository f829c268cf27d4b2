/*
 * cli.c: flag parsing and output helpers shared by the evbus subcommands.
 *
 * Why a small parser of our own rather than getopt_long: getopt prints its own
 * messages (without our "evbus log cat:" prefix), keeps global state that has
 * to be reset between the command and verb levels, and cannot check a value's
 * type. The table in each command doubles as its help screen, so flags and
 * help cannot drift apart.
 *
 * Output: SIGPIPE is ignored by main(), so a write to a closed pipe fails with
 * EPIPE; cli_write turns that into a quiet stop (exit 0), as `cat | head` does.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <evbus/evbus_conf.h>
#include <evbus/evbus_store.h>

/* One text per exit code, shown the same in every help screen. */
static const char *const s_exit_text[] = {
    "ok",
    "the operation found problems (e.g. verify found damage)",
    "usage error (unknown command, bad flag or argument)",
    "the log cannot be opened (locked, missing, not a log, corrupt)",
    "any other runtime error",
    "the service rejected the command (domain rules, conflict: EVB_EREJECTED,\n"
    "     EVB_ECONFLICT)",
    "the service found the request bad (EVB_EINVAL, EVB_EDECODE, EVB_ETOOBIG;\n"
    "     an unknown command or a missing or wrong field)",
    "no reply after all attempts (EVB_ETIMEDOUT), or an endpoint that cannot\n"
    "     be connected to (EVB_EUNREACHABLE: malformed, unknown transport)",
    "the service refused our CURVE handshake (EVB_EAUTH: our key is not in its\n"
    "     allow-list, a wrong --server-key, or one side is plain)",
};

void cli_exit_codes_print(FILE *f, unsigned codes)
{
    if (codes == 0) codes = CLI_EXITS_ALL;
    fprintf(f, "Exit codes:\n");
    for (unsigned c = 0; c < sizeof s_exit_text / sizeof s_exit_text[0]; c++)
        if (codes & CLI_EXITS(c)) fprintf(f, "  %u  %s\n", c, s_exit_text[c]);
}

void cli_init(cli_t *cli, const char *name)
{
    memset(cli, 0, sizeof *cli);
    snprintf(cli->name, sizeof cli->name, "%s", name);
    cli->out_tty = isatty(STDOUT_FILENO) == 1;
    cli->err_tty = isatty(STDERR_FILENO) == 1;
    const char *nc = getenv("NO_COLOR");
    /* no-color.org: set and non-empty disables colour */
    cli->color = cli->out_tty && (nc == NULL || nc[0] == '\0');
}

/* ---- flags ---- */

int cli_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0') return EVB_EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') return EVB_EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return EVB_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return EVB_OK;
}

static const cli_opt *s_find(const cli_opt *opts, const char *name, size_t len)
{
    for (const cli_opt *o = opts; o->name != NULL; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0) return o;
    return NULL;
}

static const struct {
    char c;
    const char *name;
} s_shorts[] = {{'f', "follow"}, {'c', "count"},   {'j', "json"},   {'q', "quiet"},
                {'C', "context"}, {'n', "limit"}, {'t', "timeout"}};

char cli_short_for(const char *long_name)
{
    for (size_t i = 0; i < sizeof s_shorts / sizeof s_shorts[0]; i++)
        if (strcmp(s_shorts[i].name, long_name) == 0) return s_shorts[i].c;
    return '\0';
}

static const cli_opt *s_find_short(const cli_opt *opts, char c)
{
    for (size_t i = 0; i < sizeof s_shorts / sizeof s_shorts[0]; i++)
        if (s_shorts[i].c == c)
            return s_find(opts, s_shorts[i].name, strlen(s_shorts[i].name));
    return NULL;
}

/* Flags that took bare milliseconds and lost their "-ms" when durations got
 * units: the new name when opts has it, else NULL. */
static const char *s_renamed(const cli_opt *opts, const char *name, size_t len)
{
    static const char *const was_ms[] = {"heartbeat", "dedup-window", "ack-wait"};
    for (size_t i = 0; i < sizeof was_ms / sizeof was_ms[0]; i++) {
        size_t l = strlen(was_ms[i]);
        if (len == l + 3 && memcmp(name, was_ms[i], l) == 0 && memcmp(name + l, "-ms", 3) == 0 &&
            s_find(opts, was_ms[i], l) != NULL)
            return was_ms[i];
    }
    return NULL;
}

/* The known option nearest to an unknown one: a name it begins (--foll for
 * --follow), or one at most 2 edits away (a third of its length for short
 * ones); NULL when none is close. */
static const cli_opt *s_nearest(const cli_opt *opts, const char *name, size_t len)
{
    const cli_opt *best = NULL;
    size_t bd = SIZE_MAX;
    for (const cli_opt *o = opts; o->name != NULL; o++) {
        size_t ol = strlen(o->name);
        size_t dist = (len >= 3 && len < ol && memcmp(o->name, name, len) == 0)
                          ? 1
                          : evb_name_distance(name, len, o->name);
        size_t limit = ol < 6 ? 1 : 2;
        if (dist <= limit && dist < bd) {
            bd = dist;
            best = o;
        }
    }
    return best;
}

/* "3000" (milliseconds) as seconds for a hint: "3"; "2500" -> "2.5". */
static const char *s_ms_as_s(const char *ms)
{
    static char out[48];
    uint64_t v;
    if (cli_parse_u64(ms, &v) != EVB_OK) return "N";
    int l = snprintf(out, sizeof out, "%" PRIu64 ".%03u", v / 1000, (unsigned)(v % 1000));
    while (out[l - 1] == '0')
        out[--l] = '\0';
    if (out[l - 1] == '.') out[l - 1] = '\0';
    return out;
}

/* --version is ours to answer: the program set a version and the command
 * has no flag of that name. */
static bool s_answers_version(const cli_t *cli, const cli_opt *opts)
{
    return cli->version != NULL && s_find(opts, "version", 7) == NULL;
}

/* Options whose value came from a config file, and its FILE:LINE: a usage
 * error about one of them that the command checks after parsing ("--sync:
 * expected ...") names that line too (cli_usage_error). */
static struct {
    const char *name;
    char where[256];
} s_file_vals[64];
static size_t s_nfile_vals;

static const char *s_file_where(const char *fmt)
{
    if (strncmp(fmt, "--", 2) != 0) return NULL;
    size_t n = strspn(fmt + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
    for (size_t i = 0; i < s_nfile_vals; i++)
        if (strlen(s_file_vals[i].name) == n && memcmp(s_file_vals[i].name, fmt + 2, n) == 0)
            return s_file_vals[i].where;
    return NULL;
}

static const char *s_file_where_of(const char *name)
{
    for (size_t i = 0; i < s_nfile_vals; i++)
        if (strcmp(s_file_vals[i].name, name) == 0) return s_file_vals[i].where;
    return NULL;
}

static void s_forget_file_val(const char *name)
{
    for (size_t i = 0; i < s_nfile_vals; i++)
        if (strcmp(s_file_vals[i].name, name) == 0) {
            s_file_vals[i] = s_file_vals[--s_nfile_vals];
            return;
        }
}

static int s_set(cli_t *cli, const cli_opt *o, const char *val)
{
    s_forget_file_val(o->name); /* a later source's value */
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)o->target = true;
        break;
    case CLI_U64:
        if (cli_parse_u64(val, (uint64_t *)o->target) != EVB_OK)
            return cli_usage_error(cli, "--%s: expected a non-negative integer, got '%s'",
                                   o->name, val);
        break;
    case CLI_DUR:
    case CLI_DUR_MS:
    case CLI_DUR_S: {
        evb_err err;
        if (evb_duration_is_bare(val)) {
            if (o->kind == CLI_DUR_MS)
                return cli_usage_error(cli, "--%s %s: give a unit, e.g. %sms or %ss "
                                       "(a bare number used to mean milliseconds)",
                                       o->name, val, val, s_ms_as_s(val));
            if (o->kind == CLI_DUR_S)
                return cli_usage_error(cli, "--%s %s: give a unit, e.g. %ss (a bare number "
                                       "used to mean seconds)", o->name, val, val);
            return cli_usage_error(cli, "--%s %s: give a unit, e.g. %ss or %sms", o->name,
                                   val, val, val);
        }
        if (evb_duration_parse(val, (uint64_t *)o->target, &err) != EVB_OK)
            return cli_usage_error(cli, "--%s: %s", o->name, err.msg);
        break;
    }
    case CLI_STR:
        if (val[0] == '\0')
            return cli_usage_error(cli, "--%s: the value is empty", o->name);
        *(const char **)o->target = val;
        break;
    case CLI_LIST: {
        cli_list *l = o->target;
        if (val[0] == '\0')
            return cli_usage_error(cli, "--%s: the value is empty", o->name);
        if (l->n == CLI_MAX_LIST)
            return cli_usage_error(cli, "--%s: given more than %d times", o->name,
                                   CLI_MAX_LIST);
        l->v[l->n++] = val;
        break;
    }
    }
    if (o->seen != NULL) *o->seen = true;
    return -1;
}

int cli_parse(cli_t *cli, int argc, char **argv, const cli_opt *opts,
              const cli_usage *usage, size_t min_pos, size_t max_pos, const char **pos,
              size_t *npos)
{
    bool only_pos = false;
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') { /* "-" is an argument */
            if (*npos >= max_pos) {
                if (max_pos == 0)
                    return cli_usage_error(cli, "unexpected argument '%s'", a);
                return cli_usage_error(cli, "unexpected argument '%s' (takes %zu)", a,
                                       max_pos);
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_help(cli, opts, usage);
            return CLI_EXIT_OK;
        }
        if (s_answers_version(cli, opts) && strcmp(a, "--version") == 0) {
            printf("%s %s\n", cli->name, cli->version);
            return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
        }
        if (a[1] != '-') {
            /* -X, -XVALUE, -X VALUE, or bundled flags -jq */
            for (const char *c = a + 1; *c != '\0'; c++) {
                const cli_opt *o = s_find_short(opts, *c);
                if (o == NULL) {
                    if (c == a + 1)
                        return cli_usage_error(cli, "unknown option '-%c'", *c);
                    return cli_usage_error(cli, "unknown option '-%c' in '%s'", *c, a);
                }
                int rc;
                if (o->kind == CLI_FLAG) {
                    rc = s_set(cli, o, NULL);
                } else if (c[1] != '\0') {
                    rc = s_set(cli, o, c + 1);
                    c += strlen(c) - 1;
                } else {
                    if (i + 1 >= argc)
                        return cli_usage_error(cli, "-%c (--%s) needs a value (%s)", *c,
                                               o->name, o->meta != NULL ? o->meta : "VALUE");
                    rc = s_set(cli, o, argv[++i]);
                }
                if (rc >= 0) return rc;
            }
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = s_find(opts, name, len);
        if (o == NULL) {
            const char *renamed = s_renamed(opts, name, len);
            if (renamed != NULL)
                return cli_usage_error(cli, "--%.*s was renamed --%s, which takes a unit: "
                                       "--%s %sms",
                                       (int)len, name, renamed, renamed,
                                       eq != NULL ? eq + 1
                                       : i + 1 < argc ? argv[i + 1] : "N");
            const cli_opt *near = s_nearest(opts, name, len);
            if (near != NULL)
                return cli_usage_error(cli, "unknown option '--%.*s' (did you mean --%s?)",
                                       (int)len, name, near->name);
            return cli_usage_error(cli, "unknown option '--%.*s'", (int)len, name);
        }
        const char *val = NULL;
        if (o->kind == CLI_FLAG) {
            if (eq != NULL) return cli_usage_error(cli, "--%s takes no value", o->name);
        } else if (eq != NULL) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                return cli_usage_error(cli, "--%s needs a value (%s)", o->name,
                                       o->meta != NULL ? o->meta : "VALUE");
            val = argv[++i];
        }
        int rc = s_set(cli, o, val);
        if (rc >= 0) return rc;
    }
    if (*npos < min_pos)
        return cli_usage_error(cli, "missing argument (usage: %s %s)", cli->name,
                               usage->synopsis);
    return -1;
}

/* The files' settings: CLI_STR targets point into them until exit. */
static evb_conf_t *s_confs[4];

int cli_config_apply(cli_t *cli, const char *path, const cli_opt *opts)
{
    size_t slot = 0;
    while (slot < 4 && s_confs[slot] != NULL)
        slot++;
    size_t nopts = 0;
    for (const cli_opt *o = opts; o->name != NULL; o++)
        nopts++;
    evb_conf_key *keys = calloc(nopts + 1, sizeof *keys);
    if (slot == 4 || keys == NULL) {
        free(keys);
        cli_error(cli, "--config %s: %s", path, slot == 4 ? "too many files" : "out of memory");
        return CLI_EXIT_USAGE;
    }
    size_t nk = 0;
    for (const cli_opt *o = opts; o->name != NULL; o++)
        if (strcmp(o->name, "config") != 0) /* a file cannot name another */
            keys[nk++] = (evb_conf_key){o->name, o->kind == CLI_LIST};
    evb_err err;
    evb_conf_t *conf = evb_conf_read(path, keys, nk, &err);
    free(keys);
    if (conf == NULL) {
        cli_error(cli, "%s%s", err.code == EVB_EIO ? "--config: " : "", err.msg);
        return CLI_EXIT_USAGE;
    }
    s_confs[slot] = conf;
    for (size_t i = 0; i < evb_conf_count(conf); i++) {
        const evb_conf_entry *e = evb_conf_get(conf, i);
        const cli_opt *o = s_find(opts, e->name, strlen(e->name));
        char where[4096 + 32];
        snprintf(where, sizeof where, "%s:%u", path, e->line);
        /* A list's lines so far: "FILE:2,5" names them all. */
        const char *prev = o->kind == CLI_LIST ? s_file_where_of(o->name) : NULL;
        char lines[sizeof s_file_vals[0].where];
        snprintf(lines, sizeof lines, "%s", prev != NULL ? prev : "");
        cli->where = where;
        int rc = -1;
        bool on;
        if (o->kind != CLI_FLAG)
            rc = s_set(cli, o, e->value);
        else if (evb_conf_bool(e->value, &on) != EVB_OK)
            rc = cli_usage_error(cli, "--%s: '%s' is not true or false", o->name, e->value);
        else if (on)
            rc = s_set(cli, o, NULL);
        else
            *(bool *)o->target = false;
        cli->where = NULL;
        if (rc >= 0) return rc;
        s_forget_file_val(o->name);
        if (prev != NULL && strlen(lines) + 12 < sizeof lines) {
            snprintf(where, sizeof where, "%s,%u", lines, e->line);
        }
        if (s_nfile_vals < sizeof s_file_vals / sizeof s_file_vals[0]) {
            s_file_vals[s_nfile_vals].name = o->name;
            char *w = s_file_vals[s_nfile_vals].where;
            size_t wl = strlen(where);
            if (wl >= sizeof s_file_vals[0].where) wl = sizeof s_file_vals[0].where - 1;
            memcpy(w, where, wl); /* a path this long is cut */
            w[wl] = '\0';
            s_nfile_vals++;
        }
    }
    return -1;
}

int cli_parse_config(cli_t *cli, int argc, char **argv, const cli_opt *opts,
                     const cli_usage *usage, size_t min_pos, size_t max_pos,
                     const char **pos, size_t *npos)
{
    /* The command line alone first: --help, its own errors, the file's name. */
    int rc = cli_parse(cli, argc, argv, opts, usage, min_pos, max_pos, pos, npos);
    if (rc >= 0) return rc;
    const cli_opt *co = s_find(opts, "config", 6);
    const char *path = co != NULL ? *(const char **)co->target : NULL;
    if (path == NULL) return -1;
    /* Then the file, then the command line again over it. A list the
     * command line gave is emptied again before that, so it is not added to
     * the file's. */
    uint64_t cmd_lists = 0;
    size_t i = 0;
    for (const cli_opt *o = opts; o->name != NULL; o++, i++)
        if (o->kind == CLI_LIST) {
            cli_list *l = o->target;
            if (i >= 64) {
                cli_error(cli, "too many options for --config");
                return CLI_EXIT_USAGE;
            }
            if (l->n > 0) cmd_lists |= UINT64_C(1) << i;
            l->n = 0;
        }
    if ((rc = cli_config_apply(cli, path, opts)) >= 0) return rc;
    i = 0;
    for (const cli_opt *o = opts; o->name != NULL; o++, i++)
        if (o->kind == CLI_LIST && (cmd_lists & (UINT64_C(1) << i)))
            ((cli_list *)o->target)->n = 0;
    return cli_parse(cli, argc, argv, opts, usage, min_pos, max_pos, pos, npos);
}

void cli_help(const cli_t *cli, const cli_opt *opts, const cli_usage *usage)
{
    if (cli->collect_exits != NULL) {
        *cli->collect_exits |= usage->exit_codes != 0 ? usage->exit_codes : CLI_EXITS_ALL;
        return;
    }
    printf("Usage: %s %s\n", cli->name, usage->synopsis);
    if (usage->description != NULL) printf("\n%s\n", usage->description);
    printf("\nOptions:\n");
    for (const cli_opt *o = opts; o->name != NULL; o++) {
        char left[80], sh[8] = "    ";
        char c = cli_short_for(o->name);
        if (c != '\0') snprintf(sh, sizeof sh, "-%c, ", c);
        if (o->kind == CLI_FLAG)
            snprintf(left, sizeof left, "%s--%s", sh, o->name);
        else
            snprintf(left, sizeof left, "%s--%s %s%s", sh, o->name,
                     o->meta != NULL ? o->meta : "VALUE",
                     o->kind == CLI_LIST ? "..." : "");
        printf("  %-26s %s\n", left, o->help);
    }
    printf("  %-26s %s\n", "-h, --help", "show this help and exit");
    if (s_answers_version(cli, opts))
        printf("  %-26s %s\n", "    --version", "print the version and exit");
    /* A blank line before "Exit codes:" also after notes that end without
     * a newline (help2man starts a section only after one). */
    if (usage->notes != NULL && usage->notes[0] != '\0')
        printf("\n%s%s", usage->notes,
               usage->notes[strlen(usage->notes) - 1] == '\n' ? "" : "\n");
    printf("\n");
    cli_exit_codes_print(stdout, usage->exit_codes);
}

/* ---- messages ---- */

static __attribute__((format(printf, 2, 0))) void s_verror(cli_t *cli, const char *fmt,
                                                           va_list ap)
{
    cli_progress_end(cli);
    fflush(stdout); /* keep stdout and stderr in order on a shared terminal */
    fprintf(stderr, "%s: ", cli->name);
    if (cli->where != NULL) fprintf(stderr, "%s: ", cli->where);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_error(cli_t *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_verror(cli, fmt, ap);
    va_end(ap);
}

int cli_usage_error(cli_t *cli, const char *fmt, ...)
{
    const char *where = cli->where;
    if (where == NULL) cli->where = s_file_where(fmt);
    va_list ap;
    va_start(ap, fmt);
    s_verror(cli, fmt, ap);
    va_end(ap);
    /* --help answers a flag's mistake; a file's is named by cli->where. */
    if (cli->where == NULL) fprintf(stderr, "Try '%s --help'.\n", cli->name);
    cli->where = where;
    return CLI_EXIT_USAGE;
}

static void s_list_verbs(FILE *f, const cli_verb *verbs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", i > 0 ? ", " : "", verbs[i].name);
}

/* The union of the verbs' exit codes: each verb is run with --help while
 * cli_help collects instead of printing, so the list cannot drift from the
 * verbs' own. */
static unsigned s_verb_exits(const char *cmd, const cli_verb *verbs, size_t n)
{
    unsigned codes = 0;
    for (size_t i = 0; i < n; i++) {
        char word[64], help[] = "--help";
        snprintf(word, sizeof word, "%s", verbs[i].name);
        char *argv[] = {word, help, NULL};
        cli_t cli;
        char name[96];
        snprintf(name, sizeof name, "%s %s", cmd, verbs[i].name);
        cli_init(&cli, name);
        cli.collect_exits = &codes;
        verbs[i].run(&cli, 2, argv);
    }
    return codes;
}

int cli_dispatch(const char *cmd, const cli_verb *verbs, size_t n, const char *help_head,
                 int argc, char **argv)
{
    cli_t top;
    cli_init(&top, cmd);
    if (argc < 2) {
        fprintf(stderr, "%s: missing verb (one of: ", cmd);
        s_list_verbs(stderr, verbs, n);
        fprintf(stderr, ")\nTry '%s --help'.\n", cmd);
        return CLI_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0) {
        int w = 8; /* the names' column: as wide as the longest */
        for (size_t i = 0; i < n; i++)
            if ((int)strlen(verbs[i].name) > w) w = (int)strlen(verbs[i].name);
        printf("%s\nVerbs:\n", help_head);
        for (size_t i = 0; i < n; i++)
            printf("  %-*s %s\n", w, verbs[i].name, verbs[i].summary);
        printf("\nRun '%s VERB --help' for a verb's options.\n\n", cmd);
        cli_exit_codes_print(stdout, s_verb_exits(cmd, verbs, n));
        return cli_finish(&top, CLI_EXIT_OK);
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(verb, verbs[i].name) != 0) continue;
        cli_t cli;
        char name[64];
        snprintf(name, sizeof name, "%s %s", cmd, verb);
        cli_init(&cli, name);
        cli_install_log_sink(&cli);
        int rc = verbs[i].run(&cli, argc - 1, argv + 1);
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN); /* cli goes out of scope */
        return rc;
    }
    fprintf(stderr, "%s: unknown verb '%s' (available: ", cmd, verb);
    s_list_verbs(stderr, verbs, n);
    fprintf(stderr, ")\nTry '%s --help'.\n", cmd);
    return CLI_EXIT_USAGE;
}

evb_store_opts cli_log_opts(const char *dir, const char *service, bool create, int sync)
{
    evb_store_opts so = {0};
    so.dir = dir;
    so.service = service;
    so.create = create;
    so.sync = (evb_sync)sync;
    so.index_mode = EVB_INDEX_THREAD;
    return so;
}

evb_store_t *cli_open_log(cli_t *cli, const char *dir, const char *service, bool create,
                          int sync, int *exit_code)
{
    evb_store_opts so = cli_log_opts(dir, service, create, sync);
    evb_err err;
    evb_store_t *st = evb_store_open(&so, &err);
    if (st != NULL)
        return st;
    if (strstr(err.msg, dir) != NULL)
        cli_error(cli, "cannot open log: %s", err.msg);
    else
        cli_error(cli, "%s: cannot open log: %s", dir, err.msg);
    if (err.code == EVB_ENOTFOUND && !create)
        fprintf(stderr, "(use --create --service NAME to make a new log)\n");
    *exit_code = cli_exit_for_open(err.code);
    return NULL;
}

int cli_exit_for_open(int code)
{
    switch (code) {
    case EVB_ELOCKED:
    case EVB_EFORMAT:
    case EVB_ENOTFOUND:
    case EVB_ECORRUPT:
    case EVB_EIO:
    case EVB_EVERSION:
    case EVB_EDECODE:
        return CLI_EXIT_OPEN;
    default:
        return CLI_EXIT_RUNTIME;
    }
}

static void s_log_sink(evb_log_level level, const char *msg, void *ctx)
{
    cli_t *cli = ctx;
    static const char *const names[] = {"debug", "info", "warning", "error"};
    const char *ln = (unsigned)level < 4 ? names[level] : "log";
    cli_progress_end(cli);
    fprintf(stderr, "%s: %s: %s\n", cli->name, ln, msg);
}

void cli_install_log_sink(cli_t *cli)
{
    evb_log_set_sink(s_log_sink, cli, EVB_LOG_WARN);
}

void cli_progress(cli_t *cli, const char *fmt, ...)
{
    if (!cli->err_tty) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    cli->progress_shown = true;
}

void cli_progress_end(cli_t *cli)
{
    if (!cli->progress_shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    cli->progress_shown = false;
}

/* ---- stdout ---- */

static int s_out_failed(cli_t *cli)
{
    if (errno == EPIPE) {
        cli->pipe_closed = true;
    } else if (!cli->write_failed) {
        cli_error(cli, "writing to stdout: %s", strerror(errno != 0 ? errno : EIO));
        cli->write_failed = true;
    }
    return -1;
}

int cli_write(cli_t *cli, const void *p, size_t n)
{
    if (cli->pipe_closed || cli->write_failed) return -1;
    errno = 0;
    if (fwrite(p, 1, n, stdout) != n) return s_out_failed(cli);
    return 0;
}

int cli_printf(cli_t *cli, const char *fmt, ...)
{
    if (cli->pipe_closed || cli->write_failed) return -1;
    va_list ap;
    va_start(ap, fmt);
    errno = 0;
    int n = vfprintf(stdout, fmt, ap);
    va_end(ap);
    if (n < 0) return s_out_failed(cli);
    return 0;
}

int cli_finish(cli_t *cli, int rc)
{
    cli_progress_end(cli);
    if (cli->pipe_closed) {
        clearerr(stdout);
        return rc;
    }
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno == EPIPE) return rc;
        if (!cli->write_failed)
            cli_error(cli, "writing to stdout: %s", strerror(errno != 0 ? errno : EIO));
        cli->write_failed = true;
    }
    if (cli->write_failed && rc == CLI_EXIT_OK) return CLI_EXIT_RUNTIME;
    return rc;
}

unsigned cli_term_width(const cli_t *cli)
{
    if (!cli->out_tty) return 0;
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

const char *cli_bold(const cli_t *cli)
{
    return cli->color ? "\033[1m" : "";
}
const char *cli_red(const cli_t *cli)
{
    return cli->color ? "\033[31m" : "";
}
const char *cli_green(const cli_t *cli)
{
    return cli->color ? "\033[32m" : "";
}
const char *cli_dim(const cli_t *cli)
{
    return cli->color ? "\033[2m" : "";
}
const char *cli_reset(const cli_t *cli)
{
    return cli->color ? "\033[0m" : "";
}

/* ---- event rows ---- */

int cli_digits(uint64_t v)
{
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Columns that a string of n bytes takes (UTF-8: count non-continuation
 * bytes; wide characters are rare in payloads and counted as one). */
static size_t s_columns(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) c++;
    return c;
}

/* Byte length of the first `cols` columns of s[0..n). */
static size_t s_prefix_bytes(const char *s, size_t n, size_t cols)
{
    size_t c = 0, i = 0;
    for (; i < n; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (c == cols) break;
            c++;
        }
    }
    return i;
}

int cli_row_payload(const cli_t *cli, unsigned width, size_t used, const evb_event_t *ev,
                    evb_buf *line, evb_buf *payload, evb_err *err)
{
    payload->len = 0;
    int rc = evb_msgpack_to_json(ev->payload, ev->payload_len, payload, err);
    if (rc != EVB_OK) return rc;
    size_t plen = payload->len;
    bool cut = false;
    if (width > 0) {
        size_t room = width > used + 12 ? width - used : 12;
        if (s_columns(payload->data, plen) > room) {
            plen = s_prefix_bytes(payload->data, plen, room - 3);
            cut = true;
        }
    }
    rc = evb_buf_append(line, payload->data, plen, err);
    if (rc == EVB_OK && cut)
        rc = evb_buf_printf(line, err, "%s...%s", cli_dim(cli), cli_reset(cli));
    if (rc == EVB_OK) rc = evb_buf_append(line, "\n", 1, err);
    return rc;
}

/* ---- JSON and numbers ---- */

int cli_json_str(evb_buf *b, const char *s, evb_err *err)
{
    int rc = evb_buf_append(b, "\"", 1, err);
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (rc == EVB_OK && *p != '\0') {
        size_t n = evb_utf8_len(p, (size_t)(end - p));
        if (n == 0) {
            rc = evb_buf_append(b, "\\ufffd", 6, err);
            p++;
        } else if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            rc = evb_buf_append(b, esc, 2, err);
            p++;
        } else if (*p < 0x20 || *p == 0x7f) {
            rc = evb_buf_printf(b, err, "\\u%04x", *p);
            p++;
        } else {
            rc = evb_buf_append(b, p, n, err);
            p += n;
        }
    }
    if (rc == EVB_OK) rc = evb_buf_append(b, "\"", 1, err);
    return rc;
}

const char *cli_group(uint64_t v, char out[32])
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    return out;
}

const char *cli_bytes(uint64_t v, char out[32])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    unsigned u = 0;
    while (d >= 1024.0 && u < 5) {
        d /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(out, 32, "%" PRIu64 " B", v);
    else
        snprintf(out, 32, "%.1f %s", d, units[u]);
    return out;
}

/* ---- signals ---- */

static volatile sig_atomic_t s_stop;

static void s_on_stop(int sig)
{
    (void)sig;
    s_stop = 1;
}

void cli_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: zmq_poll returns EINTR at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool cli_stop_requested(void)
{
    return s_stop != 0;
}

int cli_parse_sync(const char *s, int *out)
{
    if (strcmp(s, "none") == 0)
        *out = EVB_SYNC_NONE;
    else if (strcmp(s, "every") == 0)
        *out = EVB_SYNC_EVERY;
    else if (strcmp(s, "group") == 0)
        *out = EVB_SYNC_GROUP;
    else
        return EVB_EINVAL;
    return EVB_OK;
}

/* ---- --follow ---- */

int cli_split_follow(const char *v, char *pub, char *cu)
{
    const char *comma = strchr(v, ',');
    if (comma == NULL || strchr(comma + 1, ',') != NULL) return EVB_EINVAL;
    size_t a = (size_t)(comma - v), b = strlen(comma + 1);
    if (a == 0 || b == 0 || a >= EVB_BUS_MAX_ENDPOINT || b >= EVB_BUS_MAX_ENDPOINT)
        return EVB_EINVAL;
    memcpy(pub, v, a);
    pub[a] = '\0';
    memcpy(cu, comma + 1, b + 1);
    return EVB_OK;
}

int cli_follow_keys(cli_t *cli, const cli_list *follow, bool has_cert, const char **keys)
{
    for (size_t i = 0; i < follow->n; i++) {
        /* PUB_EP,CATCHUP_EP,SERVER_KEY: CURVE; the key is cut off in place. */
        char *c1 = strchr(follow->v[i], ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (c2 == NULL) continue;
        *c2 = '\0';
        keys[i] = c2 + 1;
        if (!has_cert)
            return cli_usage_error(cli, "--follow %s,%s: a server key needs --cert",
                                   follow->v[i], keys[i]);
    }
    return -1;
}

int cli_follow_split(cli_t *cli, const cli_list *follow,
                     char (*eps)[2][EVB_BUS_MAX_ENDPOINT])
{
    char one[2][EVB_BUS_MAX_ENDPOINT];
    for (size_t i = 0; i < follow->n; i++) {
        char(*e)[EVB_BUS_MAX_ENDPOINT] = eps != NULL ? eps[i] : one;
        if (cli_split_follow(follow->v[i], e[0], e[1]) != EVB_OK)
            return cli_usage_error(cli,
                                   "--follow '%s': expected PUB_EP,CATCHUP_EP (two "
                                   "endpoints, one comma)",
                                   follow->v[i]);
    }
    return -1;
}
