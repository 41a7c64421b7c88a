/* Conv2D helpers around the GEMMs: im2col/col2im over a chunk of the batch, the layout
 * changes between NCHW and the GEMM's (filters, batch x spatial), bias gradient, split-K sum. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* The column matrix of a chunk of nb samples is (K, nb * P) row-major, K = C * kh * kw in
 * (c, i, j) order, the column index n = b * P + oy * OW + ox: forward is then one GEMM
 * W (F x K) * col over the whole chunk, and the weight gradient one GEMM whose inner dimension
 * is nb * P. One work-item per element of col, so writes are coalesced. */
__kernel void kilt_conv_im2col (__global float *col, const uint col_off, __global const float *x,
                                const uint b0,
                                const uint nb, const uint C, const uint H, const uint W,
                                const uint kh, const uint kw, const uint sh, const uint sw,
                                const uint pt, const uint pl, const uint OH, const uint OW)
{
  size_t gid = get_global_id (0);
  uint P = OH * OW, NP = nb * P;
  size_t total = (size_t) C * kh * kw * NP;
  if (gid >= total)
    return;
  uint n = (uint) (gid % NP);
  uint k = (uint) (gid / NP);
  uint b = n / P, p = n % P;
  uint oy = p / OW, ox = p % OW;
  uint j = k % kw, i = (k / kw) % kh, c = k / (kw * kh);
  int y = (int) (oy * sh + i) - (int) pt;
  int xx = (int) (ox * sw + j) - (int) pl;
  float v = 0.0f;
  if (y >= 0 && y < (int) H && xx >= 0 && xx < (int) W)
    v = x[(((size_t) (b0 + b) * C + c) * H + (uint) y) * W + (uint) xx];
  col[col_off + gid] = v;
}

/* The inverse gather: din[b0 + b, c, y, x] = beta * din + the sum of every col entry that
 * im2col took from (c, y, x). One work-item per input element, so no atomics are needed. */
__kernel void kilt_conv_col2im (__global float *din, __global const float *col,
                                const uint col_off, const uint b0,
                                const uint nb, const uint C, const uint H, const uint W,
                                const uint kh, const uint kw, const uint sh, const uint sw,
                                const uint pt, const uint pl, const uint OH, const uint OW,
                                const float beta)
{
  size_t gid = get_global_id (0);
  size_t per = (size_t) C * H * W;
  if (gid >= per * nb)
    return;
  uint b = (uint) (gid / per), r = (uint) (gid % per);
  uint xx = r % W, y = (r / W) % H, c = r / (W * H);
  uint P = OH * OW, NP = nb * P;
  float acc = 0.0f;
  for (uint i = 0; i < kh; i++)
    {
      int ty = (int) (y + pt) - (int) i;
      if (ty < 0 || ty % (int) sh != 0)
        continue;
      uint oy = (uint) ty / sh;
      if (oy >= OH)
        continue;
      for (uint j = 0; j < kw; j++)
        {
          int tx = (int) (xx + pl) - (int) j;
          if (tx < 0 || tx % (int) sw != 0)
            continue;
          uint ox = (uint) tx / sw;
          if (ox >= OW)
            continue;
          acc += col[col_off + (size_t) ((c * kh + i) * kw + j) * NP + b * P + oy * OW + ox];
        }
    }
  size_t o = (size_t) b0 * per + gid;
  din[o] = beta == 0.0f ? acc : beta * din[o] + acc;
}

/* GEMM result (F, nb * P) -> NCHW output of samples b0.., with bias and activation fused.
 * One work-item per output element, in output order. */
__kernel void kilt_conv_scatter (__global float *out, __global const float *y, const uint y_off,
                                 __global const float *params, const uint bias_off,
                                 const int has_bias, const uint b0, const uint nb, const uint F,
                                 const uint P, const int act, const float alpha)
{
  size_t gid = get_global_id (0);
  if (gid >= (size_t) nb * F * P)
    return;
  uint p = (uint) (gid % P);
  uint f = (uint) ((gid / P) % F);
  uint b = (uint) (gid / ((size_t) P * F));
  float v = y[y_off + (size_t) f * nb * P + (size_t) b * P + p];
  if (has_bias)
    v += params[bias_off + f];
  out[(size_t) b0 * F * P + gid] = kilt_act (act, v, alpha);
}

/* NCHW output gradient of samples b0.. -> dz in (F, nb * P), through the activation's
 * derivative (expressed by its output). One work-item per element of dz, in dz order. */
__kernel void kilt_conv_gather (__global float *dz, const uint dz_off, __global const float *dout,
                                __global const float *out, const uint b0, const uint nb,
                                const uint F, const uint P, const int act, const float alpha)
{
  size_t gid = get_global_id (0);
  size_t NP = (size_t) nb * P;
  if (gid >= NP * F)
    return;
  uint f = (uint) (gid / NP);
  uint n = (uint) (gid % NP);
  uint b = n / P, p = n % P;
  size_t s = ((size_t) (b0 + b) * F + f) * P + p;
  dz[dz_off + gid] = dout[s] * kilt_act_grad (act, out[s], alpha);
}

/* db[f] = beta * db[f] + the sum of row f of dz (F, n); one work-group per row, a tree sum
 * in local memory. The group size must be a power of two of at most 256. */
__kernel void kilt_conv_bias_grad (__global float *grads, const uint off,
                                   __global const float *dz, const uint dz_off, const uint n,
                                   const float beta)
{
  __local float part[256];
  uint f = get_group_id (0), l = get_local_id (0), ls = get_local_size (0);
  __global const float *row = dz + dz_off + (size_t) f * n;
  float acc = 0.0f;
  for (uint i = l; i < n; i += ls)
    acc += row[i];
  part[l] = acc;
  barrier (CLK_LOCAL_MEM_FENCE);
  for (uint s = ls / 2; s > 0; s /= 2)
    {
      if (l < s)
        part[l] += part[l + s];
      barrier (CLK_LOCAL_MEM_FENCE);
    }
  if (l == 0)
    grads[off + f] = beta == 0.0f ? part[0] : beta * grads[off + f] + part[0];
}

/* Split-K reduction: dst[off + i] = beta * dst + sum over s < parts of src[s * n + i]. */
__kernel void kilt_conv_sum_parts (__global float *dst, const uint off,
                                   __global const float *src, const uint src_off, const uint n,
                                   const uint parts,
                                   const float beta)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  float acc = 0.0f;
  for (uint s = 0; s < parts; s++)
    acc += src[src_off + (size_t) s * n + i];
  dst[off + i] = beta == 0.0f ? acc : beta * dst[off + i] + acc;
}
