/* LSTM and GRU: the steps' layout moves and the fused per-step gate kernels, forward and
 * backward. Time-major buffers: row (t, b) of a [steps][batch][width] buffer is at
 * (t * batch + b) * width, so one step's rows are contiguous for the recurrent GEMM. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* The gates' activation (Keras' recurrent_activation) and its derivative through its output;
 * KILT_ACT_HARD_SIGMOID(_K2) come from activation.cl. */
inline float kilt_rnn_gate (int act, float x)
{
  switch (act)
    {
    case KILT_ACT_HARD_SIGMOID: return clamp (x / 6.0f + 0.5f, 0.0f, 1.0f);
    case KILT_ACT_HARD_SIGMOID_K2: return clamp (0.2f * x + 0.5f, 0.0f, 1.0f);
    default: return 1.0f / (1.0f + exp (-x));
    }
}

inline float kilt_rnn_gate_grad (int act, float y)
{
  switch (act)
    {
    case KILT_ACT_HARD_SIGMOID: return y > 0.0f && y < 1.0f ? 1.0f / 6.0f : 0.0f;
    case KILT_ACT_HARD_SIGMOID_K2: return y > 0.0f && y < 1.0f ? 0.2f : 0.0f;
    default: return y * (1.0f - y);
    }
}

/* The step of the input that processing step t reads: the mask's kernels take the direction
 * as @back (go_backwards). A masked step keeps the state (h, and an LSTM's c) of the step
 * before and gives it as its output, as Keras does on the CPU (zero_output_for_mask false);
 * its gates get no gradient, and the state's gradient passes through it unchanged. */
#define KILT_RNN_INPUT_STEP(t, steps, back) ((back) ? (steps) - 1 - (t) : (t))

/* Kilt's (batch, features, 1, steps) input to time-major rows xt[t][b][f], the steps reversed
 * when @backwards. One work-item per (f, t, b). */
__kernel void kilt_rnn_to_steps (__global float *xt, const uint xt_off, __global const float *x,
                                 const uint features, const uint steps, const uint batch,
                                 const int backwards)
{
  uint f = get_global_id (0), t = get_global_id (1), b = get_global_id (2);
  if (f >= features || t >= steps || b >= batch)
    return;
  uint src = backwards ? steps - 1 - t : t;
  xt[xt_off + ((size_t) t * batch + b) * features + f]
      = x[((size_t) b * features + f) * steps + src];
}

/* The way back: dx[b][f][t] = beta dx + dxt[t'][b][f]. */
__kernel void kilt_rnn_from_steps (__global float *dx, __global const float *dxt, const uint dxt_off,
                                   const uint features, const uint steps, const uint batch,
                                   const int backwards, const float beta)
{
  uint f = get_global_id (0), t = get_global_id (1), b = get_global_id (2);
  if (f >= features || t >= steps || b >= batch)
    return;
  uint src = backwards ? steps - 1 - t : t;
  size_t i = ((size_t) b * features + f) * steps + t;
  float v = dxt[dxt_off + ((size_t) src * batch + b) * features + f];
  dx[i] = beta == 0.0f ? v : beta * dx[i] + v;
}

/* Where processing step t's state goes in the layer's output. @sequences: 0, the last step's
 * only, out[b][u]; 1, every step's in processing order, out[b][u][t]; 2, every step's in the
 * input's order (a Bidirectional's backward half), out[b][u][steps - 1 - t]. */
inline void kilt_rnn_emit (__global float *out, uint b, uint j, uint t, uint units, uint steps,
                           int sequences, float h)
{
  if (sequences)
    out[((size_t) b * units + j) * steps + (sequences == 2 ? steps - 1 - t : t)] = h;
  else if (t == steps - 1)
    out[(size_t) b * units + j] = h;
}

/* d(loss)/d(h_t) from the layer's output gradient. */
inline float kilt_rnn_dout (__global const float *dout, uint b, uint j, uint t, uint units,
                            uint steps, int sequences)
{
  if (sequences)
    return dout[((size_t) b * units + j) * steps + (sequences == 2 ? steps - 1 - t : t)];
  return t == steps - 1 ? dout[(size_t) b * units + j] : 0.0f;
}

