/* ONNX export: a built model and its weights as an ONNX ModelProto (opset 17, NCHW). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* The opset the files are written for. */
#define KILT_ONNX_OPSET 17

/* What an export wrote. */
typedef struct
{
  guint n_nodes;        /* ONNX operators in the graph */
  guint n_initializers; /* weight tensors and constants */
  gsize bytes;          /* size of the file */
} KiltOnnxExportInfo;

/* Whether this build can write ONNX (protobuf-c and onnx.proto were there at build time). */
gboolean kilt_onnx_export_available (void);

/* Writes @model (built) with @params and @state (n_params and n_state floats, borrowed) to
 * @path as an ONNX model: one float input named after the model's input layer, of shape
 * (batch, C, H, W), or (batch, C) for a flat input, with a symbolic batch; one output "output",
 * the last layer's values (a classifier's probabilities, softmax included), (batch, classes)
 * for a flat output. Weights are initializers named "<layer>/kernel", "/bias", "/gamma",
 * "/beta", "/moving_mean", "/moving_variance", "/mean", "/variance". A layer with no ONNX
 * form is an error naming it and its type; nothing is left at @path then. @info may be NULL. */
gboolean kilt_onnx_export (KiltModel *model, const float *params, const float *state,
                           const char *path, KiltOnnxExportInfo *info, GError **error);

G_END_DECLS
