/* Conv2D helpers around the GEMMs: im2col/col2im over a chunk of the batch, the layout
 * changes between NCHW and the GEMM's (filters, batch x spatial), bias gradient, split-K sum. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* The column matrix of a chunk of nb samples is (K, nb * P) row-major, K = C * kh * kw in
 * (c, i, j) order, the column index n = b * P + oy * OW + ox: forward is then one GEMM
 * W (F x K) * col over the whole chunk, and the weight gradient one GEMM whose inner dimension
 * is nb * P. With @ones, row K is all ones, so that the weight-gradient GEMM yields the bias
 * gradient as its last column. Over (OW, OH, C * nb): neighbouring work-items write
 * neighbouring floats, and each loops over its kh x kw taps, so that integer division (slow
 * on GPUs) happens once per kh * kw outputs. */
__kernel void kilt_conv_im2col (__global float *col, const uint col_off, __global const float *x,
                                const uint b0, const uint nb, const uint C, const uint H,
                                const uint W, const uint kh, const uint kw, const uint sh,
                                const uint sw, const uint pt, const uint pl, const uint OH,
                                const uint OW, const int ones, const uint dh, const uint dw)
{
  uint ox = get_global_id (0), oy = get_global_id (1), z = get_global_id (2);
  if (ox >= OW || oy >= OH || z >= C * nb)
    return;
  uint c = z / nb, b = z - c * nb;
  size_t NP = (size_t) nb * OH * OW;
  __global float *dst = col + col_off + ((size_t) b * OH + oy) * OW + ox;
  __global const float *plane = x + ((size_t) (b0 + b) * C + c) * H * W;
  int y0 = (int) (oy * sh) - (int) pt, x0 = (int) (ox * sw) - (int) pl;
  size_t k = (size_t) c * kh * kw;
  for (uint i = 0; i < kh; i++)
    {
      int y = y0 + (int) (i * dh);
      bool row_in = y >= 0 && y < (int) H;
      for (uint j = 0; j < kw; j++, k++)
        {
          int xx = x0 + (int) (j * dw);
          dst[k * NP] = row_in && xx >= 0 && xx < (int) W ? plane[y * (int) W + xx] : 0.0f;
        }
    }
  if (ones && c == 0)
    dst[(size_t) C * kh * kw * NP] = 1.0f;
}

/* The inverse gather: din[b0 + b, c, y, x] = beta * din + the sum of every col entry that
 * im2col took from (c, y, x). Over (W, H, C * nb), one work-item per input element, so no
 * atomics are needed. */
__kernel void kilt_conv_col2im (__global float *din, __global const float *col,
                                const uint col_off, const uint b0, const uint nb, const uint C,
                                const uint H, const uint W, const uint kh, const uint kw,
                                const uint sh, const uint sw, const uint pt, const uint pl,
                                const uint OH, const uint OW, const float beta, const uint dh,
                                const uint dw)
{
  uint xx = get_global_id (0), y = get_global_id (1), z = get_global_id (2);
  if (xx >= W || y >= H || z >= C * nb)
    return;
  uint c = z / nb, b = z % nb;
  size_t NP = (size_t) nb * OH * OW;
  __global const float *base = col + col_off + (size_t) b * OH * OW;
  /* Taps i with (y + pt - i) a multiple of sh and the output row in range; likewise j. */
  int ty = (int) (y + pt), tx = (int) (xx + pl);
  float acc = 0.0f;
  if (dh > 1 || dw > 1)
    {
      /* Dilated (strides are then 1 on that axis, as Keras has it, but any are handled): every
       * tap (i, j) whose output (ty - i dh) / sh, (tx - j dw) / sw is whole and in range. */
      for (uint i = 0; i < kh; i++)
        {
          int t = ty - (int) (i * dh);
          if (t < 0 || t % (int) sh != 0 || t / (int) sh >= (int) OH)
            continue;
          uint oy = (uint) t / sh;
          for (uint j = 0; j < kw; j++)
            {
              int u = tx - (int) (j * dw);
              if (u < 0 || u % (int) sw != 0 || u / (int) sw >= (int) OW)
                continue;
              acc += base[(size_t) ((c * kh + i) * kw + j) * NP + oy * OW + (uint) u / sw];
            }
        }
      size_t o = (((size_t) (b0 + b) * C + c) * H + y) * W + xx;
      din[o] = beta == 0.0f ? acc : beta * din[o] + acc;
      return;
    }
  int oy_lo = ty - (int) kh + 1 <= 0 ? 0 : (ty - (int) kh + (int) sh) / (int) sh;
  int oy_hi = min (ty / (int) sh, (int) OH - 1);
  int ox_lo = tx - (int) kw + 1 <= 0 ? 0 : (tx - (int) kw + (int) sw) / (int) sw;
  int ox_hi = min (tx / (int) sw, (int) OW - 1);
  for (int oy = oy_lo; oy <= oy_hi; oy++)
    {
      uint i = (uint) (ty - oy * (int) sh);
      for (int ox = ox_lo; ox <= ox_hi; ox++)
        {
          uint j = (uint) (tx - ox * (int) sw);
          acc += base[(size_t) ((c * kh + i) * kw + j) * NP + (uint) oy * OW + (uint) ox];
        }
    }
  size_t o = (((size_t) (b0 + b) * C + c) * H + y) * W + xx;
  din[o] = beta == 0.0f ? acc : beta * din[o] + acc;
}

