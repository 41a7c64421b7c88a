/* The arithmetic a run trains with. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  KILT_PRECISION_FP32, /* IEEE single precision throughout: exact to the C reference's tolerance */
  KILT_PRECISION_TF32, /* GEMMs on tensor cores with TF32 inputs (10-bit mantissas), FP32
                        * accumulation and storage; convolutions by implicit GEMM stay FP32 */
  KILT_PRECISION_N
} KiltPrecision;

const char *kilt_precision_name (KiltPrecision p);
/* "fp32", "tf32"; FALSE for anything else (bf16 and fp16 are not built yet). */
gboolean kilt_precision_from_name (const char *name, KiltPrecision *out);

G_END_DECLS
