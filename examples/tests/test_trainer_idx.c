/* The IDX loader reads raw and gzip files and rejects truncated and
 * wrong-magic files with a message naming the file and the problem. */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"
#include "idx.h"

static char dir[] = "/tmp/kd_idx_test_XXXXXX";

/* A 3 x 2 x 2 image file: magic 00 00 08 03, dims, 12 pixels. */
static const unsigned char images[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0,  0,
                                       0, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255};
static const unsigned char labels[] = {0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 1};

static void write_raw(const char *name, const unsigned char *data, size_t size, char *path)
{
    sprintf(path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, size, f), size);
    fclose(f);
}

static void write_gzip(const char *name, const unsigned char *data, size_t size, char *path)
{
    sprintf(path, "%s/%s", dir, name);
    gzFile f = gzopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(gzwrite(f, data, (unsigned)size), (int)size);
    gzclose(f);
}

START_TEST(raw_and_gzip_files_load)
{
    char path[256], err[512];
    tr_idx idx;
    write_raw("a-idx3-ubyte", images, sizeof images, path);
    ck_assert_int_eq(tr_idx_load(path, 3, &idx, err, sizeof err), 0);
    ck_assert_int_eq(idx.count, 12);
    ck_assert_int_eq(idx.dims[0], 3);
    ck_assert_int_eq(idx.data[11], 255);
    tr_idx_free(&idx);
    write_gzip("b-idx3-ubyte.gz", images, sizeof images, path);
    ck_assert_int_eq(tr_idx_load(path, 3, &idx, err, sizeof err), 0);
    ck_assert_int_eq(idx.data[5], 5);
    tr_idx_free(&idx);
}
END_TEST

START_TEST(truncated_file_is_rejected)
{
    char path[256], err[512];
    tr_idx idx;
    write_raw("short-idx3-ubyte", images, sizeof images - 3, path);
    ck_assert_int_eq(tr_idx_load(path, 3, &idx, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "truncated") && strstr(err, path), "message: %s", err);
    ck_assert_ptr_null(idx.data);
    write_gzip("short-idx3-ubyte.gz", images, sizeof images - 3, path);
    ck_assert_int_eq(tr_idx_load(path, 3, &idx, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "truncated"), "message: %s", err);
    /* A gzip stream cut in the middle. */
    char whole[256];
    write_gzip("cut-idx3-ubyte.gz", images, sizeof images, whole);
    FILE *f = fopen(whole, "rb");
    unsigned char buf[256];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_raw("cut2-idx3-ubyte.gz", buf, n - 12, path);
    ck_assert_int_eq(tr_idx_load(path, 3, &idx, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "truncated"), "message: %s", err);
    /* Only part of the header. */
    write_raw("head-idx3-ubyte", images, 6, path);
    ck_assert_int_eq(tr_idx_load(path, 3, &idx, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "truncated"), "message: %s", err);
}
END_TEST

START_TEST(wrong_magic_is_rejected)
{
    char path[256], err[512];
    tr_idx idx;
    unsigned char bad[sizeof images];
    memcpy(bad, images, sizeof images);
    bad[2] = 0x0D; /* float data */
    write_raw("float-idx3-ubyte", bad, sizeof bad, path);
    ck_assert_int_eq(tr_idx_load(path, 3, &idx, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "wrong magic") && strstr(err, path), "message: %s", err);
    /* A label file where images are expected. */
    write_raw("labels-idx1-ubyte", labels, sizeof labels, path);
    ck_assert_int_eq(tr_idx_load(path, 3, &idx, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "wrong magic"), "message: %s", err);
    write_raw("text.txt", (const unsigned char *)"hello world, not IDX", 20, path);
    ck_assert_int_eq(tr_idx_load(path, 1, &idx, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "wrong magic"), "message: %s", err);
}
END_TEST

START_TEST(missing_file_is_reported)
{
    char err[512];
    tr_idx idx;
    ck_assert_int_eq(tr_idx_load("/nonexistent/x-idx1-ubyte", 1, &idx, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot open"), "message: %s", err);
}
END_TEST

START_TEST(dataset_loads_a_split_and_checks_counts)
{
    char path[256], err[512];
    tr_dataset d;
    write_gzip("train-images-idx3-ubyte.gz", images, sizeof images, path);
    write_raw("train-labels-idx1-ubyte", labels, sizeof labels, path);
    ck_assert_int_eq(tr_dataset_load(dir, "train", 0, &d, err, sizeof err), 0);
    ck_assert_int_eq(d.n, 3);
    ck_assert_int_eq(d.classes, 3);
    ck_assert_int_eq(d.y[0], 2);
    ck_assert(d.x[11] == 1.0f);
    tr_dataset_free(&d);
    /* 2 labels for 3 images. */
    unsigned char two[sizeof labels];
    memcpy(two, labels, sizeof labels);
    two[7] = 2;
    write_raw("t10k-labels-idx1-ubyte", two, sizeof two - 1, path);
    write_raw("t10k-images-idx3-ubyte", images, sizeof images, path);
    ck_assert_int_eq(tr_dataset_load(dir, "t10k", 0, &d, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "2 labels for 3 images"), "message: %s", err);
}
END_TEST

int main(void)
{
    if (!mkdtemp(dir))
        return EXIT_FAILURE;
    Suite *s = suite_create("trainer_idx");
    TCase *tc = tcase_create("idx");
    tcase_add_test(tc, raw_and_gzip_files_load);
    tcase_add_test(tc, truncated_file_is_rejected);
    tcase_add_test(tc, wrong_magic_is_rejected);
    tcase_add_test(tc, missing_file_is_reported);
    tcase_add_test(tc, dataset_loads_a_split_and_checks_counts);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        failed++;
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
