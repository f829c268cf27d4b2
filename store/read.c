/*
 * read.c: iterators over a consistent snapshot of the log.
 *
 * A read has two phases: the index phase walks the stream or category index,
 * which covers events up to the indexer's position as of the snapshot; the
 * tail phase scans the few events after it and keeps the matching ones
 * (recognised by a peek at the envelope's stream field, without a full
 * decode). Range reads walk the event keys directly. Memory per iterator: one
 * LevelDB iterator and one decoded event whose block is reused.
 *
 * From format 2 the indexes are a database of their own: an iterator holds a
 * snapshot of each. The index's is taken first, then the head is read, then
 * the events' snapshot: the indexer writes an entry only for an event it has
 * read, so every entry of the index snapshot names an event that the later
 * events' snapshot holds, even with an appender running meanwhile. Index
 * entries past the index position (there are none in a sound index) end the
 * index phase.
 */
#include "store_int.h"
#include "codec_int.h"

#include <stdio.h>
#include <stdlib.h>

enum it_kind { IT_RANGE, IT_STREAM, IT_CATEGORY };
enum it_phase { PH_INDEX, PH_TAIL, PH_DONE };

struct evb_iter {
    evb_store_t *st;
    leveldb_readoptions_t *ro, *iro; /* events; index (the same in format 1) */
    const leveldb_snapshot_t *snap, *isnap;
    leveldb_iterator_t *it;  /* index phase: over the index; tail: the events */
    leveldb_iterator_t *eit; /* index phase: walks the event keys forward */
    enum it_kind kind;
    enum it_phase phase;
    bool started;
    bool on_events; /* it walks the event keys (always so for a range) */
    uint64_t ix_snap, head_snap;
    char name[EVB_MAX_STREAM_LEN + 1];
    size_t nlen;
    uint64_t lo, hi;   /* range: seqs; stream: versions; category: seq > lo */
    uint64_t next_seq; /* tail phase: the sequence that must come next */
    ix_run run;        /* index phase: the entry being walked */
    uint64_t run_pos;  /* ... and the event of it that is next */
    bool skip_tail;    /* the tail holds none of this stream or category */
    uint8_t prefix[2 + EVB_MAX_STREAM_LEN];
    size_t plen;
    evb_event_t ev;
    const void *raw; /* the stored bytes of ev (lent from the LevelDB iterator) */
    size_t raw_len;
    const evb_upcasters_t *up;
    bool lazy; /* evb_iter_next_raw: events are not decoded (s_emit_lazy) */
    char lazy_stream[EVB_MAX_STREAM_LEN + 1], lazy_cat[EVB_MAX_CATEGORY_LEN + 1];
    evb__names names; /* of the last event decoded: repeats are not checked again */
    uint64_t hole_from, hole_to; /* unreadable events met (evb_iter_hole) */
};

/* The read options for the index. */
static const leveldb_readoptions_t *s_iro(const evb_iter_t *it)
{
    return it->iro != NULL ? it->iro : it->ro;
}

