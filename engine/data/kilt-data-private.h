/* Shared by the data-set loaders: file reading, split building and the per-format entry points. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-dataset.h"
#include "kilt-error.h"

G_BEGIN_DECLS

/* More than this from one file is refused, whatever a header or gzip trailer claims. */
#define KILT_DATA_MAX_FILE_BYTES ((gsize)8 << 30)
/* More classes than this is refused: a label set that large is a damaged file or a numeric
 * column, and class names are built for every class up to the largest label. */
#define KILT_DATA_MAX_CLASSES 65536u

/* Reads a whole file, inflating it when it starts with the gzip magic. */
gboolean kilt_data_read_file (const char *path, gsize max_bytes, guint8 **data, gsize *len,
                              GError **error);
/* The same as bytes: the file's mapping (not copied) or its inflated contents. */
GBytes *kilt_data_read_bytes (const char *path, gsize max_bytes, GError **error);
/* Inflates gzip (or zlib) bytes named @name in errors; output capped at @max_bytes. */
gboolean kilt_data_gunzip (const char *name, const guint8 *in, gsize in_len, gsize max_bytes,
                           guint8 **out, gsize *out_len, GError **error);
/* The same, but stopping without an error after @max_bytes of output (at most that many). */
gboolean kilt_data_gunzip_head (const char *name, const guint8 *in, gsize in_len, gsize max_bytes,
                                guint8 **out, gsize *out_len, GError **error);
gboolean kilt_data_is_gzip (const guint8 *data, gsize len);

/* Host memory for a file's contents, whose size the file decides: NULL and
 * KILT_ENGINE_ERROR_OUT_OF_MEMORY ("@name: not enough memory for @what (N MB)") when it cannot
 * be had, as under `ulimit -v`, instead of GLib's abort. kilt_data_try_realloc leaves @mem
 * as it was when it fails. */
gpointer kilt_data_try_alloc (gsize bytes, const char *name, const char *what, GError **error);
gpointer kilt_data_try_realloc (gpointer mem, gsize bytes, const char *name, const char *what,
                                GError **error);
/* Tests: the @nth call of the two above from now fails as if memory had run out (0: none);
 * returns how many calls were made since the last arming. */
guint kilt_data_fail_alloc (guint nth);

KiltDataset *kilt_data_new (const char *name, const char *source, const char *format);
void kilt_split_clear (KiltSplit *split);
/* A class name list "0", "1", ... for @n classes. */
char **kilt_data_number_names (guint n);
/* Reads a list of names, one a line (blank lines and surrounding space ignored). */
char **kilt_data_parse_names (const char *text, gsize len);
/* For g_ptr_array_sort () over strings. */
gint kilt_data_compare_names (gconstpointer a, gconstpointer b);
gboolean kilt_data_check_cancel (GCancellable *cancel, GError **error);
/* The `what` part of a progress report with the file's base name. */
void kilt_data_progress (KiltProgressFunc progress, gpointer user_data, double fraction,
                         const char *fmt, ...) G_GNUC_PRINTF (4, 5);
/* Adds a sentence to ds->notes. */
void kilt_data_note (KiltDataset *ds, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* IDX (MNIST family). One decoded file: its element type, dimensions and payload. */
typedef struct
{
  guint8 type; /* 0x08 ubyte, 0x09 sbyte, 0x0B short, 0x0C int, 0x0D float, 0x0E double */
  guint ndims;
  guint32 dims[8];
  gsize count; /* product of dims */
  const guint8 *data;
} KiltIdxArray;

/* More than this from one IDX file is refused, whatever its header declares. */
#define KILT_DATA_MAX_IDX_BYTES ((gsize)4 << 30)

gboolean kilt_idx_parse (const char *name, const guint8 *bytes, gsize len, KiltIdxArray *out,
                         GError **error);
/* The largest label seen so far and where it first appeared (for a warning about gaps). */
typedef struct
{
  gint64 max; /* -1 before any */
  const char *file;
  gsize record, offset;
} KiltIdxLabelSeen;

/* Images and labels of one split, from the (already inflated) bytes of both files. @shape
 * is set from the images when its size is 0, else the images must match it. Labels must be
 * below @n_classes when it is non-zero, else below KILT_DATA_MAX_CLASSES; @seen grows to the
 * largest label seen (its file is @labels_name, which must outlive it). */
gboolean kilt_idx_fill_split (const char *images_name, const guint8 *images, gsize images_len,
                              const char *labels_name, const guint8 *labels, gsize labels_len,
                              guint max_samples, KiltShape *shape, guint n_classes,
                              KiltIdxLabelSeen *seen, KiltSplit *split, GError **error);
/* Reads an IDX file, inflating gzip only as far as its header says the file holds. */
gboolean kilt_idx_read_file (const char *path, guint8 **data, gsize *len, GError **error);
KiltDataset *kilt_data_load_idx (const char *path, const KiltLoadOptions *opts,
                                 KiltProgressFunc progress, gpointer user_data,
                                 GCancellable *cancel, GError **error);
gboolean kilt_data_looks_idx_dir (const char *path);

/* CIFAR-10 / CIFAR-100 binary batches: records of @label_bytes label bytes then 3 x 32 x 32
 * pixel bytes; the label at @label_index (0 or 1) is kept and must be < @n_classes. Appends
 * to @split (at most @max_samples in all when non-zero). */
gboolean kilt_cifar_parse_batch (const char *name, const guint8 *bytes, gsize len,
                                 guint label_bytes, guint label_index, guint n_classes,
                                 guint max_samples, KiltSplit *split, GError **error);
KiltDataset *kilt_data_load_cifar (const char *path, const KiltLoadOptions *opts,
                                   KiltProgressFunc progress, gpointer user_data,
                                   GCancellable *cancel, GError **error);
gboolean kilt_data_looks_cifar (const char *path);

/* CSV: @train (and optionally @test) text; names are used in errors. */
KiltDataset *kilt_csv_parse (const char *train_name, const char *train, gsize train_len,
                             const char *test_name, const char *test, gsize test_len,
                             const KiltLoadOptions *opts, GError **error);
KiltDataset *kilt_data_load_csv (const char *path, const KiltLoadOptions *opts,
                                 KiltProgressFunc progress, gpointer user_data,
                                 GCancellable *cancel, GError **error);
/* Standardises every split's features with the training split's mean and std. */
void kilt_data_standardise (KiltDataset *ds);

KiltDataset *kilt_data_load_folder (const char *path, const KiltLoadOptions *opts,
                                    KiltProgressFunc progress, gpointer user_data,
                                    GCancellable *cancel, GError **error);

/* The decoded-data cache ($KILT_CACHE_DIR/datasets or $XDG_CACHE_HOME/kilt/datasets). */
char *kilt_data_cache_dir (void);
gboolean kilt_data_cache_write (const KiltDataset *ds, const char *path, GError **error);
/* NULL (and no error) when the file is absent, stale or damaged in any way; when it is
 * damaged (its checksum or contents are wrong), *@damaged (if given) says how. Caller frees. */
KiltDataset *kilt_data_cache_read (const char *path, char **damaged);

G_END_DECLS
