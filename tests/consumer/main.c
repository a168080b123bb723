/* A program outside the kdlib tree, built against an installed copy. */
#include <stdio.h>
#include <kdlib/kdlib.h>

int main(void)
{
    const float s[2 * 3] = {1, 2, 3, 0, 0, 1}, t[2 * 3] = {3, 2, 1, 0, 1, 0};
    float g[2 * 3], loss = -1.0f;
    kd_loss *h = NULL;
    if (kd_version_number() != KD_VERSION_NUMBER)
        return 2;
    if (kd_loss_create(&h, KD_LOSS_KL_DISTILL, 3) || kd_loss_bind_matrix(h, KD_ARG_STUDENT, s, 3) ||
        kd_loss_bind_matrix(h, KD_ARG_TEACHER, t, 3) ||
        kd_loss_bind_output(h, KD_ARG_GRAD_STUDENT, g, 3) || kd_loss_forward_backward(h, 2, &loss))
        return 1;
    kd_loss_destroy(h);
    printf("consumer: kdlib %s, loss %.6f\n", kd_version_string(), loss);
    return loss > 0.0f ? 0 : 3;
}
