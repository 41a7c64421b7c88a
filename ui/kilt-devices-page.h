/* Devices page: platforms and devices with their facts, the default device, the self-test. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "kilt-device.h"

G_BEGIN_DECLS

#define KILT_TYPE_DEVICES_PAGE (kilt_devices_page_get_type ())
G_DECLARE_FINAL_TYPE (KiltDevicesPage, kilt_devices_page, KILT, DEVICES_PAGE, AdwBin)

/* The chosen device's stable id (NULL until the list has loaded or when there is none). */
const char *kilt_devices_page_get_device_id (KiltDevicesPage *self);
const char *kilt_devices_page_get_device_name (KiltDevicesPage *self);
/* Makes @id the default (GSettings and the file kilt-cli reads). FALSE when no device has it. */
gboolean kilt_devices_page_choose (KiltDevicesPage *self, const char *id);
gboolean kilt_devices_page_get_loaded (KiltDevicesPage *self);
/* The report of every platform and device; NULL until loaded. */
char *kilt_devices_page_dup_report (KiltDevicesPage *self);
/* Whether the self-test is running. */
gboolean kilt_devices_page_get_testing (KiltDevicesPage *self);
/* The self-test's headline ("<device>: good to use", "Self-test cancelled"), for tests. */
const char *kilt_devices_page_get_test_title (KiltDevicesPage *self);
/* Runs the device doctor on the chosen device, on a worker thread. */
void kilt_devices_page_test (KiltDevicesPage *self);
/* The chosen device's facts (borrowed; valid until the list is refreshed), or NULL. */
const KiltDeviceInfo *kilt_devices_page_get_device_info (KiltDevicesPage *self);
/* Every device found (KiltDeviceInfo, borrowed; valid until the list is refreshed), or NULL
 * before the list has loaded. */
GPtrArray *kilt_devices_page_get_devices (KiltDevicesPage *self);
/* The devices a run trains on together, the default first, when the person switched on at
 * least one more under "Train on Several Devices" (ids; free with g_strfreev); NULL: the
 * default device alone. */
char **kilt_devices_page_dup_train_devices (KiltDevicesPage *self);
/* Switches device @id's "train on it too" on or off (the default's stays on). FALSE when no
 * usable device has @id. */
gboolean kilt_devices_page_set_train_device (KiltDevicesPage *self, const char *id, gboolean on);
/* Global memory of the chosen device in bytes, 0 when unknown. */
guint64 kilt_devices_page_get_device_memory (KiltDevicesPage *self);

G_END_DECLS
