/* The device batcher: gathered batches against a C reference (normalise, flip, shift), partial
 * batches, seeded shuffles, streamed chunks identical to resident data, float samples. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-batcher.h"
#include "kilt-error.h"
#include "kilt-rng.h"

#include <math.h>
#include <string.h>

/* Data sets are built and freed by hand here: the loaders live elsewhere. */
static KiltDataset *
make_dataset (KiltSampleType type, KiltShape shape, gsize n, guint n_classes, guint n_targets,
              guint64 seed)
{
  KiltDataset *ds = g_new0 (KiltDataset, 1);
  gsize S = kilt_shape_size (&shape);
  KiltRng rng;

  kilt_rng_init (&rng, seed);
  ds->name = g_strdup ("test set");
  ds->shape = shape;
  ds->type = type;
  ds->n_classes = n_classes;
  ds->n_targets = n_classes ? 1 : n_targets;
  ds->train.n = n;
  if (type == KILT_SAMPLE_U8)
    {
      ds->train.u8 = g_new (guint8, n * S);
      for (gsize i = 0; i < n * S; i++)
        ds->train.u8[i] = (guint8)kilt_rng_below (&rng, 256);
    }
  else
    {
      ds->train.f32 = g_new (float, n *S);
      for (gsize i = 0; i < n * S; i++)
        ds->train.f32[i] = (float)kilt_rng_normal (&rng);
    }
  if (n_classes)
    {
      ds->train.labels = g_new (gint32, n);
      for (gsize i = 0; i < n; i++)
        ds->train.labels[i] = (gint32)kilt_rng_below (&rng, n_classes);
    }
  else
    {
      ds->train.targets = g_new (float, n *n_targets);
      for (gsize i = 0; i < n * n_targets; i++)
        ds->train.targets[i] = (float)kilt_rng_normal (&rng);
    }
  for (guint c = 0; c < 4; c++)
    {
      double scale = type == KILT_SAMPLE_U8 ? 255.0 : 1.0;
      ds->channel_mean[c] = (float)(scale * (0.3 + 0.4 * kilt_rng_uniform (&rng)));
      ds->channel_std[c] = (float)(scale * (0.1 + 0.3 * kilt_rng_uniform (&rng)));
    }
  return ds;
}

static void
free_dataset (KiltDataset *ds)
{
  g_free (ds->name);
  g_free (ds->train.u8);
  g_free (ds->train.f32);
  g_free (ds->train.labels);
  g_free (ds->train.targets);
  g_free (ds);
}

static double
sample_value (const KiltDataset *ds, gsize id, guint c, int y, int x)
{
  gsize S = kilt_dataset_sample_size (ds),
        off = id * S + ((gsize)c * ds->shape.h + y) * ds->shape.w + x;
  return ds->type == KILT_SAMPLE_U8 ? ds->train.u8[off] : ds->train.f32[off];
}

/* Written from the contract in kilt-batcher.h, not from the kernel. */

/* Whether the batchers check_epoch makes, and the reference, alternate flips (airbench's):
 * set by test_alternate_flip around its epochs only. */
