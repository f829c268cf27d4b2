/*
 * curve.c: CURVE security for the bus (PROTOCOL.md, "Security").
 *
 * Why our own ZAP handler rather than CZMQ's zauth: libzmq asks for
 * authentication on inproc://zeromq.zap.01 of the context the server socket
 * lives in, and every bus object has a context of its own, while zauth runs
 * on CZMQ's global context and would never be asked. So each context that
 * holds CURVE servers gets a small thread with a REP socket bound there,
 * answering RFC 27 requests from an allow-list of public keys.
 *
 * The allow-list is a directory of certificate files (zcert format). It is
 * re-read when its signature changes: the directory's mtime plus each file's
 * name, size and mtime (nanoseconds), computed on every ZAP request. A
 * handshake is rare (once per connection), so this costs a readdir per
 * connection and picks up a key added, removed or edited in place at once,
 * without a restart. We read the files with zcert_load but keep the keys
 * ourselves: zcertstore asserts (aborts) when two files hold the same key.
 *
 * A refused client sees nothing on its sockets (libzmq reconnects and tries
 * again forever), so clients watch their sockets with zmq_socket_monitor and
 * turn the handshake failure events into an error they can report.
 */
#include "curve.h"
#include "busmsg.h"

#include <czmq.h>
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_MAX_KEYS 100000u
#define ZAP_FRAME_MAX 256u /* longest request frame kept (the rest is cut) */
#define ZAP_FRAMES 7u      /* version, id, domain, address, identity, mechanism, key */
#ifdef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZAP_ENFORCE_DOMAIN ZMQ_ZAP_ENFORCE_DOMAIN
#else
#define ZAP_ENFORCE_DOMAIN 93 /* a draft option: zmq.h shows it only with the drafts */
#endif

int curve_available(evb_err *err)
{
    if (!zmq_has("curve"))
        return evb_err_set(err, EVB_EINVAL,
                           "this libzmq was built without CURVE (libsodium): no security");
    return EVB_OK;
}

static bool s_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0) return false;
    return true;
}

void evb_curve_keys_wipe(evb_curve_keys *k)
{
    if (k == NULL) return;
    explicit_bzero(k, sizeof *k);
}

/* Warn when the file holding the secret key can be read by others. */
static void s_check_mode(const char *cert_file)
{
    char sec[PATH_MAX];
    size_t n = strlen(cert_file);
    if (n >= 7 && strcmp(cert_file + n - 7, "_secret") == 0)
        snprintf(sec, sizeof sec, "%s", cert_file);
    else
        snprintf(sec, sizeof sec, "%s_secret", cert_file);
    struct stat st;
    if (stat(sec, &st) == 0 && (st.st_mode & 077) != 0)
        evb_log(EVB_LOG_WARN,
                "certificate %s holds a secret key and is readable by others (mode "
                "%04o): chmod 600 it",
                sec, (unsigned)(st.st_mode & 07777));
}

static bool s_is_z85_key(const char *s)
{
    if (strlen(s) != EVB_CURVE_KEY_LEN) return false;
    uint8_t bin[32];
    return zmq_z85_decode(bin, s) != NULL;
}

/* The value of `name = "VALUE"` in a certificate (ZPL) file's text: the
 * 40-character key copied into out, or false. */