/* LSTM step t, one work-item per (j, b): g[t][b] holds x W + h U (gates i, f, c, o, Keras'
 * order), becomes the activated gates; c[t][b][j], h[t][b][j] and the output are written. */
__kernel void kilt_lstm_step (__global float *sv, const uint g_off, const uint c_off,
                              const uint h_off, __global float *out, __global const float *params,
                              const uint bias_off, const int has_bias, const uint t,
                              const uint batch, const uint units, const uint steps,
                              const int rec_act, const int sequences,
                              __global const float *mk, const int mk_kind, const float mk_value,
                              const uint mk_feats, const int back)
{
  uint j = get_global_id (0), b = get_global_id (1);
  if (j >= units || b >= batch)
    return;
  __global float *g = sv + g_off, *c = sv + c_off, *h = sv + h_off;
  size_t row = (size_t) t * batch + b;
  __global float *z = g + row * 4 * units;
  float zi = z[j], zf = z[units + j], zc = z[2 * units + j], zo = z[3 * units + j];
  if (has_bias)
    {
      zi += params[bias_off + j];
      zf += params[bias_off + units + j];
      zc += params[bias_off + 2 * units + j];
      zo += params[bias_off + 3 * units + j];
    }
  float i = kilt_rnn_gate (rec_act, zi), f = kilt_rnn_gate (rec_act, zf), cc = tanh (zc),
        o = kilt_rnn_gate (rec_act, zo);
  float cprev = t > 0 ? c[(row - batch) * units + j] : 0.0f;
  float ct = f * cprev + i * cc, ht = o * tanh (ct);
  int keep = kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, KILT_RNN_INPUT_STEP (t, steps, back),
                             steps);
  if (!keep)
    {
      ct = cprev;
      ht = t > 0 ? h[(row - batch) * units + j] : 0.0f;
    }
  z[j] = i;
  z[units + j] = f;
  z[2 * units + j] = cc;
  z[3 * units + j] = o;
  c[row * units + j] = ct;
  h[row * units + j] = ht;
  kilt_rnn_emit (out, b, j, t, units, steps, sequences, ht);
}

/* LSTM step t backward: dh = output gradient + dh_carry (step t + 1's dZ U^T, absent at the
 * last step); dc_carry holds d(loss)/d(c_t) from step t + 1 and leaves with d/d(c_{t-1}).
 * dz[t][b] gets the gradient of the four pre-activations. */
__kernel void kilt_lstm_step_backward (__global const float *sv, const uint g_off,
                                       const uint c_off, __global const float *dout, __global float *ws,
                                       const uint dz_off, const uint dh_off, const uint dc_off,
                                       const uint t, const uint batch, const uint units,
                                       const uint steps, const int rec_act, const int sequences,
                              __global const float *mk, const int mk_kind, const float mk_value,
                              const uint mk_feats, const int back)
{
  uint j = get_global_id (0), b = get_global_id (1);
  if (j >= units || b >= batch)
    return;
  __global const float *g = sv + g_off, *c = sv + c_off;
  size_t row = (size_t) t * batch + b, k = (size_t) b * units + j;
  __global const float *z = g + row * 4 * units;
  __global float *dz = ws + dz_off + row * 4 * units;
  float i = z[j], f = z[units + j], cc = z[2 * units + j], o = z[3 * units + j];
  int last = t == steps - 1;
  float dh = kilt_rnn_dout (dout, b, j, t, units, steps, sequences)
             + (last ? 0.0f : ws[dh_off + k]);
  int keep = kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, KILT_RNN_INPUT_STEP (t, steps, back),
                             steps);
  if (!keep)
    {
      /* The caller's GEMM adds dz U^T (here 0) to the state's gradient passed through. */
      for (uint q = 0; q < 4; q++)
        dz[q * units + j] = 0.0f;
      ws[dh_off + k] = dh;
      if (last)
        ws[dc_off + k] = 0.0f;
      return;
    }
  ws[dh_off + k] = 0.0f;
  float tc = tanh (c[row * units + j]);
  float cprev = t > 0 ? c[(row - batch) * units + j] : 0.0f;
  float dc = dh * o * (1.0f - tc * tc) + (last ? 0.0f : ws[dc_off + k]);
  dz[j] = dc * cc * kilt_rnn_gate_grad (rec_act, i);
  dz[units + j] = dc * cprev * kilt_rnn_gate_grad (rec_act, f);
  dz[2 * units + j] = dc * i * (1.0f - cc * cc);
  dz[3 * units + j] = dh * tc * kilt_rnn_gate_grad (rec_act, o);
  ws[dc_off + k] = dc * f;
}

