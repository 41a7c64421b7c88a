/* The layer interface: a node of the model graph and the small class every layer implements. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-context.h"
#include "kilt-rng.h"

G_BEGIN_DECLS

#define KILT_MAX_INPUTS 8
/* Normalization with a mean and variance given as constants: at most this many channels. */
#define KILT_NORM_CONST_MAX 8

typedef enum
{
  KILT_LAYER_INPUT,
  KILT_LAYER_CONV2D,
  KILT_LAYER_DENSE,
  KILT_LAYER_MAX_POOL2D,
  KILT_LAYER_AVG_POOL2D,
  KILT_LAYER_GLOBAL_AVG_POOL2D,
  KILT_LAYER_ACTIVATION,
  KILT_LAYER_DROPOUT,
  KILT_LAYER_FLATTEN,
  KILT_LAYER_BATCH_NORM,
  KILT_LAYER_ADD,
  KILT_LAYER_CONCATENATE,
  KILT_LAYER_ZERO_PADDING2D,
  KILT_LAYER_CROPPING2D,
  KILT_LAYER_RESCALING,
  KILT_LAYER_RESHAPE,
  KILT_LAYER_MULTIPLY,
  KILT_LAYER_DEPTHWISE_CONV2D,
  KILT_LAYER_NORMALIZATION,
  KILT_LAYER_GLOBAL_MAX_POOL2D,
  KILT_LAYER_SUBTRACT,
  KILT_LAYER_AVERAGE,
  KILT_LAYER_MAXIMUM,
  KILT_LAYER_MINIMUM,
  KILT_LAYER_UPSAMPLING2D,
  KILT_LAYER_LAYER_NORM,
  KILT_LAYER_CONV2D_TRANSPOSE,
  KILT_LAYER_PERMUTE,
  KILT_LAYER_EMBEDDING,
  KILT_LAYER_LSTM,
  KILT_LAYER_GRU,
  KILT_LAYER_MASKING,
  KILT_LAYER_N_TYPES
} KiltLayerType;

/* Values shared with kernels/common.cl. */
typedef enum
{
  KILT_ACT_LINEAR = 0,
  KILT_ACT_RELU = 1,
  KILT_ACT_LEAKY_RELU = 2,
  KILT_ACT_SIGMOID = 3,
  KILT_ACT_TANH = 4,
  KILT_ACT_SOFTMAX = 5,
  /* Element-wise ones the Activation layer computes (Conv2D and Dense do not fuse them, as
   * their gradient needs the input, not only the output). */
  KILT_ACT_RELU6 = 6,
  KILT_ACT_ELU = 7,  /* alpha */
  KILT_ACT_SELU = 8, /* Keras' fixed alpha and scale */
  KILT_ACT_SOFTPLUS = 9,
  KILT_ACT_SOFTSIGN = 10,
  KILT_ACT_EXPONENTIAL = 11,
  KILT_ACT_SWISH = 12,           /* x sigmoid (x), Keras' silu */
  KILT_ACT_GELU = 13,            /* exact, through erf */
  KILT_ACT_GELU_TANH = 14,       /* the tanh approximation */
  KILT_ACT_HARD_SIGMOID = 15,    /* Keras 3: clip (x / 6 + 0.5, 0, 1) */
  KILT_ACT_HARD_SIGMOID_K2 = 16, /* Keras 2: clip (0.2 x + 0.5, 0, 1) */
  KILT_ACT_HARD_SWISH = 17,      /* x hard_sigmoid (x) (Keras 3), Keras' hard_silu */
  KILT_ACT_N_TYPES
} KiltActivation;

/* Which elements share one dropout draw (Keras' noise_shape). */
typedef enum
{
  KILT_DROPOUT_ELEMENT, /* every element its own */
  KILT_DROPOUT_CHANNEL, /* a channel's plane: (None, 1, 1, C), SpatialDropout2D */
  KILT_DROPOUT_SAMPLE,  /* a whole sample: (None, 1, 1, 1) */
} KiltDropoutMask;

/* Which steps of a sequence a layer skips (Keras' masks): the layer's last input is the mask's
 * source, read on the device; a skipped step does not change an LSTM's or GRU's state and
 * gives no share of a GlobalAveragePooling1D's mean. */
typedef enum
{
  KILT_STEP_MASK_NONE,
  KILT_STEP_MASK_IDS,    /* the source is ids (steps, 1, 1): step t is kept where id != 0
                          * (Embedding's mask_zero) */
  KILT_STEP_MASK_VALUES, /* the source is a sequence (c, 1, steps): step t is kept where any
                          * feature differs from mask_value (Keras' Masking) */
} KiltStepMask;

