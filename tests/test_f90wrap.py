"""The Fortran layer called routine by routine from Python, through f90wrap (issue 5, item 6).

``fortran_bridge/build_f90wrap.py`` wraps module ``ai4land`` (the CMake build's
``libai4land_fortran``), routines of ``mock_host_support`` and the fixed-rank adapters of
``ai4land_wrap_adapters.F90`` into ``build/f90wrap/ai4land_f90wrap``; the session fixture builds it
once (a stamp makes reruns a no-op). The calls run in this pytest process: ``libai4land`` finds
Python already initialised, so its cffi init code runs in this interpreter (checked below) and
the ``ai4land_coupler.bridge`` it drives is the one the tests monkeypatch. Routines that end the
process (``fail``, ``check_*``, a failed ``open_argument_file``: ``MPI_Abort``), the start
failure of the embedded Python (one per process) and the multi-rank gather run in subprocesses.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ai4land_coupler import bridge, errors
from ai4land_coupler.errors import STATUS_CODES, Ai4LandError
from bridge_fakes import CLASS_NAMES, DRIVERS, FakeComponent, landuse_fractions, lai_values
from conftest import BUILD, MPI_ENV, REPO, run_mpi, write_namelist

MPI = pytest.importorskip("mpi4py.MPI")

CODE = errors.CODE
TESTS = Path(__file__).resolve().parent


def load_builder():
    spec = importlib.util.spec_from_file_location("build_f90wrap", REPO / "fortran_bridge" / "build_f90wrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fw_dir() -> Path:
    """The folder of the built ``ai4land_f90wrap`` module (built once, cached by a stamp)."""
    builder = load_builder()
    try:
        return builder.build(BUILD)
    except builder.Unavailable as exc:
        pytest.skip(f"f90wrap layer unavailable: {exc}")


@pytest.fixture(scope="session")
def fw(fw_dir):
    if str(fw_dir) not in sys.path:
        sys.path.insert(0, str(fw_dir))
    if not MPI.Is_initialized():
        MPI.Init()
    return importlib.import_module("ai4land_f90wrap")


@pytest.fixture
def A(fw):
    return fw.ai4land


@pytest.fixture
def S(fw):
    return fw.mock_host_support


@pytest.fixture
def W(fw):
    return fw.ai4land_wrap_adapters


def text(value) -> str:
    """A character result of f2py (bytes, blank-stripped) as str."""
    return (value.decode("utf-8") if isinstance(value, bytes) else str(value)).rstrip(" ")


def last_error(W) -> str:
    message, length = W.error_message()
    message = text(message)
    assert length == len(message.encode("utf-8")), "the Fortran message was truncated or padded"
    return message


WORLD = MPI.COMM_WORLD.py2f()


@pytest.fixture
def comps(A):
    """Make Fortran components; every one still initialised is finalized afterwards."""
    made = []

    def make():
        made.append(A.ai4land_component())
        return made[-1]

    yield make
    for comp in made:
        if comp.handle != 0:
            A.ai4land_finalize(comp)


@pytest.fixture
def fake(monkeypatch):
    """The plugin's components are FakeComponents (closed-form fields, a log of every call)."""
    made = []

    def factory():
        made.append(FakeComponent())
        return made[-1]

    monkeypatch.setattr(bridge, "COMPONENT_FACTORY", factory)
    return made


@pytest.fixture
def small_namelist(tmp_path):
    path = tmp_path / "ai4land_in"
    path.write_text("&ai4land_nml\n  host_nlat = 4\n  host_nlon = 6\n  input_dir = 'unused'\n/\n")
    return path


def running(A, comp, nml, nlat=4, nlon=6):
    """init + the whole grid as one box + enddef, each call checked."""
    assert A.ai4land_init(comp, WORLD, str(nml)) == 0
    assert A.ai4land_def_partition_box(comp, 1, 1, nlon, nlat) == 0
    assert A.ai4land_enddef(comp) == 0


# ----------------------------------------------------------------------------- the wrapping itself


