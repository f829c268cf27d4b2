/*
 * context.c: saved contexts (context.h): the file, and filling a command's
 * flags from one.
 *
 * The format is a small INI: blank lines and lines starting with '#' are
 * skipped; "[NAME]" starts a context; "KEY = VALUE" lines (spaces around
 * '=' and at the ends are dropped) belong to the last one. Keys: follow and
 * service (may repeat), cmd, cert, server-key (once each). Anything else is
 * an error naming the line: a typo must not be dropped silently. Values
 * cannot hold a newline or begin or end with a space, which `evbus context
 * add` checks before it writes one.
 *
 * Writes replace the file whole (temporary file, fsync, rename, fsync of the
 * directory): a crash leaves the old file or the new one, never half of one;
 * readers never lock. Comments written by hand are not kept by a rewrite.
 */
#include "context.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

bool ctx_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CTX_MAX_NAME) return false;
    for (const char *p = name; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

int ctx_path(char *out, size_t cap, evb_err *err)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    int n;
    /* The XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored. */
    if (xdg != NULL && xdg[0] == '/') {
        n = snprintf(out, cap, "%s/evbus/contexts", xdg);
    } else {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0')
            return evb_err_set(err, EVB_EINVAL,
                               "neither XDG_CONFIG_HOME nor HOME is set: no place for "
                               "the contexts file");
        n = snprintf(out, cap, "%s/.config/evbus/contexts", home);
    }
    if (n < 0 || (size_t)n >= cap)
        return evb_err_set(err, EVB_EINVAL, "the contexts file's path is too long");
    return EVB_OK;
}

void ctx_entry_free(ctx_entry *e)
{
    free(e->name);
    for (size_t i = 0; i < e->nfollow; i++)
        free(e->follow[i]);
    for (size_t i = 0; i < e->nservice; i++)
        free(e->service[i]);
    free(e->cmd);
    free(e->cert);
    free(e->server_key);
    memset(e, 0, sizeof *e);
}

void ctx_free(ctx_file *f)
{
    for (size_t i = 0; i < f->n; i++)
        ctx_entry_free(&f->v[i]);
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

ctx_entry *ctx_find(const ctx_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i].name, name) == 0) return &f->v[i];
    return NULL;
}

