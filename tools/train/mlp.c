/*
 * mlp.c - forward pass, backpropagation and Adam for the MLP. Every loop that
 * sums runs in one fixed order (no threads, no reassociation), so results are
 * a function of the inputs alone. The hot loops are written as runs of eight
 * independent lanes, which gcc -O2 turns into SIMD without changing the
 * order of any sum.
 */
#include "mlp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

/* y[0..n) += a * x[0..n). Each y[j] gets one add: lanes are independent. */
static inline void axpy(float *restrict y, float a, const float *restrict x, int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++)
            y[j + l] += a * x[j + l];
    for (; j < n; j++)
        y[j] += a * x[j];
}

/* Dot product in a fixed order: eight partial sums over strided lanes, then
 * a fixed tree, then the tail. */
static inline float dot(const float *restrict a, const float *restrict b, int n)
{
    float acc[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += a[j + l] * b[j + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < n; j++)
        s += a[j] * b[j];
    return s;
}

static float *alloc_floats(size_t n)
{
    return calloc(n ? n : 1, sizeof(float));
}

int tr_mlp_init(tr_mlp *m, const int *hidden, int nhidden, size_t max_batch)
{
    memset(m, 0, sizeof *m);
    m->nlayers = nhidden + 1;
    m->max_batch = max_batch;
    m->layers = calloc((size_t)m->nlayers, sizeof *m->layers);
    m->act = calloc((size_t)m->nlayers + 1, sizeof *m->act);
    if (m->layers == NULL || m->act == NULL)
        goto oom;
    int in = TR_IMAGE_SIZE;
    m->max_width = in;
    m->act[0] = alloc_floats(max_batch * (size_t)in);
    if (m->act[0] == NULL)
        goto oom;
    for (int l = 0; l < m->nlayers; l++) {
        tr_layer *L = &m->layers[l];
        int out = l < nhidden ? hidden[l] : TR_CLASSES;
        size_t nw = (size_t)in * (size_t)out;
        L->in = in;
        L->out = out;
        L->w = alloc_floats(nw);
        L->gw = alloc_floats(nw);
        L->mw = alloc_floats(nw);
        L->vw = alloc_floats(nw);
        L->b = alloc_floats((size_t)out);
        L->gb = alloc_floats((size_t)out);
        L->mb = alloc_floats((size_t)out);
        L->vb = alloc_floats((size_t)out);
        m->act[l + 1] = alloc_floats(max_batch * (size_t)out);
        if (!L->w || !L->gw || !L->mw || !L->vw || !L->b || !L->gb || !L->mb || !L->vb ||
            !m->act[l + 1])
            goto oom;
        if (out > m->max_width)
            m->max_width = out;
        in = out;
    }
    m->delta = alloc_floats(max_batch * (size_t)m->max_width);
    m->delta_prev = alloc_floats(max_batch * (size_t)m->max_width);
    m->labels = malloc(max_batch ? max_batch : 1);
    if (m->delta == NULL || m->delta_prev == NULL || m->labels == NULL)
        goto oom;
    return 0;
oom:
    fprintf(stderr, "ckpt-train: out of memory allocating the network\n");
    tr_mlp_free(m);
    return -1;
}

void tr_mlp_free(tr_mlp *m)
{
    if (m->layers != NULL) {
        for (int l = 0; l < m->nlayers; l++) {
            tr_layer *L = &m->layers[l];
            free(L->w);
            free(L->gw);
            free(L->mw);
            free(L->vw);
            free(L->b);
            free(L->gb);
            free(L->mb);
            free(L->vb);
        }
    }
    if (m->act != NULL)
        for (int l = 0; l <= m->nlayers; l++)
            free(m->act[l]);
    free(m->layers);
    free(m->act);
    free(m->delta);
    free(m->delta_prev);
    free(m->labels);
    memset(m, 0, sizeof *m);
}

size_t tr_mlp_param_count(const tr_mlp *m)
{
    size_t n = 0;
    for (int l = 0; l < m->nlayers; l++)
        n += (size_t)m->layers[l].in * (size_t)m->layers[l].out + (size_t)m->layers[l].out;
    return n;
}

void tr_mlp_glorot(tr_mlp *m, tr_rng *r)
{
    for (int l = 0; l < m->nlayers; l++) {
        tr_layer *L = &m->layers[l];
        float limit = (float)sqrt(6.0 / (double)(L->in + L->out));
        size_t nw = (size_t)L->in * (size_t)L->out;
        for (size_t i = 0; i < nw; i++)
            L->w[i] = (2.0f * tr_rng_uniform(r) - 1.0f) * limit;
        memset(L->b, 0, (size_t)L->out * sizeof(float));
    }
}

/* Pixels as floats in [0, 1]; a table so every build maps them alike. */
static float pixel_value[256];
static int pixel_ready;

static void load_inputs(tr_mlp *m, const tr_dataset *d, const int32_t *idx, size_t first,
                        size_t n)
{
    if (!pixel_ready) {
        for (int i = 0; i < 256; i++)
            pixel_value[i] = (float)i / 255.0f;
        pixel_ready = 1;
    }
    float *x = m->act[0];
    for (size_t i = 0; i < n; i++) {
        size_t ex = idx != NULL ? (size_t)idx[i] : first + i;
        const uint8_t *px = d->pixels + ex * TR_IMAGE_SIZE;
        for (int k = 0; k < TR_IMAGE_SIZE; k++)
            x[i * TR_IMAGE_SIZE + k] = pixel_value[px[k]];
    }
}

/* Rows of W visited per block in the forward pass: enough to keep the block
 * in L2 while every example of the batch passes over it. Blocking over k
 * does not change the order in which each output sums its inputs. */
static int block_rows(int out)
{
    int rows = 32768 / (out > 0 ? out : 1);
    return rows < 1 ? 1 : rows;
}

static void forward(tr_mlp *m, size_t n)
{
    for (int l = 0; l < m->nlayers; l++) {
        const tr_layer *L = &m->layers[l];
        const float *x = m->act[l];
        float *y = m->act[l + 1];
        int in = L->in, out = L->out;
        for (size_t i = 0; i < n; i++)
            memcpy(y + i * (size_t)out, L->b, (size_t)out * sizeof(float));
        int kb = block_rows(out);
        for (int k0 = 0; k0 < in; k0 += kb) {
            int k1 = k0 + kb < in ? k0 + kb : in;
            for (size_t i = 0; i < n; i++) {
                const float *xi = x + i * (size_t)in;
                float *yi = y + i * (size_t)out;
                for (int k = k0; k < k1; k++) {
                    float a = xi[k];
                    /* Inputs are sparse (black pixels, ReLU zeros); a zero
                     * adds nothing to a finite sum, and skipping is itself
                     * deterministic. */
                    if (a != 0.0f)
                        axpy(yi, a, L->w + (size_t)k * (size_t)out, out);
                }
            }
        }
        if (l + 1 < m->nlayers) {
            size_t total = n * (size_t)out;
            for (size_t i = 0; i < total; i++)
                y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        }
    }
}

/* Softmax cross-entropy on the logits in act[nlayers]. Writes dLoss/dlogits
 * (already divided by scale, the batch size for training) to m->delta. */
static void softmax_xent(tr_mlp *m, const uint8_t *labels, size_t n, float scale,
                         double *loss_sum, int64_t *correct)
{
    const float *z = m->act[m->nlayers];
    double loss = 0.0;
    int64_t right = 0;
    for (size_t i = 0; i < n; i++) {
        const float *zi = z + i * TR_CLASSES;
        float *di = m->delta + i * TR_CLASSES;
        int y = labels[i];
        int best = 0;
        float mx = zi[0];
        for (int j = 1; j < TR_CLASSES; j++) {
            if (zi[j] > mx) {
                mx = zi[j];
                best = j;
            }
        }
        float e[TR_CLASSES];
        float s = 0.0f;
        for (int j = 0; j < TR_CLASSES; j++) {
            e[j] = expf(zi[j] - mx);
            s += e[j];
        }
        float logs = logf(s);
        loss += (double)(logs - (zi[y] - mx));
        right += best == y;
        float inv = 1.0f / s;
        for (int j = 0; j < TR_CLASSES; j++)
            di[j] = (e[j] * inv - (j == y ? 1.0f : 0.0f)) * scale;
    }
    *loss_sum += loss;
    *correct += right;
}

static void backward(tr_mlp *m, size_t n)
{
    for (int l = m->nlayers - 1; l >= 0; l--) {
        tr_layer *L = &m->layers[l];
        const float *x = m->act[l];
        const float *dz = m->delta;
        int in = L->in, out = L->out;

        /* gb[j] = sum over the batch, in example order. */
        memset(L->gb, 0, (size_t)out * sizeof(float));
        for (size_t i = 0; i < n; i++)
            axpy(L->gb, 1.0f, dz + i * (size_t)out, out);

        /* gw[k][j] = sum_i x[i][k] * dz[i][j], i ascending. Row k of gw stays
         * in L1 while the batch passes over it. */
        for (int k = 0; k < in; k++) {
            float *g = L->gw + (size_t)k * (size_t)out;
            memset(g, 0, (size_t)out * sizeof(float));
            for (size_t i = 0; i < n; i++) {
                float a = x[i * (size_t)in + (size_t)k];
                if (a != 0.0f)
                    axpy(g, a, dz + i * (size_t)out, out);
            }
        }

        if (l == 0)
            break;
        /* dx[i][k] = dot(dz[i], w[k]) masked by ReLU' of the input. */
        float *dx = m->delta_prev;
        for (int k = 0; k < in; k++) {
            const float *wk = L->w + (size_t)k * (size_t)out;
            for (size_t i = 0; i < n; i++) {
                float xv = x[i * (size_t)in + (size_t)k];
                dx[i * (size_t)in + (size_t)k] = xv > 0.0f ? dot(dz + i * (size_t)out, wk, out) : 0.0f;
            }
        }
        float *t = m->delta;
        m->delta = m->delta_prev;
        m->delta_prev = t;
    }
}

/* Square roots of eight non-negative floats. gcc keeps a libm call for
 * errno after each scalar sqrt, which blocks vectorising the Adam loop (a
 * third of the large network's run time); the SSE instruction gives the same
 * correctly rounded result without it. */
static inline void sqrt8(float *restrict out, const float *restrict in)
{
#if defined(__SSE__)
    _mm_storeu_ps(out, _mm_sqrt_ps(_mm_loadu_ps(in)));
    _mm_storeu_ps(out + 4, _mm_sqrt_ps(_mm_loadu_ps(in + 4)));
#else
    for (int l = 0; l < 8; l++)
        out[l] = sqrtf(in[l]);
#endif
}

/* Adam as in Keras: m and v updated in place, then
 * w -= alpha * m / (sqrt(v) + eps) with alpha carrying the bias correction. */
static void adam_update(float *restrict w, float *restrict mo, float *restrict ve,
                        const float *restrict g, size_t n, float b1, float b2, float alpha,
                        float eps)
{
    float c1 = 1.0f - b1, c2 = 1.0f - b2;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float m8[8], v8[8], s8[8];
        for (int l = 0; l < 8; l++) {
            float gi = g[i + l];
            m8[l] = b1 * mo[i + l] + c1 * gi;
            v8[l] = b2 * ve[i + l] + c2 * (gi * gi);
            mo[i + l] = m8[l];
            ve[i + l] = v8[l];
        }
        sqrt8(s8, v8);
        for (int l = 0; l < 8; l++)
            w[i + l] -= alpha * m8[l] / (s8[l] + eps);
    }
    for (; i < n; i++) {
        float gi = g[i];
        float mi = b1 * mo[i] + c1 * gi;
        float vi = b2 * ve[i] + c2 * (gi * gi);
        mo[i] = mi;
        ve[i] = vi;
        w[i] -= alpha * mi / (sqrtf(vi) + eps);
    }
}