def test_kind_map_gives_float64_float32_int32_int64(fw):
    """The f2py signatures: real(c_double)/real(dp) are float64 ('d'), c_float float32 ('f')."""
    ext = importlib.import_module("_ai4land_f90wrap")
    doc = {name: getattr(ext, name).__doc__ for name in dir(ext) if name.startswith("f90wrap_")}

    def arg(routine, name):
        match = re.search(rf"^{name} : (.*)$", doc[routine], re.MULTILINE)
        assert match, doc[routine]
        return match.group(1)

    assert "array('d')" in arg("f90wrap_ai4land_wrap_adapters__put_real8_1d", "values")
    assert "array('f')" in arg("f90wrap_ai4land_wrap_adapters__put_real4_1d", "values")
    assert "array('d')" in arg("f90wrap_mock_host_support__put_climate", "lat")  # real(dp), dp = real64
    assert "array('i')" in arg("f90wrap_ai4land__def_partition_points_i4", "global_index")
    assert "array('q')" in arg("f90wrap_ai4land__def_partition_points_i8", "global_index")
    assert arg("f90wrap_ai4land__ai4land_step", "year").startswith("input int")


def test_embedded_plugin_runs_in_this_interpreter(A, W, comps, fake, small_namelist):
    comp = comps()
    assert A.ai4land_init(comp, WORLD, str(small_namelist)) == 0
    assert comp.handle > 0
    # The factory monkeypatched here built the component: the plugin's Python is this one.
    assert len(fake) == 1 and fake[0].calls[0][:3] == ["init", str(small_namelist), 1]
    assert comp.handle in bridge.live_handles()
    embedded = sys.modules["_ai4land_cffi"]  # registered by libai4land's cffi init code
    assert hasattr(embedded.lib, "ai4land_set_error_message")
    assert A.ai4land_finalize(comp) == 0 and comp.handle == 0
    assert fake[0].calls[-1] == ["finalize"]


# ----------------------------------------------------------------------------- module ai4land


def test_status_parameters_match_errors_py_and_the_c_header(A):
    header = (REPO / "fortran_bridge" / "ai4land_status.h").read_text()
    defines = {m[1]: int(m[2]) for m in re.finditer(r"#define (AI4LAND_\w+) (\d+)", header)}
    for code in STATUS_CODES:
        assert getattr(A, f"get_{code.name.lower()}")() == code.value == defines[code.name], code.name
    for field, flag in errors.CHANGED_FLAGS.items():
        name = errors.CHANGED_FLAG_NAMES[field]
        assert getattr(A, f"get_{name.lower()}")() == flag == defines[name], name


def _failing_init(code):
    """An exception that the bridge maps to status ``code``, and the message it must show."""
    if code.name == "AI4LAND_ERR_MPI":
        exc = MPI.Exception(MPI.ERR_COMM)
        return exc, f"ai4land_init: MPI error: {exc}"
    if code.name == "AI4LAND_ERR_INTERNAL":
        exc = RuntimeError("simulated bug")
        return exc, "ai4land_init: internal error (a bug in ai4land_coupler): RuntimeError('simulated bug')"
    cls = type(f"Simulated{code.value}", (Ai4LandError,), {"status": code.value})
    return cls(f"simulated {code.meaning}"), f"ai4land_init: simulated {code.meaning}"


@pytest.mark.parametrize("code", [c for c in STATUS_CODES if c.name not in ("AI4LAND_OK", "AI4LAND_ERR_PYTHON_START")],
                         ids=lambda c: c.name)
def test_every_status_code_reaches_fortran_with_its_message(A, W, comps, monkeypatch, small_namelist, code):
    exc, expected = _failing_init(code)

    class Failing(FakeComponent):
        def init(self, comm, namelist_path):
            raise exc

    monkeypatch.setattr(bridge, "COMPONENT_FACTORY", Failing)
    comp = comps()
    assert A.ai4land_init(comp, WORLD, str(small_namelist)) == code.value
    assert comp.handle == 0  # no component was made
    message, length = W.error_message()
    message = text(message)
    assert message.startswith(expected), message
    if code.name == "AI4LAND_ERR_INTERNAL":
        assert "Traceback (most recent call last)" in message and "simulated bug" in message
        assert length >= len(message.encode())  # the traceback ends in a newline f2py may keep
    else:
        assert message == expected and length == len(expected)


