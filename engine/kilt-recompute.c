/* Activation recompute: which layers a training step keeps, and how the others share buffers. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-recompute"

#include "kilt-recompute.h"
#include "kilt-exec.h"

#include <stdlib.h>
#include <string.h>

static const char *mode_names[] = { "auto", "keep", "recompute" };

const char *
kilt_memory_mode_name (KiltMemoryMode mode)
{
  return (guint)mode < G_N_ELEMENTS (mode_names) ? mode_names[mode] : "auto";
}

gboolean
kilt_memory_mode_from_name (const char *name, KiltMemoryMode *out)
{
  for (guint i = 0; name && i < G_N_ELEMENTS (mode_names); i++)
    if (g_ascii_strcasecmp (name, mode_names[i]) == 0)
      {
        *out = (KiltMemoryMode)i;
        return TRUE;
      }
  return FALSE;
}

/* What a layout needs to know of the model, computed once for the many layouts a choice
 * tries (kilt_executor_fuses () walks the graph for every node). */
typedef struct
{
  guint n;
  guint8 *fused;
  guint8 *cuts;
  guint *owner; /* the node whose buffers it uses: itself, or a fused activation's source */
  guint64 *out_b, *saved_b, *dout_b; /* per node's own buffers, in bytes */
  guint64 *flops;                    /* forward per sample, a fused activation's in its source */
  guint *last_reader;     /* the last node whose backward writes its gradient (n: the loss) */
  guint8 *grad_path;      /* KiltNode.grad_path: its backward runs (frozen layers below: not) */
  guint *first_gp_reader; /* the first reader on a gradient's path (G_MAXUINT: none) */
  guint *n_in, *in_from;  /* per node its inputs' owners, KILT_MAX_INPUTS apart */
  guint64 total_flops;
  guint owner_last;
} Info;

static void
info_init (Info *in, KiltModel *model, guint batch, gboolean training)
{
  guint n = kilt_model_n_nodes (model);
  gint *crossed = g_new0 (gint, n + 1);
  KiltNode *last = kilt_model_output (model);

  in->n = n;
  in->fused = g_new0 (guint8, n);
  in->cuts = g_new0 (guint8, n);
  in->owner = g_new0 (guint, n);
  in->out_b = g_new0 (guint64, n);
  in->saved_b = g_new0 (guint64, n);
  in->dout_b = g_new0 (guint64, n);
  in->flops = g_new0 (guint64, n);
  in->last_reader = g_new0 (guint, n);
  in->grad_path = g_new0 (guint8, n);
  in->first_gp_reader = g_new (guint, n);
  in->n_in = g_new0 (guint, n);
  in->in_from = g_new0 (guint, (gsize)n * KILT_MAX_INPUTS);
  for (guint i = 0; i < n; i++)
    in->first_gp_reader[i] = G_MAXUINT;
  in->total_flops = 0;
  for (guint i = 0; i < n; i++)
    {
      KiltNode *node = kilt_model_node (model, i);
      guint64 f = node->klass->flops ? node->klass->flops (node) : 0;
      in->fused[i] = kilt_executor_fuses (model, i);
      in->owner[i] = in->fused[i] ? node->inputs[0] : i;
      in->flops[in->owner[i]] += f;
      in->total_flops += f;
      /* A folded activation's backward is its source's: only others write gradients. */
      in->grad_path[i] = training && node->grad_path;
      in->n_in[i] = node->n_inputs;
      for (guint k = 0; k < node->n_inputs; k++)
        in->in_from[(gsize)i * KILT_MAX_INPUTS + k] = in->owner[node->inputs[k]];
      for (guint k = 0; k < node->n_inputs && !in->fused[i]; k++)
        {
          guint from = in->owner[node->inputs[k]];
          in->last_reader[from] = MAX (in->last_reader[from], i);
          if (in->grad_path[i])
            in->first_gp_reader[from] = MIN (in->first_gp_reader[from], i);
        }
      /* Every node strictly between an input (the buffers it is read from) and its reader is
       * passed over. */
      for (guint k = 0; k < node->n_inputs; k++)
        {
          guint from = in->owner[node->inputs[k]];
          if (from + 1 < i)
            {
              crossed[from + 1]++;
              crossed[i]--;
            }
        }
      if (in->fused[i])
        continue;
      in->out_b[i] = 4 * (guint64)batch * kilt_shape_size (&node->out_shape);
      if (training && i > 0 && node->grad_path)
        in->dout_b[i] = in->out_b[i];
      if (node->klass->saved_floats)
        in->saved_b[i] = 4 * (guint64)node->klass->saved_floats (node, batch);
    }
  in->owner_last = in->owner[last->index];
  in->last_reader[in->owner_last] = n; /* the loss writes the output's gradient */
  {
    gint run = 0;
    for (guint i = 0; i < n; i++)
      {
        run += crossed[i];
        in->cuts[i] = run == 0 && !in->fused[i];
      }
  }
  in->cuts[0] = in->cuts[in->owner_last] = 1;
  g_free (crossed);
}