/* GRU step t with reset_after (Keras 3's and tf2's default): g[t][b] holds x W (gates z, r,
 * h), r_ws[b] the recurrent h U (unless @rec is 0: the first step, where h is 0); biases
 * (2, 3 units), the input's then the recurrent's. g becomes (z, r, candidate), rh[t][b] keeps
 * the recurrent candidate term (h U_h + b_rh) backward needs. */
__kernel void kilt_gru_step (__global float *sv, const uint g_off, const uint rh_off,
                             const uint h_off, __global float *out, __global const float *params, const uint bias_off,
                             const int has_bias, __global const float *ws, const uint r_off,
                             const int rec, const uint t, const uint batch, const uint units,
                             const uint steps, const int rec_act, const int sequences,
                              __global const float *mk, const int mk_kind, const float mk_value,
                              const uint mk_feats, const int back)
{
  uint j = get_global_id (0), b = get_global_id (1);
  if (j >= units || b >= batch)
    return;
  __global float *g = sv + g_off, *rh = sv + rh_off, *h = sv + h_off;
  size_t row = (size_t) t * batch + b;
  __global float *x = g + row * 3 * units;
  __global const float *r = ws + r_off + (size_t) b * 3 * units;
  float xz = x[j], xr = x[units + j], xh = x[2 * units + j];
  float rz = rec ? r[j] : 0.0f, rr = rec ? r[units + j] : 0.0f, rhh = rec ? r[2 * units + j] : 0.0f;
  if (has_bias)
    {
      __global const float *bi = params + bias_off, *br = bi + 3 * units;
      xz += bi[j] + br[j];
      xr += bi[units + j] + br[units + j];
      xh += bi[2 * units + j];
      rhh += br[2 * units + j];
    }
  float zg = kilt_rnn_gate (rec_act, xz + rz), rg = kilt_rnn_gate (rec_act, xr + rr);
  float hh = tanh (xh + rg * rhh);
  float hprev = t > 0 ? h[(row - batch) * units + j] : 0.0f;
  float ht = zg * hprev + (1.0f - zg) * hh;
  int keep = kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, KILT_RNN_INPUT_STEP (t, steps, back),
                             steps);
  if (!keep)
    ht = hprev;
  x[j] = zg;
  x[units + j] = rg;
  x[2 * units + j] = hh;
  rh[row * units + j] = rhh;
  h[row * units + j] = ht;
  kilt_rnn_emit (out, b, j, t, units, steps, sequences, ht);
}

/* Its backward: dzx[t][b] the input side's pre-activation gradient, dzr[t][b] the recurrent
 * side's (the candidate's scaled by r); dh (in ws at dh_off) comes in as step t + 1's
 * dzr U^T and leaves as the direct part dh z, to which the caller's GEMM adds dzr[t] U^T. */