def test_python_start_failure_is_status_1_with_the_reason(fw_dir, tmp_path):
    """A fresh interpreter whose torch is broken: every call is AI4LAND_ERR_PYTHON_START."""
    fake_torch = tmp_path / "faketorch" / "torch"
    fake_torch.mkdir(parents=True)
    (fake_torch / "__init__.py").write_text("raise ImportError('fake torch: simulated broken installation')\n")
    proc = run_script(fw_dir, """
comp = A.ai4land_component()
print("init", A.ai4land_init(comp, MPI.COMM_WORLD.py2f(), "ai4land_in"), comp.handle)
print("enddef", A.ai4land_enddef(comp))
print("message", last_error())
""", pythonpath=[fake_torch.parent])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "init 1 0\nenddef 1\n" in proc.stdout
    assert f"the embedded Python failed to start (python: {sys.executable}" in proc.stdout
    assert "fake torch: simulated broken installation" in proc.stdout


def test_string_arguments_are_trimmed(A, W, comps, fake, small_namelist):
    comp = comps()
    assert A.ai4land_init(comp, WORLD, str(small_namelist) + "     ") == 0
    assert fake[0].calls[0][1] == str(small_namelist)  # the trailing blanks did not reach Python
    assert A.ai4land_field_levels(comp, "landuse_fraction   ") == (len(CLASS_NAMES), 0)
    assert A.ai4land_field_levels(comp, "lai ") == (1, 0)
    assert A.ai4land_field_levels(comp, "  lai") == (0, CODE["AI4LAND_ERR_ARGUMENT"])  # leading blanks stay
    assert last_error(W) == "ai4land_field_levels: unknown field '  lai'"
    blank = comps()
    assert A.ai4land_init(blank, WORLD, "        ") == CODE["AI4LAND_ERR_ARGUMENT"]
    assert last_error(W) == "ai4land_init: the namelist path is empty"


def test_partitions_are_converted_from_1_based(A, comps, fake, small_namelist):
    box = comps()
    assert A.ai4land_init(box, WORLD, str(small_namelist)) == 0
    assert A.ai4land_def_partition_box(box, 3, 2, 4, 3) == 0
    assert fake[-1].calls[-1] == ["box", 2, 1, 4, 3]  # (i_start, j_start) = (3, 2) -> offsets (2, 1)
    assert A.local_size_i4(box) == (12, 0) and A.local_size_i8(box) == (12, 0)

    cells = np.random.default_rng(1).permutation(24) + 1  # 1-based (j-1)*nlon + i
    for dtype, routine in ((np.int32, A.def_partition_points_i4), (np.int64, A.def_partition_points_i8)):
        comp = comps()
        assert A.ai4land_init(comp, WORLD, str(small_namelist)) == 0
        assert routine(comp, cells.astype(dtype)) == 0
        assert fake[-1].calls[-1] == ["points", (cells - 1).tolist()]
        assert A.ai4land_enddef(comp) == 0  # the fake checks the cover: all 24 cells
        assert A.local_size_i8(comp) == (24, 0)

    empty = comps()
    assert A.ai4land_init(empty, WORLD, str(small_namelist)) == 0
    assert A.def_partition_points_i4(empty, np.zeros(0, np.int32)) == 0  # size 0: no out-of-bounds access
    assert fake[-1].calls[-1] == ["points", []]
    assert A.local_size_i4(empty) == (0, 0)


def test_level_names_fit_exactly_or_fail(A, W, comps, fake, small_namelist):
    comp = comps()
    assert A.ai4land_init(comp, WORLD, str(small_namelist)) == 0
    for level, name in enumerate(CLASS_NAMES, start=1):
        value, ierr = A.ai4land_level_name(comp, "landuse_fraction", level)
        assert (text(value), ierr) == (name, 0)
    name = CLASS_NAMES[3]
    value, ierr = W.level_name_in(comp, "landuse_fraction", 4, len(name))  # exactly long enough
    assert (text(value), ierr) == (name, 0)
    value, ierr = W.level_name_in(comp, "landuse_fraction", 4, len(name) - 1)
    assert (text(value), ierr) == ("", CODE["AI4LAND_ERR_ARGUMENT"])
    assert last_error(W) == (f"ai4land_level_name: level name '{name}' needs {len(name)} characters, "
                             f"the buffer holds {len(name) - 1}")
    for level in (0, len(CLASS_NAMES) + 1):
        assert A.ai4land_level_name(comp, "landuse_fraction", level)[1] == CODE["AI4LAND_ERR_ARGUMENT"]
        assert f"level {level - 1} of field 'landuse_fraction' is out of range" in last_error(W)


