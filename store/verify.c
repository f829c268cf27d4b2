/*
 * verify.c: a full consistency check of a log (see evb_store_verify).
 *
 * Forward pass over the events: contiguous sequence from 1, every record
 * decodes and names this log and its own sequence, stream versions follow
 * each other, and every event up to the indexer's position has its stream,
 * category and id entries. Backward passes over each index: every entry
 * points at a real event of the right stream, category or id, and nothing is
 * indexed past the indexer's position. Everything reads one snapshot, so a
 * live store can be verified. Memory: the per-category counters and the
 * stream versions of the unindexed tail; index entries are checked by point
 * lookups, not held.
 */
#include "store_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_REPORTED 1000

/* A range of missing events (a sequence gap) and, per index kind (stream,
 * category, id), how many index entries point into it: one line each at
 * the end, not one per entry. */
typedef struct gap {
    uint64_t lo, hi;
    uint64_t entries[3];
    uint64_t streams; /* streams whose versions jump across it */
    bool marked;      /* not missing: marker events of a salvage (salvage.c) */
    bool garbled;     /* there, but they do not decode */
} gap;

typedef struct vctx {
    evb_store_t *st;
    gap *gaps; /* in seq order, from the forward pass */
    size_t ngaps, gcap;
    leveldb_readoptions_t *ro;  /* the events' snapshot */
    leveldb_readoptions_t *iro; /* the index's (the same in format 1) */
    evb_problem_fn fn;
    void *ctx;
    uint64_t problems;
    leveldb_iterator_t *ixit; /* over the index, for point lookups of runs */
    leveldb_readoptions_t *dro; /* the id database's snapshot (format 6) */
    uint64_t idseal;            /* ... and its seal: ids up to it are there */
} vctx;

__attribute__((format(printf, 2, 3))) static void s_problem(vctx *v, const char *fmt, ...)
{
    v->problems++;
    if (v->fn == NULL || v->problems > MAX_REPORTED) return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    v->fn(msg, v->ctx);
}

static void s_add_gap(vctx *v, uint64_t lo, uint64_t hi)
{
    if (v->ngaps == v->gcap) {
        size_t cap = v->gcap ? 2 * v->gcap : 16;
        gap *g = realloc(v->gaps, cap * sizeof *g);
        if (g == NULL) return; /* then its entries are reported one by one */
        v->gaps = g;
        v->gcap = cap;
    }
    v->gaps[v->ngaps++] = (gap){.lo = lo, .hi = hi};
}

/* The gap holding seq, or NULL (gaps are sorted and disjoint). */
static gap *s_find_gap(vctx *v, uint64_t seq)
{
    size_t lo = 0, hi = v->ngaps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->gaps[mid].hi < seq) lo = mid + 1;
        else hi = mid;
    }
    return lo < v->ngaps && v->gaps[lo].lo <= seq ? &v->gaps[lo] : NULL;
}

/* A gap lying wholly between seqs a and b (a < lo, hi < b), or NULL. */
static gap *s_gap_between(vctx *v, uint64_t a, uint64_t b)
{
    size_t lo = 0, hi = v->ngaps; /* find the first gap with hi >= b */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->gaps[mid].hi < b) lo = mid + 1;
        else hi = mid;
    }
    return lo > 0 && v->gaps[lo - 1].lo > a ? &v->gaps[lo - 1] : NULL;
}

/* One line per gap and index kind whose entries point into it, and per gap
 * that streams' versions jump across. */
