/* Shared by the test programs: one device context per process, random data, skips. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-context.h"

/* The device tests run on: $KILT_DEVICE or the default (PoCL in CI). Skips the test (and
 * returns NULL) when there is no OpenCL device at all. */
KiltContext *kilt_test_context (void);
void kilt_test_context_close (void);

/* Path under ../shared/datasets (or NULL, after g_test_skip with a message, when absent). */
char *kilt_test_shared_file (const char *relative);

/* A fresh temporary folder, removed at exit. */
char *kilt_test_tmpdir (void);
/* Removes @path and everything under it (links are removed, not followed). */
void kilt_test_remove_tree (const char *path);
/* The completed epochs the checkpoint at @path holds (fails the test when it does not load). */
guint kilt_test_checkpoint_epochs (const char *path);
