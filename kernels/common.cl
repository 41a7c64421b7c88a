/* Helpers shared by every Kilt kernel: the counter-based RNG and activation functions. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Activation codes; must match KiltActivation in engine/kilt-layer.h. */
#define KILT_ACT_LINEAR 0
#define KILT_ACT_RELU 1
#define KILT_ACT_LEAKY_RELU 2
#define KILT_ACT_SIGMOID 3
#define KILT_ACT_TANH 4

/* A counter-based hash (a 32-bit mix in the style of splitmix/murmur finalisers): the same
 * (seed, counter) gives the same number on every device, with no state to store. */
inline uint kilt_hash (uint seed, uint a, uint b)
{
  uint x = seed ^ (a * 0x9E3779B9u) ^ (b * 0x85EBCA6Bu);
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

inline float kilt_uniform (uint seed, uint a, uint b)
{
  return (kilt_hash (seed, a, b) >> 8) * (1.0f / 16777216.0f);
}

inline float kilt_act (int act, float x, float alpha)
{
  switch (act)
    {
    case KILT_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case KILT_ACT_LEAKY_RELU: return x > 0.0f ? x : alpha * x;
    case KILT_ACT_SIGMOID: return 1.0f / (1.0f + exp (-x));
    case KILT_ACT_TANH: return tanh (x);
    default: return x;
    }
}

/* Derivative expressed through the activation's output y, so backward needs no saved input. */
inline float kilt_act_grad (int act, float y, float alpha)
{
  switch (act)
    {
    case KILT_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case KILT_ACT_LEAKY_RELU: return y > 0.0f ? 1.0f : alpha;
    case KILT_ACT_SIGMOID: return y * (1.0f - y);
    case KILT_ACT_TANH: return 1.0f - y * y;
    default: return 1.0f;
    }
}

/* Whether sample b's step t (in the input's order) is kept by a step mask (KiltStepMask):
 * 0 none; 1 ids m[b][t] != 0 (Embedding's mask_zero); 2 any of the @feats features
 * m[b][f][t] differs from @value (Keras' Masking). */
inline int kilt_step_kept (__global const float *m, int kind, float value, uint feats, uint b,
                           uint t, uint steps)
{
  if (kind == 1)
    return m[(size_t) b * steps + t] != 0.0f;
  if (kind == 2)
    {
      for (uint f = 0; f < feats; f++)
        if (m[((size_t) b * feats + f) * steps + t] != value)
          return 1;
      return 0;
    }
  return 1;
}

/* The implicit-GEMM convolution's arguments (kernels/igemm.cl, and on tensor cores
 * kernels/gemm-tf32.cl), offsets and strides in floats:
 * - out: the output tensor; sample b's channel m starts at out_off + b * out_bs + m * OP.
 * - A: row m of A at a_off + m * a_ms; entry (m, k = (c, t)) at + c * a_cs + t, or with a_flip
 *   at + c * a_cs + (kh kw - 1 - t) (t = i * kw + j).
 * - img: channel c of sample b at img_off + b * img_bs + c * img_cs, rows IW floats apart.
 * - bias: bias_off + m, when has_bias.
 * - M rows, N = batch x OP columns; IC x IH x IW image, kh x kw taps, strides, padding.
 * - the epilogue: act (an activation, kilt_act), then beta * out added when beta != 0. */
#define KILT_IGEMM_ARGS                                                                            \
  __global float *out, const ulong out_off, const uint out_bs, __global const float *A,            \
      const ulong a_off, const uint a_ms, const uint a_cs, const int a_flip,                       \
      __global const float *img, const ulong img_off, const uint img_bs, const uint img_cs,        \
      __global const float *bias, const ulong bias_off, const int has_bias, const uint M,          \
      const uint N, const uint IC, const uint IH, const uint IW, const uint kh, const uint kw,     \
      const uint sh, const uint sw, const int pt, const int pl, const uint OW, const uint OP,      \
      const int act, const float alpha, const float beta

/* The implicit-GEMM weight gradient's (kernels/igemm.cl, and on tensor cores kernels/gemm-tf32.cl). */
#define KILT_IGEMM_WGRAD_ARGS                                                                      \
  __global float *parts, const ulong parts_off, __global const float *dz, const ulong dz_off,      \
      const uint np, const uint len, __global const float *img, const ulong img_off,               \
      const uint img_bs, const uint img_cs, const uint F, const uint Kc, const uint IC,            \
      const uint IH, const uint IW, const uint kh, const uint kw, const uint sh, const uint sw,    \
      const int pt, const int pl, const uint OW, const uint OP
