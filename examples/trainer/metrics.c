#define _POSIX_C_SOURCE 200809L
#include "metrics.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int tr_log_open(tr_log *log, const char *csv_path)
{
    memset(log, 0, sizeof *log);
    log->out = stdout;
    log->tty = isatty(STDOUT_FILENO);
    if (csv_path && *csv_path) {
        log->csv = fopen(csv_path, "w");
        if (!log->csv) {
            perror(csv_path);
            return -1;
        }
        fprintf(log->csv, "run,epoch,step,train_loss,valid_loss,accuracy,seconds\n");
    }
    return 0;
}

void tr_log_close(tr_log *log)
{
    if (log->csv)
        fclose(log->csv);
    log->csv = NULL;
}

int tr_log_open_buffered(tr_log *log, const tr_log *parent)
{
    memset(log, 0, sizeof *log);
    log->csv = parent->csv;
    log->out = open_memstream(&log->buffer, &log->buffer_size);
    return log->out ? 0 : -1;
}

void tr_log_finish_buffered(tr_log *log, tr_log *parent)
{
    fclose(log->out);
    fputs(log->buffer, parent->out);
    fflush(parent->out);
    free(log->buffer);
    memset(log, 0, sizeof *log);
}

static void clear_progress(tr_log *log)
{
    if (log->progress_shown) {
        fprintf(log->out, "\r%-70s\r", "");
        log->progress_shown = 0;
    }
}

void tr_log_begin(tr_log *log, const char *run, const char *description)
{
    clear_progress(log);
    fprintf(log->out, "\n== %s: %s\n", run, description);
    fprintf(log->out, "%7s  %10s  %10s  %8s  %6s\n", "epoch", "train_loss", "valid_loss",
            "accuracy", "time");
    fflush(log->out);
}

void tr_log_row(tr_log *log, const char *run, double epoch, int64_t step, double train_loss,
                double valid_loss, double accuracy, double seconds)
{
    clear_progress(log);
    fprintf(log->out, "%7.2f  %10.4f  %10.4f  %7.2f%%  %5.1fs\n", epoch, train_loss, valid_loss,
            100.0 * accuracy, seconds);
    fflush(log->out);
    if (log->csv) {
        fprintf(log->csv, "%s,%.4f,%lld,%.6f,%.6f,%.6f,%.3f\n", run, epoch, (long long)step,
                train_loss, valid_loss, accuracy, seconds);
        fflush(log->csv);
    }
}

void tr_log_progress(tr_log *log, int64_t done, int64_t total, double loss)
{
    if (!log->tty || total <= 0)
        return;
    char bar[31];
    int fill = (int)(30 * done / total);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(log->out, "\r[%s] %lld/%lld loss %.4f", bar, (long long)done, (long long)total, loss);
    fflush(log->out);
    log->progress_shown = 1;
}

double tr_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