static void
info_clear (Info *in)
{
  g_free (in->fused);
  g_free (in->cuts);
  g_free (in->owner);
  g_free (in->out_b);
  g_free (in->saved_b);
  g_free (in->dout_b);
  g_free (in->flops);
  g_free (in->last_reader);
  g_free (in->grad_path);
  g_free (in->first_gp_reader);
  g_free (in->n_in);
  g_free (in->in_from);
}

guint8 *
kilt_recompute_cuts (KiltModel *model)
{
  Info in;
  guint8 *cuts;

  g_return_val_if_fail (model->built, NULL);
  info_init (&in, model, 1, TRUE);
  cuts = g_steal_pointer (&in.cuts);
  info_clear (&in);
  return cuts;
}

/* One buffer to place: alive over one or two spans of the step's timeline (a recomputed
 * layer's activations live from its forward to its last reader's, then again from the
 * recompute to its own backward). */
typedef struct
{
  guint64 bytes;
  guint node;
  guint kind; /* 0 activations, 1 saved values, 2 activation gradient: ties in order */
  guint n_spans;
  guint from[2], to[2]; /* inclusive */
  guint *slot;          /* where the chosen slot goes */
  guint64 *off;         /* and the offset in it */
} Item;

/* Largest first; equal sizes by node, so the plan and the executor agree on every machine. */
static int
item_cmp (const void *a, const void *b)
{
  const Item *x = a, *y = b;
  if (x->bytes != y->bytes)
    return x->bytes > y->bytes ? -1 : 1;
  if (x->node != y->node)
    return x->node < y->node ? -1 : 1;
  return x->kind < y->kind ? -1 : x->kind > y->kind;
}

/* Largest first; equal sizes by when they are first alive (the order in which an interval
 * graph's greedy colouring is optimal), then as item_cmp (). */
static int
item_cmp_start (const void *a, const void *b)
{
  const Item *x = a, *y = b;
  if (x->bytes != y->bytes)
    return x->bytes > y->bytes ? -1 : 1;
  if (x->from[0] != y->from[0])
    return x->from[0] < y->from[0] ? -1 : 1;
  return item_cmp (a, b);
}

static gboolean
spans_meet (const Item *a, const Item *b)
{
  for (guint j = 0; j < a->n_spans; j++)
    for (guint k = 0; k < b->n_spans; k++)
      if (a->from[j] <= b->to[k] && b->from[k] <= a->to[j])
        return TRUE;
  return FALSE;
}

static guint64
align_up (guint64 v)
{
  return (v + KILT_RECOMPUTE_ALIGN - 1) / KILT_RECOMPUTE_ALIGN * KILT_RECOMPUTE_ALIGN;
}

/* The ways pack () tries: an order of the buffers, and whether a buffer goes into the first
 * slot with room for it or the smallest one. The orders by when buffers end never did better
 * than these on VGG16, ResNet-20, MobileNetV2 or ConvNeXt. */
