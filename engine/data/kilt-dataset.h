/* A loaded data set: fixed-shape samples (bytes or floats) with labels, in splits. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-layer.h"

G_BEGIN_DECLS

typedef enum
{
  KILT_SAMPLE_U8,  /* images: bytes 0..255, normalised on the device at batch time */
  KILT_SAMPLE_F32, /* tabular: already standardised floats */
} KiltSampleType;

typedef enum
{
  KILT_PREPROCESS_SCALE,    /* x / 255, as the Keras examples do (F32: unchanged) */
  KILT_PREPROCESS_STANDARD, /* per-channel (x - mean) / std, statistics from the train split */
} KiltPreprocess;

typedef struct
{
  gsize n;
  guint8 *u8;     /* n x sample_size bytes (KILT_SAMPLE_U8), channels first */
  float *f32;     /* n x sample_size floats (KILT_SAMPLE_F32) */
  gint32 *labels; /* n class indices (classification) */
  float *targets; /* n x n_targets floats (regression), else NULL */
} KiltSplit;

typedef struct
{
  char *name;      /* "fashion-mnist", "cifar10 (folder)", file name ... */
  char *source;    /* path or built-in name it came from */
  char *format;    /* "idx", "cifar-binary", "image-folder", "csv", "sample" */
  KiltShape shape; /* per sample, channels first */
  KiltSampleType type;
  guint n_classes;    /* 0 for regression */
  char **class_names; /* n_classes names, NULL-terminated */
  guint n_targets;    /* regression outputs (1 for a single numeric label) */
  KiltSplit train;
  KiltSplit test;        /* given test/val split; n == 0 when the source had none */
  KiltSplit val;         /* carved from train by kilt_dataset_split_validation () */
  float channel_mean[4]; /* per-channel statistics of the training split (0..255 for U8) */
  float channel_std[4];
  char *hash;    /* content hash (sha256 hex) for the run record */
  guint skipped; /* unreadable files skipped while loading, or rows dropped */
  char *notes;   /* what a person should know about the load, e.g. "dropped 3 rows" */
} KiltDataset;

void kilt_dataset_free (KiltDataset *ds);

static inline gsize
kilt_dataset_sample_size (const KiltDataset *ds)
{
  return kilt_shape_size (&ds->shape);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltDataset, kilt_dataset_free)

G_END_DECLS