static void s_report_gaps(vctx *v)
{
    static const char *const kinds[3] = {"stream", "category", "id"};
    for (size_t i = 0; i < v->ngaps; i++) {
        if (v->gaps[i].marked) {
            s_problem(v,
                      "events %llu..%llu were lost and are marked (evbus.hole-%llu: a "
                      "salvaged log); %llu stream%s skip versions across them",
                      (unsigned long long)v->gaps[i].lo, (unsigned long long)v->gaps[i].hi,
                      (unsigned long long)v->gaps[i].lo,
                      (unsigned long long)v->gaps[i].streams,
                      v->gaps[i].streams == 1 ? "" : "s");
            continue;
        }
        bool gb = v->gaps[i].garbled;
        if (v->gaps[i].streams > 0)
            s_problem(v, "%llu stream%s skip versions across the %s %llu..%llu",
                      (unsigned long long)v->gaps[i].streams,
                      v->gaps[i].streams == 1 ? "" : "s",
                      gb ? "events that do not decode" : "sequence gap",
                      (unsigned long long)v->gaps[i].lo, (unsigned long long)v->gaps[i].hi);
        for (int k = 0; k < 3; k++)
            if (v->gaps[i].entries[k] > 0)
                s_problem(v, "%s index: %llu %s at events %llu..%llu, which are "
                             "%s above)",
                          kinds[k], (unsigned long long)v->gaps[i].entries[k],
                          v->gaps[i].entries[k] == 1 ? "entry points" : "entries point",
                          (unsigned long long)v->gaps[i].lo,
                          (unsigned long long)v->gaps[i].hi,
                          gb ? "unreadable (they do not decode" : "missing (the sequence gap");
    }
}

/* Value of key in db as a be64, or 0 when absent / not 8 bytes (*present
 * says). */
static uint64_t s_get_u64_in(vctx *v, leveldb_t *db, const leveldb_readoptions_t *ro,
                             const uint8_t *key, size_t klen, bool *present)
{
    char *val;
    size_t vl;
    *present = false;
    if (st_get(v->st, db, ro, key, klen, &val, &vl, NULL) != EVB_OK || val == NULL)
        return 0;
    *present = true;
    uint64_t r = vl == 8 ? be64_get(val) : 0;
    leveldb_free(val);
    return r;
}

/* ... in the index. */
static uint64_t s_get_u64(vctx *v, const uint8_t *key, size_t klen, bool *present)
{
    return s_get_u64_in(v, v->st->ix, v->iro, key, klen, present);
}

/* The seq the stream (kind K_STREAM, n = version) or category (K_CAT, n =
 * seq) index gives n: 0 when no entry covers it, UINT64_MAX when the entry
 * that could is malformed. */
static uint64_t s_run_seq(vctx *v, char kind, const char *name, uint64_t n)
{
    if (v->ixit == NULL) v->ixit = leveldb_create_iterator(v->st->ix, v->iro);
    ix_run r;
    int on = st_seek_run(v->ixit, kind, name, strlen(name), n, &r);
    return on < 0 ? UINT64_MAX : on == 0 ? 0 : r.seq + (n - r.first);
}

static void s_check_event_indexed(vctx *v, const evb_event_t *ev, uint64_t seq)
{
    uint8_t key[KEY_MAX];
    bool present;
    uint64_t s = s_run_seq(v, K_STREAM, ev->stream, ev->version);
    if (s == 0)
        s_problem(v, "event %llu (%s v%llu) is not in the stream index",
                  (unsigned long long)seq, ev->stream, (unsigned long long)ev->version);
    else if (s != seq)
        s_problem(v, "stream index entry %s v%llu points at %llu, not %llu", ev->stream,
                  (unsigned long long)ev->version,
                  (unsigned long long)(s == UINT64_MAX ? 0 : s), (unsigned long long)seq);
    if (s_run_seq(v, K_CAT, ev->category, seq) != seq)
        s_problem(v, "event %llu is not in the category index of %s",
                  (unsigned long long)seq, ev->category);
    if (st_id_sealed_at(v->st, &ev->id, seq)) return; /* no id entry (idseal.c) */
    present = false;
    if (st_ids_apart(v->st)) {
        /* Format 6: in the id database once its epoch is sealed, before
         * that gathered by the indexer (in no index yet); B entries of the
         * index are from before the upgrade. */
        if (seq > v->idseal) return;
        s = s_get_u64_in(v, v->st->idb, v->dro, key, st_key_idb(v->st, key, &ev->id, seq),
                         &present);
        if (!present && v->st->ix_old_b)
            s = s_get_u64(v, key, key_id_epoch(key, id_epoch(seq), &ev->id), &present);
    } else {
        s = s_get_u64(v, key, st_key_id(v->st, key, &ev->id, seq), &present);
    }
    if (!present && v->st->ix_old_ids) /* an entry from before id epochs */
        s = s_get_u64(v, key, key_id(key, &ev->id), &present);
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&ev->id, hex);
    if (!present)
        s_problem(v, "event %llu (id %s) is not in the id index", (unsigned long long)seq,
                  hex);
    else if (s != seq)
        s_problem(v, "id index entry %s points at %llu, not %llu", hex,
                  (unsigned long long)s, (unsigned long long)seq);
}

