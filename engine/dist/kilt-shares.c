/* How a global batch is split among devices (and ranks): by measured speed, within caps. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-shares.h"

#include <math.h>

void
kilt_shares_split (guint total, guint n, const double *weight, const guint *cap, guint *part)
{
  double sum = 0, *rem = g_newa (double, n);
  guint given = 0;
  gboolean any = FALSE;

  for (guint i = 0; i < n; i++)
    if (weight && weight[i] > 0 && isfinite (weight[i]))
      {
        sum += weight[i];
        any = TRUE;
      }
  for (guint i = 0; i < n; i++)
    {
      double w = any ? (weight[i] > 0 && isfinite (weight[i]) ? weight[i] / sum : 0) : 1.0 / n;
      double exact = w * total;
      part[i] = (guint)floor (exact);
      if (cap && part[i] > cap[i])
        part[i] = cap[i];
      rem[i] = exact - floor (exact);
      given += part[i];
    }
  /* The rest one at a time: largest remainder first, then (capped devices full) the fastest
   * device with room. */
  while (given < total)
    {
      gint best = -1;
      for (guint i = 0; i < n; i++)
        {
          if (cap && part[i] >= cap[i])
            continue;
          if (any && !(weight[i] > 0))
            continue;
          if (best < 0 || rem[i] > rem[best]
              || (rem[i] == rem[best] && any && weight[i] > weight[best]))
            best = (gint)i;
        }
      if (best < 0)
        break;
      part[best]++;
      rem[best] = -1.0 + rem[best] * 1e-9; /* after every remainder not yet used */
      given++;
    }
}

guint
kilt_shares_cap (guint batch, guint n)
{
  guint equal = (batch + n - 1) / MAX (n, 1);
  return MIN (batch, 2 * equal);
}

guint
kilt_shares_first (const guint *part, guint i)
{
  guint first = 0;

  for (guint j = 0; j < i; j++)
    first += part[j];
  return first;
}
