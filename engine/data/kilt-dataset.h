/* A loaded data set: fixed-shape samples (bytes or floats) with labels, in splits. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-layer.h"

#include <gio/gio.h>

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
  KILT_PREPROCESS_RAW,      /* the values as stored, bytes too: ids for an Embedding */
} KiltPreprocess;

typedef struct
{
  gsize n;
  guint8 *u8;     /* n x sample_size bytes (KILT_SAMPLE_U8), channels first */
  float *f32;     /* n x sample_size floats (KILT_SAMPLE_F32) */
  gint32 *labels; /* n class indices (classification) */
  float *targets; /* n x n_targets floats (regression), else NULL */
  char **paths;   /* n source file paths, NULL-terminated (image folders), else NULL */
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
  /* Tabular (F32) data: the per-feature statistics the features were standardised with, from
   * the training split, so that new rows can be treated the same way. NULL for images. */
  float *feature_mean; /* shape.c floats */
  float *feature_std;
  gboolean from_cache; /* an image folder read back from the decoded cache */
} KiltDataset;

typedef enum
{
  KILT_SPLIT_TRAIN,
  KILT_SPLIT_VAL,
  KILT_SPLIT_TEST,
} KiltSplitKind;

typedef enum
{
  KILT_HEADER_AUTO, /* a first row with no number in it, above one that has numbers */
  KILT_HEADER_YES,
  KILT_HEADER_NO,
} KiltHeaderMode;

typedef enum
{
  KILT_TASK_CLASSIFICATION,
  KILT_TASK_REGRESSION, /* CSV: the label column is a numeric target */
} KiltTask;

typedef enum
{
  KILT_FIT_RESIZE, /* scale to the chosen size, aspect ratio not kept (Keras' default) */
  KILT_FIT_CROP,   /* scale the short side to fit, then cut the centre */
} KiltImageFit;

typedef struct
{
  /* Image folders. 0 x 0: the size of the first image read. */
  guint image_width, image_height;
  gboolean grayscale;
  KiltImageFit fit;
  double max_bad_fraction; /* unreadable images tolerated (skipped), as a fraction; < 0: 0.01 */
  gboolean no_cache;       /* decode again even when a cached result exists (and rewrite it) */
  /* CSV. */
  char delimiter; /* 0: detect among , ; and tab */
  KiltHeaderMode header;
  const char *label_column; /* a header name, or a 0-based index as text; NULL: last column */
  gboolean drop_bad_rows;   /* drop rows with missing or non-numeric values instead of failing */
  gboolean raw_features; /* keep the features as read, not standardised (ids, for an Embedding) */
  KiltTask task;
  /* CIFAR-100: the coarse (20 super-classes) label byte instead of the fine one. */
  gboolean cifar100_coarse;
  /* Every format: keep at most this many samples per split (0: all), for tests and quick runs.
   * Image folders keep an even stride over the sorted files, so every class stays. */
  guint max_samples;
} KiltLoadOptions;

/* Called on the loading thread, at most about ten times a second; @fraction in [0, 1]. */
typedef void (*KiltProgressFunc) (double fraction, const char *what, gpointer user_data);

/* Sets every option to its default (what NULL options mean). */
void kilt_load_options_init (KiltLoadOptions *opts);

/* Loads @spec: "fashion-mnist" (Debian's dataset-fashion-mnist), "sample" (bundled with Kilt),
 * or a path: an IDX file or folder, a CIFAR-10/100 binary folder or batch file, an image
 * folder, a CSV file or a folder with train.csv (and test.csv). Errors are
 * KILT_ENGINE_ERROR_DATA and name the file and the line, record or byte offset;
 * KILT_ENGINE_ERROR_CANCELLED when @cancel fires. Free the result with kilt_dataset_free (). */
KiltDataset *kilt_dataset_load (const char *spec, const KiltLoadOptions *opts,
                                KiltProgressFunc progress, gpointer user_data, GCancellable *cancel,
                                GError **error);
void kilt_dataset_free (KiltDataset *ds);

/* The folder holding the bundled sample: $KILT_DATA_DIR/sample, the installed copy, then the
 * source tree's resources/sample. NULL when none exists. Caller frees. */
char *kilt_dataset_find_sample_dir (void);

/* Moves round(@fraction * train.n) samples, picked by a shuffle seeded with @seed, from
 * train into val (an earlier val goes back into train first), then recomputes the training
 * statistics (tabular data: standardises every split again with the new training figures). */
gboolean kilt_dataset_split_validation (KiltDataset *ds, double fraction, guint32 seed,
                                        GError **error);

/* Recomputes channel_mean/channel_std from the training split (0..255 units for bytes). */
void kilt_dataset_compute_stats (KiltDataset *ds);
/* Recomputes ds->hash: sha256 of shape, classes and every split's samples and labels. */
void kilt_dataset_compute_hash (KiltDataset *ds);

KiltSplit *kilt_dataset_get_split (KiltDataset *ds, KiltSplitKind kind);
const char *kilt_split_kind_name (KiltSplitKind kind);

/* n_classes counts for a split (NULL for regression data). Caller frees. */
guint *kilt_dataset_class_counts (const KiltDataset *ds, KiltSplitKind kind);

/* What `kilt-cli data info` prints: source, format, samples per split, shape, classes with
 * counts, value range, notes. Caller frees. */
char *kilt_dataset_describe (const KiltDataset *ds);

/* Draws sample @index of a split into @rgba_out (@width x @height x 4 bytes, rows packed),
 * scaled with nearest neighbour; tabular data is drawn as a strip of grey cells. FALSE when
 * the index is out of range. */
gboolean kilt_dataset_thumbnail_rgba (const KiltDataset *ds, KiltSplitKind kind, gsize index,
                                      guint8 *rgba_out, guint width, guint height);

static inline gsize
kilt_dataset_sample_size (const KiltDataset *ds)
{
  return kilt_shape_size (&ds->shape);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltDataset, kilt_dataset_free)

G_END_DECLS