__kernel void kilt_gru_step_backward (__global const float *sv, const uint g_off,
                                      const uint rh_off, const uint h_off,
                                      __global const float *dout,
                                      __global float *ws, const uint dzx_off, const uint dzr_off,
                                      const uint dh_off, const uint t, const uint batch,
                                      const uint units, const uint steps, const int rec_act,
                                      const int sequences,
                              __global const float *mk, const int mk_kind, const float mk_value,
                              const uint mk_feats, const int back)
{
  uint j = get_global_id (0), b = get_global_id (1);
  if (j >= units || b >= batch)
    return;
  __global const float *g = sv + g_off, *rh = sv + rh_off, *h = sv + h_off;
  size_t row = (size_t) t * batch + b, k = (size_t) b * units + j;
  __global const float *x = g + row * 3 * units;
  __global float *dx = ws + dzx_off + row * 3 * units, *dr = ws + dzr_off + row * 3 * units;
  float zg = x[j], rg = x[units + j], hh = x[2 * units + j], rhh = rh[row * units + j];
  float hprev = t > 0 ? h[(row - batch) * units + j] : 0.0f;
  float dh = kilt_rnn_dout (dout, b, j, t, units, steps, sequences)
             + (t == steps - 1 ? 0.0f : ws[dh_off + k]);
  int keep = kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, KILT_RNN_INPUT_STEP (t, steps, back),
                             steps);
  if (!keep)
    {
      for (uint q = 0; q < 3; q++)
        dx[q * units + j] = dr[q * units + j] = 0.0f;
      ws[dh_off + k] = dh;
      return;
    }
  float dzz = dh * (hprev - hh) * kilt_rnn_gate_grad (rec_act, zg);
  float dah = dh * (1.0f - zg) * (1.0f - hh * hh);
  float dzr = dah * rhh * kilt_rnn_gate_grad (rec_act, rg);
  dx[j] = dzz;
  dx[units + j] = dzr;
  dx[2 * units + j] = dah;
  dr[j] = dzz;
  dr[units + j] = dzr;
  dr[2 * units + j] = dah * rg;
  ws[dh_off + k] = dh * zg;
}

/* GRU with reset_after false (Keras 2's original form), step t, first half: the update and
 * reset gates from x W + b + h U_zr (r_ws, absent at the first step), and r h into rh[t][b]
 * for the candidate's recurrent GEMM. */
__kernel void kilt_gru_gates (__global float *sv, const uint g_off, const uint rh_off,
                              const uint h_off, __global const float *params, const uint bias_off,
                              const int has_bias, __global const float *ws, const uint r_off,
                              const int rec, const uint t, const uint batch, const uint units,
                              const int rec_act)
{
  uint j = get_global_id (0), b = get_global_id (1);
  if (j >= units || b >= batch)
    return;
  __global float *g = sv + g_off, *rh = sv + rh_off, *h = sv + h_off;
  size_t row = (size_t) t * batch + b;
  __global float *x = g + row * 3 * units;
  __global const float *r = ws + r_off + (size_t) b * 3 * units;
  float xz = x[j] + (rec ? r[j] : 0.0f), xr = x[units + j] + (rec ? r[units + j] : 0.0f);
  if (has_bias)
    {
      xz += params[bias_off + j];
      xr += params[bias_off + units + j];
    }
  float zg = kilt_rnn_gate (rec_act, xz), rg = kilt_rnn_gate (rec_act, xr);
  float hprev = t > 0 ? h[(row - batch) * units + j] : 0.0f;
  x[j] = zg;
  x[units + j] = rg;
  rh[row * units + j] = rg * hprev;
}

/* Second half: the candidate from x W_h + b_h + (r h) U_h (r_ws's last third), the state. */
__kernel void kilt_gru_candidate (__global float *sv, const uint g_off, const uint h_off,
                                  __global float *out,
                                  __global const float *params, const uint bias_off,
                                  const int has_bias, __global const float *ws, const uint r_off,
                                  const int rec, const uint t, const uint batch, const uint units,
                                  const uint steps, const int sequences,
                              __global const float *mk, const int mk_kind, const float mk_value,
                              const uint mk_feats, const int back)
{
  uint j = get_global_id (0), b = get_global_id (1);
  if (j >= units || b >= batch)
    return;
  __global float *g = sv + g_off, *h = sv + h_off;
  size_t row = (size_t) t * batch + b;
  __global float *x = g + row * 3 * units;
  float a = x[2 * units + j] + (rec ? ws[r_off + (size_t) b * 3 * units + 2 * units + j] : 0.0f);
  if (has_bias)
    a += params[bias_off + 2 * units + j];
  float zg = x[j], hh = tanh (a);
  float hprev = t > 0 ? h[(row - batch) * units + j] : 0.0f;
  float ht = zg * hprev + (1.0f - zg) * hh;
  int keep = kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, KILT_RNN_INPUT_STEP (t, steps, back),
                             steps);
  if (!keep)
    ht = hprev;
  x[2 * units + j] = hh;
  h[row * units + j] = ht;
  kilt_rnn_emit (out, b, j, t, units, steps, sequences, ht);
}

