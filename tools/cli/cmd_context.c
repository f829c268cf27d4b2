/*
 * cmd_context.c: `evbus context add|list|show|rm`: the saved contexts that
 * `--context NAME` (-C, EVBUS_CONTEXT) fills a command's endpoints from
 * (context.h; file format in tools/README.md, "Contexts").
 *
 * add checks every value the way the commands that use it would (endpoints
 * by connecting once, follow values by cli_follow_split, service names, a
 * server key needing --cert), so a saved context never fails later for a
 * typo; certificate files are saved as absolute paths, since the commands
 * run from anywhere. The file is changed under a lock and replaced whole.
 */
#include "context.h"
#include "ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int s_oom(cli_t *cli)
{
    cli_error(cli, "out of memory");
    return CLI_EXIT_RUNTIME;
}

/* Values are saved as one line each and trimmed when read back. */
static bool s_value_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')
        return false;
    for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f) return false;
    return n <= CTX_MAX_LINE - 32;
}

static int s_bad_value(cli_t *cli, const char *flag, const char *v)
{
    return cli_usage_error(
        cli,
        "--%s '%s': cannot be saved (empty, a control character, spaces "
        "at an end, or longer than %d bytes)",
        flag, v, CTX_MAX_LINE - 32);
}

/* A key or certificate argument that names a readable file: its absolute
 * path (malloc'd) in *out; a key (not a file) is copied as given. */
static int s_abs_file(cli_t *cli, const char *flag, const char *v, bool must_be_file,
                      char **out)
{
    if (access(v, R_OK) == 0) {
        *out = realpath(v, NULL);
        if (*out == NULL) {
            cli_error(cli, "--%s %s: %s", flag, v, strerror(errno));
            return CLI_EXIT_RUNTIME;
        }
        return -1;
    }
    if (must_be_file)
        return cli_usage_error(cli, "--%s %s: cannot read it: %s", flag, v,
                               strerror(errno));
    *out = strdup(v);
    if (*out == NULL) {
        cli_error(cli, "out of memory");
        return CLI_EXIT_RUNTIME;
    }
    return -1;
}

/* Check the values of add and build the entry e (its strings malloc'd). */
static int s_build(cli_t *cli, const char *name, const cli_list *follow, const char *cmd,
                   const char *cert, const char *server_key, const cli_list *services,
                   ctx_entry *e)
{
    int rc;
    memset(e, 0, sizeof *e);
    if (follow->n == 0 && cmd == NULL && services->n == 0)
        return cli_usage_error(cli, "give at least one of --follow, --cmd, --service");
    if (server_key != NULL && cmd == NULL)
        return cli_usage_error(cli, "--server-key is the --cmd socket's key: give --cmd");
    if (server_key != NULL && cert == NULL)
        return cli_usage_error(cli, "--cert and --server-key go together");
    for (size_t i = 0; i < follow->n; i++)
        if (!s_value_ok(follow->v[i])) return s_bad_value(cli, "follow", follow->v[i]);
    for (size_t i = 0; i < services->n; i++)
        if (!s_value_ok(services->v[i]))
            return s_bad_value(cli, "service", services->v[i]);
    if (cmd != NULL && !s_value_ok(cmd)) return s_bad_value(cli, "cmd", cmd);
    if (cert != NULL && !s_value_ok(cert)) return s_bad_value(cli, "cert", cert);
    if (server_key != NULL && !s_value_ok(server_key))
        return s_bad_value(cli, "server-key", server_key);

    /* --follow as the commands check it: keys cut off (in place, into argv,
     * as they do), then PUB_EP,CATCHUP_EP, then each endpoint connected. */
    cli_list fl = *follow;
    const char *keys[CLI_MAX_LIST] = {0};
    char(*eps)[2][EVB_BUS_MAX_ENDPOINT] = calloc(CLI_MAX_LIST, sizeof *eps);
    if (eps == NULL) {
        cli_error(cli, "out of memory");
        return CLI_EXIT_RUNTIME;
    }
    rc = cli_follow_keys(cli, &fl, cert != NULL, keys);
    if (rc < 0) rc = cli_follow_split(cli, &fl, eps);
    for (size_t i = 0; rc < 0 && i < fl.n; i++)
        for (int k = 0; rc < 0 && k < 2; k++)
            rc = ops_check_endpoint(cli, eps[i][k]);
    if (rc < 0 && cmd != NULL) rc = ops_check_endpoint(cli, cmd);
    evb_err err = {0};
    for (size_t i = 0; rc < 0 && i < services->n; i++)
        if (evb_check_service(services->v[i], &err) != EVB_OK)
            rc = cli_usage_error(cli, "--service '%s': %s", services->v[i], err.msg);

    if (rc < 0 && (e->name = strdup(name)) == NULL) rc = s_oom(cli);
    for (size_t i = 0; rc < 0 && i < fl.n; i++) {
        char *key = NULL;
        if (keys[i] != NULL) rc = s_abs_file(cli, "follow", keys[i], false, &key);
        if (rc >= 0) break;
        size_t cap = 2 * EVB_BUS_MAX_ENDPOINT + 2 + (key != NULL ? strlen(key) + 1 : 0);
        char *v = malloc(cap);
        if (v == NULL) {
            free(key);
            rc = s_oom(cli);
            break;
        }
        snprintf(v, cap, "%s,%s%s%s", eps[i][0], eps[i][1], key != NULL ? "," : "",
                 key != NULL ? key : "");
        free(key);
        e->follow[e->nfollow++] = v;
    }
    free(eps);
    for (size_t i = 0; rc < 0 && i < services->n; i++) {
        if ((e->service[e->nservice] = strdup(services->v[i])) == NULL)
            rc = s_oom(cli);
        else
            e->nservice++;
    }
    if (rc < 0 && cmd != NULL && (e->cmd = strdup(cmd)) == NULL) rc = s_oom(cli);
    if (rc < 0 && cert != NULL) rc = s_abs_file(cli, "cert", cert, true, &e->cert);
    if (rc < 0 && server_key != NULL)
        rc = s_abs_file(cli, "server-key", server_key, false, &e->server_key);
    return rc;
}

