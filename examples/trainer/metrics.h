/* Training log: a table per run (epoch  train_loss  valid_loss  accuracy
 * time), a progress bar on long epochs when stdout is a terminal, and the
 * same rows as CSV when a path is given. */
#ifndef TR_METRICS_H
#define TR_METRICS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *out; /* stdout, or a memory buffer for a run that logs in the background */
    FILE *csv;
    int tty;
    int progress_shown;
    char *buffer;
    size_t buffer_size;
} tr_log;

/* csv_path NULL or "" for no CSV.  Returns 0, or -1 (message on stderr). */
int tr_log_open(tr_log *log, const char *csv_path);
void tr_log_close(tr_log *log);
/* A log whose table goes to a memory buffer (no progress bar) and whose CSV
 * rows go to parent's CSV file; tr_log_finish_buffered prints the buffer to
 * parent's output and frees it.  For runs that train in parallel. */
int tr_log_open_buffered(tr_log *log, const tr_log *parent);
void tr_log_finish_buffered(tr_log *log, tr_log *parent);
/* Title line and column header of a run. */
void tr_log_begin(tr_log *log, const char *run, const char *description);
/* epoch: passes over the run's training set so far (fractional for runs
 * counted in steps); seconds: time since the previous row. */
void tr_log_row(tr_log *log, const char *run, double epoch, int64_t step, double train_loss,
                double valid_loss, double accuracy, double seconds);
/* "\r[#####.....] 123/456 loss 0.4321" on a terminal; nothing otherwise. */
void tr_log_progress(tr_log *log, int64_t done, int64_t total, double loss);

/* Wall-clock seconds (monotonic). */
double tr_now(void);

#endif
