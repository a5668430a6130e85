/*
 * cli.h - the `ckpt` command-line tool: a table of subcommands (one file
 * each) sharing option parsing, store opening and output helpers. Uses only
 * the public header ckpt.h (plus SQLite, to query the documented views).
 */
#ifndef CKPT_CLI_H
#define CKPT_CLI_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

#include "ckpt.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct cli {
    const char *db_path;
    int json;
    int argc;
    char **argv; /* the subcommand's arguments, without global options */
} cli;

typedef struct command {
    const char *name;
    int (*fn)(cli *c);
    const char *usage;   /* one line of synopsis after "ckpt " */
    const char *summary; /* one line */
    const char *help;    /* details for --help */
    int open;            /* 0 none, 1 read-only, 2 read-write (creating), 3 read-write, must exist */
} command;

/* Opens the store as the command table says; prints the error and returns
 * NULL on failure. */
ckpt_store *cli_open(cli *c, int mode);

/* Reports a library failure: "ckpt CMD: message" on stderr; returns EXIT_FAIL. */
int cli_fail(const char *cmd, int rc);
/* Reports a usage error and returns EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...);

/* Strict number parsing: whole string, range-checked. 0 ok, -1 bad. */
int cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Option scanning: returns the index of the next positional argument, or
 * handles "--name value" pairs through the callback. */
typedef struct cli_opt {
    const char *name;   /* e.g. "--run" */
    int has_arg;
    const char **value; /* where to store the argument (or "1" for flags) */
} cli_opt;
/* Fills opts and positional (up to max_pos); returns the number of
 * positionals or -1 after printing a usage error. */
int cli_getopt(cli *c, const char *cmd, cli_opt *opts, const char **pos, int max_pos);

/* Output helpers. */
typedef struct table table;
table *table_new(int ncols, const char *const *headers, const char *right_aligned /* "lrr.." */);
void table_add(table *t, const char *const *cells);
void table_print(table *t, FILE *f);
void table_free(table *t);
void json_str(FILE *f, const char *s);
void fmt_bytes(uint64_t n, char *buf, size_t cap);
void fmt_time_us(int64_t us, char *buf, size_t cap);
void fmt_value(double v, char *buf, size_t cap);
/* A metric value as a JSON number (full precision; null if not finite). */
void fmt_json_value(double v, char *buf, size_t cap);
/* s as a JSON string, quotes included, into buf: cut short (never inside an
 * escape) to fit cap, always terminated. Returns the bytes written. */
size_t json_str_buf(char *buf, size_t cap, const char *s);

int cmd_init(cli *c);
int cmd_runs(cli *c);
int cmd_list(cli *c);
int cmd_show(cli *c);
int cmd_restore(cli *c);
int cmd_import(cli *c);
int cmd_metrics(cli *c);
int cmd_verify(cli *c);
int cmd_log(cli *c);
int cmd_prune(cli *c);
int cmd_gc(cli *c);

extern ckpt_store *cli_store;

#endif