static bool s_zpl_key(const char *text, const char *name, char out[EVB_CURVE_KEY_LEN + 1])
{
    size_t nl = strlen(name);
    for (const char *p = text; (p = strstr(p, name)) != NULL; p += nl) {
        if (p != text && p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n') continue;
        const char *q = p + nl;
        while (*q == ' ' || *q == '\t') q++;
        if (*q++ != '=') continue;
        while (*q == ' ' || *q == '\t') q++;
        if (*q++ != '"') continue;
        const char *end = strchr(q, '"');
        if (end == NULL || end - q != EVB_CURVE_KEY_LEN) return false;
        memcpy(out, q, EVB_CURVE_KEY_LEN);
        out[EVB_CURVE_KEY_LEN] = '\0';
        return s_is_z85_key(out);
    }
    return false;
}

int evb_curve_keys_load(const char *cert_file, evb_curve_keys *k, evb_err *err)
{
    memset(k, 0, sizeof *k);
    if (cert_file == NULL || cert_file[0] == '\0')
        return evb_err_set(err, EVB_EINVAL, "CURVE: a certificate file is required");
    int rc = curve_available(err);
    if (rc != EVB_OK) return rc;
    /* The secret is in NAME_secret (or the file itself when it is that one).
     * We read it ourselves rather than with zcert_load, whose copies of the
     * secret are freed without being wiped: ours (the file's text here, the
     * keys in k) are wiped. */
    char sec[PATH_MAX];
    snprintf(sec, sizeof sec, "%s_secret", cert_file);
    const char *path = access(sec, R_OK) == 0 ? sec : cert_file;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return evb_err_set(err, EVB_EINVAL, "certificate %s: %s", cert_file,
                           strerror(errno));
    char text[8192];
    ssize_t n = read(fd, text, sizeof text - 1);
    int read_errno = errno;
    close(fd);
    if (n < 0) {
        explicit_bzero(text, sizeof text);
        return evb_err_set(err, EVB_EINVAL, "certificate %s: %s", path,
                           strerror(read_errno));
    }
    text[n] = '\0';
    bool have_pub = s_zpl_key(text, "public-key", k->pub);
    bool have_sec = s_zpl_key(text, "secret-key", k->sec);
    explicit_bzero(text, sizeof text);
    if (!have_pub) {
        evb_curve_keys_wipe(k);
        return evb_err_set(err, EVB_EINVAL,
                           "certificate %s: not a certificate (make one with `evbus cert "
                           "new`)",
                           path);
    }
    uint8_t bin[32];
    if (!have_sec || zmq_z85_decode(bin, k->sec) == NULL || s_all_zero(bin, 32)) {
        explicit_bzero(bin, sizeof bin);
        evb_curve_keys_wipe(k);
        return evb_err_set(err, EVB_EINVAL,
                           "certificate %s holds no secret key: give the NAME_secret file",
                           cert_file);
    }
    explicit_bzero(bin, sizeof bin);
    k->on = true;
    s_check_mode(cert_file);
    return EVB_OK;
}

int evb_curve_server_key(const char *v, char out[EVB_CURVE_Z85], evb_err *err)
{
    out[0] = '\0';
    if (v == NULL || v[0] == '\0')
        return evb_err_set(err, EVB_EINVAL, "CURVE: the server's public key is required");
    struct stat st;
    if (s_is_z85_key(v) && stat(v, &st) != 0) {
        memcpy(out, v, EVB_CURVE_Z85);
        return EVB_OK;
    }
    if (stat(v, &st) != 0)
        return evb_err_set(err, EVB_EINVAL,
                           "server key '%.60s': neither 40 Z85 characters nor a "
                           "certificate file (%s)",
                           v, strerror(errno));
    zcert_t *c = zcert_load(v);
    if (c == NULL || s_all_zero(zcert_public_key(c), 32)) {
        zcert_destroy(&c);
        return evb_err_set(err, EVB_EINVAL, "server key file %s: not a certificate", v);
    }
    snprintf(out, EVB_CURVE_Z85, "%s", zcert_public_txt(c));
    zcert_destroy(&c);
    return EVB_OK;
}

static int s_opt(void *sock, int opt, const void *v, size_t n, const char *what,
                 evb_err *err)
{
    if (zmq_setsockopt(sock, opt, v, n) != 0)
        return evb_err_set(err, EVB_EIO, "CURVE: cannot set %s: %s", what,
                           zmq_strerror(errno));
    return EVB_OK;
}

int curve_make_server(void *sock, const evb_curve_keys *k, evb_err *err)
{
    int one = 1;
    int rc = s_opt(sock, ZMQ_CURVE_SERVER, &one, sizeof one, "the server role", err);
    if (rc == EVB_OK)
        rc = s_opt(sock, ZMQ_CURVE_SECRETKEY, k->sec, EVB_CURVE_KEY_LEN, "the secret key",
                   err);
    /* A domain makes libzmq ask our ZAP handler. It does not make libzmq
     * insist: with no handler bound in the context (its thread ended, or not
     * started yet), libzmq 4.3 lets every CURVE client in ("Stonehouse")
     * unless ZMQ_ZAP_ENFORCE_DOMAIN is set; then the handshake fails. That
     * option is a draft one; a libzmq without it still has our handler, so
     * its absence is only logged. */
    if (rc == EVB_OK) rc = s_opt(sock, ZMQ_ZAP_DOMAIN, "evbus", 5, "the ZAP domain", err);
    if (rc == EVB_OK && zmq_setsockopt(sock, ZAP_ENFORCE_DOMAIN, &one, sizeof one) != 0)
        evb_log(EVB_LOG_WARN,
                "CURVE: this libzmq cannot enforce the ZAP domain (%s): clients are "
                "checked only while the ZAP handler runs",
                zmq_strerror(errno));
    return rc;
}

int evb_curve_make_client(void *sock, const evb_curve_keys *k, const char *server_key,
                          evb_err *err)
{
    int rc = s_opt(sock, ZMQ_CURVE_SERVERKEY, server_key, EVB_CURVE_KEY_LEN,
                   "the server key", err);
    if (rc == EVB_OK)
        rc = s_opt(sock, ZMQ_CURVE_PUBLICKEY, k->pub, EVB_CURVE_KEY_LEN, "our public key",
                   err);
    if (rc == EVB_OK)
        rc = s_opt(sock, ZMQ_CURVE_SECRETKEY, k->sec, EVB_CURVE_KEY_LEN, "our secret key",
                   err);
    /* A refused client reconnects by itself; no faster than once a second
     * after the first tries, so it does not hammer the server. */
    int max_ivl = 1000;
    if (rc == EVB_OK)
        rc = s_opt(sock, ZMQ_RECONNECT_IVL_MAX, &max_ivl, sizeof max_ivl,
                   "the reconnect interval", err);
    return rc;
}

/* ---- ZAP handler ---- */

struct curve_zap {
    void *rep;      /* bound to ZAP_ENDPOINT; used by the thread */
    void *ctl;      /* owner's end of the stop pipe */
    void *ctl_peer; /* the thread's end */
    pthread_t thread;
    bool running;
    char dir[PATH_MAX];
    char who[2 * EVB_BUS_MAX_ENDPOINT + EVB_MAX_SERVICE_LEN + 32];
    char own[EVB_CURVE_Z85];
    char (*keys)[EVB_CURVE_Z85];
    size_t nkeys;
    uint64_t sig;
    bool have_sig;
    bm_ratelog refused_log; /* "refused client" lines */
    atomic_uint_least64_t refused;
};

static uint64_t s_mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool s_skip_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] == '.' || (n >= 7 && strcmp(name + n - 7, "_secret") == 0);
}

