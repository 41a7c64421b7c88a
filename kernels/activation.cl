/* The Activation layer's element-wise functions, forward and backward through the input x:
 * Keras' ReLU with max_value / negative_slope / threshold, relu6, elu, selu, softplus, softsign,
 * exponential, swish, gelu (exact and tanh), hard_sigmoid (Keras 3 and 2), hard_swish. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Codes beyond common.cl's; must match KiltActivation in engine/kilt-layer.h. */
#define KILT_ACT_RELU6 6
#define KILT_ACT_ELU 7
#define KILT_ACT_SELU 8
#define KILT_ACT_SOFTPLUS 9
#define KILT_ACT_SOFTSIGN 10
#define KILT_ACT_EXPONENTIAL 11
#define KILT_ACT_SWISH 12
#define KILT_ACT_GELU 13
#define KILT_ACT_GELU_TANH 14
#define KILT_ACT_HARD_SIGMOID 15
#define KILT_ACT_HARD_SIGMOID_K2 16
#define KILT_ACT_HARD_SWISH 17

#define KILT_SELU_ALPHA 1.6732632423543772f
#define KILT_SELU_SCALE 1.0507009873554805f
#define KILT_GELU_C 0.7978845608028654f /* sqrt (2 / pi) */

static inline float kilt_sigmoid (float x) { return 1.0f / (1.0f + exp (-x)); }

/* Keras' ReLU: x above threshold, clipped to [0, max_value]; below it negative_slope (x - t). */
static inline float kilt_act_x (int act, float x, float alpha, float maxv, float thr)
{
  switch (act)
    {
    case KILT_ACT_RELU: return x > thr ? clamp (x, 0.0f, maxv) : alpha * (x - thr);
    case KILT_ACT_LEAKY_RELU: return x > 0.0f ? x : alpha * x;
    case KILT_ACT_SIGMOID: return kilt_sigmoid (x);
    case KILT_ACT_TANH: return tanh (x);
    case KILT_ACT_RELU6: return clamp (x, 0.0f, 6.0f);
    case KILT_ACT_ELU: return x > 0.0f ? x : alpha * (exp (x) - 1.0f);
    case KILT_ACT_SELU:
      return KILT_SELU_SCALE * (x > 0.0f ? x : KILT_SELU_ALPHA * (exp (x) - 1.0f));
    case KILT_ACT_SOFTPLUS: return fmax (x, 0.0f) + log1p (exp (-fabs (x)));
    case KILT_ACT_SOFTSIGN: return x / (1.0f + fabs (x));
    case KILT_ACT_EXPONENTIAL: return exp (x);
    case KILT_ACT_SWISH: return x * kilt_sigmoid (x);
    case KILT_ACT_GELU: return 0.5f * x * (1.0f + erf (x * 0.7071067811865476f));
    case KILT_ACT_GELU_TANH:
      return 0.5f * x * (1.0f + tanh (KILT_GELU_C * (x + 0.044715f * x * x * x)));
    case KILT_ACT_HARD_SIGMOID: return clamp (x / 6.0f + 0.5f, 0.0f, 1.0f);
    case KILT_ACT_HARD_SIGMOID_K2: return clamp (0.2f * x + 0.5f, 0.0f, 1.0f);
    case KILT_ACT_HARD_SWISH: return x * clamp (x / 6.0f + 0.5f, 0.0f, 1.0f);
    default: return x;
    }
}

static inline float kilt_act_x_grad (int act, float x, float alpha, float maxv, float thr)
{
  switch (act)
    {
    case KILT_ACT_RELU: return x > thr ? (x > 0.0f && x < maxv ? 1.0f : 0.0f) : alpha;
    case KILT_ACT_LEAKY_RELU: return x > 0.0f ? 1.0f : alpha;
    case KILT_ACT_SIGMOID:
      {
        float s = kilt_sigmoid (x);
        return s * (1.0f - s);
      }
    case KILT_ACT_TANH:
      {
        float t = tanh (x);
        return 1.0f - t * t;
      }
    case KILT_ACT_RELU6: return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
    case KILT_ACT_ELU: return x > 0.0f ? 1.0f : alpha * exp (x);
    case KILT_ACT_SELU: return KILT_SELU_SCALE * (x > 0.0f ? 1.0f : KILT_SELU_ALPHA * exp (x));
    case KILT_ACT_SOFTPLUS: return kilt_sigmoid (x);
    case KILT_ACT_SOFTSIGN:
      {
        float d = 1.0f + fabs (x);
        return 1.0f / (d * d);
      }
    case KILT_ACT_EXPONENTIAL: return exp (x);
    case KILT_ACT_SWISH:
      {
        float s = kilt_sigmoid (x);
        return s + x * s * (1.0f - s);
      }
    case KILT_ACT_GELU:
      return 0.5f * (1.0f + erf (x * 0.7071067811865476f))
             + x * 0.3989422804014327f * exp (-0.5f * x * x);
    case KILT_ACT_GELU_TANH:
      {
        float t = tanh (KILT_GELU_C * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + t)
               + 0.5f * x * (1.0f - t * t) * KILT_GELU_C * (1.0f + 3.0f * 0.044715f * x * x);
      }
    case KILT_ACT_HARD_SIGMOID: return x > -3.0f && x < 3.0f ? 1.0f / 6.0f : 0.0f;
    case KILT_ACT_HARD_SIGMOID_K2: return x > -2.5f && x < 2.5f ? 0.2f : 0.0f;
    case KILT_ACT_HARD_SWISH:
      return clamp (x / 6.0f + 0.5f, 0.0f, 1.0f) + (x > -3.0f && x < 3.0f ? x / 6.0f : 0.0f);
    default: return 1.0f;
    }
}

/* y = act (x) over n floats. */
__kernel void kilt_act_x_forward (__global float *y, __global const float *x, const uint n,
                                  const int act, const float alpha, const float maxv,
                                  const float thr)
{
  uint i = get_global_id (0);
  if (i < n)
    y[i] = kilt_act_x (act, x[i], alpha, maxv, thr);
}

/* dx = beta dx + dy act' (x). */
__kernel void kilt_act_x_backward (__global float *dx, __global const float *dy,
                                   __global const float *x, const uint n, const int act,
                                   const float alpha, const float maxv, const float thr,
                                   const float beta)
{
  uint i = get_global_id (0);
  if (i < n)
    {
      float g = dy[i] * kilt_act_x_grad (act, x[i], alpha, maxv, thr);
      dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
    }
}

/* Rescaling: y = scale x + offset. */
__kernel void kilt_affine_forward (__global float *y, __global const float *x, const uint n,
                                   const float scale, const float offset)
{
  uint i = get_global_id (0);
  if (i < n)
    y[i] = scale * x[i] + offset;
}

/* dx = beta dx + scale dy. */
__kernel void kilt_affine_backward (__global float *dx, __global const float *dy, const uint n,
                                    const float scale, const float beta)
{
  uint i = get_global_id (0);
  if (i < n)
    {
      float g = scale * dy[i];
      dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
    }
}