def test_put_and_get_arrays_of_each_rank_and_kind(A, W, comps, fake, small_namelist):
    nlat, nlon, ncls = 4, 6, len(CLASS_NAMES)
    comp = comps()
    running(A, comp, small_namelist, nlat, nlon)
    tas = np.asfortranarray(np.arange(nlon * nlat, dtype=np.float64).reshape(nlon, nlat, order="F") + 250.0)
    assert W.put_real8_2d(comp, "tas", tas) == 0  # a(ni, nj): longitude fastest
    np.testing.assert_array_equal(fake[0].puts["tas"], tas.ravel(order="F"))
    pr = np.linspace(1e-6, 5e-5, nlat * nlon, dtype=np.float32)
    assert W.put_real4_1d(comp, "pr", pr) == 0
    assert fake[0].calls[-1][:3] == ["put", "pr", "float32"]  # single precision reaches Python as is
    np.testing.assert_array_equal(fake[0].puts["pr"], pr.astype(np.float64))
    assert W.put_real8_1d(comp, "rsds", np.full(nlat * nlon, 180.0)) == 0
    assert fake[0].calls[-1][1:6] == ["rsds", "float64", 24, 180.0, 180.0]
    assert fake[0].calls[-1][6] is False  # the plugin's view of host memory is read-only

    changed, ierr = A.ai4land_step(comp, 2015, 1, 1, 0)
    assert ierr == 0 and changed == errors.CHANGED_FLAGS["landuse_fraction"] | errors.CHANGED_FLAGS["lai"]
    cells = np.arange(nlat * nlon)
    fractions = landuse_fractions(cells, 2015)  # (ncls, ncells)
    box = np.zeros((nlon, nlat, ncls), order="F")
    assert W.get_real8_3d(comp, "landuse_fraction", box) == 0
    for k in range(ncls):  # a(i, j, k) = field(level k, cell (j-1)*nlon + i)
        np.testing.assert_array_equal(box[:, :, k], fractions[k].reshape(nlat, nlon).T)
    by_cell = np.zeros((nlat * nlon, ncls), order="F")
    assert W.get_real8_2d(comp, "landuse_fraction", by_cell) == 0
    np.testing.assert_array_equal(by_cell, fractions.T)
    lai = np.zeros((nlon, nlat), dtype=np.float32, order="F")
    assert W.get_real4_2d(comp, "lai", lai) == 0
    np.testing.assert_array_equal(lai, lai_values(cells, nlon, nlat, 1, 1)[0].astype(np.float32).reshape(nlat, nlon).T)
    assert fake[0].calls[-1] == ["get", "lai", "float32"]


def test_wrong_arrays_and_values_return_argument_status(A, W, comps, fake, small_namelist):
    comp = comps()
    running(A, comp, small_namelist)
    n = 24
    assert W.put_real8_1d(comp, "tas", np.full(n - 1, 280.0)) == CODE["AI4LAND_ERR_ARGUMENT"]
    assert last_error(W) == f"ai4land_put_double: field 'tas': {n - 1} values, expected {n}"
    assert W.put_real4_1d(comp, "tas", np.full(n + 1, 280.0, np.float32)) == CODE["AI4LAND_ERR_ARGUMENT"]
    assert last_error(W) == f"ai4land_put_float: field 'tas': {n + 1} values, expected {n}"
    bad = np.full(n, 280.0)
    bad[5] = np.nan
    assert W.put_real8_1d(comp, "tas", bad) == CODE["AI4LAND_ERR_ARGUMENT"]
    assert last_error(W) == "ai4land_put_double: put('tas'): NaN or Inf"
    assert W.put_real8_1d(comp, "landuse_fraction", bad) == CODE["AI4LAND_ERR_ARGUMENT"]
    for name in DRIVERS:
        assert W.put_real8_1d(comp, name, np.full(n, 1.0)) == 0
    assert A.ai4land_step(comp, 2015, 1, 1, 0)[1] == 0
    wrong = np.zeros((6, 4, 7), order="F")  # 7 levels, the field has 8
    assert W.get_real8_3d(comp, "landuse_fraction", wrong) == CODE["AI4LAND_ERR_ARGUMENT"]
    assert last_error(W) == f"ai4land_get_double: field 'landuse_fraction': {7 * n} values, expected {8 * n}"
    assert not wrong.any()  # nothing was written
    assert W.get_real4_2d(comp, "lai", np.zeros((6, 3), np.float32, order="F")) == CODE["AI4LAND_ERR_ARGUMENT"]
    assert last_error(W).startswith("ai4land_get_float: field 'lai': 18 values")


