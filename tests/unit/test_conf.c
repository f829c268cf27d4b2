/*
 * test_conf: the config-file reader (evbus_conf.h) through its public
 * header: values as the grammar says (services/README.md, "Config files"),
 * and each refusal with its FILE:LINE text. Files are written under
 * EVB_TEST_TMP (or /tmp). tests/integration/test_config.py drives the same
 * rules through the programs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <evbus/evbus_conf.h>

static const evb_conf_key s_keys[] = {
    {"store", false}, {"log-level", false}, {"follow", true}, {"cmd", false}, {"x", false}};
#define NKEYS (sizeof s_keys / sizeof s_keys[0])

static char s_path[512];

/* Write n bytes of text to the test's file; returns its path. */
static const char *s_file(const char *text, size_t n)
{
    const char *tmp = getenv("EVB_TEST_TMP");
    snprintf(s_path, sizeof s_path, "%s/test_conf.%d.conf", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    FILE *f = fopen(s_path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return s_path;
}

static evb_conf_t *s_read(const char *text, evb_err *err)
{
    return evb_conf_read(s_file(text, strlen(text)), s_keys, NKEYS, err);
}

/* text is refused with "PATH:" + tail as the message. */
static void s_refused(const char *text, const char *tail)
{
    evb_err err = {0};
    evb_conf_t *c = s_read(text, &err);
    assert_null(c);
    assert_int_equal(err.code, EVB_EINVAL);
    char want[1024];
    snprintf(want, sizeof want, "%s:%s", s_path, tail);
    assert_string_equal(err.msg, want);
}

static void test_values(void **state)
{
    (void)state;
    evb_err err = {0};
    evb_conf_t *c = s_read("# comment\n\n  \t# indented\r\n"
                           "store = /var/lib/x # the store\r\n"
                           "  log-level\t=\tdebug   \n"
                           "follow = a#b,c\n"
                           "follow = \"q \\\"x\\\" \\\\ \\n\\t # in\"  # out\n"
                           "cmd = 'lit \\n # \"'\n"
                           "x = a=b",
                           &err);
    assert_non_null(c);
    assert_int_equal(evb_conf_count(c), 6);
    static const struct {
        const char *name, *value;
        unsigned line;
    } want[] = {{"store", "/var/lib/x", 4}, {"log-level", "debug", 5},
                {"follow", "a#b,c", 6},     {"follow", "q \"x\" \\ \n\t # in", 7},
                {"cmd", "lit \\n # \"", 8}, {"x", "a=b", 9}};
    for (size_t i = 0; i < 6; i++) {
        const evb_conf_entry *e = evb_conf_get(c, i);
        assert_string_equal(e->name, want[i].name);
        assert_string_equal(e->value, want[i].value);
        assert_int_equal(e->line, want[i].line);
    }
    assert_null(evb_conf_get(c, 6));
    assert_string_equal(evb_conf_path(c), s_path);
    evb_conf_destroy(&c);
    assert_null(c);
    evb_conf_destroy(&c); /* again: harmless */
    evb_conf_destroy(NULL);
}

static void test_empty_quoted_value(void **state)
{
    (void)state;
    evb_conf_t *c = s_read("store = \"\"\ncmd = ''  # empty\n", NULL);
    assert_non_null(c);
    assert_int_equal(evb_conf_count(c), 2);
    assert_string_equal(evb_conf_get(c, 0)->value, "");
    assert_string_equal(evb_conf_get(c, 1)->value, "");
    evb_conf_destroy(&c);
    c = s_read("", NULL); /* an empty file: no settings */
    assert_non_null(c);
    assert_int_equal(evb_conf_count(c), 0);
    evb_conf_destroy(&c);
}

static void test_refusals(void **state)
{
    (void)state;
    s_refused("log_levle = debug\n",
              "1: unknown setting 'log_levle' (did you mean 'log-level'?)");
    s_refused("# c\nfolow = a,b\n", "2: unknown setting 'folow' (did you mean 'follow'?)");
    s_refused("stor = a\n", "1: unknown setting 'stor' (did you mean 'store'?)");
    s_refused("qqqqqq = 1\n", "1: unknown setting 'qqqqqq'");
    s_refused("store /x\n", "1: expected 'name = value', got 'store /x'");
    s_refused("= x\n", "1: expected 'name = value', got '= x'");
    s_refused("[section]\n", "1: expected 'name = value', got '[section]'");
    s_refused("store =\n", "1: --store: no value (write \"\" for an empty one)");
    s_refused("store = # none\n", "1: --store: no value (write \"\" for an empty one)");
    s_refused("store = \"a\" b\n", "1: --store: text after the closing quote");
    s_refused("store = 'a'b\n", "1: --store: text after the closing quote");
    s_refused("store = \"a\n", "1: --store: no closing '\"'");
    s_refused("store = 'a\n", "1: --store: no closing \"'\"");
    s_refused("store = \"a\\qb\"\n",
              "1: --store: unknown escape in \"...\" (known: \\\" \\\\ \\n \\t; '...' keeps "
              "every character)");
    s_refused("store = a\nlog-level = info\nstore = b\n",
              "3: 'store' is already set on line 1 (only a repeatable setting may be given "
              "twice)");
}

static void test_long_line_and_nul(void **state)
{
    (void)state;
    size_t n = EVB_CONF_MAX_LINE + 10;
    char *text = malloc(n + 16);
    assert_non_null(text);
    memcpy(text, "store = ", 8);
    memset(text + 8, 'a', n - 8);
    memcpy(text + n, "\n", 2);
    evb_err err = {0};
    evb_conf_t *c = evb_conf_read(s_file(text, strlen(text)), s_keys, NKEYS, &err);
    assert_null(c);
    char want[600];
    snprintf(want, sizeof want, "%s:1: line longer than %u bytes", s_path, EVB_CONF_MAX_LINE);
    assert_string_equal(err.msg, want);
    /* exactly the limit, with a CRLF end, is fine */
    memset(text + 8, 'a', EVB_CONF_MAX_LINE - 8);
    memcpy(text + EVB_CONF_MAX_LINE, "\r\n", 3);
    c = evb_conf_read(s_file(text, strlen(text)), s_keys, NKEYS, &err);
    assert_non_null(c);
    assert_int_equal(strlen(evb_conf_get(c, 0)->value), EVB_CONF_MAX_LINE - 8);
    evb_conf_destroy(&c);
    free(text);
    c = evb_conf_read(s_file("store = a\0b\n", 12), s_keys, NKEYS, &err);
    assert_null(c);
    snprintf(want, sizeof want, "%s:1: a NUL byte (not a text file?)", s_path);
    assert_string_equal(err.msg, want);
}

static void test_too_many(void **state)
{
    (void)state;
    size_t cap = (EVB_CONF_MAX_ENTRIES + 1) * 16 + 1, used = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (unsigned i = 0; i <= EVB_CONF_MAX_ENTRIES; i++)
        used += (size_t)snprintf(text + used, cap - used, "follow = a,b\n");
    evb_err err = {0};
    assert_null(evb_conf_read(s_file(text, used), s_keys, NKEYS, &err));
    char want[600];
    snprintf(want, sizeof want, "%s:%u: more than %u settings", s_path,
             EVB_CONF_MAX_ENTRIES + 1, EVB_CONF_MAX_ENTRIES);
    assert_string_equal(err.msg, want);
    free(text);
}

static void test_unreadable(void **state)
{
    (void)state;
    evb_err err = {0};
    assert_null(evb_conf_read("/nonexistent/evbus.conf", s_keys, NKEYS, &err));
    assert_int_equal(err.code, EVB_EIO);
    assert_string_equal(err.msg, "cannot read /nonexistent/evbus.conf: No such file or "
                                 "directory");
    assert_null(evb_conf_read("/", s_keys, NKEYS, &err));
    assert_int_equal(err.code, EVB_EIO);
    assert_string_equal(err.msg, "cannot read /: Is a directory");
}

static void test_nearest_and_bool(void **state)
{
    (void)state;
    assert_string_equal(evb_conf_nearest("log-levle", s_keys, NKEYS), "log-level");
    assert_string_equal(evb_conf_nearest("fol", s_keys, NKEYS), "follow");
    assert_null(evb_conf_nearest("zz", s_keys, NKEYS));
    assert_null(evb_conf_nearest("sto_e_", s_keys, NKEYS)); /* 2 edits, "store" short */
    bool b = false;
    assert_int_equal(evb_conf_bool("YES", &b), EVB_OK);
    assert_true(b);
    assert_int_equal(evb_conf_bool("off", &b), EVB_OK);
    assert_false(b);
    assert_int_equal(evb_conf_bool("1", &b), EVB_OK);
    assert_true(b);
    assert_int_equal(evb_conf_bool("maybe", &b), EVB_EINVAL);
    assert_true(b); /* untouched */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),      cmocka_unit_test(test_empty_quoted_value),
        cmocka_unit_test(test_refusals),    cmocka_unit_test(test_long_line_and_nul),
        cmocka_unit_test(test_too_many),    cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_nearest_and_bool),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(s_path);
    return rc;
}
