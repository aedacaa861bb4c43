"""ai4land_coupler.bridge without a compiled library: the handle table, delegation to the
Component, error → status mapping, and the extern "Python" layer driven with real cffi pointers."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import cffi
import numpy as np
import pytest

from ai4land_coupler import bridge, errors
from ai4land_coupler.errors import CODE, ArgumentError, CallOrderError, NamelistError
from bridge_fakes import CLASS_NAMES, FakeComponent, landuse_fractions

REPO = Path(__file__).resolve().parents[1]

MPI = pytest.importorskip("mpi4py.MPI")


def load_build_cffi():
    spec = importlib.util.spec_from_file_location("build_cffi", REPO / "fortran_bridge" / "build_cffi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """Stands in for a fake Component and records the objects it is handed."""

    def __init__(self):
        self.fake = FakeComponent()
        self.seen = {}

    def __getattr__(self, name):
        return getattr(self.fake, name)

    @property
    def local_size(self):
        return self.fake.local_size

    def def_partition(self, partition):
        self.seen["partition"] = partition
        self.fake.def_partition(partition)

    def put(self, name, values):
        self.seen.setdefault("put", []).append(values)
        self.fake.put(name, values)

    def get(self, name, out):
        self.seen.setdefault("get", []).append(out)
        self.fake.get(name, out)


@pytest.fixture
def namelist(tmp_path):
    path = tmp_path / "ai4land_in"
    path.write_text("&ai4land_nml\n  host_nlat = 4\n  host_nlon = 6\n  input_dir = 'unused'\n/\n")
    return str(path)


@pytest.fixture
def fake(monkeypatch):
    """Every new handle gets a Recorder around FakeComponent; the handle table starts empty."""
    made = []

    def factory():
        made.append(Recorder())
        return made[-1]

    monkeypatch.setattr(bridge, "COMPONENT_FACTORY", factory)
    monkeypatch.setattr(bridge, "_components", {})
    monkeypatch.setattr(bridge, "_finalized", set())
    return made


WORLD = MPI.COMM_WORLD.py2f()


def running(namelist, fake):
    h = bridge.init(WORLD, namelist)
    bridge.def_partition_box(h, 0, 0, 6, 4)
    bridge.enddef(h)
    return h, fake[-1]


# ----------------------------------------------------------------------------- pure layer


def test_handles_are_positive_distinct_and_die_at_finalize(namelist, fake):
    a = bridge.init(WORLD, namelist)
    b = bridge.init(WORLD, namelist)
    assert 0 < a < b and bridge.live_handles() == [a, b]
    bridge.finalize(a)
    assert bridge.live_handles() == [b]
    with pytest.raises(CallOrderError, match="already finalized"):
        bridge.enddef(a)
    with pytest.raises(ArgumentError, match="unknown handle 777"):
        bridge.enddef(777)
    with pytest.raises(ArgumentError, match="unknown handle 0"):
        bridge.local_size(0)


def test_double_init_of_a_live_handle_is_a_call_order_error(namelist, fake):
    h = bridge.init(WORLD, namelist)
    with pytest.raises(CallOrderError, match="twice"):
        bridge.init(WORLD, namelist, handle=h)
    bridge.finalize(h)
    assert bridge.init(WORLD, namelist, handle=h) != h  # a finalized handle may be reused as input


def test_init_rejects_bad_communicators_and_failed_components(namelist, fake):
    for bad in (12345, -1, MPI.COMM_NULL.py2f()):
        with pytest.raises(ArgumentError, match="not a valid communicator"):
            bridge.init(bad, namelist)
    with pytest.raises(ArgumentError, match="empty"):
        bridge.init(WORLD, "")
    with pytest.raises(NamelistError):
        bridge.init(WORLD, namelist + ".missing")
    assert bridge.live_handles() == []  # a failed init leaves no handle behind


def test_partitions_reach_the_component_unchanged(namelist, fake):
    from ai4land_coupler.partition import Box, Points

    h = bridge.init(WORLD, namelist)
    bridge.def_partition_box(h, 2, 1, 4, 3)
    assert fake[-1].seen["partition"] == Box(2, 1, 4, 3)

    h2 = bridge.init(WORLD, namelist)
    source = np.arange(24, dtype=np.int64)[::-1]
    bridge.def_partition_points(h2, source)
    points = fake[-1].seen["partition"]
    assert isinstance(points, Points) and points.indices.dtype == np.int64
    np.testing.assert_array_equal(points.indices, source)
    source[0] = -5  # the component holds its own copy, not the host's memory
    assert points.indices[0] == 23


def test_put_step_get_delegate_and_map_changed_bits(namelist, fake):
    h, comp = running(namelist, fake)
    assert bridge.local_size(h) == 24
    assert bridge.field_levels(h, "landuse_fraction") == CLASS_NAMES
    assert bridge.level_name(h, "landuse_fraction", 4) == "forest"
    with pytest.raises(ArgumentError, match="out of range"):
        bridge.level_name(h, "landuse_fraction", 8)
    with pytest.raises(ArgumentError, match="out of range"):
        bridge.level_name(h, "lai", -1)
    for name in ("tas", "pr", "rsds"):
        bridge.put(h, name, np.full(24, 1.0))
    bits = bridge.step(h, 2000, 1, 1, 0)
    assert bits == errors.CHANGED_FLAGS["landuse_fraction"] | errors.CHANGED_FLAGS["lai"]
    assert bridge.step(h, 2000, 1, 2, 0) == 0
    out = np.zeros(8 * 24, np.float32)
    bridge.get(h, "landuse_fraction", out)
    np.testing.assert_allclose(out.reshape(8, 24), landuse_fractions(np.arange(24), 2000), rtol=1e-6)


def test_changed_bits_ignores_unknown_names():
    assert bridge.changed_bits(None) == 0
    assert bridge.changed_bits({"lai", "uncertainty"}) == errors.CHANGED_FLAGS["lai"]


def test_status_and_message_mapping():
    for cls in (errors.NamelistError, errors.InputFileError, errors.CallOrderError, errors.PartitionError,
                errors.ArgumentError, errors.EmulatorError, errors.ClockError):
        code, message = bridge.status_and_message(cls("boom"), "ai4land_x")
        assert code == cls.status != 0 and message == "ai4land_x: boom"
    code, message = bridge.status_and_message(MPI.Exception(MPI.ERR_COMM), "ai4land_y")
    assert code == CODE["AI4LAND_ERR_MPI"] and "MPI" in message
    try:
        {}["missing"]
    except KeyError as exc:
        code, message = bridge.status_and_message(exc, "ai4land_z")
    assert code == CODE["AI4LAND_ERR_INTERNAL"]
    assert "ai4land_z: internal error" in message and "Traceback" in message and "KeyError" in message


# ----------------------------------------------------------------------------- C layer


class RecordingFFI:
    """A real cffi FFI for pointers and buffers, recording ``def_extern`` registrations."""

    def __init__(self):
        self.real = cffi.FFI()
        self.externs = {}
        self.options = {}

    def def_extern(self, name=None, error=0, onerror=None):
        def register(func):
            self.externs[name] = func
            self.options[name] = (error, onerror)
            return func

        return register

    def __getattr__(self, name):  # NULL, new, buffer, string, memmove
        return getattr(self.real, name)


class RecordingLib:
    def __init__(self):
        self.messages = []

    def ai4land_set_error_message(self, message: bytes):
        assert isinstance(message, bytes)
        self.messages.append(message.decode())


@pytest.fixture
def c_layer(fake):
    ffi, lib = RecordingFFI(), RecordingLib()
    bridge.attach(ffi, lib)
    return ffi, lib, ffi.externs


def test_attach_registers_every_embedding_function_with_an_error_value(c_layer):
    ffi, _, externs = c_layer
    declared = set(re.findall(r"\b(ai4land_py_\w+)\(", load_build_cffi().EMBEDDING_API))
    assert declared == set(externs)
    for name, (error, onerror) in ffi.options.items():
        assert error == CODE["AI4LAND_ERR_INTERNAL"] != 0, name
        assert callable(onerror), name


def test_c_layer_lifecycle_zero_copy(c_layer, namelist):
    ffi, lib, ext = c_layer
    status, handle = ffi.new("int *", -7), ffi.new("int *", 0)
    assert ext["ai4land_py_init"](WORLD, ffi.new("char[]", namelist.encode()), handle, status) == 0
    assert status[0] == 0 and handle[0] > 0
    h = handle[0]
    assert ext["ai4land_py_def_partition_box"](h, 0, 0, 6, 4, status) == 0
    assert ext["ai4land_py_enddef"](h, status) == 0
    ncells = ffi.new("int64_t *")
    assert ext["ai4land_py_local_size"](h, ncells, status) == 0 and ncells[0] == 24
    nlev = ffi.new("int *")
    assert ext["ai4land_py_field_levels"](h, ffi.new("char[]", b"landuse_fraction"), nlev, status) == 0
    assert nlev[0] == 8
    buf = ffi.new("char[32]")
    assert ext["ai4land_py_level_name"](h, ffi.new("char[]", b"landuse_fraction"), 6, buf, 32, status) == 0
    assert ffi.string(buf) == b"sparse/no vegetation"

    tas = ffi.new("double[]", [280.0 + k for k in range(24)])
    assert ext["ai4land_py_put_double"](h, ffi.new("char[]", b"tas"), tas, 24, status) == 0
    seen = fake_of(h).seen["put"][-1]
    assert seen.dtype == np.float64 and not seen.flags.writeable
    tas[3] = -1.0
    assert seen[3] == -1.0  # a view of the host's memory, not a copy
    for name in (b"pr", b"rsds"):
        values = ffi.new("float[]", [1.0] * 24)
        assert ext["ai4land_py_put_float"](h, ffi.new("char[]", name), values, 24, status) == 0
    assert fake_of(h).seen["put"][-1].dtype == np.float32

    changed = ffi.new("int *")
    assert ext["ai4land_py_step"](h, 2001, 1, 1, 0, changed, status) == 0
    assert changed[0] == errors.CHANGED_FLAGS["landuse_fraction"] | errors.CHANGED_FLAGS["lai"]
    out = ffi.new("double[]", 8 * 24)
    assert ext["ai4land_py_get_double"](h, ffi.new("char[]", b"landuse_fraction"), out, 8 * 24, status) == 0
    got = np.frombuffer(ffi.buffer(out), np.float64).reshape(8, 24)
    np.testing.assert_allclose(got, landuse_fractions(np.arange(24), 2001))
    lai = ffi.new("float[]", 24)
    assert ext["ai4land_py_get_float"](h, ffi.new("char[]", b"lai"), lai, 24, status) == 0
    assert min(lai) > 0
    assert ext["ai4land_py_finalize"](h, status) == 0
    assert lib.messages == []


def fake_of(handle):
    return bridge._components[handle]


def test_c_layer_turns_every_failure_into_status_and_message(c_layer, namelist):
    ffi, lib, ext = c_layer
    status, handle = ffi.new("int *", 0), ffi.new("int *", 0)
    arg = CODE["AI4LAND_ERR_ARGUMENT"]

    # NULL strings, bad handles, wrong lengths, NULL arrays
    assert ext["ai4land_py_init"](WORLD, ffi.NULL, handle, status) == arg == status[0]
    assert "namelist_path is a NULL pointer" in lib.messages[-1] and handle[0] == 0
    rc = ext["ai4land_py_init"](WORLD, ffi.new("char[]", b"/no/such/file"), handle, status)
    assert rc == status[0] == CODE["AI4LAND_ERR_NAMELIST"] and "/no/such/file" in lib.messages[-1]
    assert lib.messages[-1].startswith("ai4land_init: ")
    assert ext["ai4land_py_enddef"](42, status) == arg and "unknown handle 42" in lib.messages[-1]

    assert ext["ai4land_py_init"](WORLD, ffi.new("char[]", namelist.encode()), handle, status) == 0
    h = handle[0]
    rc = ext["ai4land_py_init"](WORLD, ffi.new("char[]", namelist.encode()), handle, status)
    assert rc == CODE["AI4LAND_ERR_CALL_ORDER"] and handle[0] == h  # double init keeps the handle
    ext["ai4land_py_def_partition_box"](h, 0, 0, 6, 4, status)
    ext["ai4land_py_enddef"](h, status)
    name = ffi.new("char[]", b"tas")
    assert ext["ai4land_py_put_double"](h, name, ffi.NULL, 24, status) == arg
    assert "NULL" in lib.messages[-1]
    assert ext["ai4land_py_put_double"](h, name, ffi.new("double[]", 24), -1, status) == arg
    assert ext["ai4land_py_put_double"](h, name, ffi.new("double[]", 23), 23, status) == arg
    assert "expected 24" in lib.messages[-1]
    assert ext["ai4land_py_put_double"](h, ffi.new("char[]", b"\xff"), ffi.new("double[]", 24), 24, status) == arg
    assert "UTF-8" in lib.messages[-1]
    nan = ffi.new("double[]", [float("nan")] * 24)
    assert ext["ai4land_py_put_double"](h, name, nan, 24, status) == arg

    small = ffi.new("char[8]")
    rc = ext["ai4land_py_level_name"](h, ffi.new("char[]", b"landuse_fraction"), 3, small, 8, status)
    assert rc == arg and "pasture/rangeland" in lib.messages[-1] and "17 characters" in lib.messages[-1]
    assert ext["ai4land_py_level_name"](h, ffi.new("char[]", b"lai"), 0, ffi.NULL, 8, status) == arg

    # an unexpected exception: status 99 with the traceback
    def broken(name, out):
        raise ZeroDivisionError("deliberate")

    fake_of(h).fake.get = broken
    rc = ext["ai4land_py_get_float"](h, ffi.new("char[]", b"lai"), ffi.new("float[]", 24), 24, status)
    assert rc == status[0] == CODE["AI4LAND_ERR_INTERNAL"]
    assert "ZeroDivisionError" in lib.messages[-1] and "Traceback" in lib.messages[-1]

    # SystemExit raised inside the plugin must not leave the host either
    def exits(when):
        raise SystemExit(3)

    fake_of(h).fake.step = exits
    changed = ffi.new("int *", 0)
    assert ext["ai4land_py_step"](h, 2000, 1, 1, 0, changed, status) == CODE["AI4LAND_ERR_INTERNAL"]

    assert ext["ai4land_py_finalize"](h, status) == 0
    assert ext["ai4land_py_finalize"](h, status) == CODE["AI4LAND_ERR_CALL_ORDER"]


def test_onerror_stores_the_traceback(c_layer):
    ffi, lib, _ = c_layer
    _, onerror = ffi.options["ai4land_py_step"]
    try:
        raise RuntimeError("escaped")
    except RuntimeError as exc:
        onerror(type(exc), exc, exc.__traceback__)
    assert "internal error in the bridge" in lib.messages[-1] and "RuntimeError: escaped" in lib.messages[-1]
