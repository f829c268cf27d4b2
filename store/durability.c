/*
 * durability.c: when appended events become durable (evb_store_sync, the
 * group-fsync thread, evb_store_synced).
 *
 * Key decisions (the sync policies in store/FORMAT.md, "Durability"):
 *  - An fsync is one synced LevelDB write of an empty batch: LevelDB logs
 *    it and fsyncs its write-ahead log, and keeps writes in order, so it
 *    makes every append before it durable; st->synced then says how far
 *    (the publisher sends no further). It writes no key: a key written
 *    every few milliseconds beside the events would give LevelDB's tables
 *    key ranges that overlap every later event, and merges instead of
 *    trivial moves (FORMAT.md, "Two databases"). Format 1 logs wrote
 *    "M synced" here; nothing reads it.
 *  - Group sync: a thread makes that write every group_ms while appends
 *    arrive. It shares only atomics with the owner thread.
 *  - A failed fsync (disk full, I/O error) makes the log refuse writes until
 *    evb_store_reopen, and the thread stops instead of failing every few
 *    milliseconds; a reopen starts a new one.
 */
#include "store_int.h"

#include <time.h>

static int s_sync_write(evb_store_t *st, evb_err *err)
{
    uint64_t h = atomic_load(&st->head);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    CRASH_POINT(st, "sync.before");
    char *e = NULL;
    leveldb_write(st->db, st->wo_sync, wb, &e);
    leveldb_writebatch_destroy(wb);
    if (e != NULL) {
        /* LevelDB refuses every later write after a failed one */
        atomic_store(&st->unwritable, true);
        return st_ldb_err(st, e, "fsync", err);
    }
    CRASH_POINT(st, "sync.after");
    /* Everything up to h was written before this synced write: durable. */
    uint64_t cur = atomic_load(&st->synced);
    while (cur < h && !atomic_compare_exchange_weak(&st->synced, &cur, h))
        ;
    return EVB_OK;
}

int evb_store_sync(evb_store_t *st, evb_err *err)
{
    if (st->read_only) return EVB_OK;
    if (st->db == NULL)
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)",
                           st->dir);

    return s_sync_write(st, err);
}

uint64_t evb_store_synced(const evb_store_t *st)
{
    return atomic_load(&((evb_store_t *)st)->synced);
}

/* Group fsync: one synced write every group_ms while appends arrive. The head
 * is read from another thread, so only atomics are shared. */
void *st_flusher(void *arg)
{
    evb_store_t *st = arg;
    pthread_mutex_lock(&st->mu);
    while (!st->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)st->group_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&st->cv_flush, &st->mu, &ts);
        if (st->stop) break;
        if (atomic_load(&st->synced) >= atomic_load(&st->head)) continue;
        pthread_mutex_unlock(&st->mu);
        evb_err e;
        if (s_sync_write(st, &e) != EVB_OK) {
            /* A failed fsync (disk full, I/O error): the log refuses writes
             * until reopened, and this thread stops instead of failing every
             * few milliseconds; a reopen starts a new one. */
            atomic_store(&st->unwritable, true);
            evb_log(EVB_LOG_ERROR, "%s; the log refuses writes until it is reopened",
                    e.msg);
            return NULL;
        }
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}