def test_call_order_and_handles(A, W, comps, fake, small_namelist):
    fresh = comps()
    assert A.ai4land_enddef(fresh) == CODE["AI4LAND_ERR_ARGUMENT"]  # handle 0: never initialised
    assert last_error(W) == "ai4land_enddef: unknown handle 0: call ai4land_init first"
    comp = comps()
    assert A.ai4land_init(comp, WORLD, str(small_namelist)) == 0
    handle = comp.handle
    assert A.ai4land_init(comp, WORLD, str(small_namelist)) == CODE["AI4LAND_ERR_CALL_ORDER"]
    assert comp.handle == handle  # the live handle is kept
    assert A.ai4land_step(comp, 2015, 1, 1, 0) == (0, CODE["AI4LAND_ERR_CALL_ORDER"])
    assert last_error(W) == "ai4land_step: step before enddef"
    assert A.ai4land_finalize(comp) == 0 and comp.handle == 0
    comp.handle = handle  # a stale copy of the handle
    assert A.ai4land_enddef(comp) == CODE["AI4LAND_ERR_CALL_ORDER"]
    assert last_error(W) == f"ai4land_enddef: handle {handle} was already finalized"
    assert A.ai4land_finalize(comp) == CODE["AI4LAND_ERR_CALL_ORDER"] and comp.handle == 0


# ----------------------------------------------------------------------------- the real Component


NLAT, NLON = 15, 30  # host grid over the small world's 3-degree emulator grid
STEPS = [(2016, 1, 1, 0), (2016, 1, 16, 0), (2016, 7, 1, 0)]
HOST_LAT = -90.0 + (np.arange(NLAT) + 0.5) * 180.0 / NLAT
HOST_LON = -180.0 + (np.arange(NLON) + 0.5) * 360.0 / NLON


@pytest.fixture(scope="module")
def world_namelist(small_dir, tmp_path_factory):
    return write_namelist(tmp_path_factory.mktemp("f90wrap") / "ai4land_in", small_dir, host_nlat=NLAT, host_nlon=NLON)


def climate(year, month):
    """The host's drivers on every host cell (global order), from the Python mock host."""
    from ai4land_coupler.mockhost import host_climate

    return host_climate(np.repeat(HOST_LAT, NLON), year, month)


@pytest.fixture(scope="module")
def python_run(world_namelist):
    """{(step, field): (nlevels, ncells) values} and {step: changed} of the Python Component."""
    from ai4land_coupler.component import Component
    from ai4land_coupler.partition import Box

    c = Component()
    c.init(None, str(world_namelist))
    c.def_partition(Box(0, 0, NLON, NLAT))
    c.enddef()
    fields, changed = {}, {}
    for when in STEPS:
        if when[2] == 1:
            for name, values in climate(*when[:2]).items():
                c.put(name, values)
        changed[when] = set(c.step(when))
        for name in changed[when]:
            out = np.zeros((len(c.field_levels(name)), c.local_size))
            c.get(name, out)
            fields[(when, name)] = out
    c.finalize()
    return fields, changed