static evb_iter_t *s_iter_new(evb_store_t *st, enum it_kind kind,
                              const evb_upcasters_t *up, evb_err *err)
{
    if (st->db == NULL) {
        evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)", st->dir);
        return NULL;
    }
    evb_iter_t *it = calloc(1, sizeof *it);
    if (it == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory for an iterator");
        return NULL;
    }
    it->st = st;
    it->kind = kind;
    it->up = up;
    if (st_ix_apart(st)) { /* the index first (above) */
        it->isnap = leveldb_create_snapshot(st->ix);
        it->iro = leveldb_readoptions_create();
        leveldb_readoptions_set_snapshot(it->iro, it->isnap);
        leveldb_readoptions_set_fill_cache(it->iro, 0);
        leveldb_readoptions_set_verify_checksums(it->iro, st_ldb_checks(st));
    }
    it->head_snap = atomic_load(&st->head);
    it->snap = leveldb_create_snapshot(st->db);
    it->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(it->ro, it->snap);
    leveldb_readoptions_set_fill_cache(it->ro, 0); /* long scans: keep the cache warm */
    /* Every block's checksum is checked: a damaged block then fails it and
     * is skipped whole (the sequence's contiguity finds the hole) instead of
     * being decoded into wrong events. By the store's Env, in hardware,
     * when it can (bgenv.cc); LevelDB's portable check was about an eighth
     * of a read (FORMAT.md, "Block checksums"). */
    leveldb_readoptions_set_verify_checksums(it->ro, st_ldb_checks(st));
    char *v;
    size_t vl;
    int rc = st_get(st, st->ix, s_iro(it), META_IXPOS, strlen(META_IXPOS), &v, &vl, err);
    if (rc != EVB_OK) {
        evb_iter_destroy(&it);
        return NULL;
    }
    it->ix_snap = (v != NULL && vl == 8) ? be64_get(v) : 0;
    if (v) leveldb_free(v);
    if (it->ix_snap > it->head_snap) it->ix_snap = it->head_snap;
    if (st->ix_ignored) it->ix_snap = 0; /* a stale index a tool reads without */
    /* Range reads start on the events; the others on the index. */
    it->on_events = kind == IT_RANGE || !st_ix_apart(st);
    it->it = leveldb_create_iterator(it->on_events ? st->db : st->ix,
                                     it->on_events ? it->ro : s_iro(it));
    return it;
}

void evb_iter_destroy(evb_iter_t **itp)
{
    if (itp == NULL || *itp == NULL) return;
    evb_iter_t *it = *itp;
    if (it->it) leveldb_iter_destroy(it->it);
    if (it->eit) leveldb_iter_destroy(it->eit);
    if (it->ro) leveldb_readoptions_destroy(it->ro);
    if (it->snap) leveldb_release_snapshot(it->st->db, it->snap);
    if (it->iro) leveldb_readoptions_destroy(it->iro);
    if (it->isnap) leveldb_release_snapshot(it->st->ix, it->isnap);
    evb_event_clear(&it->ev);
    free(it);
    *itp = NULL;
}

evb_iter_t *evb_store_read_range(evb_store_t *st, uint64_t from_seq, uint64_t to_seq,
                                 const evb_upcasters_t *up, evb_err *err)
{
    evb_iter_t *it = s_iter_new(st, IT_RANGE, up, err);
    if (it == NULL) return NULL;
    it->lo = from_seq ? from_seq : 1;
    it->hi = (to_seq == 0 || to_seq > it->head_snap) ? it->head_snap : to_seq;
    it->phase = PH_TAIL; /* the event keys themselves */
    return it;
}

evb_iter_t *evb_store_read_stream(evb_store_t *st, const char *stream,
                                  uint64_t from_version, uint64_t to_version,
                                  const evb_upcasters_t *up, evb_err *err)
{
    if (evb_check_stream(stream, err) != EVB_OK) return NULL;
    evb_iter_t *it = s_iter_new(st, IT_STREAM, up, err);
    if (it == NULL) return NULL;
    it->nlen = strlen(stream);
    memcpy(it->name, stream, it->nlen + 1);
    it->lo = from_version ? from_version : 1;
    it->hi = to_version ? to_version : UINT64_MAX;
    it->prefix[0] = K_STREAM;
    memcpy(it->prefix + 1, stream, it->nlen);
    it->prefix[1 + it->nlen] = 0;
    it->plen = it->nlen + 2;
    it->phase = PH_INDEX;
    /* The stream map says whether the unindexed tail can hold this stream:
     * an entry is dropped only once the indexer covers its last event. */
    const hent *e = hmap_get(&st->streams, stream, it->nlen);
    it->skip_tail = (e == NULL || e->b <= it->ix_snap);
    return it;
}

evb_iter_t *evb_store_read_category(evb_store_t *st, const char *category,
                                    uint64_t after_seq, const evb_upcasters_t *up,
                                    evb_err *err)
{
    if (evb_check_category(category, err) != EVB_OK) return NULL;
    evb_iter_t *it = s_iter_new(st, IT_CATEGORY, up, err);
    if (it == NULL) return NULL;
    it->nlen = strlen(category);
    memcpy(it->name, category, it->nlen + 1);
    it->lo = after_seq;
    it->prefix[0] = K_CAT;
    memcpy(it->prefix + 1, category, it->nlen);
    it->prefix[1 + it->nlen] = 0;
    it->plen = it->nlen + 2;
    it->phase = PH_INDEX;
    const hent *e = hmap_get(&st->cats, category, it->nlen);
    it->skip_tail = (e == NULL || e->a <= it->ix_snap);
    return it;
}

