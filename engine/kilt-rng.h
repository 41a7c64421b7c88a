/* A small seeded host RNG (splitmix64) for initialisers, shuffles and tests. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <math.h>

typedef struct
{
  guint64 state;
} KiltRng;

static inline void
kilt_rng_init (KiltRng *rng, guint64 seed)
{
  rng->state = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
}

static inline guint64
kilt_rng_next (KiltRng *rng)
{
  guint64 z = (rng->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double
kilt_rng_uniform (KiltRng *rng)
{
  return (kilt_rng_next (rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, n). */
static inline guint32
kilt_rng_below (KiltRng *rng, guint32 n)
{
  return (guint32)((kilt_rng_next (rng) >> 32) * n >> 32);
}

static inline double
kilt_rng_normal (KiltRng *rng)
{
  double u1 = kilt_rng_uniform (rng), u2 = kilt_rng_uniform (rng);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

/* The device's counter-based hash (kernels/common.cl kilt_hash), for references and tests. */
static inline guint32
kilt_hash (guint32 seed, guint32 a, guint32 b)
{
  guint32 x = seed ^ (a * 0x9E3779B9u) ^ (b * 0x85EBCA6Bu);
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

static inline float
kilt_hash_uniform (guint32 seed, guint32 a, guint32 b)
{
  return (kilt_hash (seed, a, b) >> 8) * (1.0f / 16777216.0f);
}