static char *s_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* One "KEY = VALUE" line into e. */
static int s_set_key(ctx_entry *e, const char *key, const char *val, const char *where,
                     evb_err *err)
{
    char **one = NULL;
    if (strcmp(key, "cmd") == 0)
        one = &e->cmd;
    else if (strcmp(key, "cert") == 0)
        one = &e->cert;
    else if (strcmp(key, "server-key") == 0)
        one = &e->server_key;
    if (one != NULL && *one != NULL)
        return evb_err_set(err, EVB_EFORMAT, "%s: '%s' given twice in [%s]", where, key,
                           e->name);
    char **list = NULL;
    size_t *n = NULL;
    if (strcmp(key, "follow") == 0) {
        list = e->follow;
        n = &e->nfollow;
    } else if (strcmp(key, "service") == 0) {
        list = e->service;
        n = &e->nservice;
    }
    if (one == NULL && list == NULL)
        return evb_err_set(
            err, EVB_EFORMAT,
            "%s: unknown key '%.64s' (known: follow, cmd, cert, server-key, "
            "service)",
            where, key);
    if (val[0] == '\0')
        return evb_err_set(err, EVB_EFORMAT, "%s: '%s' has no value", where, key);
    if (list != NULL && *n == CLI_MAX_LIST)
        return evb_err_set(err, EVB_EFORMAT, "%s: more than %d '%s' lines in [%s]", where,
                           CLI_MAX_LIST, key, e->name);
    char *v = strdup(val);
    if (v == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
    if (one != NULL)
        *one = v;
    else
        list[(*n)++] = v;
    return EVB_OK;
}

static int s_parse(ctx_file *f, char *text, evb_err *err)
{
    ctx_entry *cur = NULL;
    size_t lineno = 0;
    for (char *line = text; line != NULL;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) *nl = '\0';
        lineno++;
        char where[PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%zu", f->path, lineno);
        char *s = s_trim(line);
        line = nl != NULL ? nl + 1 : NULL;
        if (s[0] == '\0' || s[0] == '#') continue;
        if (strlen(s) > CTX_MAX_LINE)
            return evb_err_set(err, EVB_EFORMAT, "%s: line longer than %d bytes", where,
                               CTX_MAX_LINE);
        if (s[0] == '[') {
            size_t n = strlen(s);
            if (s[n - 1] != ']')
                return evb_err_set(err, EVB_EFORMAT, "%s: expected [NAME]", where);
            s[n - 1] = '\0';
            char *name = s_trim(s + 1);
            if (!ctx_name_ok(name))
                return evb_err_set(
                    err, EVB_EFORMAT,
                    "%s: '%.64s' is not a context name ([A-Za-z0-9_.-], at "
                    "most %d bytes)",
                    where, name, CTX_MAX_NAME);
            if (ctx_find(f, name) != NULL)
                return evb_err_set(err, EVB_EFORMAT, "%s: [%s] given twice", where, name);
            if (f->n == CTX_MAX_CONTEXTS)
                return evb_err_set(err, EVB_EFORMAT, "%s: more than %d contexts", where,
                                   CTX_MAX_CONTEXTS);
            ctx_entry *v = realloc(f->v, (f->n + 1) * sizeof *v);
            if (v == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
            f->v = v;
            cur = &f->v[f->n];
            memset(cur, 0, sizeof *cur);
            if ((cur->name = strdup(name)) == NULL)
                return evb_err_set(err, EVB_ENOMEM, "out of memory");
            f->n++;
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL)
            return evb_err_set(err, EVB_EFORMAT, "%s: expected [NAME] or KEY = VALUE",
                               where);
        if (cur == NULL)
            return evb_err_set(err, EVB_EFORMAT, "%s: KEY = VALUE before any [NAME]",
                               where);
        *eq = '\0';
        int rc = s_set_key(cur, s_trim(s), s_trim(eq + 1), where, err);
        if (rc != EVB_OK) return rc;
    }
    return EVB_OK;
}

int ctx_load(ctx_file *f, evb_err *err)
{
    char path[PATH_MAX];
    int rc = ctx_path(path, sizeof path, err);
    memset(f, 0, sizeof *f);
    if (rc != EVB_OK) return rc;
    memcpy(f->path, path, sizeof path);
    FILE *in = fopen(f->path, "r");
    if (in == NULL) {
        if (errno == ENOENT) return EVB_OK;
        return evb_err_set(err, EVB_EIO, "%s: %s", f->path, strerror(errno));
    }
    f->exists = true;
    char *text = malloc(CTX_MAX_FILE_BYTES + 1);
    if (text == NULL) {
        fclose(in);
        return evb_err_set(err, EVB_ENOMEM, "out of memory");
    }
    size_t n = fread(text, 1, CTX_MAX_FILE_BYTES + 1, in);
    if (ferror(in))
        rc = evb_err_set(err, EVB_EIO, "%s: %s", f->path, strerror(errno));
    else if (n > CTX_MAX_FILE_BYTES)
        rc = evb_err_set(err, EVB_EFORMAT, "%s: larger than %u bytes", f->path,
                         CTX_MAX_FILE_BYTES);
    else if (memchr(text, '\0', n) != NULL)
        rc = evb_err_set(err, EVB_EFORMAT, "%s: holds a NUL byte (not a text file)",
                         f->path);
    fclose(in);
    if (rc == EVB_OK) {
        text[n] = '\0';
        rc = s_parse(f, text, err);
    }
    free(text);
    if (rc != EVB_OK) ctx_free(f);
    return rc;
}

/* mkdir -p of dir's parents and dir itself (0700: it holds the names of
 * certificate files). */
static int s_mkdirs(const char *dir, evb_err *err)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return evb_err_set(err, EVB_EIO, "cannot make %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        return evb_err_set(err, EVB_EIO, "cannot make %s: %s", p, strerror(errno));
    return EVB_OK;
}

static void s_dir_of(const char *path, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir)
        *slash = '\0';
    else if (slash == dir)
        dir[1] = '\0';
}

static int s_write_entries(FILE *out, const ctx_file *f)
{
    fprintf(out,
            "# evbus contexts: written by `evbus context add` and `evbus context rm`\n"
            "# (tools/README.md, \"Contexts\"). One [NAME] section per context; keys:\n"
            "# follow (may repeat), cmd, cert, server-key, service (may repeat).\n");
    for (size_t i = 0; i < f->n; i++) {
        const ctx_entry *e = &f->v[i];
        fprintf(out, "\n[%s]\n", e->name);
        for (size_t k = 0; k < e->nfollow; k++)
            fprintf(out, "follow = %s\n", e->follow[k]);
        if (e->cmd != NULL) fprintf(out, "cmd = %s\n", e->cmd);
        if (e->cert != NULL) fprintf(out, "cert = %s\n", e->cert);
        if (e->server_key != NULL) fprintf(out, "server-key = %s\n", e->server_key);
        for (size_t k = 0; k < e->nservice; k++)
            fprintf(out, "service = %s\n", e->service[k]);
    }
    return ferror(out) ? -1 : 0;
}

int ctx_save(const ctx_file *f, evb_err *err)
{
    char dir[PATH_MAX], tmp[PATH_MAX + 16], target[PATH_MAX];
    /* A symlinked file (dotfiles kept elsewhere) is written where it points:
     * renaming over the link would replace it with a plain file. */
    const char *path = f->path;
    struct stat lst;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        if (realpath(path, target) == NULL)
            return evb_err_set(err, EVB_EIO, "%s: a symlink to nowhere usable: %s", path,
                               strerror(errno));
        path = target;
    }
    s_dir_of(path, dir, sizeof dir);
    int rc = s_mkdirs(dir, err);
    if (rc != EVB_OK) return rc;
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0)
        return evb_err_set(err, EVB_EIO, "cannot write %s: %s", tmp, strerror(errno));
    FILE *out = fdopen(fd, "w");
    if (out == NULL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return evb_err_set(err, EVB_EIO, "cannot write %s: %s", tmp, strerror(e));
    }
    bool ok = fchmod(fd, 0600) == 0 && s_write_entries(out, f) == 0 && fflush(out) == 0 &&
              fsync(fd) == 0;
    int e = errno;
    if (fclose(out) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        return evb_err_set(err, EVB_EIO, "cannot write %s: %s", path, strerror(e));
    }
    /* The rename is durable once the directory is synced. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return EVB_OK;
}

int ctx_lock(const ctx_file *f, evb_err *err)
{
    char dir[PATH_MAX];
    s_dir_of(f->path, dir, sizeof dir);
    int rc = s_mkdirs(dir, err);
    if (rc != EVB_OK) return -1;
    /* The directory itself: no lock file is left behind. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        evb_err_set(err, EVB_EIO, "cannot open %s: %s", dir, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX) != 0) {
        evb_err_set(err, EVB_EIO, "cannot lock %s: %s", dir, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void ctx_names(const ctx_file *f, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < f->n; i++) {
        size_t need = strlen(f->v[i].name) + (i > 0 ? 2 : 0);
        if (used + need + 4 >= cap) {
            snprintf(out + used, cap - used, "%s...", i > 0 ? ", " : "");
            return;
        }
        used += (size_t)snprintf(out + used, cap - used, "%s%s", i > 0 ? ", " : "",
                                 f->v[i].name);
    }
}

/* ---- using a context ---- */