static gboolean alternate_flip;
static void
reference_batch (const KiltDataset *ds, const guint32 *order, guint batch, guint bi,
                 KiltPreprocess pp, gboolean augment, guint translate, guint32 seed, guint epoch,
                 float *input, float *targets, guint *n_valid)
{
  guint C = ds->shape.c, H = ds->shape.h, W = ds->shape.w;
  gsize n = ds->train.n, first = (gsize)bi * batch;
  guint valid = (guint)MIN (batch, n - first), T = ds->n_targets;
  guint32 a = kilt_batcher_augment_seed (seed, epoch);
  guint32 a0 = kilt_batcher_augment_seed (seed, 0);

  *n_valid = valid;
  for (guint b = 0; b < batch; b++)
    {
      gsize id = order[first + (b < valid ? b : b % valid)];
      /* Alternating: epoch 0's flip of the image, inverted in odd epochs. */
      gboolean flip = alternate_flip
                          ? (kilt_hash_uniform (a0, (guint32)id, 0) < 0.5f) != (epoch % 2)
                          : kilt_hash_uniform (a, (guint32)id, 0) < 0.5f;
      /* The shift in float, as the device draws it; the interpolation in double. */
      float tx = (2.0f * kilt_hash_uniform (a, (guint32)id, 1) - 1.0f) * 0.1f * (float)W;
      float ty = (2.0f * kilt_hash_uniform (a, (guint32)id, 2) - 1.0f) * 0.1f * (float)H;

      for (guint k = 0; k < T; k++)
        targets[b * T + k]
            = ds->n_classes ? (float)ds->train.labels[id] : ds->train.targets[id * T + k];
      for (guint c = 0; c < C; c++)
        for (guint y = 0; y < H; y++)
          for (guint x = 0; x < W; x++)
            {
              double v;
              if (translate)
                {
                  /* A whole-pixel shift in [-t, t], drawn as the contract says, into the image
                   * mirrored about its edge pixels. */
                  int span = 2 * (int)translate + 1;
                  int dx
                      = MIN ((int)(kilt_hash_uniform (a, (guint32)id, 1) * (float)span), span - 1)
                        - (int)translate;
                  int dy
                      = MIN ((int)(kilt_hash_uniform (a, (guint32)id, 2) * (float)span), span - 1)
                        - (int)translate;
                  int xs = (int)(flip ? W - 1 - x : x) + dx, ys = (int)y + dy;
                  if (xs < 0)
                    xs = -xs;
                  if (xs > (int)W - 1)
                    xs = 2 * ((int)W - 1) - xs;
                  if (ys < 0)
                    ys = -ys;
                  if (ys > (int)H - 1)
                    ys = 2 * ((int)H - 1) - ys;
                  g_assert (xs >= 0 && xs < (int)W && ys >= 0 && ys < (int)H);
                  v = sample_value (ds, id, c, (guint)ys, (guint)xs);
                }
              else if (augment)
                {
                  double xs = (double)((float)(flip ? W - 1 - x : x) + tx);
                  double ys = (double)((float)y + ty);
                  double fx = xs - floor (xs), fy = ys - floor (ys);
                  int x0 = (int)floor (xs), y0 = (int)floor (ys);
                  int xa = CLAMP (x0, 0, (int)W - 1), xb = CLAMP (x0 + 1, 0, (int)W - 1);
                  int ya = CLAMP (y0, 0, (int)H - 1), yb = CLAMP (y0 + 1, 0, (int)H - 1);
                  v = (1 - fy)
                          * ((1 - fx) * sample_value (ds, id, c, ya, xa)
                             + fx * sample_value (ds, id, c, ya, xb))
                      + fy
                            * ((1 - fx) * sample_value (ds, id, c, yb, xa)
                               + fx * sample_value (ds, id, c, yb, xb));
                }
              else
                v = sample_value (ds, id, c, y, x);
              if (pp == KILT_PREPROCESS_STANDARD && (ds->type == KILT_SAMPLE_U8 || C <= 4))
                v = (v - ds->channel_mean[c]) / ds->channel_std[c];
              else if (ds->type == KILT_SAMPLE_U8 && pp != KILT_PREPROCESS_RAW)
                v = v / 255.0;
              input[(((gsize)b * C + c) * H + y) * W + x] = (float)v;
            }
    }
}

typedef struct
{
  KiltBuffer *input, *targets;
  gsize in_floats, t_floats;
} BatchBufs;

static void
bufs_init (BatchBufs *bb, KiltContext *ctx, const KiltDataset *ds, guint batch)
{
  g_autoptr (GError) error = NULL;

  bb->in_floats = (gsize)batch * kilt_dataset_sample_size (ds);
  bb->t_floats = (gsize)batch * ds->n_targets;
  bb->input = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, bb->in_floats * 4, &error, "input");
  bb->targets = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, bb->t_floats * 4, &error, "targets");
  g_assert_no_error (error);
}

static void
bufs_clear (BatchBufs *bb)
{
  kilt_buffer_free (bb->input);
  kilt_buffer_free (bb->targets);
}

/* Every batch of one epoch against the reference; returns how many values augmentation moved
 * away from the plain gather (0 when not augmenting). */