typedef struct
{
  int (*cmp) (const void *, const void *);
  gboolean smallest;
} PackWay;

static const PackWay pack_ways[] = {
  { item_cmp, FALSE },
  { item_cmp, TRUE },
  { item_cmp_start, FALSE },
  { item_cmp_start, TRUE },
};

/* A buffer placed in a slot: when it is alive (from the first of its spans to the last, then
 * each span), and the bytes [from, to) it takes. */
typedef struct
{
  guint lo, hi;
  const Item *it;
  guint64 from, to;
} Placed;

/* The lowest aligned offset in a slot of @size bytes at which @it meets none of the buffers
 * @placed there (in the order of their offsets) that are alive with it, or G_MAXUINT64. */
static guint64
slot_room (const GArray *placed, guint64 size, const Item *it, guint lo, guint hi)
{
  guint64 o = 0;

  for (guint c = 0; c < placed->len; c++)
    {
      const Placed *q = &g_array_index (placed, Placed, c);
      if (q->from >= o + it->bytes)
        break;
      if (q->lo <= hi && lo <= q->hi && spans_meet (q->it, it))
        o = MAX (o, align_up (q->to));
    }
  return o + it->bytes <= size ? o : G_MAXUINT64;
}

/* Inserts @p into @placed, keeping it in the order of offsets. */
static void
slot_insert (GArray *placed, const Placed *p)
{
  guint a = 0, b = placed->len;

  while (a < b)
    {
      guint m = a + (b - a) / 2;
      if (g_array_index (placed, Placed, m).from <= p->from)
        a = m + 1;
      else
        b = m;
    }
  g_array_insert_val (placed, a, *p);
}

/* An item's place in per-item arrays, whatever order @items is in. */
static inline guint
item_key (const Item *it)
{
  return it->node * 3 + it->kind;
}

/* Greedy by size: each buffer, largest first, goes where no buffer alive at the same time
 * is, at the lowest offset of a slot that has room for it (every slot is as large as the
 * buffer that made it), or into a new slot of its own size: no slot is larger than one
 * buffer, so the device's largest allocation is never the limit. Writes each item's slot and
 * offset into @slot and @off (by item_key ()) and the slot sizes into @sizes; returns their
 * total. */
static guint64
pack_way (GArray *items, const PackWay *way, guint *slot, guint64 *off, GArray *sizes)
{
  GPtrArray *placed = g_ptr_array_new_with_free_func ((GDestroyNotify)g_array_unref);
  guint64 total = 0;

  g_array_set_size (sizes, 0);
  qsort (items->data, items->len, sizeof (Item), way->cmp);
  for (guint i = 0; i < items->len; i++)
    {
      Item *it = &g_array_index (items, Item, i);
      Placed p = { it->from[0], it->to[it->n_spans - 1], it, 0, 0 };
      guint s = placed->len;
      guint64 at = 0;
      for (guint c = 0; c < placed->len; c++)
        {
          guint64 size = g_array_index (sizes, guint64, c);
          guint64 o;
          if (s < placed->len && (!way->smallest || size >= g_array_index (sizes, guint64, s)))
            continue;
          o = slot_room (g_ptr_array_index (placed, c), size, it, p.lo, p.hi);
          if (o != G_MAXUINT64)
            {
              s = c;
              at = o;
            }
        }
      if (s == placed->len)
        {
          g_ptr_array_add (placed, g_array_new (FALSE, FALSE, sizeof (Placed)));
          g_array_append_val (sizes, it->bytes);
          total += it->bytes;
        }
      p.from = at;
      p.to = at + it->bytes;
      slot_insert (g_ptr_array_index (placed, s), &p);
      slot[item_key (it)] = s;
      off[item_key (it)] = at;
    }
  g_ptr_array_unref (placed);
  return total;
}