/* s_hole: defined below. */
static void s_hole(evb_iter_t *it, uint64_t from, uint64_t resume, evb_err *err,
                   const char *why);

/* evb_iter_next_raw: the event at seq without decoding it. Its head (seq,
 * stream) is read in place; it->ev gets seq, stream and category only (what
 * the checks of the iterator and the caller use). 1 when emitted, -1 at a
 * hole, 0 when the head is not the shape this store writes: the decoder
 * then says what is wrong. */
static int s_emit_lazy(evb_iter_t *it, const char *v, size_t vl, uint64_t seq,
                       evb_err *err)
{
    uint64_t at;
    const char *s;
    size_t sl;
    if (!st_peek_stream(v, vl, &at, &s, &sl) || sl == 0 || sl > EVB_MAX_STREAM_LEN)
        return 0;
    const char *dash = memchr(s, '-', sl);
    size_t cl = dash != NULL ? (size_t)(dash - s) : sl;
    if (cl == 0 || cl > EVB_MAX_CATEGORY_LEN) return 0;
    if (at != seq) {
        char why[96];
        snprintf(why, sizeof why, "the record at %llu says it is event %llu",
                 (unsigned long long)seq, (unsigned long long)at);
        s_hole(it, seq, seq + 1, err, why);
        return -1;
    }
    memcpy(it->lazy_stream, s, sl);
    it->lazy_stream[sl] = '\0';
    memcpy(it->lazy_cat, s, cl);
    it->lazy_cat[cl] = '\0';
    it->ev.seq = seq;
    it->ev.stream = it->lazy_stream;
    it->ev.category = it->lazy_cat;
    it->raw = v;
    it->raw_len = vl;
    return 1;
}

/* Decode value as the event at seq into it->ev, then upcast. A record that
 * does not decode as that event is a hole. */
static bool s_emit(evb_iter_t *it, const char *v, size_t vl, uint64_t seq, evb_err *err)
{
    evb_err derr;
    char why[EVB_ERR_MSG_LEN];
    int lazy = it->lazy ? s_emit_lazy(it, v, vl, seq, err) : 0;
    if (lazy != 0) return lazy > 0;
    if (evb__event_decode_names(v, vl, &it->ev, &it->names, &derr) != EVB_OK) {
        snprintf(why, sizeof why, "event %llu does not decode: %.300s",
                 (unsigned long long)seq, derr.msg);
        s_hole(it, seq, seq + 1, err, why);
        return false;
    }
    if (it->ev.seq != seq) {
        snprintf(why, sizeof why, "the record at %llu says it is event %llu",
                 (unsigned long long)seq, (unsigned long long)it->ev.seq);
        s_hole(it, seq, seq + 1, err, why);
        return false;
    }
    if (it->up != NULL && evb_upcasters_apply(it->up, &it->ev, err) != EVB_OK) {
        it->phase = PH_DONE;
        return false;
    }
    it->raw = v;
    it->raw_len = vl;
    return true;
}

static bool s_iter_error(evb_iter_t *it, evb_err *err)
{
    char *e = NULL;
    leveldb_iter_get_error(it->it, &e);
    if (e != NULL) {
        st_ldb_err(it->st, e, "read", err);
        it->phase = PH_DONE;
        return true;
    }
    return false;
}

/* The first event at or after seq (and at most last) that reads and decodes
 * as itself, or last + 1: the end of a hole. A fresh iterator on the same
 * snapshot, so the one reading stays where it is. */