static gsize
check_epoch (KiltContext *ctx, const KiltDataset *ds, guint batch, KiltPreprocess pp,
             gboolean augment, gboolean shuffle, guint32 seed, guint epoch, guint64 max_resident,
             guint translate)
{
  g_autoptr (GError) error = NULL;
  KiltBatcher *b
      = kilt_batcher_new (ctx, ds, &ds->train, batch, pp, augment, seed, max_resident, &error);
  BatchBufs bb;
  gsize n_order, moved = 0;
  const guint32 *order;
  guint nb;

  g_assert_no_error (error);
  g_assert_true (kilt_batcher_set_translate (b, translate, &error));
  kilt_batcher_set_alternate_flip (b, alternate_flip);
  bufs_init (&bb, ctx, ds, batch);
  g_assert_true (kilt_batcher_begin_epoch (b, epoch, shuffle, &error));
  order = kilt_batcher_order (b, &n_order);
  g_assert_cmpuint (n_order, ==, ds->train.n);
  nb = kilt_batcher_n_batches (b);
  g_assert_cmpuint (nb, ==, (ds->train.n + batch - 1) / batch);
  for (guint bi = 0; bi < nb; bi++)
    {
      g_autofree float *got = g_new (float, bb.in_floats), *want = g_new (float, bb.in_floats);
      g_autofree float *plain = g_new (float, bb.in_floats);
      g_autofree float *gt = g_new (float, bb.t_floats), *wt = g_new (float, bb.t_floats);
      guint valid = 0, wvalid = 0;

      g_assert_true (kilt_batcher_gather (b, bi, bb.input->mem, bb.targets->mem, &valid, &error));
      g_assert_no_error (error);
      g_assert_true (kilt_buffer_read (bb.input, 0, got, bb.in_floats * 4, &error));
      g_assert_true (kilt_buffer_read (bb.targets, 0, gt, bb.t_floats * 4, &error));
      reference_batch (ds, order, batch, bi, pp, augment, translate, seed, epoch, want, wt,
                       &wvalid);
      g_assert_cmpuint (valid, ==, wvalid);
      if (bi + 1 < nb)
        g_assert_cmpuint (valid, ==, batch);
      for (gsize i = 0; i < bb.in_floats; i++)
        if (!(fabsf (got[i] - want[i]) <= 2e-5f * (1.0f + fabsf (want[i]))))
          g_error ("%ux%ux%u batch %u value %" G_GSIZE_FORMAT ": device %.7g, reference %.7g",
                   ds->shape.c, ds->shape.h, ds->shape.w, bi, i, got[i], want[i]);
      g_assert_cmpmem (gt, bb.t_floats * 4, wt, bb.t_floats * 4);
      /* Rows past the valid ones repeat valid rows, targets included. */
      for (guint r = valid; r < batch; r++)
        g_assert_cmpmem (got + (gsize)r * (bb.in_floats / batch), bb.in_floats / batch * 4,
                         got + (gsize)(r % valid) * (bb.in_floats / batch),
                         bb.in_floats / batch * 4);
      if (augment || translate)
        {
          reference_batch (ds, order, batch, bi, pp, FALSE, 0, seed, epoch, plain, wt, &wvalid);
          for (gsize i = 0; i < bb.in_floats; i++)
            moved += fabsf (plain[i] - got[i]) > 1e-3f;
        }
    }
  bufs_clear (&bb);
  kilt_batcher_free (b);
  return moved;
}

static void
test_gather_reference (void)
{
  KiltContext *ctx = kilt_test_context ();
  struct
  {
    KiltShape shape;
    gsize n;
    guint batch;
  } shapes[] = {
    { { 3, 5, 7 }, 23, 4 },   /* last batch 3 of 4 */
    { { 1, 28, 28 }, 10, 3 }, /* last batch 1 of 3 */
    { { 3, 8, 8 }, 6, 8 },    /* one batch, partial */
  };

  if (ctx == NULL)
    return;
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      KiltDataset *ds = make_dataset (KILT_SAMPLE_U8, shapes[s].shape, shapes[s].n, 10, 0, 100 + s);
      /* Scaled, standardised, and raw (bytes as they are: ids for an Embedding). */
      for (int pp = 0; pp <= KILT_PREPROCESS_RAW; pp++)
        for (int aug = 0; aug < 2; aug++)
          {
            gsize moved = check_epoch (ctx, ds, shapes[s].batch, pp, aug, aug, 77, 3, 0, 0);
            /* Augmentation really moves pixels (images are random, so nearly all of them). */
            if (aug)
              g_assert_cmpuint (moved, >, shapes[s].n * kilt_dataset_sample_size (ds) / 4);
          }
      free_dataset (ds);
    }
  g_assert_cmpint (ctx->mem.live[KILT_MEM_DATASET], ==, 0);
}

/* The whole-pixel translation by reflection (airbench's flip + translate) against the
 * reference, on odd sizes, resident and streamed; shifts up to the largest the images take,
 * and one more refused, naming the sizes. */