/* The directory's signature: changes when a file is added, removed, renamed
 * or rewritten. Files are summed, so readdir's order does not matter. */
static bool s_dir_sig(const char *dir, uint64_t *sig)
{
    struct stat st;
    if (stat(dir, &st) != 0) return false;
    uint64_t h = s_mix(1469598103934665603ull, &st.st_mtim, sizeof st.st_mtim);
    DIR *d = opendir(dir);
    if (d == NULL) return false;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (s_skip_name(e->d_name)) continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path)
            continue;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        uint64_t f = s_mix(1469598103934665603ull, e->d_name, strlen(e->d_name));
        f = s_mix(f, &st.st_size, sizeof st.st_size);
        f = s_mix(f, &st.st_mtim, sizeof st.st_mtim);
        h += f;
    }
    closedir(d);
    *sig = h;
    return true;
}

/* Read every certificate of the directory into a new key list. */
static int s_reload(curve_zap *z, evb_err *err)
{
    DIR *d = opendir(z->dir);
    if (d == NULL)
        return evb_err_set(err, EVB_EINVAL, "allow-list %s: %s", z->dir, strerror(errno));
    char(*keys)[EVB_CURVE_Z85] = NULL;
    size_t n = 0, cap = 0, bad = 0;
    struct dirent *e;
    char path[PATH_MAX];
    struct stat st;
    while ((e = readdir(d)) != NULL) {
        if (s_skip_name(e->d_name)) continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", z->dir, e->d_name) >= sizeof path)
            continue;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        zcert_t *c = zcert_load(path);
        if (c == NULL || s_all_zero(zcert_public_key(c), 32)) {
            zcert_destroy(&c);
            bad++;
            continue;
        }
        if (n == cap && n < ZAP_MAX_KEYS) {
            size_t nc = cap ? cap * 2 : 16;
            void *nk = realloc(keys, nc * sizeof *keys);
            if (nk != NULL) {
                keys = nk;
                cap = nc;
            }
        }
        if (n < cap) snprintf(keys[n++], EVB_CURVE_Z85, "%s", zcert_public_txt(c));
        zcert_destroy(&c);
    }
    closedir(d);
    free(z->keys);
    z->keys = keys;
    z->nkeys = n;
    if (bad > 0)
        evb_log(EVB_LOG_WARN, "%s: allow-list %s: %zu file(s) are not certificates, ignored",
                z->who, z->dir, bad);
    return EVB_OK;
}

