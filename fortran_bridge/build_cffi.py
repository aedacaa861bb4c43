"""Emit the C source of ``libai4land`` with cffi's embedding API (CMake compiles it).

    python fortran_bridge/build_cffi.py --output build/_ai4land_cffi.c [--python /venv/bin/python]

The public ``ai4land_*`` functions of ``ai4land.h`` are hand-written C below. Each one

1. starts Python itself if nobody has (``PyConfig.program_name`` = the Python given here, a path
   fixed at build time so the venv's ``pyvenv.cfg`` is found; env ``AI4LAND_PYTHON`` overrides
   it), then releases the GIL so cffi can take it;
2. pre-sets its status to ``AI4LAND_ERR_PYTHON_START``: when cffi's init code failed, cffi's
   exported functions return 0 without running, and that must not read as success;
3. calls the internal ``ai4land_py_*`` function (``ai4land_coupler.bridge.attach``) and returns
   its status.
"""
from __future__ import annotations

import argparse
import os
import sys

import cffi

MODULE_NAME = "_ai4land_cffi"

# Internal entry points implemented in Python; the last argument is the status out-parameter.
EMBEDDING_API = """
int ai4land_py_init(int fortran_comm, const char *namelist_path, int *handle, int *status);
int ai4land_py_def_partition_box(int handle, int i_offset, int j_offset, int ni, int nj, int *status);
int ai4land_py_def_partition_points(int handle, const int64_t *global_index, int64_t n, int *status);
int ai4land_py_enddef(int handle, int *status);
int ai4land_py_local_size(int handle, int64_t *ncells, int *status);
int ai4land_py_field_levels(int handle, const char *name, int *nlevels, int *status);
int ai4land_py_level_name(int handle, const char *name, int level, char *buf, int buflen, int *status);
int ai4land_py_put_double(int handle, const char *name, const double *values, int64_t n, int *status);
int ai4land_py_put_float(int handle, const char *name, const float *values, int64_t n, int *status);
int ai4land_py_step(int handle, int year, int month, int day, int second, int *changed, int *status);
int ai4land_py_get_double(int handle, const char *name, double *values, int64_t n, int *status);
int ai4land_py_get_float(int handle, const char *name, float *values, int64_t n, int *status);
int ai4land_py_write_restart(int handle, const char *path, int *status);
int ai4land_py_read_restart(int handle, const char *path, int *status);
int ai4land_py_finalize(int handle, int *status);
"""

# Plain C helpers that the Python side calls through ``lib``.
CDEF = """
void ai4land_set_error_message(const char *message);
void ai4land_record_start_failure(const char *message);
"""

INIT_CODE = r'''
import os
import sys


def _start():
    import mpi4py
    mpi4py.rc.initialize = False  # the host owns MPI
    mpi4py.rc.finalize = False
    import numpy  # noqa: F401 - loaded with the default flags
    # The host may link its own netCDF/HDF5; with RTLD_DEEPBIND the netCDF4 wheel binds to the
    # copies it bundles instead of the host's (which segfaults).
    flags = sys.getdlopenflags()
    sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
    try:
        import netCDF4  # noqa: F401
    finally:
        sys.setdlopenflags(flags)
    from mpi4py import MPI  # noqa: F401
    import torch  # noqa: F401
    from ai4land_coupler import bridge
    bridge.preload()
    bridge.attach(ffi, lib)


try:
    from _ai4land_cffi import ffi, lib
    _start()
except BaseException:
    import traceback
    _message = ("ai4land: the embedded Python failed to start (python: %s, prefix: %s)\n%s"
                % (sys.executable, sys.prefix, traceback.format_exc()))
    try:
        lib.ai4land_record_start_failure(_message.replace("\0", " ").encode("utf-8", "replace"))
    except BaseException:
        pass
    raise
'''