/* Its backward, first half: dz[t][b]'s update and candidate parts, and the direct dh z into
 * dh (which comes in as the carried gradient from step t + 1). */
__kernel void kilt_gru_backward_a (__global const float *sv, const uint g_off, const uint h_off,
                                   __global const float *dout, __global float *ws,
                                   const uint dz_off, const uint dh_off, const uint t,
                                   const uint batch, const uint units, const uint steps,
                                   const int rec_act, const int sequences,
                              __global const float *mk, const int mk_kind, const float mk_value,
                              const uint mk_feats, const int back)
{
  uint j = get_global_id (0), b = get_global_id (1);
  if (j >= units || b >= batch)
    return;
  __global const float *g = sv + g_off, *h = sv + h_off;
  size_t row = (size_t) t * batch + b, k = (size_t) b * units + j;
  __global const float *x = g + row * 3 * units;
  __global float *dz = ws + dz_off + row * 3 * units;
  float zg = x[j], hh = x[2 * units + j];
  float hprev = t > 0 ? h[(row - batch) * units + j] : 0.0f;
  float dh = kilt_rnn_dout (dout, b, j, t, units, steps, sequences)
             + (t == steps - 1 ? 0.0f : ws[dh_off + k]);
  int keep = kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, KILT_RNN_INPUT_STEP (t, steps, back),
                             steps);
  if (!keep)
    {
      /* d(r h) is then 0, so kilt_gru_backward_b gives the reset gate none either. */
      dz[j] = dz[2 * units + j] = 0.0f;
      ws[dh_off + k] = dh;
      return;
    }
  dz[j] = dh * (hprev - hh) * kilt_rnn_gate_grad (rec_act, zg);
  dz[2 * units + j] = dh * (1.0f - zg) * (1.0f - hh * hh);
  ws[dh_off + k] = dh * zg;
}

/* Second half, after the caller's GEMM put d(r h) = dz_h U_h^T in ws at drh_off: the reset
 * gate's part of dz, and d(r h)'s share of dh. */
__kernel void kilt_gru_backward_b (__global const float *sv, const uint g_off, const uint h_off,
                                   __global float *ws, const uint dz_off, const uint dh_off,
                                   const uint drh_off, const uint t, const uint batch,
                                   const uint units, const int rec_act)
{
  uint j = get_global_id (0), b = get_global_id (1);
  if (j >= units || b >= batch)
    return;
  __global const float *g = sv + g_off, *h = sv + h_off;
  size_t row = (size_t) t * batch + b, k = (size_t) b * units + j;
  float rg = g[row * 3 * units + units + j];
  float hprev = t > 0 ? h[(row - batch) * units + j] : 0.0f;
  float drh = ws[drh_off + k];
  ws[dz_off + row * 3 * units + units + j] = drh * hprev * kilt_rnn_gate_grad (rec_act, rg);
  ws[dh_off + k] += drh * rg;
}

/* db[db_off + c] = sum over rows of dz[dz_off + r * cols + c]: a gate bias's gradient over
 * every (step, sample) row. */
__kernel void kilt_rnn_bias_grad (__global float *db, const uint db_off, __global const float *dz,
                                  const uint dz_off, const uint rows, const uint cols)
{
  uint c = get_global_id (0);
  if (c >= cols)
    return;
  float acc = 0.0f;
  for (uint r = 0; r < rows; r++)
    acc += dz[dz_off + (size_t) r * cols + c];
  db[db_off + c] = acc;
}

__kernel void kilt_rnn_zero (__global float *x, const uint off, const uint n)
{
  uint i = get_global_id (0);
  if (i < n)
    x[off + i] = 0.0f;
}