typedef enum
{
  KILT_INIT_GLOROT_UNIFORM,
  KILT_INIT_HE_NORMAL,
  KILT_INIT_CONSTANT, /* every weight init_value (LayerScale's gamma) */
  /* Conv2D on the model's input, 2 x C x kh x kw filters: set from the training data before a
   * run (kilt-whiten.h) and never trained; its bias trains for the first whiten_bias_epochs. */
  KILT_INIT_WHITEN,
} KiltInit;

/* Per-sample shape, channels first (NCHW in memory). A vector of n features is {n, 1, 1}. */
typedef struct
{
  guint c, h, w;
} KiltShape;

static inline gsize
kilt_shape_size (const KiltShape *s)
{
  return (gsize)s->c * s->h * s->w;
}

typedef struct
{
  guint units;               /* Dense units, Conv2D filters, DepthwiseConv2D depth_multiplier,
                              * Embedding output_dim */
  guint input_dim;           /* Embedding: rows of the table (ids 0 to input_dim - 1) */
  guint dil_h, dil_w;        /* Conv2D, DepthwiseConv2D dilation_rate (0: 1) */
  guint groups;              /* Conv2D groups (0: 1) */
  gboolean bilinear;         /* UpSampling2D interpolation "bilinear" (FALSE: nearest) */
  guint perm[3];             /* Permute: output axis a (0 c, 1 h, 2 w) is input axis perm[a] */
  guint kh, kw;              /* Conv2D kernel; pooling window; UpSampling2D size */
  guint sh, sw;              /* strides (pooling: default = window) */
  gboolean same;             /* padding "same"; FALSE = "valid" */
  gboolean use_bias;         /* Conv2D, Dense */
  KiltActivation activation; /* Conv2D, Dense, Activation */
  float alpha;               /* LeakyReLU slope, ELU's alpha */
  float negative_slope;      /* ReLU (Keras' ReLU layer): below threshold, slope (x - t) */
  float max_value;           /* ReLU's cap (INFINITY: none) */
  float threshold;           /* ReLU's threshold (0) */
  guint pad[4];              /* ZeroPadding2D / Cropping2D: top, bottom, left, right */
  float scale, offset;       /* Rescaling: y = scale x + offset */
  KiltShape target;          /* Reshape's output shape */
  float rate;                /* Dropout rate */
  KiltDropoutMask dropout_mask;
  float momentum;        /* BatchNormalization running-average momentum (Keras: 0.99) */
  float epsilon;         /* BatchNormalization epsilon (Keras: 1e-3) */
  gboolean bn_no_scale;  /* BatchNormalization without gamma (Keras: scale = false) */
  gboolean bn_no_center; /* ... without beta (center = false) */
  KiltInit init;         /* kernel initialiser; biases start at zero */
  float init_value;      /* KILT_INIT_CONSTANT's value; Embedding's uniform limit (0.05) */
  /* KILT_INIT_WHITEN: the training images whose patches it is computed from (the first this
   * many), the epsilon added to each eigenvalue, and the epochs its bias trains (airbench94:
   * 5000, 5e-4, 3). */
  guint whiten_samples;
  float whiten_epsilon;
  guint whiten_bias_epochs;
  /* Any layer with parameters: its learning rate is the run's times this, and its weight decay
   * the run's divided by it, so that their product (SGD's decay per step) stays the run's, as
   * airbench94's bias_scaler does for BatchNorm biases. 1 by default. */
  float lr_multiplier;
  /* Normalization's mean and variance when given as constants (Keras does not count them as
   * weights): norm_n values each (1: one for every channel); 0 = adapted, kept as state. */
  guint norm_n;
  float norm_mean[KILT_NORM_CONST_MAX], norm_var[KILT_NORM_CONST_MAX];
  /* LSTM, GRU (activation is the cell's, tanh; units the state's size). */
  KiltActivation recurrent_activation; /* the gates': sigmoid or hard_sigmoid (Keras 3 or 2) */
  gboolean return_sequences;           /* every step's state (units, 1, steps), else the last */
  gboolean go_backwards;               /* the steps last to first, the output in that order */
  gboolean keep_time_order;            /* ... but the output in the input's order (Bidirectional) */
  gboolean reset_after;                /* GRU: reset gate after the recurrent matmul */
  gboolean unit_forget_bias;           /* LSTM: the forget gate's bias starts at 1 */
  /* LSTM, GRU, GlobalAveragePooling over steps: the steps to skip, from the last input. */
  KiltStepMask step_mask;
  float mask_value; /* KILT_STEP_MASK_VALUES' value; Masking's */
} KiltLayerConfig;

