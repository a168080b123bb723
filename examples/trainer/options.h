/* Command-line options from a table: "--name value" or "--name=value",
 * "--help" prints the table with the current (default) values. */
#ifndef TR_OPTIONS_H
#define TR_OPTIONS_H

#include <stdint.h>

typedef enum { TR_OPT_INT, TR_OPT_FLOAT, TR_OPT_STRING, TR_OPT_FLAG } tr_opt_type;

typedef struct {
    const char *name; /* without the leading "--" */
    tr_opt_type type;
    void *value; /* int64_t *, double *, const char **, int * (flag: set to 1) */
    const char *help;
} tr_option;

/* Returns 0 to go on, 1 when --help was printed (exit 0), -1 after printing an
 * error to stderr (exit 2).  `about` is printed first by --help. */
int tr_parse_options(int argc, char **argv, const tr_option *opts, int count, const char *about);

#endif