static uint64_t s_next_readable(evb_iter_t *it, uint64_t seq, uint64_t last)
{
    leveldb_iterator_t *li = leveldb_create_iterator(it->st->db, it->ro);
    uint8_t key[9];
    evb_event_t ev = {0};
    evb_err derr;
    uint64_t found = last + 1;
    for (leveldb_iter_seek(li, (const char *)key, key_event(key, seq));
         leveldb_iter_valid(li); leveldb_iter_next(li)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(li, &kl);
        if (kl != 9 || k[0] != K_EVENT) break;
        uint64_t s = be64_get(k + 1);
        if (s > last) break;
        const char *v = leveldb_iter_value(li, &vl);
        if (evb_event_decode_into(v, vl, &ev, &derr) == EVB_OK && ev.seq == s) {
            found = s;
            break;
        }
    }
    evb_event_clear(&ev);
    leveldb_iter_destroy(li);
    return found;
}

/* Events from..(the next readable one) cannot be read: remember the hole and
 * say so in err. */
static void s_hole(evb_iter_t *it, uint64_t from, uint64_t resume, evb_err *err,
                   const char *why)
{
    uint64_t last = it->kind == IT_RANGE ? it->hi : it->head_snap;
    uint64_t next = s_next_readable(it, resume, last);
    it->hole_from = from;
    it->hole_to = next - 1;
    if (next <= last)
        evb_err_set(
            err, EVB_ECORRUPT,
            "%s: events %llu..%llu cannot be read (%s); the next readable is %llu",
            it->st->dir, (unsigned long long)from, (unsigned long long)(next - 1), why,
            (unsigned long long)next);
    else
        evb_err_set(err, EVB_ECORRUPT,
                    "%s: events %llu..%llu cannot be read (%s); none after them is "
                    "readable",
                    it->st->dir, (unsigned long long)from, (unsigned long long)last, why);
    it->phase = PH_DONE;
}

bool evb_iter_hole(const evb_iter_t *it, uint64_t *from, uint64_t *to)
{
    if (it->hole_from == 0) return false;
    *from = it->hole_from;
    *to = it->hole_to;
    return true;
}

bool evb_iter_resume(evb_iter_t *it)
{
    if (it->hole_from == 0 || it->kind == IT_STREAM) return false;
    uint64_t after = it->hole_to;
    it->hole_from = it->hole_to = 0;
    it->raw = NULL;
    it->started = false;
    it->next_seq = 0;
    if (it->kind == IT_RANGE) {
        if (after >= it->hi) return false;
        it->lo = after + 1;
        it->phase = PH_TAIL;
        return true;
    }
    if (after >= it->head_snap) return false;
    it->lo = after; /* a category read's lo is the seq it reads after */
    if (after >= it->ix_snap) {
        it->phase = PH_TAIL;
        return true;
    }
    if (st_ix_apart(it->st) && it->on_events) { /* back from the events to the index */
        leveldb_iter_destroy(it->it);
        it->it = leveldb_create_iterator(it->st->ix, s_iro(it));
        it->on_events = false;
    }
    it->phase = PH_INDEX;
    return true;
}

/* Does the envelope belong to what this iterator reads (tail phase)? */
static bool s_tail_match(const evb_iter_t *it, const char *v, size_t vl)
{
    if (it->kind == IT_RANGE) return true;
    const char *s;
    size_t sl;
    if (!st_peek_stream(v, vl, NULL, &s, &sl)) return true; /* let the decoder report it */
    if (it->kind == IT_STREAM) return sl == it->nlen && memcmp(s, it->name, sl) == 0;
    const char *dash = memchr(s, '-', sl);
    size_t cl = dash ? (size_t)(dash - s) : sl;
    return cl == it->nlen && memcmp(s, it->name, cl) == 0;
}

/* The stored event at seq, through a second iterator that moves forward:
 * index entries come in increasing seq order, so the next event is usually a
 * few keys ahead in the same block and a next() beats a fresh lookup. NULL
 * when the event is missing. */
