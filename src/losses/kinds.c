/* One descriptor per loss kind, indexed by kd_loss_kind: the roles it
 * accepts, its parameter families, its largest reduction, its execution path
 * and its row and short-row kernels.  Adding a kind = one row here. */
#include <stddef.h>

#include "losses/loss_internal.h"

#define T KDI_R_TEACHER
#define S KDI_R_STUDENT
#define ROWS_COMMON (S | KDI_R_WEIGHTS)

static const kdi_kind KINDS[] = {
    [KD_LOSS_CROSS_ENTROPY] = {"cross_entropy", ROWS_COMMON | T | KDI_R_TARGET | KDI_R_LABELS,
                               KDI_P_EVERY | KDI_P_LABEL | KDI_P_TEMPERATURE | KDI_P_SOFT_CE,
                               KD_REDUCTION_NONE, KDI_PATH_ROWS,
                               KDI_F_SPLITS | KDI_F_LABELS_IN_SOFT, kdi_cross_entropy_row,
                               KDI_SMALL_CE},
    [KD_LOSS_KL_DISTILL] = {"kl_distill", ROWS_COMMON | T | KDI_R_LABELS,
                            KDI_P_EVERY | KDI_P_LABEL | KDI_P_DISTILL | KDI_P_TEMPERATURE |
                                KDI_P_KL,
                            KD_REDUCTION_NONE, KDI_PATH_ROWS, KDI_F_SPLITS_FORWARD_KL,
                            kdi_kl_distill_row, KDI_SMALL_KL},
    [KD_LOSS_LOGIT_MSE] = {"logit_mse", ROWS_COMMON | T | KDI_R_LABELS,
                           KDI_P_EVERY | KDI_P_LABEL | KDI_P_DISTILL, KD_REDUCTION_NONE,
                           KDI_PATH_ROWS, KDI_F_SPLITS, kdi_logit_mse_row, KDI_SMALL_MSE},
    [KD_LOSS_PSEUDO_LABEL] = {"pseudo_label", ROWS_COMMON | T | KDI_R_THRESH,
                              KDI_P_EVERY | KDI_P_THRESH, KD_REDUCTION_NONE, KDI_PATH_ROWS,
                              KDI_F_SPLITS | KDI_F_SELF_TRAINING, kdi_pseudo_label_row,
                              KDI_SMALL_PL},
    [KD_LOSS_STRONG_WEAK] = {"strong_weak", ROWS_COMMON | T | KDI_R_THRESH,
                             KDI_P_EVERY | KDI_P_THRESH | KDI_P_TEMPERATURE, KD_REDUCTION_NONE,
                             KDI_PATH_ROWS, KDI_F_MEAN_OVER_KEPT | KDI_F_SELF_TRAINING,
                             kdi_strong_weak_row, KDI_SMALL_NONE},
    [KD_LOSS_CONSISTENCY] = {"consistency", ROWS_COMMON | T | KDI_R_GRAD_TEACHER,
                             KDI_P_EVERY | KDI_P_DISTANCE | KDI_P_INPUT_TYPE, KD_REDUCTION_NONE,
                             KDI_PATH_ROWS, KDI_F_SELF_TRAINING, kdi_consistency_row,
                             KDI_SMALL_NONE},
    [KD_LOSS_CLASS_BALANCE] = {"class_balance", S, KDI_P_EVERY | KDI_P_INPUT_TYPE,
                               KD_REDUCTION_MEAN, KDI_PATH_BATCH, 0, NULL, KDI_SMALL_NONE},
    [KD_LOSS_MCC] = {"mcc", S, KDI_P_EVERY | KDI_P_TEMPERATURE, KD_REDUCTION_MEAN, KDI_PATH_BATCH,
                     0, NULL, KDI_SMALL_NONE},
    [KD_LOSS_WORST_CASE] = {"worst_case", KDI_R_ADV, KDI_P_EVERY | KDI_P_WORST_CASE,
                            KD_REDUCTION_SUM, KDI_PATH_TWO_BATCH, 0, NULL, KDI_SMALL_NONE},
    [KD_LOSS_ENTROPY] = {"entropy", ROWS_COMMON, KDI_P_EVERY | KDI_P_TEMPERATURE, KD_REDUCTION_NONE,
                         KDI_PATH_ROWS, 0, kdi_entropy_row, KDI_SMALL_NONE},
    [KD_LOSS_FAIRNESS] = {"fairness", S | KDI_R_WEIGHTS | KDI_R_CLASS_VECTORS, KDI_P_EVERY,
                          KD_REDUCTION_MEAN, KDI_PATH_BATCH, 0, NULL, KDI_SMALL_NONE},
};

#define NKINDS ((int)(sizeof KINDS / sizeof KINDS[0]))

const kdi_kind *kdi_kind_of(int kind)
{
    if (kind < 0 || kind >= NKINDS || !KINDS[kind].name)
        return NULL;
    return &KINDS[kind];
}

int kdi_kind_last(void) { return NKINDS - 1; }
