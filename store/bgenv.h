/*
 * bgenv.h (private): a LevelDB Env whose flushes and compactions run on a
 * background thread of its own, for the index database (bgenv.cc).
 */
#if !defined(EVB_BUILDING_STORE)
#error "store/bgenv.h is private to libevbus's store module; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_STORE_BGENV_H
#define EVB_STORE_BGENV_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct leveldb_env_t leveldb_env_t;

/* NULL when out of memory (the caller then uses LevelDB's default Env). */
leveldb_env_t *st_bgenv_new(void);
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
