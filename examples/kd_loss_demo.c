/* Smallest use of kdlib: Hinton distillation loss and its gradient for a
 * fixed batch of 4 samples and 5 classes. */
#include <math.h>
#include <stdio.h>

#include "kdlib/kdlib.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kd_status st_ = (call);                                                                    \
        if (st_ != KD_OK) {                                                                        \
            fprintf(stderr, "%s failed: %s (%s)\n", #call, kd_status_string(st_),                  \
                    kd_loss_last_error(h));                                                        \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void)
{
    enum { N = 4, C = 5 };
    const float student[N * C] = {1.0f,  2.0f, 0.5f, -1.0f, 0.0f, 0.2f, 0.1f, 3.0f, 0.0f, -0.5f,
                                  -2.0f, 0.0f, 0.0f, 1.5f,  2.5f, 0.3f, 0.3f, 0.3f, 0.3f, 0.3f};
    const float teacher[N * C] = {2.0f,  4.0f, 0.0f, -3.0f, 0.0f, 0.0f, 0.0f, 5.0f, 1.0f, -2.0f,
                                  -1.0f, 0.0f, 1.0f, 3.0f,  2.0f, 1.0f, 0.0f, 0.0f, 2.0f, 0.0f};
    const int32_t labels[N] = {1, 2, 4, 3};
    float grad[N * C];
    float loss = 0.0f;
    kd_loss *h = NULL;

    printf("kdlib %s: KL distillation, T = 4, alpha = 0.9, N = %d, C = %d\n", kd_version_string(),
           N, C);
    CHECK(kd_loss_create(&h, KD_LOSS_KL_DISTILL, C));
    CHECK(kd_loss_set_float(h, KD_PARAM_TEMPERATURE, 4.0));
    CHECK(kd_loss_set_float(h, KD_PARAM_ALPHA, 0.9));
    CHECK(kd_loss_bind_matrix(h, KD_ARG_STUDENT, student, C));
    CHECK(kd_loss_bind_matrix(h, KD_ARG_TEACHER, teacher, C));
    CHECK(kd_loss_bind_labels(h, labels));
    CHECK(kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, grad, C));
    CHECK(kd_loss_forward_backward(h, N, &loss));
    double norm = 0.0;
    for (int i = 0; i < N * C; i++)
        norm += (double)grad[i] * grad[i];
    printf("loss            %.6f\n", loss);
    printf("|grad student|  %.6f\n", sqrt(norm));
    kd_loss_destroy(h);
    return 0;
}