/* Packs @items into slots the best of pack_ways does (the first of the smallest total, so the
 * plan and the executor agree): the slot sizes into @slot_bytes, each item's slot and offset
 * into *it->slot and *it->off. Buffers alive at different times share a place and smaller
 * ones sit side by side in a larger one's slot: with a slot holding one buffer at a time,
 * VGG16 at batch 32 needed six slots where four 392 MiB ones had room for all six. */
static void
pack (GArray *items, GArray *slot_bytes)
{
  guint64 best = G_MAXUINT64;
  guint n_keys = 0;
  g_autofree guint *slot = NULL, *best_slot = NULL;
  g_autofree guint64 *off = NULL, *best_off = NULL;
  GArray *sizes = g_array_new (FALSE, FALSE, sizeof (guint64));

  for (guint i = 0; i < items->len; i++)
    n_keys = MAX (n_keys, item_key (&g_array_index (items, Item, i)) + 1);
  slot = g_new (guint, MAX (n_keys, 1));
  best_slot = g_new (guint, MAX (n_keys, 1));
  off = g_new (guint64, MAX (n_keys, 1));
  best_off = g_new (guint64, MAX (n_keys, 1));
  for (guint w = 0; w < G_N_ELEMENTS (pack_ways); w++)
    {
      guint64 total = pack_way (items, &pack_ways[w], slot, off, sizes);
      if (total < best)
        {
          best = total;
          memcpy (best_slot, slot, n_keys * sizeof *slot);
          memcpy (best_off, off, n_keys * sizeof *off);
          g_array_set_size (slot_bytes, 0);
          g_array_append_vals (slot_bytes, sizes->data, sizes->len);
        }
    }
  for (guint i = 0; i < items->len; i++)
    {
      const Item *it = &g_array_index (items, Item, i);
      *it->slot = best_slot[item_key (it)];
      *it->off = best_off[item_key (it)];
    }
  g_array_unref (sizes);
}