@pytest.mark.parametrize("layout", ["box", "points"])
def test_fortran_lifecycle_matches_the_python_component(A, W, comps, world_namelist, python_run, layout):
    fields, changed = python_run
    assert bridge.COMPONENT_FACTORY is None  # the real Component
    comp = comps()
    assert A.ai4land_init(comp, WORLD, str(world_namelist)) == 0
    if layout == "box":
        cells = np.arange(NLAT * NLON)
        assert A.ai4land_def_partition_box(comp, 1, 1, NLON, NLAT) == 0
    else:
        cells = np.random.default_rng(7).permutation(NLAT * NLON)
        assert A.def_partition_points_i4(comp, (cells + 1).astype(np.int32)) == 0
    assert A.ai4land_enddef(comp) == 0
    assert A.local_size_i4(comp) == (cells.size, 0)
    for when in STEPS:
        if when[2] == 1:
            for name, values in climate(*when[:2]).items():
                if layout == "box":
                    assert W.put_real8_2d(comp, name, np.asfortranarray(values.reshape(NLAT, NLON).T)) == 0
                else:
                    assert W.put_real8_1d(comp, name, values[cells]) == 0
        bits, ierr = A.ai4land_step(comp, *when)
        assert ierr == 0, last_error(W)
        assert bits == sum(errors.CHANGED_FLAGS.get(name, 0) for name in changed[when])
        for name in sorted(changed[when]):
            nlev, ierr = A.ai4land_field_levels(comp, name)
            assert ierr == 0 and nlev == fields[(when, name)].shape[0]
            want = fields[(when, name)][:, cells]  # (nlev, local cells)
            if layout == "box":
                got = np.zeros((NLON, NLAT, nlev), order="F")
                assert W.get_real8_3d(comp, name, got) == 0
                got = got.reshape(NLON * NLAT, nlev, order="F")
            else:
                got = np.zeros((cells.size, nlev), order="F")
                assert W.get_real8_2d(comp, name, got) == 0
            np.testing.assert_array_equal(got.T, want, err_msg=f"{when} {name}")
        if changed[when] & {"lai"} and layout == "box":
            lai = np.zeros((NLON, NLAT), np.float32, order="F")
            assert W.get_real4_2d(comp, "lai", lai) == 0
            np.testing.assert_array_equal(lai.ravel(order="F"), fields[(when, "lai")][0].astype(np.float32))

    # the real Component's errors, through the same Fortran routines
    assert W.get_real8_1d(comp, "lai", np.zeros(cells.size - 1)) == CODE["AI4LAND_ERR_ARGUMENT"]
    message = last_error(W)
    assert message.startswith("ai4land_get_double: field 'lai'") and f"{cells.size - 1} values" in message
    assert A.ai4land_step(comp, 2016, 1, 1, 0) == (0, CODE["AI4LAND_ERR_CLOCK"])
    assert last_error(W).startswith("ai4land_step: time went backwards")
    assert A.ai4land_finalize(comp) == 0 and comp.handle == 0


def test_partition_outside_the_host_grid_is_a_partition_error(A, W, comps, world_namelist):
    comp = comps()
    assert A.ai4land_init(comp, WORLD, str(world_namelist)) == 0
    assert A.ai4land_def_partition_box(comp, 1, 1, NLON + 1, NLAT) == CODE["AI4LAND_ERR_PARTITION"]
    assert "outside the host grid" in last_error(W)
    # Fortran indices are 1-based: 0 is off the grid (-1 in C)
    assert A.def_partition_points_i8(comp, np.array([0], np.int64)) == CODE["AI4LAND_ERR_PARTITION"]


# ----------------------------------------------------------------------------- mock_host_support