static void
test_translate (void)
{
  KiltContext *ctx = kilt_test_context ();
  static const KiltShape shapes[] = { { 3, 5, 7 }, { 1, 9, 4 }, { 3, 32, 32 } };
  g_autoptr (GError) error = NULL;

  if (ctx == NULL)
    return;
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      KiltDataset *ds = make_dataset (KILT_SAMPLE_U8, shapes[s], 21, 10, 0, 300 + s);
      guint most = MIN (shapes[s].h, shapes[s].w) - 1;
      for (guint t = 1; t <= MIN (most, 3u); t++)
        {
          gsize moved = check_epoch (ctx, ds, 4, KILT_PREPROCESS_SCALE, FALSE, TRUE, 9, t, 0, t);
          g_test_message ("%ux%ux%u, translate %u: %" G_GSIZE_FORMAT " values moved", shapes[s].c,
                          shapes[s].h, shapes[s].w, t, moved);
          g_assert_cmpuint (moved, >, 21 * kilt_dataset_sample_size (ds) / 4);
        }
      check_epoch (ctx, ds, 4, KILT_PREPROCESS_STANDARD, FALSE, TRUE, 9, 2, most, most);
      /* Streamed in chunks of 8 samples: the same draws. */
      check_epoch (ctx, ds, 4, KILT_PREPROCESS_SCALE, FALSE, TRUE, 9, 1,
                   8 * kilt_dataset_sample_size (ds), 1);
      {
        KiltBatcher *b
            = kilt_batcher_new (ctx, ds, &ds->train, 4, KILT_PREPROCESS_SCALE, FALSE, 9, 0, &error);
        g_assert_no_error (error);
        g_assert_false (kilt_batcher_set_translate (b, most + 1, &error));
        g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
        g_test_message ("%s", error->message);
        g_assert_nonnull (strstr (error->message, "wider and taller"));
        g_clear_error (&error);
        kilt_batcher_free (b);
      }
      free_dataset (ds);
    }
}

/* Alternating flips (each image's epoch-0 flip, inverted in odd epochs) against the
 * reference, with the translation and with Keras' augmentation, resident and streamed, over
 * four epochs. */
static void
test_alternate_flip (void)
{
  KiltContext *ctx = kilt_test_context ();
  KiltDataset *ds;

  if (ctx == NULL)
    return;
  ds = make_dataset (KILT_SAMPLE_U8, (KiltShape){ 3, 6, 5 }, 37, 10, 0, 77);
  alternate_flip = TRUE;
  for (guint e = 0; e < 4; e++)
    {
      check_epoch (ctx, ds, 8, KILT_PREPROCESS_SCALE, FALSE, TRUE, 9, e, 0, 2);
      check_epoch (ctx, ds, 8, KILT_PREPROCESS_SCALE, TRUE, TRUE, 9, e, 0, 0);
      check_epoch (ctx, ds, 8, KILT_PREPROCESS_STANDARD, FALSE, TRUE, 9, e,
                   10 * kilt_dataset_sample_size (ds), 1);
    }
  alternate_flip = FALSE;
  free_dataset (ds);
}