/* A salvage's marker events (stream evbus.hole-FROM, versions 1.. at FROM..)
 * stand for the events lost there: a gap, marked, for the version checks. */
static void s_note_marker(vctx *v, const evb_event_t *ev, uint64_t seq)
{
    static const char pfx[] = "evbus.hole-";
    if (strncmp(ev->stream, pfx, sizeof pfx - 1) != 0 || strcmp(ev->type, "Unreadable") != 0)
        return;
    gap *last = v->ngaps > 0 ? &v->gaps[v->ngaps - 1] : NULL;
    if (last != NULL && last->marked && last->hi + 1 == seq && ev->version > 1)
        last->hi = seq;
    else if (ev->version == 1) {
        s_add_gap(v, seq, seq);
        if (v->ngaps > 0 && v->gaps[v->ngaps - 1].lo == seq) v->gaps[v->ngaps - 1].marked = true;
    }
}

/* Version continuity: the previous version of the stream must exist at a
 * lower sequence (from the tail map or the stream index). */
static void s_check_version(vctx *v, hmap *tailv, const evb_event_t *ev, uint64_t seq,
                            uint64_t ixpos)
{
    size_t sn = strlen(ev->stream);
    if (seq <= ixpos) {
        if (ev->version > 1) {
            uint64_t p = s_run_seq(v, K_STREAM, ev->stream, ev->version - 1);
            gap *g;
            if (p == 0 && (g = s_gap_between(v, 0, seq)) != NULL)
                g->streams++; /* lost in the last gap before it: one line for all */
            else if (p == 0 || p >= seq)
                s_problem(v, "event %llu is %s v%llu but v%llu is not before it",
                          (unsigned long long)seq, ev->stream,
                          (unsigned long long)ev->version,
                          (unsigned long long)ev->version - 1);
        }
        return;
    }
    hent *e = hmap_get(tailv, ev->stream, sn);
    uint64_t prev, prev_seq = 0;
    if (e != NULL) {
        prev = e->a;
        prev_seq = e->b;
    } else if (v->st->ix_ignored) {
        prev = 0; /* the whole log is the tail */
    } else {
        /* First tail event of this stream: its last indexed version. */
        leveldb_iterator_t *it = leveldb_create_iterator(v->st->ix, v->iro);
        prev = 0;
        if (st_stream_last(it, ev->stream, sn, &prev, &prev_seq) < 0)
            s_problem(v, "the last stream index entry of %s is malformed", ev->stream);
        leveldb_iter_destroy(it);
    }
    gap *g;
    if (ev->version > prev + 1 && (g = s_gap_between(v, prev_seq, seq)) != NULL)
        g->streams++; /* the missing versions are in the gap: one line for all */
    else if (ev->version != prev + 1)
        s_problem(v, "event %llu is %s v%llu, but the stream was at v%llu",
                  (unsigned long long)seq, ev->stream, (unsigned long long)ev->version,
                  (unsigned long long)prev);
    hmap_put(tailv, ev->stream, sn, ev->version, seq);
}

