/* Runs one layer check and asserts its errors are within float tolerance. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-layer-check.h"
#include "kilt-test-util.h"

#include <string.h>

/* Device float against the double reference: relative to the largest magnitude. Backward
 * sums many products, so it gets more room. FD is reference-against-reference in double. */
#define KILT_TEST_TOL_FORWARD  2e-5
#define KILT_TEST_TOL_BACKWARD 1e-4
#define KILT_TEST_TOL_FD       1e-5

static inline void
kilt_test_layer_case (const KiltLayerCheck *c)
{
  KiltContext *ctx = kilt_test_context ();
  KiltLayerCheckResult r;
  g_autoptr (GError) error = NULL;

  if (ctx == NULL)
    return;
  if (!kilt_layer_check_run (ctx, c, &r, &error))
    g_error ("%s: %s", c->label, error ? error->message : "failed without an error");
  g_test_message ("%s: fwd %.2g, bwd in %.2g, bwd param %.2g, fd %.2g (%u points)", c->label,
                  r.forward, r.backward_input, r.backward_param, r.finite_diff, r.fd_points);
  if (r.forward > KILT_TEST_TOL_FORWARD || r.backward_input > KILT_TEST_TOL_BACKWARD
      || r.backward_param > KILT_TEST_TOL_BACKWARD || r.finite_diff > KILT_TEST_TOL_FD
      || r.state > KILT_TEST_TOL_FORWARD)
    g_error ("%s: fwd %.3g, bwd in %.3g, bwd param %.3g, fd %.3g, state %.3g", c->label, r.forward,
             r.backward_input, r.backward_param, r.finite_diff, r.state);
  if (c->training)
    g_assert_cmpuint (r.fd_points, >, 0);
}