static void s_refresh(curve_zap *z)
{
    uint64_t sig;
    if (!s_dir_sig(z->dir, &sig)) {
        if (z->nkeys > 0 || !z->have_sig)
            evb_log(EVB_LOG_WARN, "%s: allow-list %s cannot be read (%s): refusing every "
                                  "client but ourselves",
                    z->who, z->dir, strerror(errno));
        free(z->keys);
        z->keys = NULL;
        z->nkeys = 0;
        z->have_sig = true;
        z->sig = 0;
        return;
    }
    if (z->have_sig && sig == z->sig) return;
    evb_err err = {0};
    bool first = !z->have_sig;
    if (s_reload(z, &err) != EVB_OK) {
        evb_log(EVB_LOG_WARN, "%s: %s", z->who, err.msg);
        return;
    }
    z->sig = sig;
    z->have_sig = true;
    if (!first)
        evb_log(EVB_LOG_INFO, "%s: allow-list %s re-read: %zu key(s)", z->who, z->dir,
                z->nkeys);
}

static bool s_allowed(curve_zap *z, const char *key)
{
    if (strcmp(key, z->own) == 0) return true;
    s_refresh(z);
    for (size_t i = 0; i < z->nkeys; i++)
        if (strcmp(z->keys[i], key) == 0) return true;
    return false;
}

static void s_send_frame(void *s, const void *p, size_t n, bool more)
{
    zmq_send(s, p, n, more ? ZMQ_SNDMORE : 0);
}

/* Answer one request: [version, request id, domain, address, identity,
 * mechanism, credentials...] -> [version, request id, status code, status
 * text, user id, metadata]. Returns false when the context is ending. */
