/*
 * config.c: a service's settings from flags, environment and a config file,
 * and its structured log lines.
 *
 * Every setting has one name used three ways: --NAME VALUE (or --NAME=VALUE)
 * on the command line, EVBUS_NAME in the environment (upper case, '-' ->
 * '_'), and "NAME = VALUE" in the file given by --config (or EVBUS_CONFIG).
 * The command line wins over the environment, the environment over the file.
 * The file is read by evb_conf_read (codec/conf.c), the reader every program
 * with --config shares; its grammar is services/README.md "Config files".
 * Errors start with the program's name, then where the value came from when
 * that is not the command line: "evbus-booking: /etc/evbus/booking.conf:5:
 * --sync: ..." or "evbus-booking: EVBUS_SYNC: --sync: ...".
 */
#include "svc_int.h"

#include "evbus_conf.h"
#include "evbus_http.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SRC_FILE = 1, SRC_ENV, SRC_FLAG };

typedef enum kind {
    K_STR, K_BOOL, K_FOLLOW, K_SYNC, K_LEVEL, K_FORMAT, K_UINT, K_CACHE, K_HWM, K_OWN, K_DISC
} kind;

typedef struct setting {
    const char *name, *arg, *help;
    kind k;
    size_t off, cap; /* K_STR: where in svc_config */
} setting;

#define STR(field) offsetof(svc_config, field), sizeof(((svc_config *)0)->field)
static const setting s_common[] = {
    {"store", "DIR", "the service's event log (created when missing)", K_STR, STR(store)},
    {"pub", "EP", "bind the live PUB socket here, e.g. tcp://*:5601", K_STR, STR(pub)},
    {"catchup", "EP", "bind the catch-up ROUTER socket here", K_STR, STR(catchup)},
    {"cmd", "EP", "bind the command/query ROUTER socket here", K_STR, STR(cmd)},
    {"follow", "PUB_EP,CATCHUP_EP[,KEY]",
     "consume this publisher (repeatable); KEY: its CURVE public key or cert file",
     K_FOLLOW, 0, 0},
    {"cert", "FILE", "CURVE: our certificate (NAME_secret of `evbus cert new`)", K_STR,
     STR(cert)},
    {"allow", "DIR", "CURVE: accept only clients whose public certs are in DIR", K_STR,
     STR(allow)},
    {"http", "ADDR:PORT", "serve the live bus page (/), /metrics (Prometheus) and "
     "/status.json over HTTP, e.g. 127.0.0.1:9466", K_STR, STR(http)},
    {"http-events", NULL, "show the last events (payloads) on the page and in /status.json",
     K_BOOL, offsetof(svc_config, http_events), sizeof(bool)},
    {"http-public", NULL, "with CURVE on: allow --http on an address other than loopback",
     K_BOOL, offsetof(svc_config, http_public), sizeof(bool)},
    {"views", "DIR", "the read models' own store (default: STORE-views)", K_STR,
     STR(views)},
    {"rebuild-views", NULL, "drop the read models and rebuild them from zero", K_BOOL,
     offsetof(svc_config, rebuild_views), sizeof(bool)},
    {"sync", "POLICY", "every | group (default) | none", K_SYNC, 0, 0},
    {"command-ttl", "DURATION", "keep command outcomes for retries this long (default 1d)",
     K_UINT, 0, 0},
    {"aggregate-cache-mb", "N", "aggregates kept in memory, at most N MiB (default 256)",
     K_CACHE, 0, 0},
    {"rcvhwm", "N", "messages a followed publisher's SUB queue holds (default 100000)",
     K_HWM, 0, 0},
    {"log-level", "LEVEL", "debug | info (default) | warn | error", K_LEVEL, 0, 0},
    {"log-format", "FORMAT", "text (default) | json (one object a line)", K_FORMAT, 0, 0},
    {"config", "FILE", "read name = value lines from FILE (services/README.md, \"Config "
     "files\")", K_STR, 0, 0},
    {"beacon-iface", "NAME", "beacon interface for discovery (\"*\": all); no default",
     K_DISC, 0, 0},
    {"beacon-port", "N", "UDP port of the beacons (default 5670)", K_DISC, 0, 0},
    {"announce", NULL, "broadcast this service's beacon (needs --beacon-iface)", K_DISC, 0,
     0},
    {"beacon-host", "ADDR", "address announced for endpoints bound to * (default: the "
     "iface's)", K_DISC, 0, 0},
    {"follow-service", "NAME[,KEY]", "consume the service NAME found by beacons (repeatable; KEY: its CURVE public key or cert)",
     K_DISC, 0, 0},
};
#undef STR
#define NCOMMON (sizeof s_common / sizeof s_common[0])

