#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_help(const char *prog, const tr_option *opts, int count, const char *about)
{
    printf("usage: %s [options]\n\n%s\n\noptions:\n", prog, about);
    for (int i = 0; i < count; i++) {
        char left[64];
        const tr_option *o = &opts[i];
        switch (o->type) {
        case TR_OPT_INT:
            snprintf(left, sizeof left, "--%s N", o->name);
            printf("  %-26s %s (default %lld)\n", left, o->help, (long long)*(int64_t *)o->value);
            break;
        case TR_OPT_FLOAT:
            snprintf(left, sizeof left, "--%s X", o->name);
            printf("  %-26s %s (default %g)\n", left, o->help, *(double *)o->value);
            break;
        case TR_OPT_STRING: {
            const char *v = *(const char **)o->value;
            snprintf(left, sizeof left, "--%s S", o->name);
            printf("  %-26s %s%s%s%s\n", left, o->help, v ? " (default " : "", v ? v : "",
                   v ? ")" : "");
            break;
        }
        case TR_OPT_FLAG:
            snprintf(left, sizeof left, "--%s", o->name);
            printf("  %-26s %s\n", left, o->help);
            break;
        }
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

static int set_value(const tr_option *o, const char *text)
{
    char *end = NULL;
    errno = 0;
    if (o->type == TR_OPT_INT) {
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end) {
            fprintf(stderr, "--%s: '%s' is not an integer\n", o->name, text);
            return -1;
        }
        *(int64_t *)o->value = v;
    } else if (o->type == TR_OPT_FLOAT) {
        double v = strtod(text, &end);
        if (errno || end == text || *end) {
            fprintf(stderr, "--%s: '%s' is not a number\n", o->name, text);
            return -1;
        }
        *(double *)o->value = v;
    } else {
        *(const char **)o->value = text;
    }
    return 0;
}

int tr_parse_options(int argc, char **argv, const tr_option *opts, int count, const char *about)
{
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(argv[0], opts, count, about);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", argv[0], arg);
            return -1;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const tr_option *o = NULL;
        for (int i = 0; i < count; i++)
            if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
                o = &opts[i];
        if (!o) {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", argv[0], arg);
            return -1;
        }
        if (o->type == TR_OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "%s: --%s takes no value\n", argv[0], o->name);
                return -1;
            }
            *(int *)o->value = 1;
            continue;
        }
        const char *text = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!text) {
            fprintf(stderr, "%s: --%s needs a value\n", argv[0], o->name);
            return -1;
        }
        if (set_value(o, text) != 0)
            return -1;
    }
    return 0;
}