/* Events that do not decode, one problem a run of them (a damaged block
 * that passed its checksum: written so), kept as a gap for the index and
 * version checks. */
typedef struct garbled {
    uint64_t lo, hi; /* lo 0: none */
    char first[sizeof ((evb_err *)0)->msg];
} garbled;

static void s_garbled_end(vctx *v, garbled *g)
{
    if (g->lo == 0) return;
    if (g->lo == g->hi)
        s_problem(v, "event %llu does not decode: %s", (unsigned long long)g->lo, g->first);
    else
        s_problem(v, "events %llu..%llu do not decode (%llu events; the first: %s)",
                  (unsigned long long)g->lo, (unsigned long long)g->hi,
                  (unsigned long long)(g->hi - g->lo + 1), g->first);
    s_add_gap(v, g->lo, g->hi);
    if (v->ngaps > 0 && v->gaps[v->ngaps - 1].lo == g->lo) v->gaps[v->ngaps - 1].garbled = true;
    g->lo = 0;
}

static void s_forward(vctx *v, uint64_t head, uint64_t ixpos, hmap *cats,
                      uint64_t *firsts, evb_progress_fn progress)
{
    evb_store_t *st = v->st;
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, v->ro);
    hmap tailv = {0};
    evb_event_t ev = {0};
    uint64_t expect = 1;
    garbled bad = {0};
    const char pfx = K_EVENT;
    for (leveldb_iter_seek(it, &pfx, 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == 0 || k[0] != K_EVENT) break;
        if (kl != 9) {
            s_problem(v, "event key of %zu bytes (want 9)", kl);
            continue;
        }
        uint64_t seq = be64_get(k + 1);
        if (bad.lo != 0 && seq != bad.hi + 1) s_garbled_end(v, &bad);
        if (seq != expect) {
            if (seq > expect) {
                s_problem(v, "sequence gap: events %llu..%llu are missing",
                          (unsigned long long)expect, (unsigned long long)seq - 1);
                s_add_gap(v, expect, seq - 1);
            } else
                s_problem(v, "event key %llu out of order", (unsigned long long)seq);
        }
        expect = seq + 1;
        const char *val = leveldb_iter_value(it, &vl);
        evb_err derr;
        if (evb_event_decode_into(val, vl, &ev, &derr) != EVB_OK) {
            if (bad.lo == 0) {
                bad.lo = seq;
                snprintf(bad.first, sizeof bad.first, "%s", derr.msg);
            }
            bad.hi = seq;
            continue;
        }
        s_garbled_end(v, &bad);
        if (ev.seq != seq)
            s_problem(v, "event %llu says it is event %llu", (unsigned long long)seq,
                      (unsigned long long)ev.seq);
        if (memcmp(&ev.log_id, &st->log_id, sizeof ev.log_id) != 0)
            s_problem(v, "event %llu names another log", (unsigned long long)seq);
        s_note_marker(v, &ev, seq);
        s_check_version(v, &tailv, &ev, seq, ixpos);
        if (seq <= ixpos) {
            s_check_event_indexed(v, &ev, seq);
            size_t cn = strlen(ev.category);
            hent *c = hmap_get(cats, ev.category, cn);
            if (c == NULL) c = hmap_put(cats, ev.category, cn, 0, 0);
            if (c != NULL) {
                c->a = seq;
                c->b++;
            }
            if (ev.version == 1) (*firsts)++;
        }
        if (progress && seq % 65536 == 0) progress(seq, head, v->ctx);
    }
    s_garbled_end(v, &bad);
    if (expect <= head) {
        s_problem(v, "events %llu..%llu are missing", (unsigned long long)expect,
                  (unsigned long long)head);
        s_add_gap(v, expect, head);
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    if (e != NULL) {
        s_problem(v, "LevelDB read error: %s", e);
        leveldb_free(e);
    }
    evb_event_clear(&ev);
    hmap_free(&tailv);
    leveldb_iter_destroy(it);
}

