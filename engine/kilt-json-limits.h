/* Checks on JSON text before json-glib parses it: size, nesting depth, value count, UTF-8. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* json-glib's parser recurses once per level, so deep nesting exhausts the stack; real model
 * files nest a dozen levels. Each value costs the parsed tree about a hundred bytes. */
#define KILT_JSON_MAX_DEPTH  512
#define KILT_JSON_MAX_BYTES  (64u << 20)
#define KILT_JSON_MAX_VALUES (4u << 20)

/* One linear pass over @data (@length bytes; -1: up to the NUL). Refuses text over the size,
 * depth or value caps, invalid UTF-8 (NUL bytes included), \u0000 escapes (json-glib would cut
 * the string there) and lone surrogate escapes (json-glib would make bytes that are not UTF-8). The
 * KILT_ENGINE_ERROR_INVALID message starts "line L, column C (byte B): " and leaves naming the file
 * to the caller. */
gboolean kilt_json_check_text (const char *data, gssize length, GError **error);

/* Reads a JSON file of at most KILT_JSON_MAX_BYTES; refuses anything but a regular file (a FIFO
 * or /dev/zero would never end). KILT_ENGINE_ERROR_IO on failure, naming @what and @path. */
gboolean kilt_json_read_file (const char *path, const char *what, char **data, gsize *length,
                              GError **error);

/* json-glib's messages quote the text it choked on, which may be invalid UTF-8: a copy that is
 * valid UTF-8, safe for a label, a log or a JSON report. */
char *kilt_json_clean_message (const char *message);

/* Members of the object a JsonBuilder is in. JSON has no NaN or infinity (json-glib would write
 * a bare nan, and the document would no longer parse): such a number is written as null. A
 * string is made valid UTF-8 first (json-glib copies bad bytes through); NULL is null. */
void kilt_json_add_number (JsonBuilder *b, const char *name, double v);
void kilt_json_add_int (JsonBuilder *b, const char *name, gint64 v);
void kilt_json_add_string (JsonBuilder *b, const char *name, const char *v);
/* Member @name of @o as a number (an integer or a double); NaN when it is missing, null (how
 * NaN is written) or not a number. */
double kilt_json_get_number (JsonObject *o, const char *name);
/* A string value (in an array, or after a member name), made valid UTF-8 first. */
void kilt_json_add_text (JsonBuilder *b, const char *v);

G_END_DECLS
