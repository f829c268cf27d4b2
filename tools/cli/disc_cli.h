/*
 * disc_cli.h (private to the evbus program): naming services instead of
 * endpoints (evbus call @NAME, evbus sniff --service NAME, evbus peers):
 * the beacon interface and port from flags or from EVBUS_BEACON_IFACE /
 * EVBUS_BEACON_PORT, as the services read them.
 */
#ifndef EVB_TOOLS_DISC_CLI_H
#define EVB_TOOLS_DISC_CLI_H

#include "cli.h"

#include <evbus/evbus_discovery.h>

#define DISC_CLI_DEFAULT_WAIT_MS 3000u /* beacons come every second */

/* The interface (flag, else EVBUS_BEACON_IFACE) and port (flag when set,
 * else EVBUS_BEACON_PORT, else the default). -1 to go on, or the exit code
 * after a usage error (no interface named, bad port). Messages name the
 * flags of `evbus peers` (--iface, --port) when peers is set, else those of
 * the commands that also take endpoints (--beacon-iface, --beacon-port). */
int disc_cli_settings(cli_t *cli, bool peers, const char *iface_flag, uint64_t port_flag,
                      bool port_set, const char **iface, unsigned *port);

/* Listen until every names[i] is heard (out[i]) or wait_ms passes. -1 when
 * all were found; else the exit code: notfound_code after naming what was
 * not heard (and where we listened), CLI_EXIT_RUNTIME when the listener
 * cannot start (no such interface: the message lists those that can). */
int disc_cli_resolve(cli_t *cli, const char *iface, unsigned port,
                     const char *const *names, size_t n, unsigned wait_ms,
                     int notfound_code, evb_disc_entry *out);

#endif