/* GEMM result (F, nb * P) -> NCHW output of samples b0.., with bias and activation fused.
 * Over (P, F, nb): no division, contiguous rows on both sides. */
__kernel void kilt_conv_scatter (__global float *out, __global const float *y, const uint y_off,
                                 __global const float *params, const uint bias_off,
                                 const int has_bias, const uint b0, const uint nb, const uint F,
                                 const uint P, const int act, const float alpha)
{
  uint p = get_global_id (0), f = get_global_id (1), b = get_global_id (2);
  if (p >= P || f >= F || b >= nb)
    return;
  float v = y[y_off + ((size_t) f * nb + b) * P + p];
  if (has_bias)
    v += params[bias_off + f];
  out[((size_t) (b0 + b) * F + f) * P + p] = kilt_act (act, v, alpha);
}

/* NCHW output gradient of samples b0.. -> dz in (F, nb * P), through the activation's
 * derivative (expressed by its output). Over (P, F, nb). */
__kernel void kilt_conv_gather (__global float *dz, const uint dz_off, __global const float *dout,
                                __global const float *out, const uint b0, const uint nb,
                                const uint F, const uint P, const int act, const float alpha)
{
  uint p = get_global_id (0), f = get_global_id (1), b = get_global_id (2);
  if (p >= P || f >= F || b >= nb)
    return;
  size_t s = ((size_t) (b0 + b) * F + f) * P + p;
  dz[dz_off + ((size_t) f * nb + b) * P + p] = dout[s] * kilt_act_grad (act, out[s], alpha);
}

/* Split-K reduction of the weight gradient: the parts are (F, Kc) matrices, Kc = K or K + 1
 * (the bias column); their sum goes to the weights (F, K) and, for column K, to the bias
 * after them: grads = beta * grads + sum over the parts. */
__kernel void kilt_conv_sum_parts (__global float *grads, const uint off,
                                   __global const float *src, const uint src_off, const uint F,
                                   const uint K, const uint Kc, const uint parts,
                                   const float beta)
{
  uint i = get_global_id (0);
  uint n = F * Kc;
  if (i >= n)
    return;
  float acc = 0.0f;
  for (uint s = 0; s < parts; s++)
    acc += src[src_off + (size_t) s * n + i];
  uint f = i / Kc, k = i - f * Kc;
  uint d = off + (k < K ? f * K + k : F * K + f);
  grads[d] = beta == 0.0f ? acc : beta * grads[d] + acc;
}

