/*
 * ai4land.h - C ABI of the ai4land-coupler plugin (libai4land).
 *
 * Every function returns an int status: AI4LAND_OK (0) on success, otherwise one of the
 * AI4LAND_ERR_* codes of ai4land_status.h; ai4land_error_message() then gives the reason.
 * The first call starts the embedded Python (the interpreter fixed at build time, or
 * $AI4LAND_PYTHON) and imports ai4land_coupler; if that fails, every call returns
 * AI4LAND_ERR_PYTHON_START.
 *
 * Lifecycle per component: init -> def_partition_box | def_partition_points -> enddef ->
 * { put* -> step -> get* } -> finalize.  Calls that involve the communicator are collective.
 *
 * Conventions (0-based in C):
 *   global cell index g = j * nlon + i  (j: latitude row, south to north; i: longitude column,
 *   west to east) on the host grid of the namelist (host_nlat x host_nlon);
 *   local order of a box: longitude fastest; multi-level fields: levels slowest, so an array
 *   holds nlevels * ncells values.
 *   Arrays are read (put) or written (get) in place, without copies, during the call only.
 */
#ifndef AI4LAND_H
#define AI4LAND_H

#include <stdint.h>

#include "ai4land_status.h"

#if defined(__GNUC__)
#define AI4LAND_API __attribute__((visibility("default")))
#else
#define AI4LAND_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Create a component on the host communicator and read its namelist.
 *   fortran_comm   the communicator as a Fortran INTEGER handle (MPI_Comm_c2f(comm) in C);
 *                  MPI must be initialised by the host
 *   namelist_path  NUL-terminated path of the file holding &ai4land_nml
 *   handle         in: 0 (or a finalized handle); out: the new component's handle (> 0).
 *                  A live handle on entry is AI4LAND_ERR_CALL_ORDER (double init). */
AI4LAND_API int ai4land_init(int fortran_comm, const char *namelist_path, int *handle);

/* Describe the local cells as a box of ni x nj cells whose south-west cell is
 * (i_offset, j_offset), 0-based. */
AI4LAND_API int ai4land_def_partition_box(int handle, int i_offset, int j_offset, int ni, int nj);

/* Describe the local cells as a list of n 0-based global indices, in local storage order. */
AI4LAND_API int ai4land_def_partition_points(int handle, const int64_t *global_index, int64_t n);

/* Close the definition phase (collective): the partitions of all ranks are checked together. */
AI4LAND_API int ai4land_enddef(int handle);

/* Number of local cells (after def_partition). */
AI4LAND_API int ai4land_local_size(int handle, int64_t *ncells);

/* Number of levels of a field: e.g. 8 land-use classes for "landuse_fraction", 1 for "lai". */
AI4LAND_API int ai4land_field_levels(int handle, const char *name, int *nlevels);

/* Name of level `level` (0-based) of a field, copied NUL-terminated into buf (buflen bytes);
 * a name that does not fit is AI4LAND_ERR_ARGUMENT. */
AI4LAND_API int ai4land_level_name(int handle, const char *name, int level, char *buf, int buflen);

/* Give the plugin a host field ("tas" K, "pr" kg m-2 s-1, "rsds" W m-2, ...):
 * n = nlevels * ncells values, levels slowest. */
AI4LAND_API int ai4land_put_double(int handle, const char *name, const double *values, int64_t n);
AI4LAND_API int ai4land_put_float(int handle, const char *name, const float *values, int64_t n);

/* Advance the plugin to the model date (year, month 1-12, day 1-31, second of day).
 * changed: out, bit set of fields with new values (AI4LAND_CHANGED_LANDUSE, AI4LAND_CHANGED_LAI). */
AI4LAND_API int ai4land_step(int handle, int year, int month, int day, int second, int *changed);

/* Copy a plugin field ("landuse_fraction", "lai", ...) into values: n = nlevels * ncells. */
AI4LAND_API int ai4land_get_double(int handle, const char *name, double *values, int64_t n);
AI4LAND_API int ai4land_get_float(int handle, const char *name, float *values, int64_t n);

/* Write the component's state to a netCDF restart file (collective, after at least enddef):
 * written to a temporary file, synced and renamed, so the path never holds half a restart. */
AI4LAND_API int ai4land_write_restart(int handle, const char *path);

/* Continue from a restart written by ai4land_write_restart (collective), after enddef and before
 * the first step, on any number of ranks and any partition. A restart of other emulators,
 * grids, calendar or LAI cadence is AI4LAND_ERR_FILE. */
AI4LAND_API int ai4land_read_restart(int handle, const char *path);

/* Release the component (collective); its handle is dead afterwards, even on failure. */
AI4LAND_API int ai4land_finalize(int handle);

/* Copy the last error message into buf (buflen bytes), NUL-terminated, truncated if needed.
 * The message stays until the next error. Returns AI4LAND_ERR_ARGUMENT for a NULL/empty buf. */
AI4LAND_API int ai4land_error_message(char *buf, int buflen);

/* Length of the last error message in bytes, without the NUL. */
AI4LAND_API int ai4land_error_message_length(void);

#ifdef __cplusplus
}
#endif

#endif /* AI4LAND_H */
