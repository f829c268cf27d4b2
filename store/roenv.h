/*
 * roenv.h (private): a read-only view of a LevelDB directory, for the store's
 * read-only opens (store/FORMAT.md, "Reading without writing").
 *
 * LevelDB has no read-only open: opening replays the write-ahead log into a
 * new table, writes a new MANIFEST and CURRENT, deletes the old log, renames
 * LOG to LOG.old and takes the LOCK file. This view gives LevelDB a file
 * system in which none of that reaches the disk:
 *   - at creation it opens every file of the directory (a snapshot: open
 *     descriptors and sizes; a file the owner deletes later stays readable,
 *     one it appends to is read only up to the size it had), CURRENT last,
 *     and lists the directory again until no file appeared meanwhile;
 *   - what LevelDB writes (the replayed table, MANIFEST, CURRENT) lives in
 *     memory, what it deletes or renames only changes the view;
 *   - the lock is the view's own (a running service keeps its LOCK; readers
 *     need no write permission), and LevelDB's info log is discarded but
 *     for the recovery's "dropping N bytes" lines, which are counted;
 *   - once sealed (after the open), new table files are refused, so no
 *     compaction rewrites the log in memory.
 * Nothing on disk changes, whatever state the directory is in.
 */
#if !defined(EVB_BUILDING_STORE)
#error                                                                                   \
    "store/roenv.h is private to libevbus's store module; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_STORE_ROENV_H
#define EVB_STORE_ROENV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct leveldb_env_t leveldb_env_t;

/* The view of directory dir (a missing directory is an empty view). NULL
 * when a file cannot be opened or the directory keeps changing, with the
 * reason in why[0..cap) ("DIR/FILE: permission denied"). */
leveldb_env_t *st_roenv_new(const char *dir, char *why, size_t cap);

/* From now on, refuse new table files (compactions). */
void st_roenv_seal(leveldb_env_t *env);

/* Bytes the view holds in memory (what LevelDB wrote during the open). */
size_t st_roenv_mem_bytes(leveldb_env_t *env);

/* Write the view as a new LevelDB directory dest (it must not exist): a
 * copy of the state the view holds, tables hard-linked where the file
 * system allows, the rest copied; every file and dest fsynced. 0, or -1
 * with the reason in why. *bytes and *linked grow by what was copied and by
 * the number of files linked. */
int st_roenv_copy(leveldb_env_t *env, const char *dest, uint64_t *bytes, unsigned *linked,
                  char *why, size_t cap);

/* How many times LevelDB's recovery through this view dropped bytes of a
 * damaged write-ahead log; the first of its messages in first[0..cap). */
size_t st_roenv_drops(leveldb_env_t *env, char *first, size_t cap);

/* After the database using it is closed. NULL is fine. */
void st_roenv_destroy(leveldb_env_t *env);

#ifdef __cplusplus
}
#endif

#endif