C_SOURCE = r'''
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ai4land.h"

#ifndef AI4LAND_DEFAULT_PYTHON
#error "AI4LAND_DEFAULT_PYTHON (path of the Python interpreter to embed) must be defined"
#endif

/* ---- internal Python entry points (defined further down by cffi) ---- */
@PY_DECLS@

/* ---- last-error message ---- */
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;
static char *error_message = NULL;
static int start_failure_recorded = 0;

static void ai4land_set_error_message(const char *message)
{
    char *copy = strdup(message ? message : "");
    pthread_mutex_lock(&error_lock);
    free(error_message);
    error_message = copy;
    pthread_mutex_unlock(&error_lock);
}

static void ai4land_record_start_failure(const char *message)
{
    ai4land_set_error_message(message);
    start_failure_recorded = 1;
}

AI4LAND_API int ai4land_error_message_length(void)
{
    int n;
    pthread_mutex_lock(&error_lock);
    n = error_message ? (int)strlen(error_message) : 0;
    pthread_mutex_unlock(&error_lock);
    return n;
}

AI4LAND_API int ai4land_error_message(char *buf, int buflen)
{
    size_t n;
    if (buf == NULL || buflen <= 0)
        return AI4LAND_ERR_ARGUMENT;
    pthread_mutex_lock(&error_lock);
    n = error_message ? strlen(error_message) : 0;
    if (n > (size_t)buflen - 1)
        n = (size_t)buflen - 1;
    if (n > 0)
        memcpy(buf, error_message, n);
    buf[n] = '\0';
    pthread_mutex_unlock(&error_lock);
    return AI4LAND_OK;
}

/* ---- starting the interpreter ---- */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static int python_state = -1; /* -1: not tried, 0: running, 1: failed */

static void start_failure(const char *format, const char *a, const char *b)
{
    char message[4096];
    snprintf(message, sizeof message, format, a, b);
    ai4land_record_start_failure(message);
}

static int start_python(void)
{
    const char *python = getenv("AI4LAND_PYTHON");
    PyConfig config;
    PyStatus status;

    if (Py_IsInitialized())
        return 0; /* a Python host, or another embedded library, got there first */
    if (python == NULL || python[0] == '\0')
        python = AI4LAND_DEFAULT_PYTHON;
    if (access(python, X_OK) != 0) {
        start_failure("ai4land: cannot start Python: '%s' is not an executable (%s); "
                      "set AI4LAND_PYTHON to the python of the environment holding ai4land_coupler",
                      python, strerror(errno));
        return 1;
    }
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0; /* leave the host's signal handlers alone */
    config.parse_argv = 0;
    /* The path as given (not symlink-resolved): Python finds the venv's pyvenv.cfg next to it. */
    status = PyConfig_SetBytesString(&config, &config.program_name, python);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        start_failure("ai4land: cannot start Python from '%s': %s", python,
                      status.err_msg ? status.err_msg : "unknown error");
        return 1;
    }
    PyEval_SaveThread(); /* release the GIL: cffi takes it per call */
    return 0;
}

/* Sets *status to AI4LAND_ERR_PYTHON_START; returns 0 when Python and the bridge are up. */
static int begin(int *status)
{
    int state;
    *status = AI4LAND_ERR_PYTHON_START;
    pthread_mutex_lock(&start_lock);
    if (python_state < 0)
        python_state = start_python();
    state = python_state;
    pthread_mutex_unlock(&start_lock);
    if (state != 0)
        return -1;
    if (cffi_start_python() != 0) {
        if (!start_failure_recorded)
            ai4land_record_start_failure(
                "ai4land: the embedded Python failed to start; see the traceback on stderr");
        return -1;
    }
    return 0;
}

/* A call succeeded only if Python ran it (rc == 0) and it reported success (status == 0). */
static int finish(int rc, int status)
{
    return rc != 0 ? rc : status;
}

#define AI4LAND_FORWARD(call)                   \
    int status_, rc_;                           \
    if (begin(&status_) != 0)                   \
        return status_;                         \
    rc_ = call;                                 \
    return finish(rc_, status_)

/* ---- the public C ABI (ai4land.h) ---- */
AI4LAND_API int ai4land_init(int fortran_comm, const char *namelist_path, int *handle)
{
    if (handle == NULL) {
        ai4land_set_error_message("ai4land_init: handle is a NULL pointer");
        return AI4LAND_ERR_ARGUMENT;
    }
    AI4LAND_FORWARD(ai4land_py_init(fortran_comm, namelist_path, handle, &status_));
}

AI4LAND_API int ai4land_def_partition_box(int handle, int i_offset, int j_offset, int ni, int nj)
{
    AI4LAND_FORWARD(ai4land_py_def_partition_box(handle, i_offset, j_offset, ni, nj, &status_));
}

AI4LAND_API int ai4land_def_partition_points(int handle, const int64_t *global_index, int64_t n)
{
    AI4LAND_FORWARD(ai4land_py_def_partition_points(handle, global_index, n, &status_));
}

AI4LAND_API int ai4land_enddef(int handle)
{
    AI4LAND_FORWARD(ai4land_py_enddef(handle, &status_));
}

AI4LAND_API int ai4land_local_size(int handle, int64_t *ncells)
{
    if (ncells == NULL) {
        ai4land_set_error_message("ai4land_local_size: ncells is a NULL pointer");
        return AI4LAND_ERR_ARGUMENT;
    }
    *ncells = 0;
    AI4LAND_FORWARD(ai4land_py_local_size(handle, ncells, &status_));
}

AI4LAND_API int ai4land_field_levels(int handle, const char *name, int *nlevels)
{
    if (nlevels == NULL) {
        ai4land_set_error_message("ai4land_field_levels: nlevels is a NULL pointer");
        return AI4LAND_ERR_ARGUMENT;
    }
    *nlevels = 0;
    AI4LAND_FORWARD(ai4land_py_field_levels(handle, name, nlevels, &status_));
}

AI4LAND_API int ai4land_level_name(int handle, const char *name, int level, char *buf, int buflen)
{
    if (buf != NULL && buflen > 0)
        buf[0] = '\0';
    AI4LAND_FORWARD(ai4land_py_level_name(handle, name, level, buf, buflen, &status_));
}

AI4LAND_API int ai4land_put_double(int handle, const char *name, const double *values, int64_t n)
{
    AI4LAND_FORWARD(ai4land_py_put_double(handle, name, values, n, &status_));
}

AI4LAND_API int ai4land_put_float(int handle, const char *name, const float *values, int64_t n)
{
    AI4LAND_FORWARD(ai4land_py_put_float(handle, name, values, n, &status_));
}

AI4LAND_API int ai4land_step(int handle, int year, int month, int day, int second, int *changed)
{
    if (changed == NULL) {
        ai4land_set_error_message("ai4land_step: changed is a NULL pointer");
        return AI4LAND_ERR_ARGUMENT;
    }
    *changed = 0;
    AI4LAND_FORWARD(ai4land_py_step(handle, year, month, day, second, changed, &status_));
}

AI4LAND_API int ai4land_get_double(int handle, const char *name, double *values, int64_t n)
{
    AI4LAND_FORWARD(ai4land_py_get_double(handle, name, values, n, &status_));
}

AI4LAND_API int ai4land_get_float(int handle, const char *name, float *values, int64_t n)
{
    AI4LAND_FORWARD(ai4land_py_get_float(handle, name, values, n, &status_));
}

AI4LAND_API int ai4land_write_restart(int handle, const char *path)
{
    AI4LAND_FORWARD(ai4land_py_write_restart(handle, path, &status_));
}

AI4LAND_API int ai4land_read_restart(int handle, const char *path)
{
    AI4LAND_FORWARD(ai4land_py_read_restart(handle, path, &status_));
}

AI4LAND_API int ai4land_finalize(int handle)
{
    AI4LAND_FORWARD(ai4land_py_finalize(handle, &status_));
}
'''


def python_declarations() -> str:
    """C prototypes of the embedding-API functions (cffi defines them after our source)."""
    return "\n".join("CFFI_DLLEXPORT " + line.strip() for line in EMBEDDING_API.strip().splitlines())


def make_ffi(python: str) -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.embedding_api(EMBEDDING_API)
    ffi.cdef(CDEF)
    literal = python.replace("\\", "\\\\").replace('"', '\\"')
    source = f'#define AI4LAND_DEFAULT_PYTHON "{literal}"\n' + C_SOURCE.replace("@PY_DECLS@", python_declarations())
    ffi.set_source(MODULE_NAME, source)
    ffi.embedding_init_code(INIT_CODE)
    return ffi


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="path of the C file to write")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter to embed, as given (default: the one running this script)")
    args = parser.parse_args(argv)
    python = os.path.abspath(args.python)  # absolute, but symlinks kept: pyvenv.cfg sits beside it
    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    make_ffi(python).emit_c_code(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