static void
test_shuffle (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (GError) error = NULL;
  KiltDataset *ds;
  KiltBatcher *a, *b, *c;
  const gsize n = 257;
  g_autofree guint32 *first = g_new (guint32, n);
  g_autofree gboolean *seen = g_new0 (gboolean, n);
  const guint32 *o;
  gsize same = 0, fixed = 0;

  if (ctx == NULL)
    return;
  ds = make_dataset (KILT_SAMPLE_U8, (KiltShape){ 1, 2, 2 }, n, 3, 0, 5);
  a = kilt_batcher_new (ctx, ds, &ds->train, 16, KILT_PREPROCESS_SCALE, FALSE, 9, 0, &error);
  b = kilt_batcher_new (ctx, ds, &ds->train, 16, KILT_PREPROCESS_SCALE, FALSE, 9, 0, &error);
  c = kilt_batcher_new (ctx, ds, &ds->train, 16, KILT_PREPROCESS_SCALE, FALSE, 10, 0, &error);
  g_assert_no_error (error);

  /* Without shuffle: file order. */
  o = kilt_batcher_order (a, NULL);
  for (gsize i = 0; i < n; i++)
    g_assert_cmpuint (o[i], ==, i);

  g_assert_true (kilt_batcher_begin_epoch (a, 4, TRUE, &error));
  o = kilt_batcher_order (a, NULL);
  memcpy (first, o, n * sizeof *first);
  for (gsize i = 0; i < n; i++)
    {
      g_assert_cmpuint (o[i], <, n);
      g_assert_false (seen[o[i]]);
      seen[o[i]] = TRUE;
      fixed += o[i] == i;
    }
  g_assert_cmpuint (fixed, <, 10); /* a permutation that moves things (expected 1 fixed point) */

  /* Same seed and epoch: the same order. */
  g_assert_true (kilt_batcher_begin_epoch (b, 4, TRUE, &error));
  g_assert_cmpmem (kilt_batcher_order (b, NULL), n * 4, first, n * 4);
  /* Another epoch or another seed: another order. */
  g_assert_true (kilt_batcher_begin_epoch (b, 5, TRUE, &error));
  o = kilt_batcher_order (b, NULL);
  for (gsize i = 0; i < n; i++)
    same += o[i] == first[i];
  g_assert_cmpuint (same, <, 10);
  same = 0;
  g_assert_true (kilt_batcher_begin_epoch (c, 4, TRUE, &error));
  o = kilt_batcher_order (c, NULL);
  for (gsize i = 0; i < n; i++)
    same += o[i] == first[i];
  g_assert_cmpuint (same, <, 10);

  /* The same order by the documented recipe. */
  {
    KiltRng rng;
    g_autofree guint32 *p = g_new (guint32, n);
    for (gsize i = 0; i < n; i++)
      p[i] = (guint32)i;
    kilt_rng_init (&rng, kilt_batcher_shuffle_seed (9, 4));
    for (gsize i = n - 1; i > 0; i--)
      {
        guint32 j = kilt_rng_below (&rng, (guint32)i + 1), t = p[i];
        p[i] = p[j];
        p[j] = t;
      }
    g_assert_cmpmem (p, n * 4, first, n * 4);
  }
  kilt_batcher_free (a);
  kilt_batcher_free (b);
  kilt_batcher_free (c);
  free_dataset (ds);
}

/* All batches of two epochs enqueued back to back into separate buffers (no reads between,
 * so streaming's overlap is exercised), then read. */
static float *
run_epochs (KiltContext *ctx, const KiltDataset *ds, guint batch, guint64 max_resident,
            gboolean expect_streamed, gboolean backwards, gsize *out_floats)
{
  g_autoptr (GError) error = NULL;
  KiltBatcher *b = kilt_batcher_new (ctx, ds, &ds->train, batch, KILT_PREPROCESS_STANDARD, TRUE, 21,
                                     max_resident, &error);
  guint nb, epochs = 2;
  gsize S = kilt_dataset_sample_size (ds), per = (gsize)batch * (S + ds->n_targets);
  GPtrArray *bufs = g_ptr_array_new ();
  float *all;
  gboolean planned_streamed = !expect_streamed;
  guint64 planned;

  g_assert_no_error (error);
  g_assert_cmpint (kilt_batcher_is_streamed (b), ==, expect_streamed);
  planned = kilt_batcher_device_bytes (ctx, ds, &ds->train, batch, max_resident, &planned_streamed);
  g_assert_cmpint (planned_streamed, ==, expect_streamed);
  g_assert_cmpuint (planned, ==, kilt_batcher_get_device_bytes (b));
  g_assert_cmpint (ctx->mem.live[KILT_MEM_DATASET], ==, planned);
  if (expect_streamed)
    g_assert_cmpuint (planned, <, ds->train.n * S);

  nb = kilt_batcher_n_batches (b);
  for (guint e = 0; e < epochs; e++)
    {
      g_assert_true (kilt_batcher_begin_epoch (b, e + 1, TRUE, &error));
      for (guint i = 0; i < nb; i++)
        {
          guint bi = backwards ? nb - 1 - i : i, valid = 0;
          KiltBuffer *in = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, batch * S * 4, &error, "in");
          KiltBuffer *t
              = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, batch * ds->n_targets * 4, &error, "t");
          g_assert_no_error (error);
          g_assert_true (kilt_batcher_gather (b, bi, in->mem, t->mem, &valid, &error));
          g_assert_no_error (error);
          g_ptr_array_add (bufs, in);
          g_ptr_array_add (bufs, t);
        }
    }
  *out_floats = epochs * nb * per;
  all = g_new (float, *out_floats);
  for (guint i = 0; i < bufs->len; i += 2)
    {
      KiltBuffer *in = g_ptr_array_index (bufs, i), *t = g_ptr_array_index (bufs, i + 1);
      float *dst = all + (gsize)(i / 2) * per;
      g_assert_true (kilt_buffer_read (in, 0, dst, batch * S * 4, &error));
      g_assert_true (kilt_buffer_read (t, 0, dst + batch * S, batch * ds->n_targets * 4, &error));
      kilt_buffer_free (in);
      kilt_buffer_free (t);
    }
  g_ptr_array_unref (bufs);
  kilt_batcher_free (b);
  return all;
}

