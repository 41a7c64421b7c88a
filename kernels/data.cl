/* Batch gathering: data set rows (bytes or floats) to a normalised, optionally augmented batch. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Bilinear sample of one channel plane at (ys, xs) with coordinates clamped to the image: Keras'
 * ImageDataGenerator shifts with interpolation order 1 and fill_mode "nearest". */
#define KILT_BILINEAR(src, W, H, ys, xs, out)                                                     \
  do                                                                                              \
    {                                                                                             \
      float x0f_ = floor (xs), y0f_ = floor (ys);                                                 \
      float fx_ = (xs) - x0f_, fy_ = (ys) - y0f_;                                                 \
      int x0_ = (int) x0f_, y0_ = (int) y0f_;                                                     \
      int xa_ = clamp (x0_, 0, (int) (W) - 1), xb_ = clamp (x0_ + 1, 0, (int) (W) - 1);           \
      int ya_ = clamp (y0_, 0, (int) (H) - 1) * (int) (W);                                        \
      int yb_ = clamp (y0_ + 1, 0, (int) (H) - 1) * (int) (W);                                    \
      float top_ = (1.0f - fx_) * (float) (src)[ya_ + xa_] + fx_ * (float) (src)[ya_ + xb_];      \
      float bot_ = (1.0f - fx_) * (float) (src)[yb_ + xa_] + fx_ * (float) (src)[yb_ + xb_];      \
      (out) = (1.0f - fy_) * top_ + fy_ * bot_;                                                   \
    }                                                                                             \
  while (0)

/* One work-item per output value (batch x C x H x W) and per target (batch x T).
 * Row b of the batch is position pos0 + b of the epoch's order; rows past n_valid repeat the
 * valid ones. Resident data is indexed by sample id, a streamed chunk by position - chunk_pos.
 * norm holds (mul, add) per channel. Augmentation draws, per sample id, flip from
 * kilt_uniform (aug_seed, id, 0) and shifts from counters 1 (x) and 2 (y): Keras' (augment,
 * bilinear, shift a fraction of the size) or, when translate > 0, whole pixels in
 * [-translate, translate] with the image reflected at its edges (airbench's pad + crop).
 * With flip_parity 0 or 1 instead of -1 the flip alternates (airbench's): sample id's flip is
 * drawn once, from kilt_uniform (flip_seed, id, 0), and inverted in odd epochs (parity 1).
 * Without augmentation, mirror flips every sample (flip test-time augmentation). */
#define KILT_GATHER_FLIP(id)                                                                      \
  (flip_parity < 0 ? kilt_uniform (aug_seed, id, 0u) < 0.5f                                       \
                   : (kilt_uniform (flip_seed, id, 0u) < 0.5f) != flip_parity)
#define KILT_DEFINE_GATHER(NAME, TYPE)                                                            \
  __kernel void NAME (__global float *out, __global float *targets, __global const TYPE *data,    \
                      __global const uint *order, __global const float *tsrc,                     \
                      __global const float *norm, const uint pos0, const uint n_valid,            \
                      const uint batch, const uint chunk_pos, const int streamed, const uint C,   \
                      const uint H, const uint W, const uint T, const int augment,                \
                      const uint aug_seed, const float shift, const int translate,                \
                      const int mirror, const uint flip_seed, const int flip_parity)              \
  {                                                                                               \
    uint i = get_global_id (0);                                                                   \
    uint HW = H * W, S = C * HW;                                                                  \
    if (i < batch * S)                                                                            \
      {                                                                                           \
        uint b = i / S, r = i - b * S;                                                            \
        uint pos = pos0 + (b < n_valid ? b : b % n_valid);                                        \
        uint id = order[pos];                                                                     \
        size_t row = streamed ? (size_t) (pos - chunk_pos) : (size_t) id;                         \
        uint c = r / HW, yx = r - c * HW, y = yx / W, x = yx - y * W;                             \
        __global const TYPE *src = data + row * S + (size_t) c * HW;                              \
        float v;                                                                                  \
        if (translate > 0)                                                                        \
          {                                                                                       \
            int flip = KILT_GATHER_FLIP (id), span = 2 * translate + 1;                           \
            int dx = min ((int) (kilt_uniform (aug_seed, id, 1u) * (float) span), span - 1);      \
            int dy = min ((int) (kilt_uniform (aug_seed, id, 2u) * (float) span), span - 1);      \
            int xs = (flip ? (int) W - 1 - (int) x : (int) x) + dx - translate;                   \
            int ys = (int) y + dy - translate;                                                    \
            xs = xs < 0 ? -xs : xs >= (int) W ? 2 * ((int) W - 1) - xs : xs;                      \
            ys = ys < 0 ? -ys : ys >= (int) H ? 2 * ((int) H - 1) - ys : ys;                      \
            v = (float) src[ys * (int) W + xs];                                                   \
          }                                                                                       \
        else if (augment)                                                                         \
          {                                                                                       \
            int flip = KILT_GATHER_FLIP (id);                                                     \
            float tx = (2.0f * kilt_uniform (aug_seed, id, 1u) - 1.0f) * shift * (float) W;       \
            float ty = (2.0f * kilt_uniform (aug_seed, id, 2u) - 1.0f) * shift * (float) H;       \
            float xs = (float) (flip ? W - 1 - x : x) + tx;                                       \
            float ys = (float) y + ty;                                                            \
            KILT_BILINEAR (src, W, H, ys, xs, v);                                                 \
          }                                                                                       \
        else                                                                                      \
          v = (float) src[mirror ? y * W + (W - 1 - x) : yx];                                     \
        out[i] = v * norm[2 * c] + norm[2 * c + 1];                                               \
      }                                                                                           \
    if (i < batch * T)                                                                            \
      {                                                                                           \
        uint b = i / T, k = i - b * T;                                                            \
        uint pos = pos0 + (b < n_valid ? b : b % n_valid);                                        \
        targets[i] = tsrc[(size_t) order[pos] * T + k];                                           \
      }                                                                                           \
  }

KILT_DEFINE_GATHER (kilt_gather_u8, uchar)
KILT_DEFINE_GATHER (kilt_gather_f32, float)

/* Flip test-time augmentation: y = (y + x) / 2, the mean of the two predictions. */
__kernel void kilt_mean_of_two (__global float *y, __global const float *x, const uint n)
{
  uint i = get_global_id (0);
  if (i < n)
    y[i] = 0.5f * (y[i] + x[i]);
}