typedef struct parse_state {
    const evb_svc_def *def;
    svc_config *cfg;
    int follow_src; /* the source the follow list came from */
    const char *prog;
    const char *where; /* after prog in a message: EVBUS_NAME, FILE:LINE, or NULL */
} parse_state;

static int s_usage_err(const parse_state *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int s_usage_err(const parse_state *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", ps->prog);
    if (ps->where != NULL) fprintf(stderr, "%s: ", ps->where);
    vfprintf(stderr, fmt, ap);
    /* --help answers a flag's mistake; a file's or variable's is named. */
    if (ps->where == NULL) fprintf(stderr, " (try '%s --help')", ps->prog);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

static void s_help(const parse_state *ps)
{
    const evb_svc_def *def = ps->def;
    printf("Usage: %s --store DIR --cmd EP [--pub EP --catchup EP] [--follow PUB,CATCHUP]... "
           "[OPTIONS]\n\n%s\n\nOptions:\n",
           ps->prog, def->summary ? def->summary : "");
    for (size_t i = 0; i < NCOMMON; i++) {
        const setting *s = &s_common[i];
        if (!def->views && (strcmp(s->name, "views") == 0 || strcmp(s->name, "rebuild-views") == 0))
            continue;
        char head[64];
        snprintf(head, sizeof head, "--%s%s%s", s->name, s->arg ? " " : "",
                 s->arg ? s->arg : "");
        printf("  %-30s %s\n", head, s->help);
    }
    for (size_t i = 0; i < def->nflags; i++) {
        const evb_svc_flag *f = &def->flags[i];
        char head[64];
        snprintf(head, sizeof head, "--%s %s", f->name, f->arg ? f->arg : "VALUE");
        printf("  %-30s %s (default %s)\n", head, f->help, f->value);
    }
    printf("  %-30s %s\n", "--help", "this text");
    printf("  %-30s %s\n", "--version", "print the version and exit");
    printf("\nEvery option can also be set as EVBUS_NAME in the environment (EVBUS_STORE,\n"
           "EVBUS_LOG_LEVEL, EVBUS_FOLLOW=\"PUB,CATCHUP PUB,CATCHUP\") or as a line\n"
           "\"name = value\" in the --config file; the command line wins over the\n"
           "environment, the environment over the file.\n"
           "\nSIGTERM or SIGINT: finish the write in progress, sync, exit 0.\n"
           "Exit codes: 0 clean stop, 2 bad usage or config, 3 the store cannot be opened,\n"
           "4 a runtime error (the log says which).\n");
}

static int s_copy(const parse_state *ps, char *dst, size_t cap, const char *name,
                  const char *v)
{
    if (strlen(v) >= cap)
        return s_usage_err(ps, "--%s: value longer than %zu bytes", name, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static int s_add_follow(parse_state *ps, const char *v, int src)
{
    svc_config *cfg = ps->cfg;
    if (src > ps->follow_src) {
        cfg->nfollow = 0;
        ps->follow_src = src;
    }
    const char *comma = strchr(v, ',');
    const char *kc = comma ? strchr(comma + 1, ',') : NULL; /* ,KEY (CURVE) */
    if (comma == NULL || comma == v || comma[1] == '\0' || comma + 1 == kc ||
        (kc != NULL && (kc[1] == '\0' || strchr(kc + 1, ',') != NULL)))
        return s_usage_err(ps, "--follow: '%s' is not PUB_EP,CATCHUP_EP[,KEY]", v);
    if (cfg->nfollow == EVB_SVC_MAX_FOLLOW)
        return s_usage_err(ps, "--follow: more than %u publishers", EVB_SVC_MAX_FOLLOW);
    svc_follow *f = &cfg->follow[cfg->nfollow];
    size_t pl = (size_t)(comma - v);
    size_t cl = kc ? (size_t)(kc - comma - 1) : strlen(comma + 1);
    if (pl >= sizeof f->pub || cl >= sizeof f->catchup ||
        (kc != NULL && strlen(kc + 1) >= sizeof f->key))
        return s_usage_err(ps, "--follow: endpoint or key too long in '%s'", v);
    memcpy(f->pub, v, pl);
    f->pub[pl] = '\0';
    memcpy(f->catchup, comma + 1, cl);
    f->catchup[cl] = '\0';
    snprintf(f->key, sizeof f->key, "%s", kc ? kc + 1 : "");
    cfg->nfollow++;
    return 0;
}

/* Apply NAME = v from source src. Returns 0 or an exit code. */
static int s_set(parse_state *ps, const char *name, const char *v, int src)
{
    svc_config *cfg = ps->cfg;
    for (size_t i = 0; i < NCOMMON; i++) {
        const setting *s = &s_common[i];
        if (strcmp(s->name, name) != 0) continue;
        switch (s->k) {
        case K_STR:
            if (s->cap == 0) return 0; /* --config: handled first */
            return s_copy(ps, (char *)cfg + s->off, s->cap, name, v);
        case K_BOOL:
            if (evb_conf_bool(v, (bool *)((char *)cfg + s->off)) != EVB_OK)
                return s_usage_err(ps, "--%s: '%s' is not true or false", name, v);
            return 0;
        case K_FOLLOW:
            if (src == SRC_ENV) {
                /* several publishers separated by spaces or ';' */
                char buf[EVB_SVC_MAX_FOLLOW * 2 * EVB_BUS_MAX_ENDPOINT];
                if (s_copy(ps, buf, sizeof buf, name, v) != 0) return 2;
                char *save = NULL;
                for (char *t = strtok_r(buf, " ;", &save); t; t = strtok_r(NULL, " ;", &save))
                    if (s_add_follow(ps, t, src) != 0) return 2;
                return 0;
            }
            return s_add_follow(ps, v, src);
        case K_SYNC:
            if (strcmp(v, "every") == 0) cfg->sync = EVB_SYNC_EVERY;
            else if (strcmp(v, "group") == 0) cfg->sync = EVB_SYNC_GROUP;
            else if (strcmp(v, "none") == 0) cfg->sync = EVB_SYNC_NONE;
            else return s_usage_err(ps, "--sync: '%s' is not every, group or none", v);
            return 0;
        case K_LEVEL:
            if (strcmp(v, "debug") == 0) cfg->log_level = EVB_LOG_DEBUG;
            else if (strcmp(v, "info") == 0) cfg->log_level = EVB_LOG_INFO;
            else if (strcmp(v, "warn") == 0) cfg->log_level = EVB_LOG_WARN;
            else if (strcmp(v, "error") == 0) cfg->log_level = EVB_LOG_ERROR;
            else return s_usage_err(ps, "--log-level: '%s' is not debug, info, warn or error", v);
            return 0;
        case K_FORMAT:
            if (strcmp(v, "text") == 0) cfg->log_json = false;
            else if (strcmp(v, "json") == 0) cfg->log_json = true;
            else return s_usage_err(ps, "--log-format: '%s' is not text or json", v);
            return 0;
        case K_UINT: { /* --command-ttl, a duration of whole seconds */
            uint64_t ms;
            evb_err err;
            if (evb_duration_is_bare(v))
                return s_usage_err(ps, "--%s %s: give a unit, e.g. %ss (a bare number used to "
                                   "mean seconds)", name, v, v);
            if (evb_duration_parse(v, &ms, &err) != EVB_OK)
                return s_usage_err(ps, "--%s: %s", name, err.msg);
            if (ms < 1000 || ms > 365ull * 86400000 || ms % 1000 != 0)
                return s_usage_err(ps, "--%s: '%s' is not whole seconds in 1s..365d", name, v);
            cfg->command_ttl_s = (unsigned)(ms / 1000);
            return 0;
        }
        case K_CACHE: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(v, &end, 10);
            if (errno || *end || end == v || *v == '-' || n == 0 || n > 65536)
                return s_usage_err(ps, "--%s: '%s' is not a number of MiB (1..65536)", name,
                                   v);
            cfg->aggregate_cache_mb = (unsigned)n;
            return 0;
        }
        case K_HWM: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(v, &end, 10);
            if (errno || *end || end == v || *v == '-' || n == 0 || n > SVC_MAX_RCVHWM)
                return s_usage_err(ps, "--rcvhwm: '%s' is not a number of messages (1..%d)", v,
                                   SVC_MAX_RCVHWM);
            cfg->rcvhwm = (int)n;
            return 0;
        }
        case K_OWN:
            return 0;
        case K_DISC: {
            char msg[EVB_ERR_MSG_LEN + 64];
            bool on;
            if (strcmp(name, "announce") == 0) {
                if (evb_conf_bool(v, &on) != EVB_OK)
                    return s_usage_err(ps, "--%s: '%s' is not true or false", name, v);
                v = on ? "true" : "false";
            }
            if (svc_disc_set(&cfg->disc, name, v, src, msg, sizeof msg) != 0)
                return s_usage_err(ps, "%s", msg);
            return 0;
        }
        }
    }
    for (size_t i = 0; i < ps->def->nflags; i++) {
        const evb_svc_flag *f = &ps->def->flags[i];
        if (strcmp(f->name, name) == 0) return s_copy(ps, f->value, f->cap, name, v);
    }
    return s_usage_err(ps, "unknown option '%s'", name);
}

static bool s_is_bool(const char *name)
{
    return strcmp(name, "rebuild-views") == 0 || strcmp(name, "announce") == 0 ||
           strcmp(name, "http-public") == 0 || strcmp(name, "http-events") == 0;
}

/* The file's settings, all checked by the reader first (names, syntax,
 * repeats), then applied one by one: a bad value names its line. */
static int s_read_file(parse_state *ps, const char *path)
{
    const evb_svc_def *def = ps->def;
    evb_conf_key *keys = calloc(NCOMMON + def->nflags, sizeof *keys);
    if (keys == NULL) return s_usage_err(ps, "--config: out of memory");
    size_t nk = 0;
    for (size_t i = 0; i < NCOMMON; i++) {
        const char *n = s_common[i].name;
        if (strcmp(n, "config") == 0) continue; /* a file cannot name another */
        if (!def->views && (strcmp(n, "views") == 0 || strcmp(n, "rebuild-views") == 0))
            continue;
        keys[nk++] = (evb_conf_key){
            n, strcmp(n, "follow") == 0 || strcmp(n, "follow-service") == 0};
    }
    for (size_t i = 0; i < def->nflags; i++)
        keys[nk++] = (evb_conf_key){def->flags[i].name, false};
    evb_err err;
    evb_conf_t *conf = evb_conf_read(path, keys, nk, &err);
    free(keys);
    if (conf == NULL) {
        fprintf(stderr, "%s: %s%s\n", ps->prog, err.code == EVB_EIO ? "--config: " : "",
                err.msg);
        return 2;
    }
    int rc = 0;
    for (size_t i = 0; i < evb_conf_count(conf) && rc == 0; i++) {
        const evb_conf_entry *e = evb_conf_get(conf, i);
        char where[PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%u", path, e->line);
        ps->where = where;
        rc = s_set(ps, e->name, e->value, SRC_FILE);
        ps->where = NULL;
    }
    evb_conf_destroy(&conf);
    return rc;
}

static void s_env_name(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "EVBUS_%s", name);
    for (size_t i = 6; i < n && i < cap; i++)
        out[i] = out[i] == '-' ? '_' : (char)toupper((unsigned char)out[i]);
}

static int s_env_pass(parse_state *ps, const char *name)
{
    char env[80];
    s_env_name(name, env, sizeof env);
    const char *v = getenv(env);
    if (v == NULL || *v == '\0') return 0;
    ps->where = env;
    int rc = s_set(ps, name, v, SRC_ENV);
    ps->where = NULL;
    return rc;
}

int svc_config_parse(const evb_svc_def *def, int argc, char **argv, svc_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->sync = EVB_SYNC_GROUP;
    cfg->log_level = EVB_LOG_INFO;
    cfg->command_ttl_s = 86400;
    cfg->aggregate_cache_mb = 256;
    char prog[64];
    snprintf(prog, sizeof prog, "evbus-%s", def->name);
    parse_state ps = {.def = def, .cfg = cfg, .prog = prog, .where = NULL};

    /* --help, --version and --config first: the file is the lowest layer. */
    const char *config = getenv("EVBUS_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            s_help(&ps);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", prog, EVBUS_VERSION);
            return fflush(stdout) == 0 ? 0 : 4;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) config = argv[i] + 9;
    }
    int rc;
    if (config && *config && (rc = s_read_file(&ps, config)) != 0) return rc;
    for (size_t i = 0; i < NCOMMON; i++)
        if ((rc = s_env_pass(&ps, s_common[i].name)) != 0) return rc;
    for (size_t i = 0; i < def->nflags; i++)
        if ((rc = s_env_pass(&ps, def->flags[i].name)) != 0) return rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return s_usage_err(&ps, "unexpected argument '%s'", a);
        char name[64];
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name) return s_usage_err(&ps, "unknown option '%s'", a);
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        const char *v;
        if (s_is_bool(name)) {
            v = eq ? eq + 1 : "true";
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) return s_usage_err(&ps, "--%s needs a value", name);
            v = argv[++i];
        }
        if ((rc = s_set(&ps, name, v, SRC_FLAG)) != 0) return rc;
    }
    if (cfg->store[0] == '\0') return s_usage_err(&ps, "--store DIR is required");
    if (cfg->cmd[0] == '\0') return s_usage_err(&ps, "--cmd EP is required");
    if ((cfg->pub[0] == '\0') != (cfg->catchup[0] == '\0'))
        return s_usage_err(&ps, "--pub and --catchup go together");
    if ((cfg->cert[0] == '\0') != (cfg->allow[0] == '\0'))
        return s_usage_err(&ps, "--cert and --allow go together (CURVE)");
    if (cfg->http_public && cfg->http[0] == '\0')
        return s_usage_err(&ps, "--http-public goes with --http");
    if (cfg->http_events && cfg->http[0] == '\0')
        return s_usage_err(&ps, "--http-events goes with --http");
    if (cfg->http[0] && cfg->cert[0] && !cfg->http_public &&
        !evb_http_addr_is_loopback(cfg->http))
        return s_usage_err(&ps,
                           "--http %s is not a loopback address while CURVE is on: HTTP is "
                           "neither encrypted nor authenticated; add --http-public if that "
                           "is meant",
                           cfg->http);
    for (size_t i = 0; i < cfg->nfollow; i++)
        if (cfg->follow[i].key[0] && cfg->cert[0] == '\0')
            return s_usage_err(&ps, "--follow %s,%s,KEY: a server key needs --cert",
                               cfg->follow[i].pub, cfg->follow[i].catchup);
    char dmsg[EVB_ERR_MSG_LEN + 64];
    if (svc_disc_check(&cfg->disc, def->name, cfg->pub, cfg->catchup, cfg->cmd, dmsg,
                       sizeof dmsg) != 0)
        return s_usage_err(&ps, "%s", dmsg);
    if (def->views && cfg->views[0] == '\0' &&
        snprintf(cfg->views, sizeof cfg->views, "%s-views", cfg->store) >=
            (int)sizeof cfg->views)
        return s_usage_err(&ps, "--store: path too long");
    return -1;
}