/* CPU variants of im2col and col2im (PoCL runs a group's work-items in a loop on one thread):
 * a work-item moves a whole row of OW (or W) floats, so that the inner loop is a plain copy or
 * sum along contiguous memory that the compiler vectorises, and integer division happens once
 * per row. The per-element kernels above scatter to rows NP apart from each work-item, which
 * on PoCL ran at under 2 GB/s. */

/* One work-item per (tap row k of the column matrix, sample b): the P = OH * OW contiguous
 * entries of row k for sample b, output row by output row. Row K (the ones row), when asked
 * for, is written by the work-items of k = 0. */
__kernel void kilt_conv_im2col_rows (__global float *col, const uint col_off,
                                     __global const float *x, const uint b0, const uint nb,
                                     const uint C, const uint H, const uint W, const uint kh,
                                     const uint kw, const uint sh, const uint sw, const uint pt,
                                     const uint pl, const uint OH, const uint OW, const int ones,
                                     const uint dh, const uint dw)
{
  uint k = get_global_id (0), b = get_global_id (1);
  uint taps = kh * kw;
  if (k >= C * taps || b >= nb)
    return;
  uint c = k / taps, r = k - c * taps, i = r / kw, j = r - i * kw;
  size_t P = (size_t) OH * OW, NP = nb * P;
  __global float *dst = col + col_off + (size_t) k * NP + b * P;
  __global const float *plane = x + ((size_t) (b0 + b) * C + c) * H * W;
  if (ones && k == 0)
    {
      __global float *one = col + col_off + (size_t) C * taps * NP + b * P;
      for (size_t p = 0; p < P; p++)
        one[p] = 1.0f;
    }
  /* Output columns whose input column ox * sw + x0 lies inside the row: [lo, hi). */
  int x0 = (int) (j * dw) - (int) pl;
  int lo = x0 >= 0 ? 0 : (-x0 + (int) sw - 1) / (int) sw;
  int hi = (int) W - x0 <= 0 ? 0 : min ((int) OW, ((int) W - x0 + (int) sw - 1) / (int) sw);
  lo = min (lo, hi);
  for (uint oy = 0; oy < OH; oy++, dst += OW)
    {
      int y = (int) (oy * sh + i * dh) - (int) pt;
      if (y < 0 || y >= (int) H)
        {
          for (uint ox = 0; ox < OW; ox++)
            dst[ox] = 0.0f;
          continue;
        }
      __global const float *src = plane + (uint) y * W;
      for (int ox = 0; ox < lo; ox++)
        dst[ox] = 0.0f;
      if (sw == 1)
        for (int ox = lo; ox < hi; ox++)
          dst[ox] = src[ox + x0];
      else
        for (int ox = lo; ox < hi; ox++)
          dst[ox] = src[ox * (int) sw + x0];
      for (int ox = hi; ox < (int) OW; ox++)
        dst[ox] = 0.0f;
    }
}

/* One work-item per (input row y, channel c, sample b): din row = beta * din row + every
 * column entry im2col took from it, added tap by tap along the row. The row belongs to this
 * work-item alone, so it accumulates in place (in L1) without atomics; beta 0 never reads din. */
__kernel void kilt_conv_col2im_rows (__global float *din, __global const float *col,
                                     const uint col_off, const uint b0, const uint nb,
                                     const uint C, const uint H, const uint W, const uint kh,
                                     const uint kw, const uint sh, const uint sw, const uint pt,
                                     const uint pl, const uint OH, const uint OW,
                                     const float beta, const uint dh, const uint dw)
{
  uint y = get_global_id (0), c = get_global_id (1), b = get_global_id (2);
  if (y >= H || c >= C || b >= nb)
    return;
  size_t NP = (size_t) nb * OH * OW;
  __global float *dst = din + (((size_t) (b0 + b) * C + c) * H + y) * W;
  if (beta == 0.0f)
    for (uint xx = 0; xx < W; xx++)
      dst[xx] = 0.0f;
  else
    for (uint xx = 0; xx < W; xx++)
      dst[xx] *= beta;
  for (uint i = 0; i < kh; i++)
    {
      /* The output row oy that took input row y through tap row i, if any. */
      int t = (int) (y + pt) - (int) (i * dh);
      if (t < 0 || t % (int) sh != 0 || t / (int) sh >= (int) OH)
        continue;
      uint oy = (uint) t / sh;
      for (uint j = 0; j < kw; j++)
        {
          __global const float *src
              = col + col_off + ((size_t) (c * kh + i) * kw + j) * NP + ((size_t) b * OH + oy) * OW;
          /* Input column xx = ox * sw + j dw - pl for ox in [0, OW). */
          int x0 = (int) (j * dw) - (int) pl;
          int lo = x0 >= 0 ? 0 : (-x0 + (int) sw - 1) / (int) sw;
          int hi = (int) W - x0 <= 0 ? 0 : min ((int) OW, ((int) W - x0 + (int) sw - 1) / (int) sw);
          if (sw == 1)
            for (int ox = lo; ox < hi; ox++)
              dst[ox + x0] += src[ox];
          else
            for (int ox = lo; ox < hi; ox++)
              dst[ox * (int) sw + x0] += src[ox];
        }
    }
}