static KiltRecompute *
layout_from (const Info *in, const guint8 *keep)
{
  KiltRecompute *r = g_new0 (KiltRecompute, 1);
  guint n = in->n, t, end, last_use;
  GArray *items = g_array_new (FALSE, FALSE, sizeof (Item));
  GArray *slots = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autofree guint8 *recomputed = g_new0 (guint8, n);
  g_autofree guint *seg_end = g_new0 (guint, n);
  g_autofree guint *bwd = g_new0 (guint, n + 1);
  g_autofree guint *redo = g_new0 (guint, n);
  g_autofree guint *redo_read = g_new0 (guint, n);

  r->n_nodes = n;
  r->keep = g_new0 (guint8, n);
  r->slot_out = g_new (guint, n);
  r->slot_saved = g_new (guint, n);
  r->slot_dout = g_new (guint, n);
  r->off_out = g_new0 (guint64, n);
  r->off_saved = g_new0 (guint64, n);
  r->off_dout = g_new0 (guint64, n);
  r->redo = g_new0 (guint8, n);
  r->last_kept = in->owner_last;
  r->forward_flops = in->total_flops;
  for (guint i = 0; i < n; i++)
    {
      r->keep[i] = keep == NULL || (keep[i] && in->cuts[i]);
      r->slot_out[i] = r->slot_saved[i] = r->slot_dout[i] = G_MAXUINT;
    }
  r->keep[0] = r->keep[in->owner_last] = 1;

  /* Which checkpoint ends each node's segment; the segments before the last are redone. */
  for (guint i = n, next = in->owner_last; i-- > 0;)
    {
      if (!in->fused[i] && r->keep[i] && i <= in->owner_last)
        next = i;
      seg_end[i] = next;
    }
  /* (A segment is redone for its checkpoint's backward; below the lowest trainable layer
   * none runs, and nothing is redone.) */
  for (guint i = 1; i < in->owner_last; i++)
    if (!in->fused[i] && !r->keep[i] && seg_end[i] < in->owner_last && in->grad_path[seg_end[i]])
      {
        recomputed[i] = 1;
        r->redo[seg_end[i]] = 1;
        r->recompute_flops += in->flops[i];
      }

  if (keep == NULL)
    {
      /* Every node its own buffers, as the executor always had them. */
      for (guint i = 0; i < n; i++)
        if (!in->fused[i])
          {
            r->act_bytes += in->out_b[i] + in->saved_b[i];
            r->grad_bytes += in->dout_b[i];
          }
    }
  else
    {
      /* The step's timeline: forward i at time i, the loss at n, then the backward pass, each
       * redone segment just before the backward of the checkpoint that ends it. */
      t = n + 1;
      for (guint i = n; i-- > 1;)
        {
          if (in->fused[i])
            continue;
          if (r->redo[i])
            redo[i] = t++;
          bwd[i] = t++;
        }
      bwd[n] = n; /* "read by the loss" */
      end = t;
      /* What a redone forward reads must still be there then: the checkpoint before the
       * segment, whose own backward (if any) comes later, but which is read only in the
       * forward pass when nothing below it trains. */
      for (guint q = 1; q < n; q++)
        if (recomputed[q])
          for (guint k = 0; k < in->n_in[q]; k++)
            {
              guint j = in->in_from[(gsize)q * KILT_MAX_INPUTS + k];
              redo_read[j] = MAX (redo_read[j], redo[seg_end[q]]);
            }
      for (guint i = 0; i < n; i++)
        {
          Item it = { 0 };
          if (in->fused[i])
            continue;
          it.node = i;
          it.n_spans = 1;
          it.from[0] = i;
          /* Last read in the backward pass by its own backward, else by the first reader's on
           * a gradient's path, else only in the forward pass. */
          if (in->grad_path[i])
            last_use = bwd[i];
          else if (in->first_gp_reader[i] != G_MAXUINT)
            last_use = bwd[in->first_gp_reader[i]];
          else
            last_use = MAX (MIN (in->last_reader[i], n - 1), i);
          if (i == 0 || i == in->owner_last)
            it.to[0] = end; /* the input batch and the output the loss reads */
          else if (recomputed[i])
            {
              it.to[0] = MAX (MIN (in->last_reader[i], n - 1), i);
              it.n_spans = 2;
              it.from[1] = redo[seg_end[i]];
              it.to[1] = MAX (MAX (last_use, it.from[1]), redo_read[i]);
            }
          else
            it.to[0] = MAX (last_use, redo_read[i]);
          it.bytes = in->out_b[i];
          it.slot = &r->slot_out[i];
          it.off = &r->off_out[i];
          g_array_append_val (items, it);
          if (in->saved_b[i])
            {
              it.bytes = in->saved_b[i];
              it.kind = 1;
              it.slot = &r->slot_saved[i];
              it.off = &r->off_saved[i];
              g_array_append_val (items, it);
            }
          if (in->dout_b[i])
            {
              /* Written first by its last reader's backward (or the loss), read last by its own. */
              Item d = { in->dout_b[i], i, 2, 1, { 0 }, { 0 }, &r->slot_dout[i], &r->off_dout[i] };
              guint first = in->last_reader[i] ? bwd[in->last_reader[i]] : bwd[i];
              d.from[0] = MIN (first, bwd[i]);
              d.to[0] = bwd[i];
              g_array_append_val (items, d);
            }
        }
      /* Activations and their gradients share one set of slots: the forward pass holds
       * activations only, the backward pass mostly gradients, and two separate sets would
       * each be sized for its own busiest moment. */
      pack (items, slots);
      r->slot_grad = g_new (guint8, MAX (slots->len, 1));
      memset (r->slot_grad, 1, MAX (slots->len, 1));
      for (guint k = 0; k < items->len; k++)
        {
          const Item *it = &g_array_index (items, Item, k);
          if (it->kind != 2)
            r->slot_grad[*it->slot] = 0;
        }
    }
  /* A fused activation lives in its source's buffers, kept or not with them. */
  for (guint i = 0; i < n; i++)
    if (in->fused[i])
      r->keep[i] = r->keep[in->owner[i]];

  /* Blocks: the pieces between consecutive places a checkpoint may go. */
  {
    gboolean any = FALSE;
    for (guint i = 1; i <= in->owner_last; i++)
      {
        any |= recomputed[i];
        if (in->cuts[i])
          {
            r->n_blocks++;
            r->n_blocks_kept += !any;
            any = FALSE;
          }
      }
  }

  r->n_slots = slots->len;
  for (guint s = 0; s < slots->len; s++)
    {
      guint64 b = g_array_index (slots, guint64, s);
      if (r->slot_grad[s])
        r->grad_bytes += b;
      else
        r->act_bytes += b;
    }
  r->slot_bytes = (guint64 *)g_array_free (slots, FALSE);
  g_array_unref (items);
  return r;
}

