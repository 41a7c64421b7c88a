/* Keras weights (HDF5: Keras 2 model.save / save_weights .h5, Keras 3 .weights.h5) onto a model. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* A weights file's variables (Keras' element counts, so an HDF5 file cannot ask for more
 * memory than the model it is read onto): at most this many bytes of HDF5 image in memory
 * (a .keras file's model.weights.h5), and this many characters of model_config JSON. */
#define KILT_KERAS_MAX_WEIGHTS_IMAGE ((gsize)4 << 30)
#define KILT_KERAS_MAX_CONFIG_BYTES  ((gsize)64 << 20)

typedef struct
{
  guint n_tensors; /* variables read from the file */
  gsize n_values;  /* floats they held */
  guint n_layers;  /* layers that had variables */
  gboolean keras3; /* the Keras 3 layout (layers/<name>/vars/<i>) */
} KiltKerasWeightsInfo;

/* Reads the weights in the HDF5 file at @path (or, with @image non-NULL, in the @image_len
 * bytes of an HDF5 file image, @path then only naming it) into @params and @state, which hold
 * @model->n_params and @model->n_state floats laid out as the built @model's parameters.
 *
 * @keras_json (may be NULL) is the Keras architecture the model was built from: it gives each
 * layer's class (Keras 3 files name their groups after it), whether a BatchNormalization has
 * its gamma and beta, and the data format. Without it, the model's own types are used and the
 * data is taken as channels-last (the Keras default), so a Dense after a Flatten of an image
 * gets its rows reordered from Keras' (h, w, c) order to Kilt's (c, h, w).
 *
 * Every variable of every layer that has parameters in the model must be in the file, with
 * its Keras shape; a layer in the file that the model lacks, a variable of another shape, a
 * missing or an extra variable, and a file HDF5 cannot read are errors naming @path, the
 * layer and what was expected. Values are converted to float; a NaN or infinity is refused. */
gboolean kilt_keras_weights_read (KiltModel *model, const char *keras_json, const char *path,
                                  const void *image, gsize image_len, float *params, float *state,
                                  KiltKerasWeightsInfo *info, GError **error);

/* The model_config attribute of a Keras 2 model.save () .h5 (the architecture as JSON), or
 * NULL with *@error unset when the file holds weights only, or NULL with an error when it is
 * not an HDF5 file HDF5 can read. Caller frees. */
char *kilt_keras_weights_model_config (const char *path, GError **error);

/* Whether @path begins as an HDF5 file does (its signature at offset 0). */
gboolean kilt_keras_weights_is_hdf5 (const char *path);

/* Reads @path's weights onto @model (built) with kilt_keras_weights_read () and keeps them as
 * the model's starting weights (kilt_model_set_weights), noting where they came from. */
gboolean kilt_keras_weights_apply (KiltModel *model, const char *keras_json, const char *path,
                                   const void *image, gsize image_len, GError **error);

/* Writes @params and @state (laid out as the built @model's) as a Keras 3 .weights.h5 at
 * @path that keras' Model.load_weights () reads onto the same architecture: groups
 * layers/<class key>/vars/<i> in Keras' variable order and layouts (HWIO kernels, Dense rows
 * after a Flatten in (h, w, c) order). @keras_json as for kilt_keras_weights_read (). The file
 * is written beside @path and renamed over it. *@n_tensors (may be NULL): variables written. */
gboolean kilt_keras_weights_write (KiltModel *model, const char *keras_json, const float *params,
                                   const float *state, const char *path, guint *n_tensors,
                                   GError **error);

G_END_DECLS
