/* The dptrain command: shared option handling and output helpers. Only src/cli/ prints
 * or exits. */
#ifndef DPT_CLI_H
#define DPT_CLI_H

#include "dptrain.h"

/* Everything a subcommand can be told. */
typedef struct cli {
    dpt_config cfg;
    const char *data;       /* --data DIR */
    const char *save, *resume, *log, *json, *config, *model, *grid, *table;
    int quiet;
    int count;              /* predict --count */
    char threads_list[256]; /* bench --threads 1,2,4 */
    int steps;              /* bench --steps */
    int warmup;
    const char *vary[2];    /* sweep --vary NAME=v1,v2 (up to two) */
    int nvary;
    size_t stop_after;      /* --stop-after N (hidden; simulates an interruption) */
} cli;

/* Prints "dptrain: error: <msg>" to stderr and returns the exit status for code. */
int cli_fail(const dpt_error *err);
int cli_failf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The start every subcommand shares: for --help/-h prints `help` and sets *done;
 * else resets c to the defaults and parses argv (see cli_parse). Returns 0, or the
 * exit status after printing the error. */
int cli_begin(cli *c, int argc, char **argv, const char *help, const char *allowed,
              int *done);

/* Option parsing. `allowed` is a space-separated list of the long names a subcommand
 * takes; --config FILE is read first, then the command line overrides it. */
int cli_parse(cli *c, int argc, char **argv, const char *allowed, dpt_error *err);
int cli_set(cli *c, const char *name, const char *value, const char *where, dpt_error *err);
int cli_is_flag(const char *name); /* options that take no value */
/* Whether name is one of the space-separated words of list. */
int cli_word_in(const char *list, const char *name);

/* Loads DIR's training (which = 0) or test (which = 1) set; labels must lie below
 * `classes` (the network's outputs). */
int cli_load(const cli *c, int which, int classes, dpt_dataset *ds, dpt_error *err);
/* Checks the network's input and output sizes against a dataset. */
int cli_check_arch(const dpt_config *cfg, const dpt_dataset *ds, dpt_error *err);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_info(int argc, char **argv);

/* Checkpoint I/O used by several subcommands (src/train/checkpoint.c). */

/* Progress display on stderr: a live line on a terminal, plain lines otherwise. */
typedef struct progress_ui {
    int tty, quiet;
    double last;
} progress_ui;
void progress_cb(void *ud, const dpt_progress *p);
void progress_done(progress_ui *ui);

/* Writes an 8-bit grayscale or RGB PNG (zlib); atomically. */
int png_write(const char *path, int w, int h, int channels, const unsigned char *px,
              dpt_error *err);

#endif