/* Index entry k (kind prefix) says event seq is n of it (a version of a
 * stream, a seq of a category, or the id in the key): check that the event
 * is there, indexed, and agrees. false after a problem. */
static bool s_check_entry(vctx *v, char prefix, const char *k, size_t kl, uint64_t n,
                          uint64_t seq, uint64_t ixpos, evb_event_t *ev)
{
    evb_store_t *st = v->st;
    bool is_id = prefix == K_ID || prefix == K_IDE;
    const char *what = prefix == K_CAT ? "category" : is_id ? "id" : "stream";
    char *got = NULL;
    size_t rawlen = 0;
    uint8_t ek[9];
    if (st_get(st, st->db, v->ro, ek, key_event(ek, seq), &got, &rawlen, NULL) !=
            EVB_OK ||
        got == NULL) {
        gap *g = s_find_gap(v, seq);
        if (g != NULL) /* reported once per gap and kind, at the end */
            g->entries[prefix == K_CAT ? 1 : is_id ? 2 : 0]++;
        else
            s_problem(v, "%s index entry points at missing event %llu", what,
                      (unsigned long long)seq);
        return false;
    }
    bool ok = true;
    if (seq > ixpos) {
        s_problem(v, "index entry for event %llu is past the indexer position %llu",
                  (unsigned long long)seq, (unsigned long long)ixpos);
        ok = false;
    }
    evb_err derr;
    if (evb_event_decode_into(got, rawlen, ev, &derr) != EVB_OK) {
        gap *g = s_find_gap(v, seq);
        if (g != NULL) /* once per run of them, at the end */
            g->entries[prefix == K_CAT ? 1 : is_id ? 2 : 0]++;
        else
            s_problem(v, "%s index entry for event %llu: the event does not decode", what,
                      (unsigned long long)seq);
        ok = false;
    } else if (prefix == K_CAT) {
        size_t cn = strlen(ev->category);
        if (kl - 10 != cn || memcmp(k + 1, ev->category, cn) != 0 || ev->seq != seq) {
            s_problem(v, "category index entry %.*s/%llu holds event %llu of %s",
                      (int)(kl - 10), k + 1, (unsigned long long)seq,
                      (unsigned long long)ev->seq, ev->category);
            ok = false;
        }
    } else if (prefix == K_STREAM) {
        size_t sn = strlen(ev->stream);
        if (kl - 10 != sn || memcmp(k + 1, ev->stream, sn) != 0 || ev->version != n) {
            s_problem(v,
                      "stream index entry %.*s v%llu points at event %llu, which is "
                      "%s v%llu",
                      (int)(kl - 10), k + 1, (unsigned long long)n,
                      (unsigned long long)seq, ev->stream,
                      (unsigned long long)ev->version);
            ok = false;
        }
    } else if (memcmp(ev->id.b, k + kl - EVB_ID_LEN, EVB_ID_LEN) != 0) {
        s_problem(v, "id index entry points at event %llu, which has another id",
                  (unsigned long long)seq);
        ok = false;
    }
    leveldb_free(got);
    return ok;
}

/* Every index entry points at real events that agree with it; in_idb: the
 * id database's entries (prefix K_IDE, bounded by its seal). */
