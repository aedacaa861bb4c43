"""The Python half of the C ABI (``libai4land``): handles → :class:`Component` objects.

Two layers:

* plain functions (:func:`init`, :func:`put`, :func:`step`, ...) on a handle table. They take
  Python values and raise :class:`~ai4land_coupler.errors.Ai4LandError`; tests call them directly;
* :func:`attach`, called once by the embedding init code of ``libai4land``, registers the
  ``extern "Python"`` implementations behind the C entry points. They wrap C arrays without
  copying, turn every exception into a status code plus the last-error message, and write the
  status to the ``int *status`` out-parameter.

Arrays handed in from C are views of host memory, valid only for the duration of the call.
"""
from __future__ import annotations

import itertools
import sys
import traceback
from typing import Any, Callable

import numpy as np

from ai4land_coupler.errors import (
    CHANGED_FLAGS,
    CODE,
    Ai4LandError,
    ArgumentError,
    CallOrderError,
)

OK = CODE["AI4LAND_OK"]
ERR_MPI = CODE["AI4LAND_ERR_MPI"]
ERR_INTERNAL = CODE["AI4LAND_ERR_INTERNAL"]

#: Builds the component behind a new handle; ``None`` means the real
#: :class:`ai4land_coupler.component.Component`. Tests put a fake here.
COMPONENT_FACTORY: Callable[[], Any] | None = None

_components: dict[int, Any] = {}
_finalized: set[int] = set()
_handles = itertools.count(1)  # 0 is never a valid handle (the Fortran default)


# ----------------------------------------------------------------------------- pure layer


def preload() -> None:
    """Import the component stack now, so that an import failure surfaces at start-up."""
    if COMPONENT_FACTORY is None:
        import ai4land_coupler.component  # noqa: F401


def _new_component() -> Any:
    if COMPONENT_FACTORY is not None:
        return COMPONENT_FACTORY()
    from ai4land_coupler.component import Component

    return Component()


def comm_from_fortran(fortran_comm: int):
    """The mpi4py communicator for a Fortran INTEGER handle (``MPI_Comm_f2c``)."""
    from mpi4py import MPI

    if not MPI.Is_initialized() or MPI.Is_finalized():
        raise CallOrderError("MPI is not initialised: the host must call MPI_Init before ai4land_init")
    try:
        comm = MPI.Comm.f2py(int(fortran_comm))
    except MPI.Exception:
        comm = MPI.COMM_NULL
    if comm == MPI.COMM_NULL:
        raise ArgumentError(f"the Fortran communicator handle {fortran_comm} is not a valid communicator")
    return comm


def _component(handle: int) -> Any:
    try:
        return _components[handle]
    except KeyError:
        if handle in _finalized:
            raise CallOrderError(f"handle {handle} was already finalized") from None
        raise ArgumentError(f"unknown handle {handle}: call ai4land_init first") from None


def live_handles() -> list[int]:
    return sorted(_components)


def init(fortran_comm: int, namelist_path: str, handle: int = 0) -> int:
    """Create and initialise a component on the host communicator; returns its new handle.

    ``handle`` is what the caller's handle variable holds on entry: a live handle means a
    second init of the same component, which is a call-order error.
    """
    if handle in _components:
        raise CallOrderError(f"ai4land_init called twice: handle {handle} is already initialised")
    if not namelist_path:
        raise ArgumentError("the namelist path is empty")
    comm = comm_from_fortran(fortran_comm)
    component = _new_component()
    component.init(comm, namelist_path)
    new = next(_handles)
    _components[new] = component
    return new


def def_partition_box(handle: int, i_offset: int, j_offset: int, ni: int, nj: int) -> None:
    """Describe the local cells as a box (0-based offsets; i = longitude, j = latitude)."""
    from ai4land_coupler.partition import Box

    _component(handle).def_partition(Box(int(i_offset), int(j_offset), int(ni), int(nj)))