static bool s_answer(curve_zap *z)
{
    char fr[ZAP_FRAMES][ZAP_FRAME_MAX];
    size_t fl[ZAP_FRAMES] = {0};
    size_t nf = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->rep, 0) < 0) {
            zmq_msg_close(&m);
            if (errno == EINTR && nf == 0) return true;
            return false;
        }
        if (nf < ZAP_FRAMES) {
            size_t n = zmq_msg_size(&m);
            fl[nf] = n < ZAP_FRAME_MAX - 1 ? n : ZAP_FRAME_MAX - 1;
            memcpy(fr[nf], zmq_msg_data(&m), fl[nf]);
            fr[nf][fl[nf]] = '\0';
            if (n != fl[nf]) fl[nf] = n; /* too long: kept cut, length says so */
        }
        nf++;
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    const char *status = "400", *text = "not allowed";
    char key[EVB_CURVE_Z85] = "";
    bool ok_shape = nf >= 6 && strcmp(fr[0], "1.0") == 0 && fl[1] < ZAP_FRAME_MAX;
    if (!ok_shape) {
        status = "500";
        text = "malformed ZAP request";
    } else if (strcmp(fr[5], "CURVE") != 0 || nf < 7 || fl[6] != 32) {
        text = "CURVE only";
    } else {
        zmq_z85_encode(key, (const uint8_t *)fr[6], 32);
        if (s_allowed(z, key)) {
            status = "200";
            text = "OK";
        }
    }
    if (strcmp(status, "200") != 0) {
        atomic_fetch_add(&z->refused, 1);
        uint64_t skipped;
        if (bm_ratelog_ok(&z->refused_log, &skipped)) {
            char more_txt[64] = "";
            if (skipped > 0)
                snprintf(more_txt, sizeof more_txt, " (and %llu more refusals)",
                         (unsigned long long)skipped);
            if (key[0])
                evb_log(EVB_LOG_WARN, "%s: refused client %s from %s (not in allow-list %s)%s",
                        z->who, key, ok_shape ? fr[3] : "?", z->dir, more_txt);
            else
                evb_log(EVB_LOG_WARN, "%s: refused a client from %s (%s)%s", z->who,
                        ok_shape ? fr[3] : "?", text, more_txt);
        }
    }
    s_send_frame(z->rep, "1.0", 3, true);
    s_send_frame(z->rep, ok_shape ? fr[1] : "", ok_shape ? fl[1] : 0, true);
    s_send_frame(z->rep, status, 3, true);
    s_send_frame(z->rep, text, strlen(text), true);
    s_send_frame(z->rep, key, strlen(key), true); /* user id: the client's key */
    s_send_frame(z->rep, "", 0, false);
    return true;
}