static const char *s_event_at(evb_iter_t *it, uint64_t seq, size_t *vl)
{
    uint8_t key[9];
    key_event(key, seq);
    if (it->eit == NULL) {
        it->eit = leveldb_create_iterator(it->st->db, it->ro);
        leveldb_iter_seek(it->eit, (const char *)key, 9);
    } else {
        size_t kl = 0;
        for (int i = 0; i < 8 && leveldb_iter_valid(it->eit); i++) {
            const char *k = leveldb_iter_key(it->eit, &kl);
            if (kl != 9 || memcmp(k, key, 9) >= 0) break;
            leveldb_iter_next(it->eit);
        }
        const char *k =
            leveldb_iter_valid(it->eit) ? leveldb_iter_key(it->eit, &kl) : NULL;
        if (k == NULL || kl != 9 || memcmp(k, key, 9) != 0)
            leveldb_iter_seek(it->eit, (const char *)key, 9);
    }
    if (!leveldb_iter_valid(it->eit)) return NULL;
    size_t kl;
    const char *k = leveldb_iter_key(it->eit, &kl);
    if (kl != 9 || memcmp(k, key, 9) != 0) return NULL;
    return leveldb_iter_value(it->eit, vl);
}

/* Load the index entry under it->it into it->run; false (and on to the
 * tail, or done with an error) when the index part is over. */
static bool s_load_run(evb_iter_t *it, evb_err *err)
{
    if (!leveldb_iter_valid(it->it)) {
        if (!s_iter_error(it, err)) {
            it->phase = PH_TAIL;
            it->started = false;
        }
        return false;
    }
    size_t kl, vl;
    const char *k = leveldb_iter_key(it->it, &kl);
    if (kl != it->plen + 8 || memcmp(k, it->prefix, it->plen) != 0) {
        it->phase = PH_TAIL;
        it->started = false;
        return false;
    }
    const char *v = leveldb_iter_value(it->it, &vl);
    if (!st_run_decode((char)it->prefix[0], k, kl, it->nlen, v, vl, &it->run)) {
        evb_err_set(err, EVB_ECORRUPT, "%s: %s index entry of %s at %llu is damaged",
                    it->st->dir, it->kind == IT_STREAM ? "stream" : "category", it->name,
                    (unsigned long long)be64_get(k + it->plen));
        it->phase = PH_DONE;
        return false;
    }
    it->run_pos = 0;
    return true;
}

static bool s_next_index(evb_iter_t *it, const evb_event_t **ev, evb_err *err)
{
    if (!it->started) {
        uint64_t start = it->kind == IT_STREAM ? it->lo : it->lo + 1;
        it->started = true;
        int on =
            st_seek_run(it->it, (char)it->prefix[0], it->name, it->nlen, start, &it->run);
        if (on < 0) {
            evb_err_set(err, EVB_ECORRUPT,
                        "%s: the %s index entry of %s before %llu is damaged",
                        it->st->dir, it->kind == IT_STREAM ? "stream" : "category",
                        it->name, (unsigned long long)start);
            it->phase = PH_DONE;
            return false;
        }
        if (on == 1)
            it->run_pos = start - it->run.first;
        else if (!s_load_run(it, err))
            return false;
    } else if (++it->run_pos >= it->run.count) {
        leveldb_iter_next(it->it);
        if (!s_load_run(it, err)) return false;
    }
    uint64_t n = it->run.first + it->run_pos, seq = it->run.seq + it->run_pos;
    if (it->kind == IT_STREAM && n > it->hi) {
        it->phase = PH_DONE; /* later versions only grow */
        return false;
    }
    if (seq > it->ix_snap) { /* not covered by the position: the tail has it */
        it->phase = PH_TAIL;
        it->started = false;
        return false;
    }
    size_t ev_len;
    const char *ev_val = s_event_at(it, seq, &ev_len);
    if (ev_val == NULL) {
        s_hole(it, seq, seq + 1, err,
               it->kind == IT_STREAM ? "the stream index names a missing event"
                                     : "the category index names a missing event");
        return false;
    }
    if (!s_emit(it, ev_val, ev_len, seq, err)) {
        it->phase = PH_DONE;
        return false;
    }
    /* The index must agree with the event it names. */
    if (strcmp(it->kind == IT_STREAM ? it->ev.stream : it->ev.category, it->name) != 0 ||
        (it->kind == IT_STREAM && it->ev.version != n)) {
        evb_err_set(err, EVB_ECORRUPT, "%s: the %s index of %s names event %llu of %s",
                    it->st->dir, it->kind == IT_STREAM ? "stream" : "category", it->name,
                    (unsigned long long)seq, it->ev.stream);
        it->phase = PH_DONE;
        return false;
    }
    *ev = &it->ev;
    return true;
}

