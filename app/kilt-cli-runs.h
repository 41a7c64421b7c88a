/* `kilt-cli runs` and `kilt-cli report`: the run store and timing reports from the shell. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

/* argv[0] is the subcommand's own name ("runs", "report"). Return the process exit status:
 * 0 done, 1 failed (message on stderr), 2 wrong usage. */
int kilt_cli_runs (int argc, char **argv);
int kilt_cli_report (int argc, char **argv);
