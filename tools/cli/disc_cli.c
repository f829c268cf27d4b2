/*
 * disc_cli.c: resolving service names for the evbus commands (disc_cli.h).
 * One listener for all the names of a command, so `evbus sniff --service a
 * --service b` waits for both beacons at once, not one after the other.
 */
#include "disc_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int disc_cli_settings(cli_t *cli, bool peers, const char *iface_flag, uint64_t port_flag,
                      bool port_set, const char **iface, unsigned *port)
{
    const char *iface_name = peers ? "--iface" : "--beacon-iface";
    const char *port_name = peers ? "--port" : "--beacon-port";
    const char *ifc = iface_flag;
    if (ifc == NULL || ifc[0] == '\0') ifc = getenv("EVBUS_BEACON_IFACE");
    if (ifc == NULL || ifc[0] == '\0')
        return cli_usage_error(cli, "%s needs the beacon interface: %s NAME (or "
                                    "EVBUS_BEACON_IFACE; \"*\" for every interface)",
                               peers ? "listening for beacons" : "naming a service",
                               iface_name);
    uint64_t p = EVB_DISC_DEFAULT_PORT;
    if (port_set) {
        p = port_flag;
    } else {
        const char *env = getenv("EVBUS_BEACON_PORT");
        if (env != NULL && env[0] != '\0' && cli_parse_u64(env, &p) != EVB_OK)
            return cli_usage_error(cli, "EVBUS_BEACON_PORT: '%s' is not a port", env);
    }
    if (p == 0 || p > 65535)
        return cli_usage_error(cli, "%s: expected 1..65535", port_name);
    *iface = ifc;
    *port = (unsigned)p;
    return -1;
}

int disc_cli_resolve(cli_t *cli, const char *iface, unsigned port,
                     const char *const *names, size_t n, unsigned wait_ms,
                     int notfound_code, evb_disc_entry *out)
{
    evb_err err = {0};
    for (size_t i = 0; i < n; i++)
        if (evb_check_service(names[i], &err) != EVB_OK)
            return cli_usage_error(cli, "service '%s': %s", names[i], err.msg);
    evb_discover_t *d = evb_discover_new(iface, port, &err);
    if (d == NULL) {
        cli_error(cli, "%s", err.msg);
        return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    int64_t deadline = evb_now_us() + (int64_t)wait_ms * 1000;
    size_t found = 0;
    int rc = -1;
    for (;;) {
        found = 0;
        for (size_t i = 0; i < n; i++)
            if (evb_discover_find(d, names[i], NULL, &out[i]) == EVB_OK) found++;
        if (found == n) break;
        int64_t left = (deadline - evb_now_us()) / 1000;
        if (left <= 0) break;
        if (evb_discover_poll(d, left > 100 ? 100 : (int)left, &err) < 0) {
            cli_error(cli, "%s", err.msg);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
    }
    if (rc < 0 && found < n) {
        for (size_t i = 0; i < n; i++)
            if (evb_discover_find(d, names[i], NULL, &out[i]) != EVB_OK)
                cli_error(cli,
                          "service %s: no beacon within %u ms on interface %s (%s), UDP "
                          "port %u (is it running with --announce on this network?)",
                          names[i], wait_ms, iface, evb_discover_address(d), port);
        rc = notfound_code;
    }
    evb_discover_destroy(&d);
    return rc;
}