static void s_backward(vctx *v, char prefix, bool in_idb, uint64_t ixpos, hmap *cats,
                       uint64_t nstreams, uint64_t firsts)
{
    evb_store_t *st = v->st;
    leveldb_iterator_t *it = in_idb ? leveldb_create_iterator(st->idb, v->dro)
                                    : leveldb_create_iterator(st->ix, v->iro);
    if (in_idb) ixpos = v->idseal;
    evb_event_t ev = {0};
    for (leveldb_iter_seek(it, &prefix, 1); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        const char *val = leveldb_iter_value(it, &vl);
        if (kl == 0 || k[0] != prefix) break;
        if (prefix == K_CATSTAT) {
            hent *c = hmap_get(cats, k + 1, kl - 1);
            uint64_t head = vl == 16 ? be64_get(val) : 0,
                     cnt = vl == 16 ? be64_get(val + 8) : 0;
            if (c == NULL || c->a != head || c->b != cnt)
                s_problem(v,
                          "category statistics of %.*s (head %llu, %llu events) disagree "
                          "with the events (head %llu, %llu events)",
                          (int)(kl - 1), k + 1, (unsigned long long)head,
                          (unsigned long long)cnt, (unsigned long long)(c ? c->a : 0),
                          (unsigned long long)(c ? c->b : 0));
            if (c != NULL) c->b = UINT64_MAX; /* seen */
            continue;
        }
        bool is_id = prefix == K_ID || prefix == K_IDE;
        const char *what = prefix == K_CAT ? "category" : is_id ? "id" : "stream";
        ix_run r = {0, 0, 1};
        if (is_id) {
            if (vl != 8 || kl != (prefix == K_IDE ? ID_EPOCH_KEY_LEN : 1 + EVB_ID_LEN)) {
                s_problem(v, "malformed id index entry");
                continue;
            }
            r.seq = be64_get(val);
            uint32_t epoch = in_idb ? ids_epoch(st->idb_bits, r.seq) : id_epoch(r.seq);
            if (prefix == K_IDE && key_epoch(k) != epoch) {
                s_problem(v, "id index entry of event %llu is filed under another epoch",
                          (unsigned long long)r.seq);
                continue;
            }
        } else if (kl < 11 || !st_run_decode(prefix, k, kl, kl - 10, val, vl, &r)) {
            s_problem(v, "malformed %s index entry", what);
            continue;
        }
        if (r.count > 1 && !st->ix_runs)
            s_problem(v, "%s index entry of %llu events in a format %u log", what,
                      (unsigned long long)r.count, st->format);
        for (uint64_t i = 0; i < r.count; i++)
            if (!s_check_entry(v, prefix, k, kl, r.first + i, r.seq + i, ixpos, &ev))
                break; /* one problem per entry */
    }
    if (prefix == K_CATSTAT) {
        for (size_t i = 0; i < cats->cap; i++)
            if (cats->slots[i].hash && cats->slots[i].b != UINT64_MAX)
                s_problem(v, "category %.*s has indexed events but no statistics",
                          (int)cats->slots[i].klen, hent_key(&cats->slots[i]));
        if (nstreams != firsts)
            s_problem(v, "stream count says %llu, the index has %llu streams",
                      (unsigned long long)nstreams, (unsigned long long)firsts);
    }
    evb_event_clear(&ev);
    leveldb_iter_destroy(it);
}