static bool s_next_tail(evb_iter_t *it, const evb_event_t **ev, evb_err *err)
{
    for (;;) {
        if (!it->started) {
            if (!it->on_events) { /* from the index to the events */
                leveldb_iter_destroy(it->it);
                it->it = leveldb_create_iterator(it->st->db, it->ro);
                it->on_events = true;
            }
            uint64_t from = it->kind == IT_RANGE ? it->lo : it->ix_snap + 1;
            if (it->kind == IT_CATEGORY && it->lo + 1 > from) from = it->lo + 1;
            uint8_t key[9];
            leveldb_iter_seek(it->it, (const char *)key, key_event(key, from));
            it->started = true;
            it->next_seq = from;
        } else {
            leveldb_iter_next(it->it);
        }
        size_t kl = 0, vl;
        const char *k = leveldb_iter_valid(it->it) ? leveldb_iter_key(it->it, &kl) : NULL;
        if (k == NULL || kl != 9 || k[0] != K_EVENT) {
            uint64_t last = it->kind == IT_RANGE ? it->hi : it->head_snap;
            /* Every event up to last was read when next_seq is past it: a
             * block LevelDB skipped (its error is sticky) held none of them,
             * or was a hole already reported. */
            if (it->next_seq <= last) s_hole(it, it->next_seq, it->next_seq, err, "damaged or missing records");
            it->phase = PH_DONE;
            return false;
        }
        uint64_t seq = be64_get(k + 1);
        uint64_t last = it->kind == IT_RANGE ? it->hi : it->head_snap;
        if (seq > last) {
            it->phase = PH_DONE;
            return false;
        }
        /* The sequence is contiguous: a hole is damage, not an empty slot. */
        if (it->next_seq != 0 && seq != it->next_seq) {
            s_hole(it, it->next_seq, seq, err, "damaged or missing records");
            return false;
        }
        it->next_seq = seq + 1;
        const char *v = leveldb_iter_value(it->it, &vl);
        if (!s_tail_match(it, v, vl)) continue;
        if (!s_emit(it, v, vl, seq, err)) return false;
        if (it->kind == IT_STREAM && (strcmp(it->ev.stream, it->name) != 0 ||
                                      it->ev.version < it->lo || it->ev.version > it->hi))
            continue;
        if (it->kind == IT_CATEGORY && strcmp(it->ev.category, it->name) != 0) continue;
        *ev = &it->ev;
        return true;
    }
}

static bool s_next(evb_iter_t *it, const evb_event_t **ev, evb_err *err);

bool evb_iter_next(evb_iter_t *it, const evb_event_t **ev, evb_err *err)
{
    it->lazy = false;
    return s_next(it, ev, err);
}

bool evb_iter_next_raw(evb_iter_t *it, evb_raw_event *out, evb_err *err)
{
    /* A stream read checks versions, an upcaster needs the event: those
     * decode as evb_iter_next does. */
    it->lazy = it->up == NULL && it->kind != IT_STREAM;
    const evb_event_t *ev;
    if (!s_next(it, &ev, err)) return false;
    out->seq = ev->seq;
    out->category = ev->category;
    out->buf = it->raw;
    out->len = it->raw_len;
    return true;
}

static bool s_next(evb_iter_t *it, const evb_event_t **ev, evb_err *err)
{
    evb_err_clear(err);
    *ev = NULL;
    while (it->phase != PH_DONE) {
        if (it->phase == PH_INDEX) {
            if (s_next_index(it, ev, err)) return true;
            if (err && err->code != EVB_OK) return false;
        } else if (it->skip_tail) {
            it->phase = PH_DONE;
        } else if (s_next_tail(it, ev, err)) {
            return true;
        } else {
            return false;
        }
    }
    return false;
}

bool evb_iter_raw(const evb_iter_t *it, const void **buf, size_t *len)
{
    if (it->raw == NULL) return false;
    *buf = it->raw;
    *len = it->raw_len;
    return true;
}
