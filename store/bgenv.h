/*
 * bgenv.h (private): the LevelDB Env of the store's writable databases
 * (bgenv.cc): optionally a background thread of its own for flushes and
 * compactions (the index), and table blocks checked with a hardware CRC.
 */
#if !defined(EVB_BUILDING_STORE)
#error "store/bgenv.h is private to libevbus's store module; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_STORE_BGENV_H
#define EVB_STORE_BGENV_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct leveldb_env_t leveldb_env_t;

/* NULL when out of memory. */
leveldb_env_t *st_bgenv_new(bool own_thread);
/* Do the Envs st_bgenv_new makes check every table block they read? Then
 * reads through them need not ask LevelDB to (its check is portable code). */
bool st_bgenv_checks_blocks(void);
/* After every database using it is closed. */
void st_bgenv_destroy(leveldb_env_t *env);
/* fn(arg), called from C: clang's -fsanitize=function checks indirect calls
 * made from C++, and its check needs UBSan's C++ runtime, which the
 * programs linked as C (the CLI, the daemons) do not link. */
void st_bgenv_call(void (*fn)(void *), void *arg);

#ifdef __cplusplus
}
#endif

#endif