def def_partition_points(handle: int, global_index) -> None:
    """Describe the local cells as a list of 0-based global indices ``g = j*nlon + i``."""
    from ai4land_coupler.partition import Points

    component = _component(handle)
    component.def_partition(Points(np.array(global_index, copy=True).reshape(-1)))


def enddef(handle: int) -> None:
    _component(handle).enddef()


def local_size(handle: int) -> int:
    return int(_component(handle).local_size)


def field_levels(handle: int, name: str) -> list[str]:
    return list(_component(handle).field_levels(name))


def level_name(handle: int, name: str, level: int) -> str:
    levels = field_levels(handle, name)
    if not 0 <= level < len(levels):
        raise ArgumentError(
            f"level {level} of field '{name}' is out of range: it has {len(levels)} level(s), "
            f"numbered from 0 in C and from 1 in Fortran"
        )
    return levels[level]


def put(handle: int, name: str, values: np.ndarray) -> None:
    _component(handle).put(name, values)


def step(handle: int, year: int, month: int, day: int, second: int) -> int:
    """Advance to the given date; returns the bit set of fields that changed."""
    changed = _component(handle).step((int(year), int(month), int(day), int(second)))
    return changed_bits(changed)


def changed_bits(changed) -> int:
    bits = 0
    for field in changed or ():
        bits |= CHANGED_FLAGS.get(field, 0)
    return bits


def get(handle: int, name: str, out: np.ndarray) -> None:
    _component(handle).get(name, out)


def write_restart(handle: int, path: str) -> None:
    if not path:
        raise ArgumentError("the restart path is empty")
    _component(handle).write_restart(path)


def read_restart(handle: int, path: str) -> None:
    if not path:
        raise ArgumentError("the restart path is empty")
    _component(handle).read_restart(path)


def finalize(handle: int) -> None:
    """Finalize and forget the component; the handle is dead even if finalize fails."""
    component = _component(handle)
    del _components[handle]
    _finalized.add(handle)
    component.finalize()


def status_and_message(exc: BaseException, where: str) -> tuple[int, str]:
    """Status code and host-facing message for an exception raised inside ``where``."""
    if isinstance(exc, Ai4LandError):
        return int(exc.status), f"{where}: {exc}"
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and isinstance(exc, mpi.Exception):
        return ERR_MPI, f"{where}: MPI error: {exc}"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ERR_INTERNAL, f"{where}: internal error (a bug in ai4land_coupler): {exc!r}\n{tb}"


# ----------------------------------------------------------------------------- C layer


