#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *alloc_floats(int64_t n, int *ok)
{
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    if (!p)
        *ok = 0;
    return p;
}

static int parse_spec(tr_model *m, const char *spec, char *err, size_t err_size)
{
    int h = m->h, w = m->w, ch = 1;
    const char *p = spec;
    m->num_layers = 0;
    while (*p) {
        tr_layer *L = &m->layers[m->num_layers];
        int n = 0, used = 0;
        if (m->num_layers >= TR_MAX_LAYERS - 1) {
            snprintf(err, err_size, "model '%s': more than %d blocks", spec, TR_MAX_LAYERS - 1);
            return -1;
        }
        if (sscanf(p, "conv%d%n", &n, &used) == 1 && n > 0) {
            if (m->num_layers > 0 && m->layers[m->num_layers - 1].kind != TR_LAYER_CONV) {
                snprintf(err, err_size, "model '%s': conv after fc", spec);
                return -1;
            }
            if (h % 2 || w % 2) {
                snprintf(err, err_size, "model '%s': %dx%d cannot be pooled by 2", spec, h, w);
                return -1;
            }
            L->kind = TR_LAYER_CONV;
            L->conv = (tr_conv){.cin = ch, .cout = n, .k = 3, .h = h, .w = w};
            L->in = h * w * ch;
            h /= 2;
            w /= 2;
            ch = n;
            L->out = h * w * ch;
        } else if (sscanf(p, "fc%d%n", &n, &used) == 1 && n > 0) {
            L->kind = TR_LAYER_FC;
            L->in = h * w * ch;
            L->out = n;
            h = w = 1;
            ch = n;
        } else {
            snprintf(err, err_size, "model '%s': expected convN or fcN at '%s'", spec, p);
            return -1;
        }
        m->num_layers++;
        p += used;
        if (*p == '-')
            p++;
        else if (*p) {
            snprintf(err, err_size, "model '%s': expected '-' at '%s'", spec, p);
            return -1;
        }
    }
    tr_layer *head = &m->layers[m->num_layers++];
    head->kind = TR_LAYER_HEAD;
    head->in = h * w * ch;
    head->out = m->classes;
    return 0;
}

tr_model *tr_model_create(const char *spec, int h, int w, int classes, int max_batch, char *err,
                          size_t err_size)
{
    tr_model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    snprintf(m->spec, sizeof m->spec, "%s", spec);
    m->h = h;
    m->w = w;
    m->classes = classes;
    m->max_batch = max_batch;
    if (parse_spec(m, spec, err, err_size) != 0) {
        free(m);
        return NULL;
    }
    int ok = 1;
    const int64_t B = max_batch;
    for (int l = 0; l < m->num_layers; l++) {
        tr_layer *L = &m->layers[l];
        int64_t fan_in = L->kind == TR_LAYER_CONV ? 9 * L->conv.cin : L->in;
        int64_t nout = L->kind == TR_LAYER_CONV ? L->conv.cout : L->out;
        L->w_off = m->num_params;
        L->b_off = L->w_off + fan_in * nout;
        m->num_params = L->b_off + nout;
        L->y = alloc_floats(B * L->out, &ok);
        if (l > 0)
            L->dx = alloc_floats(B * L->in, &ok);
        if (L->kind == TR_LAYER_CONV) {
            int64_t zsize = B * L->conv.h * L->conv.w * L->conv.cout;
            L->col = alloc_floats(tr_conv_col_size(&L->conv, max_batch), &ok);
            L->z = alloc_floats(zsize, &ok);
            L->dz = alloc_floats(zsize, &ok);
            if (l > 0)
                L->dcol = alloc_floats(tr_conv_col_size(&L->conv, max_batch), &ok);
            L->argmax = calloc((size_t)(B * L->out), sizeof *L->argmax);
            ok = ok && L->argmax;
        }
    }
    m->params = alloc_floats(m->num_params, &ok);
    m->grads = alloc_floats(m->num_params, &ok);
    if (!ok) {
        snprintf(err, err_size, "out of memory for model '%s' with batch %d", spec, max_batch);
        tr_model_destroy(m);
        return NULL;
    }
    return m;
}