/* Conv2D's algorithms (KiltNode.algo): im2col into device memory + a GEMM, or the
 * implicit-GEMM kernels (kernels/igemm.cl), which never write the column matrix. */
enum
{
  KILT_CONV_ALGO_IM2COL = 1,
  KILT_CONV_ALGO_IGEMM = 2,
};

typedef struct _KiltNode KiltNode;
typedef struct _KiltLayerClass KiltLayerClass;
typedef struct _KiltExec KiltExec;

struct _KiltNode
{
  guint index;
  char *name;
  KiltLayerType type;
  const KiltLayerClass *klass;
  KiltLayerConfig cfg;
  guint n_inputs;
  guint inputs[KILT_MAX_INPUTS]; /* indices of earlier nodes */

  /* Set by kilt_model_build (). */
  KiltShape in_shape[KILT_MAX_INPUTS];
  KiltShape out_shape;
  gsize n_params; /* trainable floats, at param_offset in the model's flat parameter buffer */
  gsize param_offset;
  gsize n_state; /* non-trainable floats (running statistics), at state_offset */
  gsize state_offset;
  /* Keras' trainable = false (transfer learning): its parameters keep their values, get no
   * gradient buffer and no optimizer state, and a BatchNormalization runs in inference mode
   * (running statistics, not updated) also while training. Set with kilt_model_set_trainable. */
  gboolean frozen;
  /* Set by kilt_model_build (). Where this node's parameter gradients start in the gradient
   * buffer, which holds the trainable (not frozen) nodes' parameters only, in node order
   * (equal to param_offset when nothing is frozen); meaningless for a frozen node. */
  gsize grad_offset;
  /* Whether training needs d(loss)/d(out) of this node: it or a node it reads from (through
   * any path) has trainable parameters. Below the lowest trainable layer nothing does, so no
   * gradient flows there. */
  gboolean grad_path;

  /* Set by the executor for one batch size. */
  cl_mem out;   /* batch x out_shape activations */
  cl_mem dout;  /* gradient w.r.t. out (NULL for inputs) */
  cl_mem saved; /* saved_floats () of per-node scratch kept fwd -> bwd */
  gboolean din_needed[KILT_MAX_INPUTS];
  float din_beta[KILT_MAX_INPUTS]; /* 0: overwrite the input's dout; 1: add to it */
  /* An Activation whose input (a Conv2D or Dense, its only consumer) applies it: this node
   * shares that node's out and dout and runs nothing itself. */
  gboolean fused;
  /* On that Conv2D or Dense: apply fused_act instead of cfg.activation. */
  gboolean act_fused;
  KiltActivation fused_act;
  float fused_alpha;
  /* A layer with more than one algorithm (Conv2D on a GPU) keeps the one it measured fastest
   * on the device, for the batch size it measured at (0: not measured), and its name for
   * reports (NULL: the layer has one algorithm). */
  guint algo;
  guint algo_batch;
  guint algo_forced; /* set by whoever built the node (the doctor): use this one, not timing */
  guint algo_dw;     /* Conv2D: the weight gradient's, measured on its own */
  guint algo_dw_batch;
  const char *algo_name;
  /* What the measurement found, in ms: [forward, weight gradient][the first algorithm, the
   * second] (Conv2D: im2col, implicit GEMM); 0 where nothing was measured. */
  double algo_ms[2][2];
};

/* The activation a Conv2D or Dense applies on the device: its own, or a following
 * Activation's that the executor folded into it. */
static inline KiltActivation
kilt_node_act (const KiltNode *node)
{
  return node->act_fused ? node->fused_act : node->cfg.activation;
}

static inline float
kilt_node_alpha (const KiltNode *node)
{
  return node->act_fused ? node->fused_alpha : node->cfg.alpha;
}

/* What a layer's forward/backward can see: the device, the step and the flat buffers. */
struct _KiltExec
{
  KiltContext *ctx;
  GPtrArray *nodes; /* KiltNode*, the model's, in order */
  guint batch;
  gboolean training;
  guint32 seed;             /* run seed, for dropout */
  guint64 step;             /* global step counter, for dropout */
  guint sample_offset;      /* where this batch starts in the global batch (a replica's slice,
                             * engine/dist; 0 on one device), for dropout's draws */
  cl_mem params;            /* all trainable parameters, flat */
  cl_mem grads;             /* same layout as params */
  cl_mem state;             /* non-trainable state, flat */
  cl_mem workspace;         /* shared scratch: max workspace_floats () over nodes */
  guint softmax_fused_node; /* node whose dout already holds d(loss)/d(pre-softmax), or G_MAXUINT */
  /* A forward that the backward pass redoes (activation recompute): the same outputs again,
   * but no state may change (BatchNormalization's moving statistics update once a step). */
  gboolean recompute;
};