def attach(ffi, lib) -> None:
    """Register the ``extern "Python"`` functions of ``libai4land`` (embedding API).

    ``lib.ai4land_set_error_message(bytes)`` stores the last-error message on the C side.
    """

    def set_message(message: str) -> None:
        lib.ai4land_set_error_message(message.replace("\0", " ").encode("utf-8", "replace"))

    def text(ptr, what: str) -> str:
        if ptr == ffi.NULL:
            raise ArgumentError(f"{what} is a NULL pointer")
        try:
            return ffi.string(ptr).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArgumentError(f"{what} is not valid UTF-8: {exc}") from None

    def array(ptr, n: int, dtype, writable: bool) -> np.ndarray:
        if n < 0:
            raise ArgumentError(f"negative array length {n}")
        if n == 0:
            return np.empty(0, dtype)
        if ptr == ffi.NULL:
            raise ArgumentError(f"the array pointer is NULL but its length is {n}")
        dtype = np.dtype(dtype)
        view = np.frombuffer(ffi.buffer(ptr, n * dtype.itemsize), dtype=dtype)
        if not writable:
            view.flags.writeable = False
        return view

    def guarded(where: str, status, body: Callable[[], None]) -> int:
        """Run ``body``; every exception becomes a status code and the last-error message."""
        try:
            body()
            code = OK
        except BaseException as exc:  # noqa: BLE001 - nothing may escape into the host
            code, message = status_and_message(exc, where)
            set_message(message)
        status[0] = code
        return code

    def on_escape(exc_type, exc_value, tb) -> None:
        # Only reached if ``guarded`` itself failed; the C side then returns ERR_INTERNAL.
        try:
            set_message("ai4land: internal error in the bridge: "
                        + "".join(traceback.format_exception(exc_type, exc_value, tb)))
        except BaseException:  # noqa: BLE001
            pass

    def extern(name: str):
        return ffi.def_extern(name=name, error=ERR_INTERNAL, onerror=on_escape)

    @extern("ai4land_py_init")
    def _init(fortran_comm, namelist_path, handle, status):
        def body():
            handle[0] = init(fortran_comm, text(namelist_path, "namelist_path"), handle[0])
        return guarded("ai4land_init", status, body)

    @extern("ai4land_py_def_partition_box")
    def _box(h, i_offset, j_offset, ni, nj, status):
        return guarded("ai4land_def_partition_box", status,
                       lambda: def_partition_box(h, i_offset, j_offset, ni, nj))

    @extern("ai4land_py_def_partition_points")
    def _points(h, global_index, n, status):
        return guarded("ai4land_def_partition_points", status,
                       lambda: def_partition_points(h, array(global_index, n, np.int64, False)))

    @extern("ai4land_py_enddef")
    def _enddef(h, status):
        return guarded("ai4land_enddef", status, lambda: enddef(h))

    @extern("ai4land_py_local_size")
    def _local_size(h, ncells, status):
        def body():
            ncells[0] = local_size(h)
        return guarded("ai4land_local_size", status, body)

    @extern("ai4land_py_field_levels")
    def _field_levels(h, name, nlevels, status):
        def body():
            nlevels[0] = len(field_levels(h, text(name, "name")))
        return guarded("ai4land_field_levels", status, body)

    @extern("ai4land_py_level_name")
    def _level_name(h, name, level, buf, buflen, status):
        def body():
            label = level_name(h, text(name, "name"), level).encode("utf-8")
            if buf == ffi.NULL:
                raise ArgumentError("the level-name buffer is a NULL pointer")
            if len(label) + 1 > buflen:
                raise ArgumentError(
                    f"level name '{label.decode()}' needs {len(label)} characters, "
                    f"the buffer holds {max(buflen - 1, 0)}")
            ffi.memmove(buf, label + b"\0", len(label) + 1)
        return guarded("ai4land_level_name", status, body)

    def make_put(dtype, c_name):
        @extern(f"ai4land_py_{c_name}")
        def _put(h, name, values, n, status):
            return guarded(f"ai4land_{c_name}", status,
                           lambda: put(h, text(name, "name"), array(values, n, dtype, False)))

    def make_get(dtype, c_name):
        @extern(f"ai4land_py_{c_name}")
        def _get(h, name, values, n, status):
            return guarded(f"ai4land_{c_name}", status,
                           lambda: get(h, text(name, "name"), array(values, n, dtype, True)))

    make_put(np.float64, "put_double")
    make_put(np.float32, "put_float")
    make_get(np.float64, "get_double")
    make_get(np.float32, "get_float")

    @extern("ai4land_py_step")
    def _step(h, year, month, day, second, changed, status):
        def body():
            changed[0] = step(h, year, month, day, second)
        return guarded("ai4land_step", status, body)

    @extern("ai4land_py_write_restart")
    def _write_restart(h, path, status):
        return guarded("ai4land_write_restart", status, lambda: write_restart(h, text(path, "path")))

    @extern("ai4land_py_read_restart")
    def _read_restart(h, path, status):
        return guarded("ai4land_read_restart", status, lambda: read_restart(h, text(path, "path")))

    @extern("ai4land_py_finalize")
    def _finalize(h, status):
        return guarded("ai4land_finalize", status, lambda: finalize(h))