static void *s_zap_main(void *arg)
{
    curve_zap *z = arg;
    for (;;) {
        zmq_pollitem_t items[2] = {{z->rep, 0, ZMQ_POLLIN, 0},
                                   {z->ctl_peer, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, 2, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) break;
        if ((items[0].revents & ZMQ_POLLIN) && !s_answer(z)) break;
    }
    zmq_close(z->rep);
    zmq_close(z->ctl_peer);
    z->rep = z->ctl_peer = NULL;
    return NULL;
}

curve_zap *curve_zap_start(void *zctx, const char *allow_dir, const char *own_pub,
                           const char *who, evb_err *err)
{
    if (allow_dir == NULL || allow_dir[0] == '\0') {
        evb_err_set(err, EVB_EINVAL, "%s: a CURVE server needs an allow-list directory",
                    who);
        return NULL;
    }
    struct stat st;
    if (stat(allow_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        evb_err_set(err, EVB_EINVAL, "%s: allow-list %s is not a directory", who,
                    allow_dir);
        return NULL;
    }
    curve_zap *z = calloc(1, sizeof *z);
    if (z == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(z->dir, sizeof z->dir, "%s", allow_dir);
    snprintf(z->who, sizeof z->who, "%s", who);
    snprintf(z->own, sizeof z->own, "%s", own_pub);
    atomic_init(&z->refused, 0);
    s_refresh(z);
    int zero = 0;
    char ctl_ep[64];
    snprintf(ctl_ep, sizeof ctl_ep, "inproc://evb-zap-ctl-%p", (void *)z);
    z->rep = zmq_socket(zctx, ZMQ_REP);
    z->ctl = zmq_socket(zctx, ZMQ_PAIR);
    z->ctl_peer = zmq_socket(zctx, ZMQ_PAIR);
    if (z->rep == NULL || z->ctl == NULL || z->ctl_peer == NULL) {
        evb_err_set(err, EVB_EIO, "%s: ZAP handler: %s", who, zmq_strerror(errno));
        goto fail;
    }
    zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(z->ctl, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(z->ctl_peer, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(z->rep, ZAP_ENDPOINT) != 0) {
        evb_err_set(err, EVB_EIO, "%s: cannot start the ZAP handler: %s", who,
                    zmq_strerror(errno));
        goto fail;
    }
    if (zmq_bind(z->ctl, ctl_ep) != 0 || zmq_connect(z->ctl_peer, ctl_ep) != 0) {
        evb_err_set(err, EVB_EIO, "%s: ZAP handler pipe: %s", who, zmq_strerror(errno));
        goto fail;
    }
    /* The sockets were made here; pthread_create is the memory barrier
     * libzmq asks for when a socket moves to another thread. */
    if (pthread_create(&z->thread, NULL, s_zap_main, z) != 0) {
        evb_err_set(err, EVB_EIO, "%s: cannot start the ZAP thread", who);
        goto fail;
    }
    z->running = true;
    evb_log(EVB_LOG_INFO, "%s: CURVE on, allow-list %s (%zu key(s))", who, z->dir,
            z->nkeys);
    return z;
fail:
    if (z->rep) zmq_close(z->rep);
    if (z->ctl_peer) zmq_close(z->ctl_peer);
    z->rep = z->ctl_peer = NULL;
    curve_zap_stop(&z);
    return NULL;
}

void curve_zap_stop(curve_zap **zp)
{
    if (zp == NULL || *zp == NULL) return;
    curve_zap *z = *zp;
    if (z->running) {
        /* DONTWAIT: a thread that ended already (its end of the pipe is
         * closed) would leave a blocking send waiting forever. */
        zmq_send(z->ctl, "", 0, ZMQ_DONTWAIT);
        pthread_join(z->thread, NULL);
    }
    if (z->ctl) zmq_close(z->ctl);
    free(z->keys);
    free(z);
    *zp = NULL;
}

uint64_t curve_zap_refused(const curve_zap *z)
{
    return z ? atomic_load(&((curve_zap *)z)->refused) : 0;
}

/* ---- monitor ---- */

struct evb_curve_mon {
    void *pair;
    void *sock;
    bool curve;
    char pub[EVB_CURVE_Z85];
};

evb_curve_mon *curve_mon_new(void *zctx, void *sock, const evb_curve_keys *k,
                             evb_err *err)
{
    evb_curve_mon *m = calloc(1, sizeof *m);
    if (m == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    m->sock = sock;
    m->curve = k != NULL && k->on;
    if (m->curve) memcpy(m->pub, k->pub, sizeof m->pub);
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://evb-mon-%p", sock);
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    if (zmq_socket_monitor(sock, ep, events) != 0) {
        evb_err_set(err, EVB_EIO, "socket monitor: %s", zmq_strerror(errno));
        free(m);
        return NULL;
    }
    m->pair = zmq_socket(zctx, ZMQ_PAIR);
    int zero = 0;
    if (m->pair == NULL || zmq_setsockopt(m->pair, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_connect(m->pair, ep) != 0) {
        evb_err_set(err, EVB_EIO, "socket monitor: %s", zmq_strerror(errno));
        curve_mon_destroy(&m);
        return NULL;
    }
    return m;
}

void curve_mon_destroy(evb_curve_mon **mp)
{
    if (mp == NULL || *mp == NULL) return;
    evb_curve_mon *m = *mp;
    if (m->sock) zmq_socket_monitor(m->sock, NULL, 0);
    if (m->pair) zmq_close(m->pair);
    free(m);
    *mp = NULL;
}

void *curve_mon_socket(evb_curve_mon *m)
{
    return m->pair;
}

/* The meaning of one event for this client, or EVB_CURVE_EV_NONE. */
static evb_curve_ev s_event(const evb_curve_mon *m, uint16_t event, uint32_t value,
                            const char *ep, char *why, size_t cap)
{
    switch (event) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        return EVB_CURVE_EV_OK;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        snprintf(why, cap,
                 "handshake refused by %s: our key %s is not in its allow-list "
                 "(ZAP status %u)",
                 ep, m->curve ? m->pub : "(none: plain)", (unsigned)value);
        return EVB_CURVE_EV_REFUSED;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
            if (m->curve)
                snprintf(why, cap, "handshake refused by %s: it does not use CURVE", ep);
            else
                snprintf(why, cap,
                         "handshake refused by %s: it requires CURVE (give a certificate "
                         "and its public key)",
                         ep);
            return EVB_CURVE_EV_REFUSED;
        }
        if (!m->curve) return EVB_CURVE_EV_NONE; /* not about security */
        snprintf(why, cap,
                 "CURVE handshake with %s failed (protocol error 0x%x): wrong server "
                 "key?",
                 ep, (unsigned)value);
        return EVB_CURVE_EV_FAILED;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        if (!m->curve) return EVB_CURVE_EV_NONE;
        snprintf(why, cap,
                 "CURVE handshake with %s failed: the server closed the connection "
                 "(wrong server key?)",
                 ep);
        return EVB_CURVE_EV_FAILED;
    default:
        return EVB_CURVE_EV_NONE;
    }
}

evb_curve_ev curve_mon_read(evb_curve_mon *m, char *why, size_t cap, uint64_t *refusals)
{
    evb_curve_ev last = EVB_CURVE_EV_NONE;
    char buf[512];
    for (int k = 0; k < 256; k++) {
        zmq_msg_t a;
        zmq_msg_init(&a);
        if (zmq_msg_recv(&a, m->pair, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&a);
            break;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&a) >= 6) {
            memcpy(&event, zmq_msg_data(&a), 2);
            memcpy(&value, (const char *)zmq_msg_data(&a) + 2, 4);
        }
        bool more = zmq_msg_more(&a);
        zmq_msg_close(&a);
        char ep[EVB_BUS_MAX_ENDPOINT] = "?";
        for (int part = 0; more; part++) {
            zmq_msg_t b;
            zmq_msg_init(&b);
            if (zmq_msg_recv(&b, m->pair, 0) < 0) {
                zmq_msg_close(&b);
                break;
            }
            if (part == 0) {
                size_t n = zmq_msg_size(&b) < sizeof ep - 1 ? zmq_msg_size(&b)
                                                           : sizeof ep - 1;
                memcpy(ep, zmq_msg_data(&b), n);
                ep[n] = '\0';
            }
            more = zmq_msg_more(&b);
            zmq_msg_close(&b);
        }
        evb_curve_ev ev = s_event(m, event, value, ep, buf, sizeof buf);
        if (ev == EVB_CURVE_EV_NONE) continue;
        last = ev;
        if (ev != EVB_CURVE_EV_OK) {
            if (refusals) (*refusals)++;
            if (why && cap) snprintf(why, cap, "%s", buf);
        }
    }
    return last;
}

/* ---- certificates ---- */

static bool s_cert_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 64 || n[0] == '.' || n[0] == '-') return false;
    if (len >= 7 && strcmp(n + len - 7, "_secret") == 0) return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '@' || c == '-'))
            return false;
    }
    return true;
}