/* CPU variants of scatter and gather: one work-item per (filter f, sample b) moves the P
 * contiguous floats of that plane; the activation is uniform, so the common ones get loops the
 * compiler vectorises. Over (F, nb). */
__kernel void kilt_conv_scatter_rows (__global float *out, __global const float *y,
                                      const uint y_off, __global const float *params,
                                      const uint bias_off, const int has_bias, const uint b0,
                                      const uint nb, const uint F, const uint P, const int act,
                                      const float alpha)
{
  uint f = get_global_id (0), b = get_global_id (1);
  if (f >= F || b >= nb)
    return;
  __global const float *src = y + y_off + ((size_t) f * nb + b) * P;
  __global float *dst = out + ((size_t) (b0 + b) * F + f) * P;
  float bias = has_bias ? params[bias_off + f] : 0.0f;
  if (act == KILT_ACT_LINEAR)
    for (uint p = 0; p < P; p++)
      dst[p] = src[p] + bias;
  else if (act == KILT_ACT_RELU)
    for (uint p = 0; p < P; p++)
      {
        float v = src[p] + bias;
        dst[p] = v > 0.0f ? v : 0.0f;
      }
  else
    for (uint p = 0; p < P; p++)
      dst[p] = kilt_act (act, src[p] + bias, alpha);
}

__kernel void kilt_conv_gather_rows (__global float *dz, const uint dz_off,
                                     __global const float *dout, __global const float *out,
                                     const uint b0, const uint nb, const uint F, const uint P,
                                     const int act, const float alpha)
{
  uint f = get_global_id (0), b = get_global_id (1);
  if (f >= F || b >= nb)
    return;
  size_t s = ((size_t) (b0 + b) * F + f) * P;
  __global float *dst = dz + dz_off + ((size_t) f * nb + b) * P;
  if (act == KILT_ACT_LINEAR)
    for (uint p = 0; p < P; p++)
      dst[p] = dout[s + p];
  else if (act == KILT_ACT_RELU)
    for (uint p = 0; p < P; p++)
      dst[p] = out[s + p] > 0.0f ? dout[s + p] : 0.0f;
  else
    for (uint p = 0; p < P; p++)
      dst[p] = dout[s + p] * kilt_act_grad (act, out[s + p], alpha);
}

/* The inverse of gather without an activation: dst (samples b0.., NCHW) = beta * dst + the
 * (C, nb * P) matrix at src_off (Conv2DTranspose's input gradient). Over (P, C, nb). */
__kernel void kilt_conv_ungather (__global float *dst, __global const float *src,
                                  const uint src_off, const uint b0, const uint nb, const uint C,
                                  const uint P, const float beta)
{
  uint p = get_global_id (0), c = get_global_id (1), b = get_global_id (2);
  if (p >= P || c >= C || b >= nb)
    return;
  size_t o = ((size_t) (b0 + b) * C + c) * P + p;
  float v = src[src_off + ((size_t) c * nb + b) * P + p];
  dst[o] = beta == 0.0f ? v : beta * dst[o] + v;
}
