/*
 * conf.c: the config-file reader (evbus_conf.h) every program with --config
 * shares, so one grammar holds everywhere (services/README.md "Config
 * files"). It only reads and checks: the caller knows what a value means and
 * applies it as it applies the same flag, so a bad value is named the same
 * way whichever source it came from.
 *
 * Decisions, each a mistake we met or want to catch early:
 *  - '#' starts a comment only at the start of a word (after a blank or at
 *    the value's start), as in the shell: `store = /x # the store` must not
 *    become a directory named with the comment, and `ipc:///a#b` stays whole.
 *  - Quotes are removed; after the closing quote only blanks and a comment
 *    may follow, so `"a" b` is an error rather than a guess.
 *  - An empty value is an error unless written "" or '': an empty line after
 *    `=` is more often a slip than a wish.
 *  - A name given twice that is not repeatable is an error naming both
 *    lines: with last-wins, an edit at the top of a file silently loses to
 *    an old line at the bottom.
 *  - The whole file is checked before anything is returned, so a caller
 *    applies nothing of a bad file (and creates no store).
 * Lines are read a byte at a time into a fixed buffer: a file without
 * newlines cannot make us allocate more than EVB_CONF_MAX_LINE.
 */
#include "evbus_conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct evb_conf {
    char *path;
    size_t n;
    evb_conf_entry e[EVB_CONF_MAX_ENTRIES];
};

static bool s_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool s_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.';
}

const char *evb_conf_nearest(const char *name, const evb_conf_key *keys, size_t nkeys)
{
    const char *best = NULL;
    size_t bd = SIZE_MAX, len = strlen(name);
    for (size_t i = 0; i < nkeys; i++) {
        size_t kl = strlen(keys[i].name);
        size_t dist = (len >= 3 && len < kl && memcmp(keys[i].name, name, len) == 0)
                          ? 1
                          : evb_name_distance(name, strlen(name), keys[i].name);
        size_t limit = kl < 6 ? 1 : 2;
        if (dist <= limit && dist < bd) {
            bd = dist;
            best = keys[i].name;
        }
    }
    return best;
}

int evb_conf_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return EVB_OK;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return EVB_OK;
        }
    }
    return EVB_EINVAL;
}

/* The value that starts at v (blanks skipped), unquoted into out (which
 * has room for strlen(v) + 1). Returns NULL, or the problem's text. */
static const char *s_value(const char *v, char *out)
{
    char q = *v;
    if (q == '"' || q == '\'') {
        const char *p = v + 1;
        char *o = out;
        for (;; p++) {
            if (*p == '\0')
                return q == '"' ? "no closing '\"'" : "no closing \"'\"";
            if (*p == q) break;
            if (q == '"' && *p == '\\') {
                p++;
                switch (*p) {
                case '"': *o++ = '"'; break;
                case '\\': *o++ = '\\'; break;
                case 'n': *o++ = '\n'; break;
                case 't': *o++ = '\t'; break;
                default:
                    return "unknown escape in \"...\" (known: \\\" \\\\ \\n \\t; "
                           "'...' keeps every character)";
                }
                continue;
            }
            *o++ = *p;
        }
        *o = '\0';
        for (p++; s_blank(*p); p++) {}
        if (*p != '\0' && *p != '#') return "text after the closing quote";
        return NULL;
    }
    /* Unquoted: up to a '#' that starts a word, blanks at the end trimmed. */
    size_t n = 0;
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '#' && (p == v || s_blank(p[-1]))) break;
        n = (size_t)(p - v) + 1;
    }
    while (n > 0 && s_blank(v[n - 1]))
        n--;
    memcpy(out, v, n);
    out[n] = '\0';
    return NULL;
}

/* Check one line (NUL-terminated, newline and CR removed) and add its
 * setting to c. Returns EVB_OK or the error, with err naming the line. */
