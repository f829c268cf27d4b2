/*
 * filter.c: the event filters of `evbus sniff` and `evbus log cat`
 * (filter.h). One matcher for both, so that a filter that works on the bus
 * works the same on the log it came from.
 *
 * --where compares the field's JSON rendering (the codec's, as --json
 * prints it) with VALUE: a string field equals VALUE as text, anything else
 * equals VALUE's literal text ("true", "null"), or as a number (3 == 3.0).
 * Comparing renderings keeps one notion of "the value" for the printed and
 * the matched event.
 */
#include "filter.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int filter_init(cli_t *cli, filter_t *f, const cli_list *types, const cli_list *streams,
                const cli_list *wheres)
{
    memset(f, 0, sizeof *f);
    f->types = types;
    f->streams = streams;
    evb_err err;
    for (size_t i = 0; i < types->n; i++)
        if (evb_check_type(types->v[i], &err) != EVB_OK)
            return cli_usage_error(cli, "--type '%s': %s", types->v[i], err.msg);
    for (size_t i = 0; i < wheres->n; i++) {
        const char *eq = strchr(wheres->v[i], '=');
        if (eq == NULL || eq == wheres->v[i])
            return cli_usage_error(cli, "--where '%s': expected FIELD=VALUE",
                                   wheres->v[i]);
        /* FIELD is cut out of argv in place: the value follows the '='. */
        ((char *)wheres->v[i])[eq - wheres->v[i]] = '\0';
        f->where[f->nwhere++] = (filter_where){wheres->v[i], eq + 1};
    }
    return -1;
}

/* A payload field equals VALUE: as a string, a number or a JSON literal. */
static bool s_where_one(filter_t *f, const evb_event_t *ev, const filter_where *w)
{
    const void *val;
    size_t vlen;
    if (evb_map_find(ev->payload, ev->payload_len, w->field, &val, &vlen, NULL) != EVB_OK)
        return false;
    f->tmp.len = 0;
    if (evb_msgpack_to_json(val, vlen, &f->tmp, NULL) != EVB_OK) return false;
    const char *j = f->tmp.data;
    size_t jl = f->tmp.len;
    if (jl > 0 && j[0] == '"') {
        size_t at = f->tmp.len;
        if (cli_json_str(&f->tmp, w->value, NULL) != EVB_OK) return false;
        j = f->tmp.data; /* may have moved */
        return f->tmp.len - at == at && memcmp(j, j + at, at) == 0;
    }
    if (strlen(w->value) == jl && memcmp(j, w->value, jl) == 0) return true;
    /* numbers: 3 == 3.0 (a field that renders as an object, e.g. a
     * {"$int":...} beyond 2^53, never compares as a number) */
    char *end1, *end2;
    char num[64];
    if (jl == 0 || jl >= sizeof num || j[0] == '{') return false;
    memcpy(num, j, jl);
    num[jl] = '\0';
    double a = strtod(num, &end1);
    double b = strtod(w->value, &end2);
    return *end1 == '\0' && *end2 == '\0' && end2 != w->value && isfinite(a) &&
           isfinite(b) && a == b;
}

static bool s_any_type(const cli_list *types, const char *type)
{
    for (size_t i = 0; i < types->n; i++)
        if (strcmp(type, types->v[i]) == 0) return true;
    return false;
}

static bool s_any_stream(const cli_list *globs, const char *stream)
{
    for (size_t i = 0; i < globs->n; i++)
        if (fnmatch(globs->v[i], stream, 0) == 0) return true;
    return false;
}

bool filter_match(filter_t *f, const evb_event_t *ev)
{
    if (f->types->n > 0 && !s_any_type(f->types, ev->type)) return false;
    if (f->streams->n > 0 && !s_any_stream(f->streams, ev->stream)) return false;
    for (size_t i = 0; i < f->nwhere; i++)
        if (!s_where_one(f, ev, &f->where[i])) return false;
    return true;
}

bool filter_any(const filter_t *f)
{
    return f->types->n > 0 || f->streams->n > 0 || f->nwhere > 0;
}

void filter_free(filter_t *f)
{
    evb_buf_free(&f->tmp);
}

int filter_parse_from(cli_t *cli, const char *val, uint64_t *seq, uint64_t *last)
{
    *seq = *last = 0;
    if (val[0] != '-') {
        if (cli_parse_u64(val, seq) != EVB_OK)
            return cli_usage_error(cli,
                                   "--from: expected a sequence SEQ or -N (the last N "
                                   "events), got '%s'",
                                   val);
        return -1;
    }
    if (cli_parse_u64(val + 1, last) != EVB_OK || *last == 0)
        return cli_usage_error(cli,
                               "--from %s: expected -N with N at least 1 (the last N "
                               "events), or a sequence SEQ",
                               val);
    return -1;
}