KiltRecompute *
kilt_recompute_new (KiltModel *model, guint batch, gboolean training, const guint8 *keep)
{
  Info in;
  KiltRecompute *r;

  g_return_val_if_fail (model->built, NULL);
  info_init (&in, model, batch, training);
  r = layout_from (&in, keep);
  info_clear (&in);
  return r;
}

void
kilt_recompute_free (KiltRecompute *layout)
{
  if (layout == NULL)
    return;
  g_free (layout->keep);
  g_free (layout->slot_out);
  g_free (layout->slot_saved);
  g_free (layout->slot_dout);
  g_free (layout->off_out);
  g_free (layout->off_saved);
  g_free (layout->off_dout);
  g_free (layout->redo);
  g_free (layout->slot_bytes);
  g_free (layout->slot_grad);
  g_free (layout);
}

double
kilt_recompute_percent (const KiltRecompute *layout)
{
  if (layout->forward_flops == 0)
    return 0;
  return 100.0 * (double)layout->recompute_flops / (3.0 * (double)layout->forward_flops);
}

/* Keeps a checkpoint wherever the segment it would otherwise grow would pass @limit bytes. */
static void
greedy_keep (const Info *in, guint64 limit, guint8 *keep)
{
  guint64 cur = 0;

  memset (keep, 0, in->n);
  for (guint i = 1; i < in->owner_last; i++)
    {
      guint64 own = in->out_b[i] + in->saved_b[i], next = 0;
      if (in->fused[i])
        continue;
      if (!in->cuts[i])
        {
          cur += own;
          continue;
        }
      for (guint j = i + 1; j < in->owner_last && !in->cuts[j]; j++)
        next += in->out_b[j] + in->saved_b[j];
      if (cur + own + next > limit)
        {
          keep[i] = 1;
          cur = 0;
        }
      else
        cur += own;
    }
}

static gboolean
better (const KiltRecompute *a, const KiltRecompute *best, guint64 budget, gboolean least_memory)
{
  guint64 ma = a->act_bytes + a->grad_bytes, mb = best->act_bytes + best->grad_bytes;
  gboolean fa = ma <= budget, fb = mb <= budget;

  if (!least_memory && fa != fb)
    return fa;
  if (!least_memory && fa)
    return a->recompute_flops < best->recompute_flops
           || (a->recompute_flops == best->recompute_flops && ma < mb);
  return ma < mb || (ma == mb && a->recompute_flops < best->recompute_flops);
}