int evb_store_verify(evb_store_t *st, evb_problem_fn fn, evb_progress_fn progress,
                     void *ctx, uint64_t *problems, evb_err *err)
{
    if (problems) *problems = 0;
    if (st->db == NULL)
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)",
                           st->dir);

    vctx v = {.st = st, .fn = fn, .ctx = ctx};
    /* The index's snapshot before the events' (read.c says why). */
    const leveldb_snapshot_t *isnap = NULL;
    const leveldb_snapshot_t *dsnap = NULL;
    if (st->idb != NULL) { /* the id database's first: the indexer writes it first */
        dsnap = leveldb_create_snapshot(st->idb);
        v.dro = leveldb_readoptions_create();
        leveldb_readoptions_set_snapshot(v.dro, dsnap);
        leveldb_readoptions_set_fill_cache(v.dro, 0);
        leveldb_readoptions_set_verify_checksums(v.dro, 1);
    }
    if (st_ix_apart(st)) {
        isnap = leveldb_create_snapshot(st->ix);
        v.iro = leveldb_readoptions_create();
        leveldb_readoptions_set_snapshot(v.iro, isnap);
        leveldb_readoptions_set_fill_cache(v.iro, 0);
        leveldb_readoptions_set_verify_checksums(v.iro, 1);
    }
    const leveldb_snapshot_t *snap = leveldb_create_snapshot(st->db);
    v.ro = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(v.ro, snap);
    leveldb_readoptions_set_fill_cache(v.ro, 0);
    leveldb_readoptions_set_verify_checksums(v.ro, 1);
    if (isnap == NULL) v.iro = v.ro;
    uint64_t head = atomic_load(&st->head);
    bool present;
    uint64_t ixpos =
        s_get_u64(&v, (const uint8_t *)META_IXPOS, strlen(META_IXPOS), &present);
    uint64_t nstreams =
        s_get_u64(&v, (const uint8_t *)META_NSTREAMS, strlen(META_NSTREAMS), &present);
    if (v.dro != NULL) {
        v.idseal = s_get_u64_in(&v, st->idb, v.dro, (const uint8_t *)META_IDSEAL,
                                strlen(META_IDSEAL), &present);
        if (v.idseal > head) {
            s_problem(&v, "the id database is sealed up to %llu, past the head %llu",
                      (unsigned long long)v.idseal, (unsigned long long)head);
            v.idseal = head;
        }
    }
    if (st->ix_broken) {
        s_problem(&v,
                  "%s/index is damaged: the log is checked without it; "
                  "the next writable open builds it again",
                  st->dir);
        ixpos = 0;
    } else if (st->ix_ignored) {
        /* Format 2, opened read-only: the index is derived and is rebuilt by
         * the next writable open; one problem, and the log checked alone. */
        s_problem(&v,
                  "%s/index is stale (position %llu, head %llu%s): the next "
                  "writable open builds it again",
                  st->dir, (unsigned long long)ixpos, (unsigned long long)head,
                  st->ix_foreign ? ", another log's" : "");
        ixpos = 0;
    } else if (ixpos > head) {
        s_problem(&v, "indexer position %llu is past the head %llu",
                  (unsigned long long)ixpos, (unsigned long long)head);
    }
    if (st_ids_apart(st) && st->idb == NULL && !st->ix_ignored && !st->ix_broken &&
        ixpos > 0)
        s_problem(&v,
                  "%s/index/ids is missing: the caller ids up to %llu are in no index (the "
                  "next writable open builds the index again)",
                  st->dir, (unsigned long long)ixpos);
    char dmg[400];
    if (evb_store_wal_damage(st, dmg, sizeof dmg) > 0)
        s_problem(&v, "the write-ahead log is damaged (%s): events in the damaged part "
                      "are not in this reading, and a sequence gap below may be them",
                  dmg);
    hmap cats = {0};
    uint64_t firsts = 0;
    s_forward(&v, head, ixpos, &cats, &firsts, progress);
    const char prefixes[] = {K_STREAM, K_CAT, K_ID, K_IDE, K_CATSTAT};
    for (size_t i = 0; !st->ix_ignored && i < sizeof prefixes; i++)
        s_backward(&v, prefixes[i], false, ixpos, &cats, nstreams, firsts);
    if (v.dro != NULL) s_backward(&v, K_IDE, true, ixpos, &cats, nstreams, firsts);
    s_report_gaps(&v);
    free(v.gaps);
    if (progress) progress(head, head, ctx);
    if (v.ixit != NULL) leveldb_iter_destroy(v.ixit);
    hmap_free(&cats);
    if (isnap != NULL) {
        leveldb_readoptions_destroy(v.iro);
        leveldb_release_snapshot(st->ix, isnap);
    }
    if (dsnap != NULL) {
        leveldb_readoptions_destroy(v.dro);
        leveldb_release_snapshot(st->idb, dsnap);
    }
    leveldb_readoptions_destroy(v.ro);
    leveldb_release_snapshot(st->db, snap);
    if (problems) *problems = v.problems;
    if (v.problems > 0)
        return evb_err_set(err, EVB_ECORRUPT, "%s: %llu problems found", st->dir,
                           (unsigned long long)v.problems);
    return EVB_OK;
}
