/* Status strings, version, and the loss handle's life cycle and parameters. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"

START_TEST(status_strings_are_distinct_and_never_null)
{
    for (kd_status a = 0; a <= KD_ERR_STATE; a++) {
        ck_assert_ptr_nonnull(kd_status_string(a));
        for (kd_status b = a + 1; b <= KD_ERR_STATE; b++)
            ck_assert_str_ne(kd_status_string(a), kd_status_string(b));
    }
    ck_assert_str_eq(kd_status_string(-1), "unknown status");
    ck_assert_str_eq(kd_status_string(9999), "unknown status");
}
END_TEST

START_TEST(version_matches_header)
{
    ck_assert_int_eq(kd_version_number(), KD_VERSION_NUMBER);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", KD_VERSION_MAJOR, KD_VERSION_MINOR, KD_VERSION_PATCH);
    ck_assert_str_eq(kd_version_string(), buf);
}
END_TEST

START_TEST(create_rejects_bad_arguments)
{
    kd_loss *h = (kd_loss *)0x1;
    ck_assert_int_eq(kd_loss_create(NULL, KD_LOSS_KL_DISTILL, 10), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_create(&h, 0, 10), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_create(&h, 999, 10), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, 0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, (int64_t)1 << 40),
                     KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_eq(h, (kd_loss *)0x1); /* untouched on error */
    kd_loss_destroy(NULL);
    ck_assert_str_eq(kd_loss_last_error(NULL), "invalid handle (NULL)");
}
END_TEST

START_TEST(parameters_validate_at_set_time)
{
    kd_loss *h;
    ck_assert_int_eq(kd_loss_create(&h, KD_LOSS_KL_DISTILL, 10), KD_OK);
    double v;
    int64_t iv;
    ck_assert_int_eq(kd_loss_get_float(h, KD_PARAM_TEMPERATURE, &v), KD_OK);
    ck_assert(v == 1.0);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 0.0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(kd_loss_last_error(h), "KD_PARAM_TEMPERATURE"));
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, -2.0), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, NAN), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_get_float(h, KD_PARAM_TEMPERATURE, &v), KD_OK);
    ck_assert(v == 1.0);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 1.5), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.9), KD_OK);
    ck_assert_int_eq(kd_loss_get_float(h, KD_PARAM_HARD_WEIGHT, &v), KD_OK);
    ck_assert(fabs(v - 0.1) < 1e-15);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_TEMPERATURE, 2), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_float(h, KD_PARAM_LABEL_WEIGHT, 0.5), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_NUM_CLASSES, 3), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_int(h, 12345, 3), KD_ERR_UNSUPPORTED);
    ck_assert_int_eq(kd_loss_set_int(h, KD_PARAM_REDUCTION, 7), KD_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(kd_loss_get_int(h, KD_PARAM_NUM_CLASSES, &iv), KD_OK);
    ck_assert_int_eq(iv, 10);
    ck_assert_int_eq(kd_loss_set_int(NULL, KD_PARAM_REDUCTION, 0), KD_ERR_NULL_POINTER);
    ck_assert_int_eq(kd_loss_get_int(h, KD_PARAM_REDUCTION, NULL), KD_ERR_NULL_POINTER);
    double lo, hi;
    int32_t open;
    ck_assert_int_eq(
        kd_loss_param_bounds(KD_LOSS_KL_DISTILL, KD_PARAM_TEMPERATURE, &lo, &hi, &open), KD_OK);
    ck_assert(lo == 1e-6 && open == 0 && hi > 1.0); /* T >= 1e-6 (issue 16) */
    ck_assert_int_eq(kd_loss_param_bounds(KD_LOSS_LOGIT_MSE, KD_PARAM_TEMPERATURE, &lo, &hi, &open),
                     KD_ERR_UNSUPPORTED);
    kd_loss_destroy(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, status_strings_are_distinct_and_never_null);
    tcase_add_test(tc, version_matches_header);
    tcase_add_test(tc, create_rejects_bad_arguments);
    tcase_add_test(tc, parameters_validate_at_set_time);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