/* ---- structured logs ---- */

typedef struct log_ctx {
    char service[64];
    bool json;
} log_ctx;

static log_ctx s_log;

static const char *s_level_name(evb_log_level l)
{
    switch (l) {
    case EVB_LOG_DEBUG: return "debug";
    case EVB_LOG_INFO: return "info";
    case EVB_LOG_WARN: return "warn";
    default: return "error";
    }
}

static void s_sink(evb_log_level level, const char *msg, void *ctx)
{
    log_ctx *lc = ctx;
    char ts[32];
    evb_ts_format(evb_now_us(), ts);
    if (!lc->json) {
        fprintf(stderr, "%s %-5s %s[%d]: %s\n", ts, s_level_name(level), lc->service,
                (int)getpid(), msg);
        return;
    }
    /* JSON: escape quotes, backslashes and control characters. */
    fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"%s\",\"pid\":%d,\"msg\":\"",
            ts, s_level_name(level), lc->service, (int)getpid());
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(stderr, "\\%c", *p);
        else if (*p < 0x20) fprintf(stderr, "\\u%04x", *p);
        else fputc(*p, stderr);
    }
    fputs("\"}\n", stderr);
}

void svc_log_start(const char *service, const svc_config *cfg)
{
    snprintf(s_log.service, sizeof s_log.service, "%s", service);
    s_log.json = cfg->log_json;
    setvbuf(stderr, NULL, _IOLBF, 0);
    evb_log_set_sink(s_sink, &s_log, cfg->log_level);
}