static void gather_labels(tr_mlp *m, const tr_dataset *d, const int32_t *idx, size_t first,
                          size_t n)
{
    for (size_t i = 0; i < n; i++)
        m->labels[i] = d->labels[idx != NULL ? (size_t)idx[i] : first + i];
}

void tr_mlp_train_batch(tr_mlp *m, const tr_dataset *d, const int32_t *idx, size_t n,
                        const tr_adam *opt, double *loss_sum, int64_t *correct)
{
    load_inputs(m, d, idx, 0, n);
    gather_labels(m, d, idx, 0, n);
    forward(m, n);
    softmax_xent(m, m->labels, n, 1.0f / (float)n, loss_sum, correct);
    backward(m, n);

    m->adam_step++;
    double t = (double)m->adam_step;
    double alpha = opt->lr * sqrt(1.0 - pow(opt->beta2, t)) / (1.0 - pow(opt->beta1, t));
    float b1 = (float)opt->beta1, b2 = (float)opt->beta2, eps = (float)opt->eps;
    for (int l = 0; l < m->nlayers; l++) {
        tr_layer *L = &m->layers[l];
        adam_update(L->w, L->mw, L->vw, L->gw, (size_t)L->in * (size_t)L->out, b1, b2,
                    (float)alpha, eps);
        adam_update(L->b, L->mb, L->vb, L->gb, (size_t)L->out, b1, b2, (float)alpha, eps);
    }
}

void tr_mlp_evaluate(tr_mlp *m, const tr_dataset *d, double *loss, double *acc)
{
    double loss_sum = 0.0;
    int64_t right = 0;
    for (size_t first = 0; first < d->n; first += m->max_batch) {
        size_t n = d->n - first < m->max_batch ? d->n - first : m->max_batch;
        load_inputs(m, d, NULL, first, n);
        gather_labels(m, d, NULL, first, n);
        forward(m, n);
        softmax_xent(m, m->labels, n, 1.0f, &loss_sum, &right);
    }
    *loss = d->n ? loss_sum / (double)d->n : 0.0;
    *acc = d->n ? (double)right / (double)d->n : 0.0;
}
