/* The OpenCL C sources from the kernels folder, embedded at build time by kernels/embed.py. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

typedef struct
{
  const char *name;
  const char *source;
} KiltKernelSource;

/* Terminated by { NULL, NULL }. */
extern const KiltKernelSource kilt_kernel_sources[];
/* kernels/gemm-tf32.cl, built apart (kilt-gemm-tf32.c). */
extern const KiltKernelSource kilt_kernel_sources_tf32[];
