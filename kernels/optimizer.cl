/* Optimizer updates: one launch per step and run of trainable parameters (the whole flat
 * parameter buffer unless layers are frozen). n floats of the run start at p_off in p and at
 * g_off in the gradients and the state. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* The host folds learning-rate decay (and, for Adam, bias correction) into lr_t, so these
 * kernels hold no step counter. wd is L2 weight decay, added to the gradient (Keras' kernel
 * regulariser l2(wd/2) gives the same gradient). */

/* SGD (Keras): v = momentum * v - lr * g; p += v, or with Nesterov p += momentum * v - lr * g.
 * With momentum 0 there is no state and v is not touched. */
__kernel void kilt_opt_sgd (__global float *p, __global const float *grad, __global float *v,
                            const float lr_t, const float momentum, const int nesterov,
                            const float wd, const uint n, const uint p_off, const uint g_off)
{
  uint i = get_global_id (0);
  p += p_off;
  grad += g_off;
  v += g_off;
  if (i >= n)
    return;
  float w = p[i];
  float g = grad[i] + wd * w;
  if (momentum == 0.0f)
    {
      p[i] = w - lr_t * g;
      return;
    }
  float vi = momentum * v[i] - lr_t * g;
  v[i] = vi;
  p[i] = nesterov ? w + momentum * vi - lr_t * g : w + vi;
}

/* RMSprop (Keras, no momentum): a = rho a + (1 - rho) g^2; p -= lr_t g / (sqrt (a) + eps). */
__kernel void kilt_opt_rmsprop (__global float *p, __global const float *grad, __global float *a,
                                const float lr_t, const float rho, const float eps,
                                const float wd, const uint n, const uint p_off, const uint g_off)
{
  uint i = get_global_id (0);
  p += p_off;
  grad += g_off;
  a += g_off;
  if (i >= n)
    return;
  float w = p[i];
  float g = grad[i] + wd * w;
  float ai = rho * a[i] + (1.0f - rho) * g * g;
  a[i] = ai;
  p[i] = w - lr_t * g / (sqrt (ai) + eps);
}

/* Adam (tf.keras 2): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr_t m / (sqrt (v) + eps), lr_t already bias-corrected on the host. */
__kernel void kilt_opt_adam (__global float *p, __global const float *grad, __global float *m,
                             __global float *v, const float lr_t, const float beta1,
                             const float beta2, const float eps, const float wd, const uint n, const uint p_off, const uint g_off)
{
  uint i = get_global_id (0);
  p += p_off;
  grad += g_off;
  m += g_off;
  v += g_off;
  if (i >= n)
    return;
  float w = p[i];
  float g = grad[i] + wd * w;
  float mi = beta1 * m[i] + (1.0f - beta1) * g;
  float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  p[i] = w - lr_t * mi / (sqrt (vi) + eps);
}

/* Adadelta (Keras): a = rho a + (1 - rho) g^2; d = sqrt (u + eps) / sqrt (a + eps) g;
 * p -= lr_t d; u = rho u + (1 - rho) d^2. */
__kernel void kilt_opt_adadelta (__global float *p, __global const float *grad, __global float *a,
                                 __global float *u, const float lr_t, const float rho,
                                 const float eps, const float wd, const uint n, const uint p_off, const uint g_off)
{
  uint i = get_global_id (0);
  p += p_off;
  grad += g_off;
  a += g_off;
  u += g_off;
  if (i >= n)
    return;
  float w = p[i];
  float g = grad[i] + wd * w;
  float ai = rho * a[i] + (1.0f - rho) * g * g;
  float ui = u[i];
  float d = sqrt (ui + eps) / sqrt (ai + eps) * g;
  a[i] = ai;
  u[i] = rho * ui + (1.0f - rho) * d * d;
  p[i] = w - lr_t * d;
}

/* Adagrad (tf.keras): a += g^2; p -= lr_t g / (sqrt (a) + eps). */
__kernel void kilt_opt_adagrad (__global float *p, __global const float *grad, __global float *a,
                                const float lr_t, const float eps, const float wd, const uint n, const uint p_off, const uint g_off)
{
  uint i = get_global_id (0);
  p += p_off;
  grad += g_off;
  a += g_off;
  if (i >= n)
    return;
  float w = p[i];
  float g = grad[i] + wd * w;
  float ai = a[i] + g * g;
  a[i] = ai;
  p[i] = w - lr_t * g / (sqrt (ai) + eps);
}

/* Lookahead (airbench): e = decay e + (1 - decay) p, then p = e; decay 1 puts p back on e. */
__kernel void kilt_lookahead (__global float *e, __global float *p, const float decay,
                              const uint n)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  float ei = decay * e[i] + (1.0f - decay) * p[i];
  e[i] = ei;
  p[i] = ei;
}
