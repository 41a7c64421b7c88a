/* Embedding: a table lookup of integer ids, and the scatter-add of its gradient. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* The row an id names, or -1 when it names none. Ids arrive as the data set's floats; they
 * are truncated towards zero, as Keras casts them (a NaN or an id outside [0, rows) gives
 * -1, so no lookup ever reads outside the table). */
static inline int
kilt_embedding_row (float x, uint rows)
{
  return x >= 0.0f && x < (float) rows ? (int) x : -1;
}

/* out[n, d, 0, t] = table[id (n, t), d], or 0 for an id outside the table. One work-item per
 * (step, dimension, sample). */
__kernel void kilt_embedding_forward (__global float *out, __global const float *ids,
                                      __global const float *params, const uint pofs,
                                      const uint rows, const uint dim, const uint steps,
                                      const uint batch)
{
  uint t = get_global_id (0), d = get_global_id (1), n = get_global_id (2);
  if (t >= steps || d >= dim || n >= batch)
    return;
  int r = kilt_embedding_row (ids[(size_t) n * steps + t], rows);
  out[((size_t) n * dim + d) * steps + t]
      = r < 0 ? 0.0f : params[pofs + (size_t) r * dim + d];
}

/* grads[gofs + r, d] = the sum of dout[n, d, t] over the positions (n, t) whose id is r.
 * Work-item (d, part) owns column d of the rows r with r % parts == part: it zeroes them, then
 * walks every position in order and adds those whose id it owns. No two work-items write one
 * element, so there are no atomics and the sums come out the same on every run. */
__kernel void kilt_embedding_backward (__global float *grads, const uint gofs,
                                       __global const float *ids, __global const float *dout,
                                       const uint rows, const uint dim, const uint steps,
                                       const uint batch, const uint parts)
{
  uint d = get_global_id (0), part = get_global_id (1);
  if (d >= dim || part >= parts)
    return;
  for (uint r = part; r < rows; r += parts)
    grads[gofs + (size_t) r * dim + d] = 0.0f;
  for (uint n = 0; n < batch; n++)
    for (uint t = 0; t < steps; t++)
      {
        int r = kilt_embedding_row (ids[(size_t) n * steps + t], rows);
        if (r >= 0 && (uint) r % parts == part)
          grads[gofs + (size_t) r * dim + d] += dout[((size_t) n * dim + d) * steps + t];
      }
}