static int s_add(cli_t *cli, int argc, char **argv)
{
    cli_list follow = {0}, services = {0};
    const char *cmd = NULL, *cert = NULL, *server_key = NULL;
    bool force = false;
    const cli_opt opts[] = {
        {"follow", CLI_LIST, &follow, NULL, "PUB_EP,CATCHUP_EP[,KEY]",
         "a publisher's endpoints, for sniff and mirror (may repeat)"},
        {"cmd", CLI_STR, &cmd, NULL, "EP",
         "a command socket, for status, call, feed and append"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret), for keyed endpoints"},
        {"server-key", CLI_STR, &server_key, NULL, "KEY|FILE",
         "CURVE: the --cmd socket's public key, or its public certificate"},
        {"service", CLI_LIST, &services, NULL, "NAME",
         "a service found by its beacon, for sniff (may repeat)"},
        {"force", CLI_FLAG, &force, NULL, NULL, "replace a context of the same name"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS),
        "NAME [--follow PUB_EP,CATCHUP_EP[,KEY]]... [--cmd EP] [--cert FILE\n"
        "       [--server-key KEY|FILE]] [--service NAME]... [--force]",
        "Save a context: a name for a set of endpoints, which commands then take\n"
        "with --context NAME (-C NAME, or EVBUS_CONTEXT=NAME), e.g.\n"
        "  evbus context add prod --cmd tcp://10.0.0.5:5557 \\\n"
        "      --follow tcp://10.0.0.5:5555,tcp://10.0.0.5:5556\n"
        "  evbus status -C prod\n"
        "NAME is letters, digits, '_', '.' and '-' (at most 64 bytes). Values are\n"
        "checked as the commands check them; certificate and key files are saved\n"
        "as absolute paths. An existing context is replaced only with --force.",
        "The file is $XDG_CONFIG_HOME/evbus/contexts (default\n"
        "~/.config/evbus/contexts), mode 0600, replaced whole on each change.\n"
        "Exit code 0 when saved, 1 when NAME exists (without --force), 2 for a bad\n"
        "name or value, 4 when the file cannot be read or written.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    const char *name = pos[0];
    if (!ctx_name_ok(name))
        return cli_usage_error(
            cli,
            "'%s': not a context name (letters, digits, '_', '.', '-'; "
            "at most %d bytes)",
            name, CTX_MAX_NAME);
    ctx_entry e;
    rc = s_build(cli, name, &follow, cmd, cert, server_key, &services, &e);
    if (rc >= 0) {
        ctx_entry_free(&e);
        return rc;
    }
    ctx_file f;
    evb_err err = {0};
    if (ctx_path(f.path, sizeof f.path, &err) != EVB_OK) {
        cli_error(cli, "%s", err.msg);
        ctx_entry_free(&e);
        return CLI_EXIT_RUNTIME;
    }
    int lock = ctx_lock(&f, &err);
    if (lock < 0 || ctx_load(&f, &err) != EVB_OK) {
        cli_error(cli, "%s", err.msg);
        if (lock >= 0) close(lock);
        ctx_entry_free(&e);
        return CLI_EXIT_RUNTIME;
    }
    ctx_entry *old = ctx_find(&f, name);
    bool replaced = old != NULL;
    rc = CLI_EXIT_OK;
    if (old != NULL && !force) {
        cli_error(cli, "context %s already exists in %s (--force replaces it)", name,
                  f.path);
        rc = CLI_EXIT_PROBLEMS;
    } else if (old == NULL && f.n == CTX_MAX_CONTEXTS) {
        cli_error(cli, "%s holds %d contexts already", f.path, CTX_MAX_CONTEXTS);
        rc = CLI_EXIT_RUNTIME;
    } else if (old != NULL) {
        ctx_entry_free(old); /* replaced in place: the file keeps its order */
        *old = e;
    } else {
        ctx_entry *v = realloc(f.v, (f.n + 1) * sizeof *v);
        if (v == NULL) {
            cli_error(cli, "out of memory");
            rc = CLI_EXIT_RUNTIME;
        } else {
            f.v = v;
            f.v[f.n++] = e;
        }
    }
    if (rc != CLI_EXIT_OK) ctx_entry_free(&e); /* else e belongs to f now */
    if (rc == CLI_EXIT_OK && ctx_save(&f, &err) != EVB_OK) {
        cli_error(cli, "%s", err.msg);
        rc = CLI_EXIT_RUNTIME;
    }
    if (rc == CLI_EXIT_OK)
        cli_printf(cli, "%s context %s in %s\n", replaced ? "replaced" : "saved", name,
                   f.path);
    close(lock);
    ctx_free(&f);
    return cli_finish(cli, rc);
}

/* ---- list, show ---- */

static int s_json_opt(evb_buf *b, const char *key, const char *v)
{
    int rc = evb_buf_printf(b, NULL, ", \"%s\": ", key);
    if (rc != EVB_OK) return rc;
    return v != NULL ? cli_json_str(b, v, NULL) : evb_buf_append(b, "null", 4, NULL);
}

static int s_json_list(evb_buf *b, const char *key, char *const *v, size_t n)
{
    int rc = evb_buf_printf(b, NULL, ", \"%s\": [", key);
    for (size_t i = 0; rc == EVB_OK && i < n; i++) {
        if (i > 0) rc = evb_buf_append(b, ", ", 2, NULL);
        if (rc == EVB_OK) rc = cli_json_str(b, v[i], NULL);
    }
    if (rc == EVB_OK) rc = evb_buf_append(b, "]", 1, NULL);
    return rc;
}

/* {"name", "follow": [...], "cmd", "cert", "server_key", "service": [...]}
 * (absent ones null or []). */
static int s_json_entry(evb_buf *b, const ctx_entry *e)
{
    int rc = evb_buf_append(b, "{\"name\": ", 9, NULL);
    if (rc == EVB_OK) rc = cli_json_str(b, e->name, NULL);
    if (rc == EVB_OK) rc = s_json_list(b, "follow", e->follow, e->nfollow);
    if (rc == EVB_OK) rc = s_json_opt(b, "cmd", e->cmd);
    if (rc == EVB_OK) rc = s_json_opt(b, "cert", e->cert);
    if (rc == EVB_OK) rc = s_json_opt(b, "server_key", e->server_key);
    if (rc == EVB_OK) rc = s_json_list(b, "service", e->service, e->nservice);
    if (rc == EVB_OK) rc = evb_buf_append(b, "}", 1, NULL);
    return rc;
}

/* Load the file for list/show/rm: -1, or the exit code after saying why. */
static int s_load(cli_t *cli, ctx_file *f)
{
    evb_err err = {0};
    if (ctx_load(f, &err) == EVB_OK) return -1;
    cli_error(cli, "%s", err.msg);
    return CLI_EXIT_RUNTIME;
}

static int s_unknown(cli_t *cli, const ctx_file *f, const char *name)
{
    char names[512];
    ctx_names(f, names, sizeof names);
    if (f->n == 0)
        return cli_usage_error(cli, "no context %s in %s (it holds none)", name, f->path);
    return cli_usage_error(cli, "no context %s in %s (known: %s)", name, f->path, names);
}

static int s_list(cli_t *cli, int argc, char **argv)
{
    bool json = false;
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, NULL,
         "one JSON object: {file, current, contexts: [...]}"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE,
        "[--json]",
        "List the saved contexts, one a line: name, command socket, publishers\n"
        "(--follow) and services. '*' marks the one EVBUS_CONTEXT names.",
        "--json: {\"file\": PATH, \"current\": EVBUS_CONTEXT or null, \"contexts\":\n"
        "[{name, follow: [...], cmd, cert, server_key, service: [...]}]} (null or\n"
        "[] for what a context does not set).\n"
        "Nothing is printed when there are none (a note goes to stderr).\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    ctx_file f;
    if ((rc = s_load(cli, &f)) >= 0) return rc;
    const char *cur = getenv("EVBUS_CONTEXT");
    if (cur != NULL && cur[0] == '\0') cur = NULL;
    rc = CLI_EXIT_OK;
    if (json) {
        evb_buf b = {0};
        int jrc = evb_buf_append(&b, "{\"file\": ", 9, NULL);
        if (jrc == EVB_OK) jrc = cli_json_str(&b, f.path, NULL);
        if (jrc == EVB_OK) jrc = s_json_opt(&b, "current", cur);
        if (jrc == EVB_OK) jrc = evb_buf_append(&b, ", \"contexts\": [", 15, NULL);
        for (size_t i = 0; jrc == EVB_OK && i < f.n; i++) {
            if (i > 0) jrc = evb_buf_append(&b, ", ", 2, NULL);
            if (jrc == EVB_OK) jrc = s_json_entry(&b, &f.v[i]);
        }
        if (jrc == EVB_OK) jrc = evb_buf_append(&b, "]}\n", 3, NULL);
        if (jrc == EVB_OK) {
            cli_write(cli, b.data, b.len);
        } else {
            cli_error(cli, "%s", evb_strerror(jrc));
            rc = CLI_EXIT_RUNTIME;
        }
        evb_buf_free(&b);
    } else {
        if (f.n == 0) fprintf(stderr, "%s: no contexts saved in %s\n", cli->name, f.path);
        int w = 0; /* names in one column */
        for (size_t i = 0; i < f.n; i++)
            if ((int)strlen(f.v[i].name) > w) w = (int)strlen(f.v[i].name);
        for (size_t i = 0; i < f.n; i++) {
            const ctx_entry *e = &f.v[i];
            bool is_cur = cur != NULL && strcmp(cur, e->name) == 0;
            cli_printf(cli, "%s %s%-*s%s  cmd %s", is_cur ? "*" : " ", cli_bold(cli), w,
                       e->name, cli_reset(cli), e->cmd != NULL ? e->cmd : "-");
            for (size_t k = 0; k < e->nfollow; k++)
                cli_printf(cli, "  follow %s", e->follow[k]);
            for (size_t k = 0; k < e->nservice; k++)
                cli_printf(cli, "  service %s", e->service[k]);
            cli_printf(cli, "%s\n", e->cert != NULL ? "  (CURVE)" : "");
        }
    }
    ctx_free(&f);
    return cli_finish(cli, rc);
}

static int s_show(cli_t *cli, int argc, char **argv)
{
    bool json = false;
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, NULL,
         "one JSON object: {name, follow, cmd, cert, server_key, service, file}"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE,
        "NAME [--json]",
        "Print the saved context NAME as it stands in the file ([NAME] and its\n"
        "KEY = VALUE lines), or as JSON.",
        "--json fields: name, follow: [...], cmd, cert, server_key, service: [...]\n"
        "(null or [] when not set), file.\n"
        "Exit code 0, 2 when there is no context NAME (the known ones are listed),\n"
        "4 when the file cannot be read.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    ctx_file f;
    if ((rc = s_load(cli, &f)) >= 0) return rc;
    const ctx_entry *e = ctx_find(&f, pos[0]);
    if (e == NULL) {
        rc = s_unknown(cli, &f, pos[0]);
        ctx_free(&f);
        return rc;
    }
    rc = CLI_EXIT_OK;
    if (json) {
        evb_buf b = {0};
        int jrc = s_json_entry(&b, e);
        if (jrc == EVB_OK) {
            b.len--; /* reopen the object for "file" */
            jrc = s_json_opt(&b, "file", f.path);
        }
        if (jrc == EVB_OK) jrc = evb_buf_append(&b, "}\n", 2, NULL);
        if (jrc == EVB_OK) {
            cli_write(cli, b.data, b.len);
        } else {
            cli_error(cli, "%s", evb_strerror(jrc));
            rc = CLI_EXIT_RUNTIME;
        }
        evb_buf_free(&b);
    } else {
        cli_printf(cli, "[%s]\n", e->name);
        for (size_t k = 0; k < e->nfollow; k++)
            cli_printf(cli, "follow = %s\n", e->follow[k]);
        if (e->cmd != NULL) cli_printf(cli, "cmd = %s\n", e->cmd);
        if (e->cert != NULL) cli_printf(cli, "cert = %s\n", e->cert);
        if (e->server_key != NULL) cli_printf(cli, "server-key = %s\n", e->server_key);
        for (size_t k = 0; k < e->nservice; k++)
            cli_printf(cli, "service = %s\n", e->service[k]);
    }
    ctx_free(&f);
    return cli_finish(cli, rc);
}

static int s_rm(cli_t *cli, int argc, char **argv)
{
    const cli_opt opts[] = {{0}};
    const cli_usage usage = {
        CLI_EXITS_BASE,
        "NAME",
        "Remove the saved context NAME (the file is rewritten whole, atomically).",
        "Exit code 0 when removed, 2 when there is no context NAME (the known ones\n"
        "are listed), 4 when the file cannot be read or written.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    ctx_file f;
    evb_err err = {0};
    if (ctx_path(f.path, sizeof f.path, &err) != EVB_OK) {
        cli_error(cli, "%s", err.msg);
        return CLI_EXIT_RUNTIME;
    }
    int lock = ctx_lock(&f, &err);
    if (lock < 0) {
        cli_error(cli, "%s", err.msg);
        return CLI_EXIT_RUNTIME;
    }
    if ((rc = s_load(cli, &f)) >= 0) {
        close(lock);
        return rc;
    }
    ctx_entry *e = ctx_find(&f, pos[0]);
    if (e == NULL) {
        rc = s_unknown(cli, &f, pos[0]);
    } else {
        ctx_entry_free(e);
        size_t i = (size_t)(e - f.v);
        memmove(e, e + 1, (f.n - i - 1) * sizeof *e);
        f.n--;
        rc = CLI_EXIT_OK;
        if (ctx_save(&f, &err) != EVB_OK) {
            cli_error(cli, "%s", err.msg);
            rc = CLI_EXIT_RUNTIME;
        } else {
            cli_printf(cli, "removed context %s from %s\n", pos[0], f.path);
        }
    }
    close(lock);
    ctx_free(&f);
    return cli_finish(cli, rc);
}

static const cli_verb s_verbs[] = {
    {"add", s_add, "save a context (endpoints, certificate) under a name"},
    {"list", s_list, "list the saved contexts"},
    {"show", s_show, "print one context"},
    {"rm", s_rm, "remove a context"},
};

int cmd_context(int argc, char **argv)
{
    return cli_dispatch(
        "evbus context", s_verbs, sizeof s_verbs / sizeof s_verbs[0],
        "Usage: evbus context VERB [NAME] [OPTIONS]\n\n"
        "Saved contexts: a name for the endpoints of a deployment, so that\n"
        "  evbus context add prod --cmd tcp://10.0.0.5:5557 \\\n"
        "      --follow tcp://10.0.0.5:5555,tcp://10.0.0.5:5556\n"
        "lets `evbus status -C prod`, `evbus sniff -C prod`, `evbus call -C prod\n"
        "status` and friends run without the endpoints. --context NAME (-C NAME)\n"
        "on status, call, feed, append, sniff and mirror; EVBUS_CONTEXT=NAME when\n"
        "no --context is given. What a command is given on its command line wins\n"
        "over the context; @NAME and --service NAME still mean a service found by\n"
        "beacon. Stored in $XDG_CONFIG_HOME/evbus/contexts (default\n"
        "~/.config/evbus/contexts), mode 0600; see tools/README.md, \"Contexts\".\n",
        argc, argv);
}
