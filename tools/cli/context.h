/*
 * context.h (private to the evbus program): saved contexts, so an operator
 * names a set of endpoints once (`evbus context add prod --follow ... --cmd
 * ...`) and then says `--context prod` (`-C prod`, or EVBUS_CONTEXT=prod).
 *
 * The file is $XDG_CONFIG_HOME/evbus/contexts (default ~/.config/evbus/
 * contexts), INI-like, one [NAME] section per context (format in
 * tools/README.md, "Contexts"); written whole to a temporary file in the
 * same directory, synced and renamed over the old one, mode 0600.
 *
 * Ownership: a ctx_file owns its entries and their strings (ctx_free). The
 * context a command uses (ctx_open) lives until the process ends: flag
 * values borrow its strings as they borrow argv. Thread rules: none; not
 * thread-safe. Limits: CTX_MAX_CONTEXTS, CTX_MAX_FILE_BYTES, names of at
 * most CTX_MAX_NAME bytes, CLI_MAX_LIST follow/service values each.
 */
#ifndef EVB_TOOLS_CONTEXT_H
#define EVB_TOOLS_CONTEXT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "cli.h"

#define CTX_MAX_NAME 64
#define CTX_MAX_CONTEXTS 1024
#define CTX_MAX_FILE_BYTES (1u << 20)
#define CTX_MAX_LINE 4096

typedef struct ctx_entry {
    char *name;
    char *follow[CLI_MAX_LIST]; /* "PUB_EP,CATCHUP_EP[,SERVER_KEY]" */
    size_t nfollow;
    char *service[CLI_MAX_LIST]; /* names found by beacon (sniff --service) */
    size_t nservice;
    char *cmd;        /* a command socket, or NULL */
    char *cert;       /* our CURVE certificate (absolute path), or NULL */
    char *server_key; /* the cmd socket's CURVE key or certificate, or NULL */
} ctx_entry;

typedef struct ctx_file {
    char path[PATH_MAX];
    bool exists; /* the file was there when loaded */
    ctx_entry *v;
    size_t n;
} ctx_file;

/* True when name is 1..CTX_MAX_NAME bytes of [A-Za-z0-9_.-]. */
bool ctx_name_ok(const char *name);

/* The file's path: $XDG_CONFIG_HOME/evbus/contexts when XDG_CONFIG_HOME is
 * absolute, else $HOME/.config/evbus/contexts. EVB_EINVAL when neither
 * can be made. */
int ctx_path(char *out, size_t cap, evb_err *err);

/* Read the file into f (zeroed first). A missing file is no error: f->n 0,
 * f->exists false. EVB_EIO when it cannot be read, EVB_EFORMAT naming
 * PATH:LINE for a line that is not the format; f is freed then. */
int ctx_load(ctx_file *f, evb_err *err);
void ctx_free(ctx_file *f);
/* Free e's strings and zero it (e itself is the caller's). */
void ctx_entry_free(ctx_entry *e);

/* The entry called name, or NULL. */
ctx_entry *ctx_find(const ctx_file *f, const char *name);

/* Write f to f->path: creates the directory (0700) when missing, writes a
 * temporary file (0600) beside it, fsyncs it, renames it over the file and
 * fsyncs the directory. EVB_EIO naming the path otherwise. */
int ctx_save(const ctx_file *f, evb_err *err);

/* Hold an exclusive lock (flock) on the file's directory (made if missing),
 * so two `evbus context add` do not lose each other's change.
 * Returns the fd (close to release), or -1 with err set. */
int ctx_lock(const ctx_file *f, evb_err *err);

/* "a, b, c" of the names in f into out (cut with "..." to fit). */
void ctx_names(const ctx_file *f, char *out, size_t cap);

/* ---- using a context in a command ---- */

/* The context a command was given: flag is its --context value (NULL when
 * not given), else EVBUS_CONTEXT (unset or empty: none). Returns -1 to go
 * on, with *out the context or NULL for none, or the exit code: 2 naming
 * the context and the file (and the known names) when there is no such
 * context, 4 when the file cannot be read. The entry lives until exit. */
int ctx_open(cli_t *cli, const char *flag, const ctx_entry **out);

/* The path of the file the context ctx_open returned came from. */
const char *ctx_used_path(void);

/* Where a command keeps the settings a context can fill in. A NULL member:
 * the command has no such setting. */
typedef struct ctx_apply {
    cli_list *follow;        /* --follow */
    cli_list *services;      /* sniff's --service (names found by beacon) */
    const char **cmd;        /* the command endpoint (an argument or --to) */
    const char **cert;       /* --cert */
    const char **server_key; /* --server-key */
} ctx_apply;

/* Fill in what the command was not given, from e (NULL: nothing done):
 * - --follow (and, for sniff, --service): the context's lists, only when
 *   neither --follow nor --service was given;
 * - the command endpoint: the context's cmd, when none was given; its
 *   server-key then too, unless --server-key was given;
 * - --cert, unless given: the context's, when something taken from the
 *   context needs it (a follow value with a server key, or the context's
 *   cmd with a server key).
 * Returns -1, or CLI_EXIT_USAGE after naming what is missing when the
 * context holds more values than a list can take. */
int ctx_fill(cli_t *cli, const ctx_entry *e, const ctx_apply *a);

/* For the commands that talk to one command socket (status, feed, call,
 * append --to): ctx_open(flag), then ctx_fill of *ep, *cert, *server_key.
 * When *ep is still NULL after that and ep_name is not NULL, a usage error
 * says that ep_name ("CMD_EP", "--to CMD_EP") or a context with a cmd is
 * needed. Returns -1 to go on, or the exit code. */
int ctx_cmd_socket(cli_t *cli, const char *flag, const char *ep_name, const char **ep,
                   const char **cert, const char **server_key);

/* When service (given as what: "@booking", "--service booking") is also
 * the name of a saved context, say on stderr which one is used: the
 * service found by beacon. Quiet when the file cannot be read. */
void ctx_note_beacon(cli_t *cli, const char *service, const char *what);

/* Help text shared by the commands that take --context. */
#define CTX_OPT_HELP "take endpoints from saved context NAME (default $EVBUS_CONTEXT)"

#endif
