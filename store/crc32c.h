/*
 * crc32c.h (private): CRC-32C in hardware, where the CPU has it.
 */
#if !defined(EVB_BUILDING_STORE)
#error "store/crc32c.h is private to libevbus's store module; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_STORE_CRC32C_H
#define EVB_STORE_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Does this CPU compute CRC-32C in hardware (SSE 4.2)? */
bool st_crc32c_fast(void);
/* CRC-32C of buf[0..n), as LevelDB's crc32c::Value; only when
 * st_crc32c_fast(). */
uint32_t st_crc32c(const void *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