/* The file a command's context came from: kept until exit, since the
 * command's flag values borrow its strings. */
static ctx_file s_used;

int ctx_open(cli_t *cli, const char *flag, const ctx_entry **out)
{
    *out = NULL;
    const char *name = flag;
    bool from_env = false;
    if (name == NULL) {
        name = getenv("EVBUS_CONTEXT");
        if (name == NULL || name[0] == '\0') return -1;
        from_env = true;
    }
    const char *src = from_env ? "EVBUS_CONTEXT=" : "--context ";
    if (!ctx_name_ok(name))
        return cli_usage_error(
            cli,
            "%s%s: not a context name (letters, digits, '_', '.', '-'; "
            "at most %d bytes)",
            src, name, CTX_MAX_NAME);
    evb_err err = {0};
    ctx_free(&s_used);
    if (ctx_load(&s_used, &err) != EVB_OK) {
        cli_error(cli, "%s%s: %s", src, name, err.msg);
        return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    const ctx_entry *e = ctx_find(&s_used, name);
    if (e == NULL) {
        char names[512];
        ctx_names(&s_used, names, sizeof names);
        if (!s_used.exists)
            return cli_usage_error(cli,
                                   "%s%s: no such context: %s does not exist (save one "
                                   "with `evbus context add %s ...`)",
                                   src, name, s_used.path, name);
        if (s_used.n == 0)
            return cli_usage_error(cli, "%s%s: no such context in %s (it holds none)",
                                   src, name, s_used.path);
        return cli_usage_error(cli, "%s%s: no such context in %s (known: %s)", src, name,
                               s_used.path, names);
    }
    *out = e;
    return -1;
}

const char *ctx_used_path(void)
{
    return s_used.path;
}

int ctx_fill(cli_t *cli, const ctx_entry *e, const ctx_apply *a)
{
    if (e == NULL) return -1;
    bool need_cert = false;
    if (a->follow != NULL && a->follow->n == 0 &&
        (a->services == NULL || a->services->n == 0)) {
        if (e->nfollow > CLI_MAX_LIST - a->follow->n ||
            (a->services != NULL && e->nservice > CLI_MAX_LIST))
            return cli_usage_error(cli, "context %s: too many values", e->name);
        for (size_t i = 0; i < e->nfollow; i++) {
            a->follow->v[a->follow->n++] = e->follow[i];
            const char *c1 = strchr(e->follow[i], ',');
            if (c1 != NULL && strchr(c1 + 1, ',') != NULL) need_cert = true; /* keyed */
        }
        for (size_t i = 0; a->services != NULL && i < e->nservice; i++)
            a->services->v[a->services->n++] = e->service[i];
    }
    if (a->cmd != NULL && *a->cmd == NULL && e->cmd != NULL) {
        *a->cmd = e->cmd;
        if (a->server_key != NULL && *a->server_key == NULL)
            *a->server_key = e->server_key;
        if (a->server_key != NULL && *a->server_key != NULL) need_cert = true;
    }
    if (a->cert != NULL && *a->cert == NULL && need_cert) *a->cert = e->cert;
    return -1;
}

int ctx_cmd_socket(cli_t *cli, const char *flag, const char *ep_name, const char **ep,
                   const char **cert, const char **server_key)
{
    /* EVBUS_CONTEXT only fills in: a command line that names its endpoint
     * needs nothing from it, so a stale one does not get in the way. */
    if (flag == NULL && *ep != NULL) return -1;
    const ctx_entry *e;
    int rc = ctx_open(cli, flag, &e);
    if (rc >= 0) return rc;
    ctx_apply a = {.cmd = ep, .cert = cert, .server_key = server_key};
    if ((rc = ctx_fill(cli, e, &a)) >= 0) return rc;
    if (*ep != NULL || ep_name == NULL) return -1;
    if (e == NULL)
        return cli_usage_error(cli, "%s is required (or --context NAME)", ep_name);
    return cli_usage_error(cli, "context %s has no cmd endpoint (file %s): give %s",
                           e->name, s_used.path, ep_name);
}

void ctx_note_beacon(cli_t *cli, const char *service, const char *what)
{
    ctx_file f;
    evb_err err = {0};
    if (ctx_load(&f, &err) != EVB_OK) return;
    if (ctx_find(&f, service) != NULL)
        fprintf(stderr,
                "%s: using %s, the service found by beacon, not the saved context %s "
                "(-C %s, file %s)\n",
                cli->name, what, service, service, f.path);
    ctx_free(&f);
}