int evb_curve_cert_new(const char *dir, const char *name, char *public_key, evb_err *err)
{
    if (dir == NULL || name == NULL || !s_cert_name_ok(name))
        return evb_err_set(err, EVB_EINVAL,
                           "certificate name '%.80s': 1..64 of [A-Za-z0-9_.@-], not "
                           "starting with '.' or '-', not ending in _secret",
                           name ? name : "");
    int rc = curve_available(err);
    if (rc != EVB_OK) return rc;
    char pub[PATH_MAX], sec[PATH_MAX];
    if ((size_t)snprintf(sec, sizeof sec, "%s/%s_secret", dir, name) >= sizeof sec)
        return evb_err_set(err, EVB_EINVAL, "certificate path too long");
    snprintf(pub, sizeof pub, "%s/%s", dir, name);
    struct stat st;
    if (stat(pub, &st) == 0)
        return evb_err_set(err, EVB_EINVAL, "%s exists: not overwriting a certificate", pub);
    /* The secret file is made here with mode 0600 before anything is
     * written to it; zcert then rewrites it in place. */
    int fd = open(sec, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return evb_err_set(err, errno == EEXIST ? EVB_EINVAL : EVB_EIO, "%s: %s", sec,
                           errno == EEXIST ? "exists: not overwriting a certificate"
                                           : strerror(errno));
    bool ok = fchmod(fd, 0600) == 0;
    close(fd);
    zcert_t *c = ok ? zcert_new() : NULL;
    if (c != NULL) {
        zcert_set_meta(c, "name", "%s", name);
        zcert_set_meta(c, "created-by", "evbus cert new");
        /* zcert_save_secret sets the umask to 077 and then to 022; put the
         * process's own back. */
        mode_t old = umask(077);
        ok = zcert_save_secret(c, sec) == 0;
        umask(old);
        ok = ok && chmod(sec, 0600) == 0 && zcert_save_public(c, pub) == 0;
        if (ok && public_key != NULL)
            snprintf(public_key, EVB_CURVE_Z85, "%s", zcert_public_txt(c));
        zcert_destroy(&c);
    } else {
        ok = false;
    }
    if (!ok) {
        int e = errno;
        unlink(sec);
        unlink(pub);
        return evb_err_set(err, EVB_EIO, "cannot write certificate %s: %s", pub,
                           strerror(e));
    }
    return EVB_OK;
}

int evb_curve_public_key(const char *cert_file, char *public_key, evb_err *err)
{
    public_key[0] = '\0';
    int rc = curve_available(err);
    if (rc != EVB_OK) return rc;
    struct stat st;
    if (cert_file == NULL || stat(cert_file, &st) != 0)
        return evb_err_set(err, EVB_EINVAL, "certificate %s: %s",
                           cert_file ? cert_file : "(none)", strerror(errno));
    zcert_t *c = zcert_load(cert_file);
    if (c == NULL || s_all_zero(zcert_public_key(c), 32)) {
        zcert_destroy(&c);
        return evb_err_set(err, EVB_EINVAL, "%s: not a certificate", cert_file);
    }
    snprintf(public_key, EVB_CURVE_Z85, "%s", zcert_public_txt(c));
    zcert_destroy(&c);
    return EVB_OK;
}

/* ---- links ---- */

int evb_curve_link_open(evb_curve_link *l, void *zctx, void *sock, const char *ep,
                        const evb_curve_keys *k, evb_err *err)
{
    memset(l, 0, sizeof *l);
    l->sock = sock;
    snprintf(l->ep, sizeof l->ep, "%s", ep);
    l->mon = curve_mon_new(zctx, sock, k, err);
    return l->mon ? EVB_OK : (err ? err->code : EVB_EIO);
}

void evb_curve_link_close(evb_curve_link *l)
{
    curve_mon_destroy(&l->mon);
}

void evb_curve_link_retry(evb_curve_link *l)
{
    /* The refused connection is gone already; disconnect drops what is left
     * of it (a pending reconnect) so the endpoint is connected once. */
    zmq_disconnect(l->sock, l->ep);
    zmq_connect(l->sock, l->ep);
    l->retry_us = 0;
}

evb_curve_ev evb_curve_link_check(evb_curve_link *l, int64_t now_us)
{
    if (l->mon == NULL) return EVB_CURVE_EV_NONE;
    char why[sizeof l->why];
    evb_curve_ev ev = curve_mon_read(l->mon, why, sizeof why, &l->failures);
    evb_curve_ev change = EVB_CURVE_EV_NONE;
    if (ev == EVB_CURVE_EV_OK) {
        if (l->bad) change = EVB_CURVE_EV_OK;
        l->bad = false;
        l->why[0] = '\0';
        l->backoff_ms = 0;
        l->retry_us = 0;
    } else if (ev != EVB_CURVE_EV_NONE) {
        if (!l->bad || strcmp(why, l->why) != 0) change = ev;
        l->bad = true;
        memcpy(l->why, why, sizeof why);
        l->backoff_ms = l->backoff_ms == 0 ? 1000 : l->backoff_ms >= 4000 ? 8000
                                                                          : l->backoff_ms * 2;
        l->retry_us = now_us + (int64_t)l->backoff_ms * 1000;
    }
    if (l->retry_us != 0 && now_us >= l->retry_us) evb_curve_link_retry(l);
    return change;
}