static void
test_streamed_equals_resident (void)
{
  KiltContext *ctx = kilt_test_context ();
  KiltDataset *ds;
  const guint batch = 4;
  gsize S, nr, ns;
  g_autofree float *resident = NULL;

  if (ctx == NULL)
    return;
  ds = make_dataset (KILT_SAMPLE_U8, (KiltShape){ 3, 5, 7 }, 37, 10, 0, 8);
  S = kilt_dataset_sample_size (ds);
  resident = run_epochs (ctx, ds, batch, 0, FALSE, FALSE, &nr);
  /* Chunks of one batch, of two batches, and of three batches read backwards. */
  for (guint k = 1; k <= 3; k++)
    {
      g_autofree float *streamed
          = run_epochs (ctx, ds, batch, 2 * k * batch * S, TRUE, k == 3, &ns);
      g_assert_cmpuint (ns, ==, nr);
      if (k == 3)
        {
          /* Backwards: compare batch by batch in reverse. */
          guint nb = (ds->train.n + batch - 1) / batch;
          gsize per = nr / (2 * nb);
          for (guint e = 0; e < 2; e++)
            for (guint i = 0; i < nb; i++)
              g_assert_cmpmem (streamed + ((gsize)e * nb + i) * per, per * 4,
                               resident + ((gsize)e * nb + (nb - 1 - i)) * per, per * 4);
        }
      else
        g_assert_cmpmem (streamed, ns * 4, resident, nr * 4);
    }
  free_dataset (ds);
  g_assert_cmpint (ctx->mem.live[KILT_MEM_DATASET], ==, 0);
}

static void
test_float_samples (void)
{
  KiltContext *ctx = kilt_test_context ();
  KiltDataset *img, *tab;

  if (ctx == NULL)
    return;
  /* Float images standardised per channel, regression targets of 3 values. */
  img = make_dataset (KILT_SAMPLE_F32, (KiltShape){ 2, 3, 4 }, 11, 0, 3, 12);
  check_epoch (ctx, img, 4, KILT_PREPROCESS_STANDARD, TRUE, TRUE, 5, 1, 0, 0);
  check_epoch (ctx, img, 4, KILT_PREPROCESS_SCALE, FALSE, TRUE, 5, 1, 0, 0);
  /* Streamed floats too. */
  check_epoch (ctx, img, 4, KILT_PREPROCESS_SCALE, TRUE, TRUE, 5, 2, 4 * 24 * 4, 0);
  /* Tabular rows (13 features, more than 4 "channels"), 1 target; more targets than inputs in
   * the third case so the target part of the launch is the wider one. */
  tab = make_dataset (KILT_SAMPLE_F32, (KiltShape){ 13, 1, 1 }, 9, 4, 0, 13);
  check_epoch (ctx, tab, 2, KILT_PREPROCESS_STANDARD, FALSE, TRUE, 6, 0, 0, 0);
  free_dataset (tab);
  tab = make_dataset (KILT_SAMPLE_F32, (KiltShape){ 2, 1, 1 }, 7, 0, 5, 14);
  check_epoch (ctx, tab, 3, KILT_PREPROCESS_SCALE, FALSE, TRUE, 6, 0, 0, 0);
  free_dataset (tab);
  free_dataset (img);
}