KiltRecompute *
kilt_recompute_choose (KiltModel *model, guint batch, guint64 budget, gboolean least_memory)
{
  Info in;
  KiltRecompute *best = NULL;
  g_autofree guint8 *keep = NULL, *last = NULL;
  guint64 total = 0, smallest = G_MAXUINT64;
  guint n_cuts = 0;
  double limit;

  g_return_val_if_fail (model->built, NULL);
  info_init (&in, model, batch, TRUE);
  keep = g_new0 (guint8, in.n);
  last = g_new0 (guint8, in.n);
  for (guint i = 0; i < in.n; i++)
    {
      total += in.out_b[i] + in.saved_b[i];
      if (!in.fused[i] && in.out_b[i])
        smallest = MIN (smallest, in.out_b[i]);
      n_cuts += in.cuts[i];
    }
  /* From one segment (nothing recomputed) down to a checkpoint at every place one may go,
   * in steps of a fifth: a few dozen layouts, each linear in the model's size (the same
   * checkpoints twice are laid out once). */
  limit = (double)total;
  for (int k = 0; k <= 80; k++, limit *= 0.8)
    {
      KiltRecompute *r;
      gboolean at_end = k == 80 || limit < (double)smallest;
      greedy_keep (&in, at_end ? 0 : (guint64)limit, keep);
      if (best && memcmp (keep, last, in.n) == 0)
        {
          if (at_end)
            break;
          continue;
        }
      memcpy (last, keep, in.n);
      r = layout_from (&in, keep);
      if (best == NULL || better (r, best, budget, least_memory))
        {
          kilt_recompute_free (best);
          best = r;
        }
      else
        kilt_recompute_free (r);
      if (at_end)
        break;
    }
  /* A few dozen places a checkpoint may go (a VGG, a small ResNet) are cheap to polish;
   * hundreds (a deep ResNet's every block) would make each plan take seconds. */
  if (n_cuts > 64)
    {
      info_clear (&in);
      return best;
    }
  /* Then move single checkpoints while that helps: the sweep's segments have the sizes it
   * asked for, but the slots are sized by every segment's largest, second largest, ...
   * buffers, which one checkpoint more or less can change a lot (a VGG's first block). */
  memcpy (keep, best->keep, in.n);
  for (int pass = 0; pass < 3; pass++)
    {
      gboolean moved = FALSE;
      for (guint c = 1; c < in.owner_last; c++)
        {
          KiltRecompute *r;
          if (!in.cuts[c])
            continue;
          keep[c] = !keep[c];
          r = layout_from (&in, keep);
          if (better (r, best, budget, least_memory))
            {
              kilt_recompute_free (best);
              best = r;
              moved = TRUE;
            }
          else
            {
              keep[c] = !keep[c];
              kilt_recompute_free (r);
            }
        }
      if (!moved)
        break;
    }
  if (g_log_writer_default_would_drop (G_LOG_LEVEL_DEBUG, G_LOG_DOMAIN) == FALSE)
    {
      GString *s = g_string_new (NULL);
      for (guint i = 0; i < in.n; i++)
        if (best->keep[i] && !in.fused[i])
          g_string_append_printf (s, " %s", kilt_model_node (model, i)->name);
      g_debug ("batch %u: keeps%s; %u shared slots; %" G_GUINT64_FORMAT " + %" G_GUINT64_FORMAT
               " bytes",
               batch, s->str, best->n_slots, best->act_bytes, best->grad_bytes);
      /* What each slot holds over the step, and where: to see where the bytes go. */
      for (guint k = 0; k < best->n_slots; k++)
        {
          g_string_truncate (s, 0);
          for (guint i = 0; i < in.n; i++)
            {
              const guint *slot[] = { best->slot_out, best->slot_saved, best->slot_dout };
              const guint64 *off[] = { best->off_out, best->off_saved, best->off_dout };
              const guint64 bytes[] = { in.out_b[i], in.saved_b[i], in.dout_b[i] };
              const char *what[] = { "activations", "saved values", "gradient" };
              for (guint w = 0; w < 3 && !in.fused[i]; w++)
                if (slot[w][i] == k)
                  g_string_append_printf (
                      s, "; %s %s at %" G_GUINT64_FORMAT " (%" G_GUINT64_FORMAT " bytes)",
                      kilt_model_node (model, i)->name, what[w], off[w][i], bytes[w]);
            }
          g_debug ("slot %u: %" G_GUINT64_FORMAT " bytes%s", k, best->slot_bytes[k], s->str);
        }
      g_string_free (s, TRUE);
    }
  info_clear (&in);
  return best;
}