def test_split_and_box_of_rank_tile_the_grid_like_the_python_mock_host(S):
    from ai4land_coupler import mockhost

    for n, parts in [(10, 3), (7, 7), (5, 2), (36, 4), (1, 1)]:
        for p in range(parts):
            offset, count = mockhost.split(n, parts, p)
            assert S.split(n, parts, p) == (offset + 1, count), (n, parts, p)
    nlat, nlon = 9, 14
    for px, py in [(1, 1), (2, 1), (3, 2), (4, 3)]:
        owner = np.zeros((nlon, nlat), int)
        for rank in range(px * py):
            box = S.box_of_rank(rank, px, py, nlon, nlat)
            i0, ni = mockhost.split(nlon, px, rank % px)
            j0, nj = mockhost.split(nlat, py, rank // px)
            assert (box.i0, box.j0, box.ni, box.nj) == (i0 + 1, j0 + 1, ni, nj)
            owner[box.i0 - 1:box.i0 - 1 + box.ni, box.j0 - 1:box.j0 - 1 + box.nj] += 1
        assert (owner == 1).all()  # every cell in exactly one box


def test_day_of_year_in_the_noleap_calendar(S):
    from ai4land_coupler.mockhost import MONTH_DAYS

    assert S.day_of_year(1, 1) == 1 and S.day_of_year(3, 1) == 60 and S.day_of_year(12, 31) == 365
    for month in range(1, 13):
        for day in (1, MONTH_DAYS[month - 1]):
            assert S.day_of_year(month, day) == sum(MONTH_DAYS[:month - 1]) + day


def put_climate_and_python_twin(A, S, comps, fake, tmp_path, nlat, nlon, year, month):
    """(what Fortran put_climate gave the plugin, what mockhost.host_climate computes) per driver."""
    from ai4land_coupler.mockhost import host_climate

    nml = tmp_path / "ai4land_in"
    nml.write_text(f"&ai4land_nml\n  host_nlat = {nlat}\n  host_nlon = {nlon}\n  input_dir = 'unused'\n/\n")
    comp = comps()
    running(A, comp, nml, nlat, nlon)
    lat = -90.0 + (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = -180.0 + (np.arange(nlon) + 0.5) * 360.0 / nlon
    S.put_climate(comp, year, month, lat, lon)
    assert set(fake[-1].puts) == set(DRIVERS)
    want = host_climate(np.repeat(lat, nlon), year, month)  # cell order: longitude fastest
    return fake[-1].puts, want


@pytest.mark.parametrize("year, month", [(2015, 1), (2031, 7), (2040, 12)])
def test_put_climate_puts_what_the_python_twin_computes(A, S, comps, fake, tmp_path, year, month):
    got, want = put_climate_and_python_twin(A, S, comps, fake, tmp_path, 10, 12, year, month)
    for name in DRIVERS:
        # float64 all the way: a 4-byte real(dp) would miss this by ~1e-7
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12 * np.abs(want[name]).max())
    assert got["tas"].std() > 1.0  # a real climate, not a constant


def test_put_climate_matches_the_python_twin_on_the_equator(A, S, comps, fake, tmp_path):
    got, want = put_climate_and_python_twin(A, S, comps, fake, tmp_path, 9, 12, 2031, 7)  # row 5: lat 0
    np.testing.assert_allclose(got["tas"], want["tas"], rtol=1e-12)


def test_gather_boxes_puts_a_box_at_its_place(W):
    nlon, nlat, nlev = 8, 5, 2
    local = np.asfortranarray(np.arange(4 * 3 * nlev, dtype=np.float64).reshape(4, 3, nlev, order="F") + 1.0)
    glob = np.full((nlon, nlat, nlev), -1.0, order="F")
    W.gather_boxes_of(MPI.COMM_SELF.py2f(), [3], [2], [4], [3], local, glob)
    np.testing.assert_array_equal(glob[2:6, 1:4, :], local)
    outside = np.ones(glob.shape, bool)
    outside[2:6, 1:4, :] = False
    assert (glob[outside] == -1.0).all()


GATHER_SCRIPT = """
import numpy as np
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
nlon, nlat, nlev = 7, 5, 3
boxes = [S.box_of_rank(r, size, 1, nlon, nlat) for r in range(size)]
me = boxes[rank]
i = np.arange(me.i0, me.i0 + me.ni)[:, None, None]
j = np.arange(me.j0, me.j0 + me.nj)[None, :, None]
k = np.arange(1, nlev + 1)[None, None, :]
local = np.asfortranarray(1000.0 * k + 10.0 * j + i + 0.5 * rank)
glob = np.zeros((nlon, nlat, nlev), order="F")
W.gather_boxes_of(comm.py2f(), [b.i0 for b in boxes], [b.j0 for b in boxes], [b.ni for b in boxes],
                  [b.nj for b in boxes], local, glob)
if rank == 0:
    I, J, K = np.meshgrid(np.arange(1, nlon + 1), np.arange(1, nlat + 1), np.arange(1, nlev + 1), indexing="ij")
    owner = np.concatenate([np.full(b.ni, r) for r, b in enumerate(boxes)])[:, None, None]
    assert np.array_equal(glob, 1000.0 * K + 10.0 * J + I + 0.5 * owner), glob
    print("gathered", glob.shape, flush=True)
"""


def test_gather_boxes_on_three_ranks(fw_dir, tmp_path):
    proc = run_mpi(3, [sys.executable, "-c", PRELUDE + GATHER_SCRIPT], cwd=tmp_path, timeout=120,
                   env_extra=script_env(fw_dir))
    assert proc.returncode == 0 and "gathered (7, 5, 3)" in proc.stdout, proc.stdout + proc.stderr


_ARGV_KEEP = []  # libgfortran keeps the pointers: the buffers must live as long as the process


def set_fortran_arguments(*args: str) -> None:
    """What a Fortran main program would get from its command line (gfortran's runtime)."""
    argv = (ctypes.c_char_p * (len(args) + 1))(*[a.encode() for a in args], None)
    _ARGV_KEEP.append(argv)
    ctypes.CDLL("libgfortran.so.5")._gfortran_set_args(ctypes.c_int(len(args)), argv)


def test_open_argument_file_opens_the_first_argument(S, W, tmp_path):
    nml = tmp_path / "host namelist.nml"  # a blank inside the path
    nml.write_text("&mock_host_nml\n  nlat = 9\n/\n")
    set_fortran_arguments("ai4land_mock_host", str(nml), "ignored")
    unit, path = S.open_argument_file("ai4land_mock_host <namelist>")
    assert text(path) == str(nml)
    assert unit < 0  # open(newunit=...)
    name, action, line, ios = W.unit_first_line(unit)
    assert (text(name), text(action), text(line), ios) == (str(nml), "READ", "&mock_host_nml", 0)
    assert text(W.unit_first_line(unit)[1]) == "UNDEFINED"  # closed


# ----------------------------------------------------------------------------- routines that abort


PRELUDE = """
import sys
from mpi4py import MPI
import ai4land_f90wrap as fw
A, S, W = fw.ai4land, fw.mock_host_support, fw.ai4land_wrap_adapters
def last_error():
    message, length = W.error_message()
    return message.decode().rstrip(" ") if isinstance(message, bytes) else message.rstrip(" ")
"""


def script_env(fw_dir, pythonpath=()) -> dict:
    path = [str(p) for p in pythonpath] + [str(fw_dir), str(TESTS)]
    return {"PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}


def run_script(fw_dir, body: str, argv=(), pythonpath=(), timeout=120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AI4LAND_"))}
    env.update(MPI_ENV)
    env.update(script_env(fw_dir, pythonpath))
    return subprocess.run([sys.executable, "-c", PRELUDE + body, *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


ABORTS = {
    "fail": ("S.fail(5, 'the host gives up   ')", 5, "ai4land_mock_host[rank 0]: the host gives up\n"),
    "check_nc": ("S.check_nc(0, 'ok'); print('passed', flush=True); S.check_nc(-33, 'open out.nc')", 3,
                 "ai4land_mock_host[rank 0]: netCDF open out.nc: NetCDF: Not a valid ID\n"),
    "check_plugin": ("S.check_plugin(0, 'ok'); print('passed', flush=True)\n"
                     "comp = A.ai4land_component()\n"
                     "S.check_plugin(A.ai4land_enddef(comp), 'ai4land_enddef')", 6,
                     "ai4land_mock_host[rank 0]: ai4land_enddef failed with status 6: "
                     "ai4land_enddef: unknown handle 0: call ai4land_init first\n"),
    "no_argument": ("S.open_argument_file('ai4land_mock_host <namelist>')", 2,
                    "ai4land_mock_host[rank 0]: usage: ai4land_mock_host <namelist>\n"),
    "missing_file": ("import ctypes\n"
                     "argv = (ctypes.c_char_p * 3)(b'host', b'/nonexistent/host.nml', None)\n"
                     "ctypes.CDLL('libgfortran.so.5')._gfortran_set_args(2, argv)\n"
                     "S.open_argument_file('ai4land_mock_host <namelist>')", 2,
                    "ai4land_mock_host[rank 0]: cannot open /nonexistent/host.nml: "),
}


@pytest.mark.parametrize("case", list(ABORTS))
def test_failing_routines_abort_with_their_status_and_message(fw_dir, case):
    body, status, message = ABORTS[case]
    proc = run_script(fw_dir, body)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert ("passed" in proc.stdout) == (case in ("check_nc", "check_plugin"))  # status 0 returns