static void
test_errors (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (GError) error = NULL;
  KiltDataset *ds;
  KiltBatcher *b;
  KiltBuffer *small, *t;
  guint valid;

  if (ctx == NULL)
    return;
  ds = make_dataset (KILT_SAMPLE_U8, (KiltShape){ 1, 4, 4 }, 8, 3, 0, 1);
  g_assert_null (
      kilt_batcher_new (ctx, ds, &ds->train, 0, KILT_PREPROCESS_SCALE, FALSE, 1, 0, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);

  ds->train.labels[5] = 3;
  g_assert_null (
      kilt_batcher_new (ctx, ds, &ds->train, 2, KILT_PREPROCESS_SCALE, FALSE, 1, 0, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA);
  g_assert_nonnull (strstr (error->message, "sample 5"));
  g_clear_error (&error);
  ds->train.labels[5] = 2;

  ds->channel_std[0] = 0;
  g_assert_null (
      kilt_batcher_new (ctx, ds, &ds->train, 2, KILT_PREPROCESS_STANDARD, FALSE, 1, 0, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA);
  g_clear_error (&error);

  b = kilt_batcher_new (ctx, ds, &ds->train, 4, KILT_PREPROCESS_SCALE, FALSE, 1, 0, &error);
  g_assert_no_error (error);
  small = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * 16 * 4 - 4, &error, "small");
  t = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * 4, &error, "t");
  g_assert_false (kilt_batcher_gather (b, 0, small->mem, t->mem, &valid, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (kilt_batcher_gather (b, 2, t->mem, t->mem, &valid, &error));
  g_assert_nonnull (strstr (error->message, "batch 2"));
  g_clear_error (&error);
  kilt_buffer_free (small);
  kilt_buffer_free (t);
  kilt_batcher_free (b);
  g_assert_cmpint (ctx->mem.live[KILT_MEM_DATASET], ==, 0);
  free_dataset (ds);
}

/* Figures for the report (run with -m perf): a cifar10_cnn batch, resident and streamed. */
static void
test_throughput (void)
{
  KiltContext *ctx = kilt_test_context ();
  KiltDataset *ds;
  const guint batch = 32;
  const KiltShape shape = { 3, 32, 32 };
  gsize S = kilt_shape_size (&shape);

  if (ctx == NULL)
    return;
  if (!g_test_perf ())
    {
      g_test_skip ("a measurement; run with -m perf");
      return;
    }
  ds = make_dataset (KILT_SAMPLE_U8, shape, 2048, 10, 0, 3);
  for (int streamed = 0; streamed < 2; streamed++)
    for (int aug = 0; aug < 2; aug++)
      {
        g_autoptr (GError) error = NULL;
        KiltBatcher *b = kilt_batcher_new (ctx, ds, &ds->train, batch, KILT_PREPROCESS_STANDARD,
                                           aug, 1, streamed ? 512 * S : 0, &error);
        BatchBufs bb;
        gint64 t0;
        guint nb = kilt_batcher_n_batches (b);
        double s;

        g_assert_no_error (error);
        g_assert_cmpint (kilt_batcher_is_streamed (b), ==, streamed);
        bufs_init (&bb, ctx, ds, batch);
        g_assert_true (kilt_batcher_begin_epoch (b, 1, TRUE, &error));
        /* Warm up: the first launch of a kernel may compile it for this group size. */
        g_assert_true (kilt_batcher_gather (b, 0, bb.input->mem, bb.targets->mem, NULL, &error));
        g_assert_true (kilt_context_finish (ctx, &error));
        t0 = g_get_monotonic_time ();
        for (guint i = 0; i < nb; i++)
          g_assert_true (kilt_batcher_gather (b, i, bb.input->mem, bb.targets->mem, NULL, &error));
        g_assert_true (kilt_context_finish (ctx, &error));
        s = (g_get_monotonic_time () - t0) / 1e6;
        g_test_message ("%s, %s: %.1f us per batch of 32x3x32x32, %.0f samples/s on %s",
                        streamed ? "streamed (chunks of 256)" : "resident",
                        aug ? "augmented" : "plain", 1e6 * s / nb, nb * batch / s, ctx->info->name);
        bufs_clear (&bb);
        kilt_batcher_free (b);
      }
  free_dataset (ds);
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/batcher/gather-reference", test_gather_reference);
  g_test_add_func ("/batcher/translate", test_translate);
  g_test_add_func ("/batcher/alternate-flip", test_alternate_flip);
  g_test_add_func ("/batcher/shuffle", test_shuffle);
  g_test_add_func ("/batcher/streamed-equals-resident", test_streamed_equals_resident);
  g_test_add_func ("/batcher/float-samples", test_float_samples);
  g_test_add_func ("/batcher/errors", test_errors);
  g_test_add_func ("/batcher/throughput", test_throughput);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