static inline KiltNode *
kilt_exec_input (KiltExec *ex, KiltNode *node, guint i)
{
  return g_ptr_array_index (ex->nodes, node->inputs[i]);
}

struct _KiltLayerClass
{
  KiltLayerType type;
  const char *name; /* as Keras spells it: "Conv2D" */
  guint min_inputs, max_inputs;

  /* From node->in_shape[] and node->cfg: set out_shape, n_params, n_state. Errors name the
   * node and what was expected. */
  gboolean (*infer) (KiltNode *node, GError **error);
  /* Optional. Initialise this node's slices (params points at param_offset). */
  void (*init) (const KiltNode *node, float *params, float *state, KiltRng *rng);
  /* Forward FLOPs per sample (a multiply-add counts 2). Optional: 0. */
  guint64 (*flops) (const KiltNode *node);
  /* Optional scratch sizes, in floats, for a batch. */
  gsize (*workspace_floats) (const KiltNode *node, guint batch, const KiltDeviceInfo *info);
  gsize (*saved_floats) (const KiltNode *node, guint batch);

  gboolean (*forward) (KiltNode *node, KiltExec *ex, GError **error);
  /* Reads node->dout (may overwrite it), writes this node's gradient slice in ex->grads
   * (overwrite) and, for each input with din_needed, its dout scaled per din_beta. */
  gboolean (*backward) (KiltNode *node, KiltExec *ex, GError **error);

  /* Plain-C double-precision reference, for the tests and the device doctor.
   * in[i] are batch x in_shape[i]; params/state point at this node's slices. */
  void (*ref_forward) (const KiltNode *node, guint batch, gboolean training, guint32 seed,
                       guint64 step, const double *const *in, const double *params, double *state,
                       double *out);
  /* din[i] (may be NULL when not needed) and dparams are overwritten. */
  void (*ref_backward) (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                        const double *const *in, const double *params, const double *state,
                        const double *out, const double *dout, double **din, double *dparams);
};

const KiltLayerClass *kilt_layer_class_get (KiltLayerType type);
const KiltLayerClass *kilt_layer_class_find (const char *name);
const char *kilt_activation_name (KiltActivation act);
/* Whether Conv2D and Dense can apply @act themselves (its gradient follows from the output). */
gboolean kilt_activation_fusable (KiltActivation act);
/* The same for a layer's activation with its options (a ReLU with a cap or threshold is not). */
gboolean kilt_layer_config_act_fusable (const KiltLayerConfig *cfg);
gboolean kilt_activation_from_name (const char *name, KiltActivation *out);
KiltLayerConfig kilt_layer_config_default (KiltLayerType type);

/* Each layer file exports its class. */
extern const KiltLayerClass kilt_input_class;
extern const KiltLayerClass kilt_conv2d_class;
extern const KiltLayerClass kilt_dense_class;
extern const KiltLayerClass kilt_max_pool2d_class;
extern const KiltLayerClass kilt_avg_pool2d_class;
extern const KiltLayerClass kilt_global_avg_pool2d_class;
extern const KiltLayerClass kilt_activation_class;
extern const KiltLayerClass kilt_dropout_class;
extern const KiltLayerClass kilt_flatten_class;
extern const KiltLayerClass kilt_batch_norm_class;
extern const KiltLayerClass kilt_add_class;
extern const KiltLayerClass kilt_concatenate_class;
extern const KiltLayerClass kilt_zero_padding2d_class;
extern const KiltLayerClass kilt_cropping2d_class;
extern const KiltLayerClass kilt_rescaling_class;
extern const KiltLayerClass kilt_reshape_class;
extern const KiltLayerClass kilt_multiply_class;
extern const KiltLayerClass kilt_depthwise_conv2d_class;
extern const KiltLayerClass kilt_normalization_class;
extern const KiltLayerClass kilt_global_max_pool2d_class;
extern const KiltLayerClass kilt_subtract_class;
extern const KiltLayerClass kilt_average_class;
extern const KiltLayerClass kilt_maximum_class;
extern const KiltLayerClass kilt_minimum_class;
extern const KiltLayerClass kilt_upsampling2d_class;
extern const KiltLayerClass kilt_layer_norm_class;
extern const KiltLayerClass kilt_conv2d_transpose_class;
extern const KiltLayerClass kilt_permute_class;
extern const KiltLayerClass kilt_embedding_class;
extern const KiltLayerClass kilt_lstm_class;
extern const KiltLayerClass kilt_gru_class;
extern const KiltLayerClass kilt_masking_class;