static int s_line(evb_conf_t *c, char *line, unsigned lineno, const evb_conf_key *keys,
                  size_t nkeys, evb_err *err)
{
    const char *path = c->path;
    char *p = line;
    while (s_blank(*p))
        p++;
    if (*p == '\0' || *p == '#') return EVB_OK;
    char *name = p;
    while (s_name_char(*p))
        p++;
    char *name_end = p;
    while (s_blank(*p))
        p++;
    if (name_end == name || *p != '=')
        return evb_err_set(err, EVB_EINVAL, "%s:%u: expected 'name = value', got '%.60s'",
                           path, lineno, name);
    *name_end = '\0';
    const evb_conf_key *key = NULL;
    for (size_t i = 0; i < nkeys && key == NULL; i++)
        if (strcmp(keys[i].name, name) == 0) key = &keys[i];
    if (key == NULL) {
        const char *near = evb_conf_nearest(name, keys, nkeys);
        if (near != NULL)
            return evb_err_set(err, EVB_EINVAL,
                               "%s:%u: unknown setting '%s' (did you mean '%s'?)", path,
                               lineno, name, near);
        return evb_err_set(err, EVB_EINVAL, "%s:%u: unknown setting '%s'", path, lineno,
                           name);
    }
    if (!key->repeat)
        for (size_t i = 0; i < c->n; i++)
            if (strcmp(c->e[i].name, key->name) == 0)
                return evb_err_set(err, EVB_EINVAL,
                                   "%s:%u: '%s' is already set on line %u (only a "
                                   "repeatable setting may be given twice)",
                                   path, lineno, name, c->e[i].line);
    if (c->n == EVB_CONF_MAX_ENTRIES)
        return evb_err_set(err, EVB_EINVAL, "%s:%u: more than %u settings", path, lineno,
                           EVB_CONF_MAX_ENTRIES);
    p++;
    while (s_blank(*p))
        p++;
    size_t nl = strlen(name), vl = strlen(p);
    char *mem = malloc(nl + 1 + vl + 1);
    if (mem == NULL) return evb_err_set(err, EVB_ENOMEM, "%s:%u: out of memory", path, lineno);
    memcpy(mem, name, nl + 1);
    const char *bad = s_value(p, mem + nl + 1);
    if (bad == NULL && mem[nl + 1] == '\0' && *p != '"' && *p != '\'')
        bad = "no value (write \"\" for an empty one)";
    if (bad != NULL) {
        free(mem);
        return evb_err_set(err, EVB_EINVAL, "%s:%u: --%s: %s", path, lineno, name, bad);
    }
    c->e[c->n++] = (evb_conf_entry){.name = mem, .value = mem + nl + 1, .line = lineno};
    return EVB_OK;
}

evb_conf_t *evb_conf_read(const char *path, const evb_conf_key *keys, size_t nkeys,
                          evb_err *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        evb_err_set(err, EVB_EIO, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    evb_conf_t *c = calloc(1, sizeof *c);
    char *line = malloc(EVB_CONF_MAX_LINE + 2);
    if (c == NULL || line == NULL || (c->path = strdup(path)) == NULL) {
        evb_err_set(err, EVB_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (unsigned lineno = 1;; lineno++) {
        size_t n = 0;
        bool nul = false, more = false;
        int ch;
        while ((ch = getc(f)) != EOF && ch != '\n') {
            /* room for the line and a CR that ends it */
            if (n == EVB_CONF_MAX_LINE + 1) {
                more = true;
                continue;
            }
            if (ch == '\0') nul = true;
            line[n++] = (char)ch;
        }
        if (ferror(f)) {
            evb_err_set(err, EVB_EIO, "cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (ch == EOF && n == 0 && !more) break;
        if (n > 0 && line[n - 1] == '\r') n--; /* CRLF */
        line[n] = '\0';
        if (more || n > EVB_CONF_MAX_LINE) {
            evb_err_set(err, EVB_EINVAL, "%s:%u: line longer than %u bytes", path, lineno,
                        EVB_CONF_MAX_LINE);
            goto fail;
        }
        if (nul) {
            evb_err_set(err, EVB_EINVAL, "%s:%u: a NUL byte (not a text file?)", path,
                        lineno);
            goto fail;
        }
        if (s_line(c, line, lineno, keys, nkeys, err) != EVB_OK) goto fail;
        if (ch == EOF) break;
    }
    free(line);
    fclose(f);
    return c;
fail:
    free(line);
    fclose(f);
    evb_conf_destroy(&c);
    return NULL;
}

size_t evb_conf_count(const evb_conf_t *c)
{
    return c != NULL ? c->n : 0;
}

const evb_conf_entry *evb_conf_get(const evb_conf_t *c, size_t i)
{
    return c != NULL && i < c->n ? &c->e[i] : NULL;
}

const char *evb_conf_path(const evb_conf_t *c)
{
    return c != NULL ? c->path : NULL;
}

void evb_conf_destroy(evb_conf_t **cp)
{
    if (cp == NULL || *cp == NULL) return;
    evb_conf_t *c = *cp;
    for (size_t i = 0; i < c->n; i++)
        free((void *)c->e[i].name); /* name and value are one allocation */
    free(c->path);
    free(c);
    *cp = NULL;
}
