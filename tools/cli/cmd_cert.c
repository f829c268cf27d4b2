/*
 * cmd_cert.c: `evbus cert new NAME [--dir DIR]` makes a CURVE certificate
 * for a service or an operator (evb_curve_cert_new: DIR/NAME, the public one,
 * and DIR/NAME_secret, mode 0600); `evbus cert show FILE` prints a
 * certificate's public key. Nothing here ever prints a secret key.
 */
#include "cli.h"

#include <evbus/evbus_bus.h>

#include <stdio.h>
#include <string.h>

static int s_new(cli_t *cli, int argc, char **argv)
{
    const char *dir = ".";
    bool json = false;
    const cli_opt opts[] = {
        {"dir", CLI_STR, &dir, NULL, "DIR", "write the files into DIR (default: .)"},
        {"json", CLI_FLAG, &json, NULL, NULL, "print {name, public_key, public, secret}"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE,
        "NAME [--dir DIR] [--json]",
        "Make a CURVE certificate: DIR/NAME holds the public key (copy it into a\n"
        "server's --allow directory, or give it to clients as --server-key) and\n"
        "DIR/NAME_secret holds both keys, with mode 0600 (give it as --cert to the\n"
        "one program that uses it; never copy it elsewhere). Existing files are\n"
        "not overwritten.",
        "NAME: 1..64 of A-Z a-z 0-9 _ . @ -, not starting with '.' or '-'.\n"
        "Prints the public key; exit code 2 for a bad name or an existing file,\n"
        "4 when a file cannot be written.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    char key[EVB_CURVE_KEY_LEN + 1];
    evb_err err = {0};
    rc = evb_curve_cert_new(dir, pos[0], key, &err);
    if (rc != EVB_OK) {
        cli_error(cli, "%s", err.msg);
        return rc == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    if (json) {
        evb_buf b = {0};
        evb_buf_printf(&b, NULL, "{\"name\":");
        cli_json_str(&b, pos[0], NULL);
        evb_buf_printf(&b, NULL, ",\"public_key\":");
        cli_json_str(&b, key, NULL);
        /* The paths are escaped like the name: --dir is any path. */
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, pos[0]);
        evb_buf_printf(&b, NULL, ",\"public\":");
        cli_json_str(&b, path, NULL);
        snprintf(path, sizeof path, "%s/%s_secret", dir, pos[0]);
        evb_buf_printf(&b, NULL, ",\"secret\":");
        cli_json_str(&b, path, NULL);
        evb_buf_printf(&b, NULL, "}\n");
        cli_write(cli, b.data, b.len);
        evb_buf_free(&b);
    } else {
        cli_printf(cli,
                   "public key %s\n"
                   "public certificate %s/%s (for allow-lists and --server-key)\n"
                   "secret certificate %s/%s_secret (mode 0600: --cert)\n",
                   key, dir, pos[0], dir, pos[0]);
    }
    return cli_finish(cli, CLI_EXIT_OK);
}

static int s_show(cli_t *cli, int argc, char **argv)
{
    const cli_opt opts[] = {{0}};
    const cli_usage usage = {
        CLI_EXITS_BASE,
        "FILE",
        "Print the public key (40 Z85 characters) of a certificate file, public\n"
        "or secret. The secret key is never printed.",
        NULL};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    char key[EVB_CURVE_KEY_LEN + 1];
    evb_err err = {0};
    if (evb_curve_public_key(pos[0], key, &err) != EVB_OK) {
        cli_error(cli, "%s", err.msg);
        return CLI_EXIT_USAGE;
    }
    cli_printf(cli, "%s\n", key);
    return cli_finish(cli, CLI_EXIT_OK);
}

static const cli_verb s_verbs[] = {
    {"new", s_new, "make a certificate: NAME (public) and NAME_secret (0600)"},
    {"show", s_show, "print a certificate's public key"},
};

int cmd_cert(int argc, char **argv)
{
    return cli_dispatch("evbus cert", s_verbs, sizeof s_verbs / sizeof s_verbs[0],
                        "Usage: evbus cert VERB ...\n\n"
                        "CURVE certificates for services and operators (README.md,\n"
                        "\"Security\"; bus/PROTOCOL.md, \"Security\").\n",
                        argc, argv);
}