/* Helpers shared by layers. */
/* The element-wise activation (not softmax) on doubles, and its derivative through y. */
double kilt_ref_act (KiltActivation act, double x, double alpha);
double kilt_ref_act_grad (KiltActivation act, double y, double alpha);
/* Reference activation in place over (batch, channels, spatial); softmax runs over channels. */
void kilt_ref_activate (double *y, gsize batch, gsize channels, gsize spatial, KiltActivation act,
                        double alpha);
/* dz = dout * act'(y) (softmax: its Jacobian product); dz may alias dout only when not softmax. */
void kilt_ref_act_backward (double *dz, const double *dout, const double *y, gsize batch,
                            gsize channels, gsize spatial, KiltActivation act, double alpha);
/* In-place fused bias + activation over a (batch, channels, spatial) tensor on the device.
 * Softmax applies over channels (spatial must be 1). */
gboolean kilt_layer_bias_act (KiltExec *ex, cl_mem y, gsize bias_offset, gboolean has_bias,
                              guint channels, guint spatial, KiltActivation act, float alpha,
                              GError **error);
/* In place on @node->dout: dz = dout * act'(out), or the softmax Jacobian product; a no-op
 * when the loss already gave the pre-softmax gradient (ex->softmax_fused_node). */
gboolean kilt_layer_act_backward (KiltExec *ex, KiltNode *node, KiltActivation act, float alpha,
                                  guint channels, guint spatial, GError **error);
/* One spatial output size as Keras/TensorFlow compute it for convolution and pooling: same
 * -> ceil (in / stride) with the odd padding pixel after; valid -> floor ((in - k) / s) + 1.
 * FALSE when the window does not fit (valid) or the output is empty. */
/* A 3-D launch over (x, y, z) with groups of about 64 work-items shaped to the rows, so a
 * small row (13 wide) does not leave most of a 64-wide group idle; kernels index by
 * (x, y, z) instead of dividing a flat index. */
gboolean kilt_layer_launch3 (KiltExec *ex, cl_kernel k, gsize x, gsize y, gsize z, GError **error);
/* Whether a layer runs its row-per-work-item kernels (CPU devices: PoCL runs a group's
 * work-items in a loop, where per-element kernels pay for gathers and divisions), unless
 * $@env says "rows" or "items" (tests run both kinds everywhere). */
gboolean kilt_layer_use_rows (const KiltDeviceInfo *info, const char *env);
gboolean kilt_layer_out_dim (guint in, guint k, guint s, gboolean same, guint *out,
                             guint *pad_before);
/* y = beta * y + x over n floats (a copy when beta is 0). */
gboolean kilt_layer_copy_scaled (KiltExec *ex, cl_mem y, cl_mem x, gsize n, float beta,
                                 GError **error);
/* grads[offset + c] = sum over batch, spatial of dz. */
gboolean kilt_layer_bias_grad (KiltExec *ex, cl_mem dz, gsize offset, guint channels, guint spatial,
                               GError **error);
/* Fills n kernel weights as @cfg's init says: Glorot-uniform or He-normal with the given fans,
 * or every one cfg->init_value. */
void kilt_layer_init_weights (float *w, gsize n, const KiltLayerConfig *cfg, guint fan_in,
                              guint fan_out, KiltRng *rng);

/* Whether sample b's step t is kept by @node's step mask, read from the mask's source @m
 * (batch x its shape) as the kernels read it; TRUE when the node has no mask. */
gboolean kilt_ref_step_kept (const KiltNode *node, const double *m, gsize b, gsize t);
/* Checks a step mask's source (the last input) against the sequence it masks, of @steps steps;
 * errors name the node. */
gboolean kilt_layer_check_step_mask (KiltNode *node, guint steps, GError **error);
/* Sets the mask source's gradient (ids and values give none) where one is asked for: zeros, or
 * what other consumers gave it. */
gboolean kilt_layer_step_mask_no_grad (KiltNode *node, KiltExec *ex, GError **error);
/* Adds the mask arguments (source buffer, kind, value, the source's features) at @arg. */
cl_int kilt_layer_step_mask_args (KiltNode *node, KiltExec *ex, cl_kernel k, cl_uint arg);

/* Sets "node %s (%s): <msg>" as a KILT_ENGINE_ERROR_MODEL error. */
void kilt_layer_set_error (GError **error, const KiltNode *node, const char *fmt, ...)
    G_GNUC_PRINTF (3, 4);

G_END_DECLS