void tr_model_destroy(tr_model *m)
{
    if (!m)
        return;
    for (int l = 0; l < m->num_layers; l++) {
        tr_layer *L = &m->layers[l];
        free(L->col);
        free(L->z);
        free(L->y);
        free(L->dcol);
        free(L->dz);
        free(L->dx);
        free(L->argmax);
    }
    free(m->params);
    free(m->grads);
    free(m);
}

void tr_model_init(tr_model *m, tr_rng *rng)
{
    for (int l = 0; l < m->num_layers; l++) {
        tr_layer *L = &m->layers[l];
        int64_t nw = L->b_off - L->w_off;
        int64_t nb = (l + 1 < m->num_layers ? m->layers[l + 1].w_off : m->num_params) - L->b_off;
        int64_t fan_in = nw / nb;
        float std = sqrtf((L->kind == TR_LAYER_HEAD ? 1.0f : 2.0f) / (float)fan_in);
        for (int64_t i = 0; i < nw; i++)
            m->params[L->w_off + i] = std * tr_rng_normal(rng);
        memset(m->params + L->b_off, 0, (size_t)nb * sizeof(float));
    }
}

const float *tr_model_forward(tr_model *m, const float *x, int batch)
{
    m->input = x;
    m->batch = batch;
    for (int l = 0; l < m->num_layers; l++) {
        tr_layer *L = &m->layers[l];
        const float *W = m->params + L->w_off, *b = m->params + L->b_off;
        if (L->kind == TR_LAYER_CONV) {
            const tr_conv *c = &L->conv;
            tr_conv_forward(c, batch, x, W, b, L->col, L->z);
            tr_relu_forward((int64_t)batch * c->h * c->w * c->cout, L->z);
            tr_maxpool_forward(batch, c->h, c->w, c->cout, L->z, L->y, L->argmax);
        } else {
            tr_linear_forward(batch, L->in, L->out, x, W, b, L->y);
            if (L->kind == TR_LAYER_FC)
                tr_relu_forward((int64_t)batch * L->out, L->y);
        }
        x = L->y;
    }
    return x;
}

void tr_model_backward(tr_model *m, const float *dlogits)
{
    const int batch = m->batch;
    const float *dy = dlogits;
    for (int l = m->num_layers - 1; l >= 0; l--) {
        tr_layer *L = &m->layers[l];
        const float *x = l > 0 ? m->layers[l - 1].y : m->input;
        float *dW = m->grads + L->w_off, *db = m->grads + L->b_off;
        const float *W = m->params + L->w_off;
        if (L->kind == TR_LAYER_CONV) {
            const tr_conv *c = &L->conv;
            tr_maxpool_backward(batch, c->h, c->w, c->cout, dy, L->argmax, L->dz);
            tr_relu_backward((int64_t)batch * c->h * c->w * c->cout, L->z, L->dz);
            tr_conv_backward(c, batch, L->col, W, L->dz, dW, db, L->dcol, l > 0 ? L->dx : NULL);
        } else {
            if (L->kind == TR_LAYER_FC)
                tr_relu_backward((int64_t)batch * L->out, L->y, (float *)dy);
            tr_linear_backward(batch, L->in, L->out, x, W, dy, dW, db, l > 0 ? L->dx : NULL);
        }
        dy = L->dx;
    }
}

int64_t tr_model_flops(const tr_model *m)
{
    int64_t f = 0;
    for (int l = 0; l < m->num_layers; l++) {
        const tr_layer *L = &m->layers[l];
        if (L->kind == TR_LAYER_CONV)
            f += (int64_t)L->conv.h * L->conv.w * L->conv.cout * 9 * L->conv.cin;
        else
            f += (int64_t)L->in * L->out;
    }
    return f;
}
