"""The catalogue of bad input (docs/bad_input.md): every row of its table is a case here.

Each case provokes one bad input through the bridge (the calls a C or Fortran host makes; Python
hosts' own calls through the Component) and returns what the host sees: the status and message of
``bridge.status_and_message``. The row gives the expected status and message (``<...>`` stands for
any text); the case adds what the message must name (the file, key or field at fault). After every
case no half-written file is left in the output folder or beside a restart, and a failed ``init``
leaves no output at all.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import netCDF4
import numpy as np
import pytest

from ai4land_coupler import bridge
from ai4land_coupler.datasets import sha256_file
from ai4land_coupler.errors import CODE
from ai4land_coupler.partition import Box
from conftest import REPO, write_namelist

MPI = pytest.importorskip("mpi4py.MPI")
COMM = MPI.COMM_WORLD.py2f()  # the host's communicator, as a Fortran handle

CATALOGUE = REPO / "docs" / "bad_input.md"
HOST_NLAT, HOST_NLON = 15, 30  # the small world's LUH2 grid
NCELLS = HOST_NLAT * HOST_NLON
FIRST_STEP = (2016, 1, 1, 0)  # the small world has maps for 2015-2017


# ----------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Row:
    source: str
    case: str
    status: int | None  # None: a compile-time error
    message: str
    test: str

    @property
    def pattern(self) -> re.Pattern:
        """The message with each placeholder ``<name>`` standing for any text."""
        parts = re.split(r"(<[a-z][a-z_]*>)", self.message)
        return re.compile("".join(".+?" if i % 2 else re.escape(p) for i, p in enumerate(parts)), re.DOTALL)


def read_catalogue() -> list[Row]:
    """The rows of the table in docs/bad_input.md: Source | Case | Status | Message | Test."""
    rows = []
    for line in CATALOGUE.read_text().splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 5 or not cells[4].startswith("`test_"):
            continue
        source, case, status, message, test = cells
        code = re.fullmatch(r"`(AI4LAND_\w+)` \((\d+)\)", status)
        if code:
            assert CODE[code[1]] == int(code[2]), f"{test}: {status} is not a status code"
        else:
            assert status == "compile-time error", f"{test}: unknown status {status!r}"
        rows.append(Row(source, case, int(code[2]) if code else None, message.strip("`"), test.strip("`")))
    return rows


ROWS = {row.test: row for row in read_catalogue()}


# ----------------------------------------------------------------------------- how a case runs


@dataclass(frozen=True)
class Answer:
    status: int
    message: str
    names: tuple[str, ...]  # what the message must name


def refused(where: str, call: Callable, *args, names=()) -> Answer:
    """What the host sees when ``call(*args)`` fails inside the entry point ``where``."""
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 - every failure is what the host would see
        return Answer(*bridge.status_and_message(exc, where), tuple(str(n) for n in names))
    pytest.fail(f"{where} accepted the bad input")


class Scene:
    """One case: namelists on the small world, copies of it to break, and the host's handles."""

    def __init__(self, tmp: Path, world: Path):
        self.tmp, self.world = tmp, world
        self.out = tmp / "out"  # the output_dir of every namelist
        self.restarts = tmp / "restarts"  # where the plugin writes restarts
        self.restarts.mkdir()
        self.started = False  # an init succeeded, so the history may exist

    def namelist(self, text: str | None = None, world: Path | None = None, **overrides) -> Path:
        """The small world on its LUH2 grid, on CPU, no emulators unless asked, history in ``out``."""
        path = self.tmp / "ai4land_in"
        if text is not None:
            path.write_text(text)
            return path
        settings = {"host_nlat": HOST_NLAT, "host_nlon": HOST_NLON, "device": "'cpu'", "output_dir": f"'{self.out}'",
                    "do_dynamic_landuse": ".false.", "do_dynamic_lai": ".false.", **overrides}
        return write_namelist(path, world or self.world, **settings)

    def init(self, **overrides) -> int:
        handle = bridge.init(COMM, str(self.namelist(**overrides)))
        self.started = True
        return handle

    def running(self, **overrides) -> int:
        handle = self.init(**overrides)
        bridge.def_partition_box(handle, 0, 0, HOST_NLON, HOST_NLAT)
        bridge.enddef(handle)
        return handle

    def stepped(self, **overrides) -> int:
        handle = self.running(**overrides)
        bridge.step(handle, *FIRST_STEP)
        return handle

    def broken_world(self, name: str, edit: Callable[[Path], None]) -> Path:
        """A copy of the small world with file ``name`` edited."""
        folder = self.tmp / "world"
        shutil.copytree(self.world, folder)
        edit(folder / name)
        return folder

    def checkpoint(self, name: str = "landuse_unet_v1") -> Path:
        """A copy of a shipped emulator: the stem of its .safetensors and .json."""
        from ai4land_coupler.emulators import WEIGHTS_DIR

        folder = self.tmp / "emulators"
        folder.mkdir(exist_ok=True)
        for suffix in (".safetensors", ".json"):
            shutil.copy(WEIGHTS_DIR / f"{name}{suffix}", folder / f"copy{suffix}")
        return folder / "copy"

    def close(self) -> None:
        for handle in bridge.live_handles():
            bridge.finalize(handle)

    def partial_output(self) -> list[str]:
        """What the plugin left half-written: temporary files, or netCDF files that do not open."""
        bad = []
        for folder in (self.out, self.restarts):
            for path in sorted(folder.rglob("*")) if folder.exists() else ():
                if path.is_dir():
                    continue
                if path.name.startswith(".") or ".tmp" in path.name:
                    bad.append(f"{path}: a temporary file")
                    continue
                try:
                    netCDF4.Dataset(path).close()
                except OSError as exc:
                    bad.append(f"{path}: {exc}")
        if not self.started and self.out.exists() and any(self.out.iterdir()):
            bad.append(f"{self.out}: output of an init that failed")
        return bad


CASES: dict[str, object] = {}


def case(case_id: str):
    """Register a case ``provoke(scene) -> Answer`` under its id in the catalogue."""
    def register(provoke):
        CASES[case_id] = pytest.param(provoke, id=case_id)
        return provoke
    return register


def edit_netcdf(change: Callable) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        with netCDF4.Dataset(path, "a") as nc:
            change(nc)
    return edit


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def init_refused(namelist: Path, *names) -> Answer:
    return refused("ai4land_init", bridge.init, COMM, str(namelist), names=names)


def namelist_refused(namelist: Path, *names) -> Answer:
    """init refused by the namelist: the message names its file, and ``names``."""
    return init_refused(namelist, namelist, *names)


# ----------------------------------------------------------------------------- namelist


@case("namelist-unknown-key")
def _(s):
    return namelist_refused(s.namelist(do_dynamic_landuze=".true."), "do_dynamic_landuze")


@case("namelist-wrong-type")
def _(s):
    return namelist_refused(s.namelist(host_nlat="'fifteen'"), "host_nlat")


@case("namelist-below-minimum")
def _(s):
    return namelist_refused(s.namelist(host_nlat=0), "host_nlat")


@case("namelist-above-maximum")
def _(s):
    return namelist_refused(s.namelist(tile_overlap=0.95), "tile_overlap")


@case("namelist-not-a-choice")
def _(s):
    return namelist_refused(s.namelist(lai_cadence="'weekly'"), "lai_cadence")


@case("namelist-tile-size-not-multiple-of-8")
def _(s):
    return namelist_refused(s.namelist(tile_size=60), "tile_size")


@case("namelist-band-rows-not-whole-luh2-rows")
def _(s):
    return namelist_refused(s.namelist(band_rows=6), "band_rows")


@case("namelist-host-grid-does-not-nest")
def _(s):
    return namelist_refused(s.namelist(host_nlat=7), "host_nlat")


@case("namelist-missing-file")
def _(s):
    return namelist_refused(s.tmp / "no_such.nml")


@case("namelist-path-is-a-folder")
def _(s):
    return namelist_refused(s.tmp)


@case("namelist-empty-file")
def _(s):
    return namelist_refused(s.namelist(text=""))


@case("namelist-group-missing")
def _(s):
    return namelist_refused(s.namelist(text="&host_nml\n  nsteps = 4\n/\n"), "&host_nml")


@case("namelist-not-closed")
def _(s):
    return namelist_refused(s.namelist(text=f"&ai4land_nml\n  host_nlat = 15\n  input_dir = '{s.world}'\n"))


@case("namelist-not-text")
def _(s):
    path = s.namelist(text="")
    path.write_bytes(b"\xff\xfe&ai4land_nml\n/\n")
    return namelist_refused(path)


@case("namelist-required-key-missing")
def _(s):
    return namelist_refused(s.namelist(text=f"&ai4land_nml\n  host_nlat = 15\n  input_dir = '{s.world}'\n/\n"),
                            "host_nlon")


@case("namelist-input-dir-missing")
def _(s):
    return namelist_refused(s.namelist(input_dir=f"'{s.tmp / 'nowhere'}'"), "input_dir", s.tmp / "nowhere")


@case("namelist-output-dir-is-a-file")
def _(s):
    (s.tmp / "taken").write_text("")
    return namelist_refused(s.namelist(output_dir=f"'{s.tmp / 'taken' / 'out'}'"), "output_dir", s.tmp / "taken")


@case("namelist-region-out-of-range")
def _(s):
    return namelist_refused(s.namelist(region="-95.0, 0.0, 0.0, 10.0"), "region")


# ----------------------------------------------------------------------------- data files


@case("data-file-named-in-namelist-missing")
def _(s):
    return namelist_refused(s.namelist(luh2_file="'missing/luh2.nc'"), "luh2_file", s.tmp / "missing" / "luh2.nc")


@case("data-required-file-not-in-input-dir")
def _(s):
    world = s.broken_world("static.nc", Path.unlink)
    return namelist_refused(s.namelist(world=world), "static_file", world / "static.nc")


@case("data-missing-variable")
def _(s):
    world = s.broken_world("static.nc", edit_netcdf(lambda nc: nc.renameVariable("slope", "slope_deg")))
    return init_refused(s.namelist(world=world), world / "static.nc", "'slope'")


@case("data-wrong-units")
def _(s):
    world = s.broken_world("luh2_states.nc", edit_netcdf(lambda nc: setattr(nc["c3ann"], "units", "%")))
    return init_refused(s.namelist(world=world), world / "luh2_states.nc", "'c3ann'")


@case("data-wrong-coordinate-units")
def _(s):
    world = s.broken_world("static.nc", edit_netcdf(lambda nc: setattr(nc["lat"], "units", "m")))
    return init_refused(s.namelist(world=world), world / "static.nc", "'lat'")


@case("data-wrong-dims")
def _(s):
    def transpose(nc):
        nc.renameVariable("bio12", "bio12_old")
        nc.createVariable("bio12", "f4", ("lon", "lat"))[:] = nc["bio12_old"][:].T

    world = s.broken_world("bioclim.nc", edit_netcdf(transpose))
    return init_refused(s.namelist(world=world), world / "bioclim.nc", "'bio12'")


@case("data-truncated-file")
def _(s):
    world = s.broken_world("luh2_states.nc", truncate)
    return init_refused(s.namelist(world=world), world / "luh2_states.nc")


@case("data-corrupt-file")
def _(s):
    world = s.broken_world("lulc_maps.nc", lambda p: p.write_text("year,class\n2015,44\n"))
    return init_refused(s.namelist(world=world), world / "lulc_maps.nc")


@case("data-empty-file")
def _(s):
    world = s.broken_world("bioclim.nc", lambda p: p.write_bytes(b""))
    return init_refused(s.namelist(world=world), world / "bioclim.nc")


@case("data-values-out-of-range")
def _(s):
    world = s.broken_world("static.nc", edit_netcdf(lambda nc: nc["soil_quality"].__setitem__((0, 0), 3.0)))
    return init_refused(s.namelist(world=world), world / "static.nc", "'soil_quality'")


@case("data-missing-values-on-land")
def _(s):
    world = s.broken_world("static.nc", edit_netcdf(lambda nc: nc["elevation"].__setitem__(slice(None), np.nan)))
    return init_refused(s.namelist(world=world), world / "static.nc", "'elevation'")


@case("data-host-weights-not-netcdf")
def _(s):
    (s.tmp / "weights.nc").write_text("row col S\n")
    return init_refused(s.namelist(host_weights_file=f"'{s.tmp / 'weights.nc'}'"), s.tmp / "weights.nc")


@case("data-unknown-class-code")
def _(s):
    world = s.broken_world("lulc_maps.nc", edit_netcdf(lambda nc: nc["lulc"].__setitem__((0, 0, 0), 50)))
    handle = s.running(input_dir=f"'{world}'")
    return refused("ai4land_step", bridge.step, handle, *FIRST_STEP, names=(world / "lulc_maps.nc", "[50]"))


@case("data-year-not-in-scenario")
def _(s):
    handle = s.running(do_dynamic_landuse=".true.")
    return refused("ai4land_step", bridge.step, handle, 2040, 1, 1, 0,
                   names=(s.world / "luh2_states.nc", "year 2040"))


@case("data-truncated-file-read-at-a-step")
def _(s):
    world = s.broken_world("drivers_anomaly.nc", truncate)
    handle = s.running(input_dir=f"'{world}'", do_dynamic_lai=".true.")
    return refused("ai4land_step", bridge.step, handle, *FIRST_STEP, names=(world / "drivers_anomaly.nc",))


@case("data-drivers-not-given")
def _(s):
    def remove_drivers(anomaly: Path):
        anomaly.unlink()
        anomaly.with_name("drivers_climatology.nc").unlink()

    world = s.broken_world("drivers_anomaly.nc", remove_drivers)
    handle = s.running(input_dir=f"'{world}'", do_dynamic_lai=".true.")
    return refused("ai4land_step", bridge.step, handle, *FIRST_STEP, names=("drivers_climatology.nc",))


# ----------------------------------------------------------------------------- emulator files


def emulator_refused(s: Scene, stem: Path | str, *names) -> Answer:
    namelist = s.namelist(do_dynamic_landuse=".true.", landuse_emulator=f"'{stem}'")
    return refused("ai4land_init", bridge.init, COMM, str(namelist), names=names)


def edit_meta(stem: Path, change: Callable[[dict], None]) -> None:
    sidecar = stem.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    change(meta)
    sidecar.write_text(json.dumps(meta))


def replace_weights(stem: Path, data: bytes) -> Path:
    """New bytes under the weights name, with their sha256 in the metadata: only the format stands guard."""
    weights = stem.with_suffix(".safetensors")
    weights.write_bytes(data)
    edit_meta(stem, lambda meta: meta.update(weights_sha256=sha256_file(weights)))
    return weights


@case("emulator-file-missing")
def _(s):
    return namelist_refused(s.namelist(do_dynamic_landuse=".true.", landuse_emulator="'gone/lu.safetensors'"),
                        "landuse_emulator", s.tmp / "gone" / "lu.safetensors")


@case("emulator-corrupt-weights")
def _(s):
    stem = s.checkpoint()
    weights = stem.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return emulator_refused(s, weights, weights)


@case("emulator-truncated-weights")
def _(s):
    stem = s.checkpoint()
    weights = replace_weights(stem, stem.with_suffix(".safetensors").read_bytes()[:100])
    return emulator_refused(s, weights, weights)


@case("emulator-corrupt-metadata")
def _(s):
    stem = s.checkpoint()
    stem.with_suffix(".json").write_text('{"kind": "landuse",')
    return emulator_refused(s, stem.with_suffix(".safetensors"), stem.with_suffix(".json"))


@case("emulator-metadata-missing")
def _(s):
    stem = s.checkpoint()
    stem.with_suffix(".json").unlink()
    return emulator_refused(s, stem.with_suffix(".safetensors"), stem.with_suffix(".json"))


@case("emulator-wrong-version")
def _(s):
    stem = s.checkpoint()
    edit_meta(stem, lambda meta: meta.update(format_version=2))
    return emulator_refused(s, stem.with_suffix(".safetensors"), stem.with_suffix(".json"), "format version 2")


@case("emulator-channel-mismatch")
def _(s):
    stem = s.checkpoint()
    edit_meta(stem, lambda meta: meta["channels"].__setitem__(3, "scenario_crops"))
    return emulator_refused(s, stem.with_suffix(".safetensors"), stem.with_suffix(".safetensors"), "scenario_crops")


@case("emulator-normalisation-mismatch")
def _(s):
    stem = s.checkpoint()
    edit_meta(stem, lambda meta: meta["normalisation"].update(mean=meta["normalisation"]["mean"][:-1]))
    return emulator_refused(s, stem.with_suffix(".safetensors"), "26 normalisation means")


@case("emulator-architecture-mismatch")
def _(s):
    stem = s.checkpoint()
    edit_meta(stem, lambda meta: meta["architecture"].update(widths=[8, 16, 32, 48]))
    return emulator_refused(s, stem.with_suffix(".safetensors"), stem.with_suffix(".safetensors"))


@case("emulator-wrong-kind")
def _(s):
    stem = s.checkpoint("lai_unet_v1")
    return emulator_refused(s, stem.with_suffix(".safetensors"), stem.with_suffix(".json"), "'lai'")


@case("emulator-shipped-name-of-another-kind")
def _(s):
    return emulator_refused(s, "lai_unet_v1", "lai_unet_v1")


@case("emulator-unknown-name")
def _(s):
    return emulator_refused(s, "landuse_unet_v9", "landuse_unet_v9", "landuse_unet_v1")


class CodeRunner:
    """Unpickling this runs code: ``os.mkdir(marker)``. Proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def pickle_never_runs(s: Scene, write: Callable[[Path, CodeRunner], Path]) -> Answer:
    """A checkpoint whose weights would run code if unpickled: refused, and the code never ran."""
    probe = s.tmp / "ran_in_probe"
    pickle.loads(pickle.dumps(CodeRunner(probe)))
    assert probe.is_dir()  # the payload is live
    marker = s.tmp / "ran_in_plugin"
    weights = write(s.checkpoint(), CodeRunner(marker))
    answer = emulator_refused(s, weights, weights)
    assert not marker.exists(), "the plugin unpickled the checkpoint"
    return answer


@case("emulator-pickle-as-weights")
def _(s):
    return pickle_never_runs(s, lambda stem, payload: replace_weights(stem, pickle.dumps(payload)))


@case("emulator-text-pickle-as-weights")
def _(s):
    return pickle_never_runs(s, lambda stem, payload: replace_weights(stem, pickle.dumps(payload, protocol=0)))


@case("emulator-torch-save-as-weights")
def _(s):
    import io

    import torch

    def torch_save(stem, payload):
        buffer = io.BytesIO()
        torch.save({"model": payload}, buffer)
        return replace_weights(stem, buffer.getvalue())

    return pickle_never_runs(s, torch_save)


@case("emulator-pickle-checkpoint-path")
def _(s):
    def pt_file(stem, payload):
        path = stem.with_suffix(".pt")
        path.write_bytes(pickle.dumps(payload))
        return path

    return pickle_never_runs(s, pt_file)


# ----------------------------------------------------------------------------- host arrays


@case("host-array-put-wrong-size")
def _(s):
    return refused("ai4land_put_double", bridge.put, s.running(), "tas", np.full(NCELLS - 1, 280.0), names=("'tas'",))


@case("host-array-get-wrong-size")
def _(s):
    return refused("ai4land_get_double", bridge.get, s.stepped(), "landuse_fraction", np.zeros(NCELLS),
                   names=("'landuse_fraction'",))


@case("host-array-put-nan")
def _(s):
    values = np.full(NCELLS, 280.0)
    values[7] = np.nan
    return refused("ai4land_put_double", bridge.put, s.running(), "pr", values, names=("'pr'",))


@case("host-array-put-inf")
def _(s):
    values = np.full(NCELLS, 200.0, dtype=np.float32)
    values[:3] = np.inf
    return refused("ai4land_put_float", bridge.put, s.running(), "rsds", values, names=("'rsds'",))


@case("host-array-put-unknown-field")
def _(s):
    return refused("ai4land_put_double", bridge.put, s.running(), "lai", np.zeros(NCELLS), names=("'lai'",))


def component(handle: int):
    return bridge._component(handle)


@case("host-array-put-integers")
def _(s):
    return refused("Component.put", component(s.running()).put, "tas", np.full(NCELLS, 280, dtype=np.int32),
                   names=("'tas'", "int32"))


@case("host-array-put-float16")
def _(s):
    return refused("Component.put", component(s.running()).put, "tas", np.full(NCELLS, 280, dtype=np.float16),
                   names=("'tas'", "float16"))


@case("host-array-put-a-list")
def _(s):
    return refused("Component.put", component(s.running()).put, "tas", [280.0] * NCELLS, names=("'tas'", "list"))


@case("host-array-get-integers")
def _(s):
    return refused("Component.get", component(s.stepped()).get, "landuse_uncertainty", np.zeros(NCELLS, np.int64),
                   names=("'landuse_uncertainty'", "int64"))


@case("host-array-get-read-only")
def _(s):
    out = np.zeros(NCELLS)
    out.flags.writeable = False
    return refused("Component.get", component(s.stepped()).get, "landuse_uncertainty", out,
                   names=("'landuse_uncertainty'",))


@case("host-array-get-not-c-order")
def _(s):
    out = np.zeros((8, NCELLS), order="F")
    return refused("Component.get", component(s.stepped()).get, "landuse_fraction", out,
                   names=("'landuse_fraction'",))


# ----------------------------------------------------------------------------- partitions


@case("partition-overlapping")
def _(s):
    handle = s.init()
    bridge.def_partition_points(handle, np.r_[0, np.arange(NCELLS)])
    return refused("ai4land_enddef", bridge.enddef, handle, names=("cell 0 on ranks [0]",))


@case("partition-overlapping-ranks")
def _(s):
    from ai4land_coupler.comm import run_threads
    from ai4land_coupler.partition import CellDirectory

    rows = [Box(0, 0, HOST_NLON, 8), Box(0, 7, HOST_NLON, 8)]  # both hold row 7

    def enddef_on(comm):
        CellDirectory(comm, rows[comm.rank].global_indices(HOST_NLAT, HOST_NLON), NCELLS)

    return refused("ai4land_enddef", run_threads, 2, enddef_on, names=(f"cell {7 * HOST_NLON} on ranks [0, 1]",))


@case("partition-gapped")
def _(s):
    handle = s.init()
    bridge.def_partition_box(handle, 0, 0, HOST_NLON, HOST_NLAT - 1)
    return refused("ai4land_enddef", bridge.enddef, handle, names=(f"{HOST_NLON} cells owned by no rank",))


@case("partition-box-out-of-range")
def _(s):
    return refused("ai4land_def_partition_box", bridge.def_partition_box, s.init(), 20, 0, 15, HOST_NLAT,
                   names=("i=[20,35)",))


@case("partition-box-empty")
def _(s):
    return refused("ai4land_def_partition_box", bridge.def_partition_box, s.init(), 0, 0, 0, HOST_NLAT,
                   names=("ni=0",))


@case("partition-points-out-of-range")
def _(s):
    return refused("ai4land_def_partition_points", bridge.def_partition_points, s.init(), [-1, 0, NCELLS],
                   names=("[-1, 450]",))


@case("partition-points-not-integers")
def _(s):
    return refused("ai4land_def_partition_points", bridge.def_partition_points, s.init(), [0.5, 1.5],
                   names=("float64",))


# ----------------------------------------------------------------------------- call order and arguments


@case("call-step-before-init")
def _(s):
    return refused("ai4land_step", bridge.step, 0, *FIRST_STEP, names=("handle 0",))


@case("call-step-before-enddef")
def _(s):
    handle = s.init()
    bridge.def_partition_box(handle, 0, 0, HOST_NLON, HOST_NLAT)
    return refused("ai4land_step", bridge.step, handle, *FIRST_STEP, names=("step()",))


@case("call-put-before-enddef")
def _(s):
    return refused("ai4land_put_double", bridge.put, s.init(), "tas", np.full(NCELLS, 280.0), names=("put()",))


@case("call-enddef-before-def-partition")
def _(s):
    return refused("ai4land_enddef", bridge.enddef, s.init(), names=("enddef()",))


@case("call-def-partition-twice")
def _(s):
    return refused("ai4land_def_partition_box", bridge.def_partition_box, s.running(), 0, 0, HOST_NLON, HOST_NLAT,
                   names=("def_partition()",))


@case("call-double-init")
def _(s):
    handle = s.init()
    return refused("ai4land_init", bridge.init, COMM, str(s.namelist()), handle, names=(f"handle {handle}",))


@case("call-get-unknown-field")
def _(s):
    return refused("ai4land_get_double", bridge.get, s.stepped(), "lia", np.zeros(NCELLS), names=("'lia'",))


@case("call-get-before-step")
def _(s):
    return refused("ai4land_get_double", bridge.get, s.running(), "landuse_fraction", np.zeros(8 * NCELLS),
                   names=("'landuse_fraction'",))


@case("call-use-after-finalize")
def _(s):
    handle = s.stepped()
    bridge.finalize(handle)
    return refused("ai4land_step", bridge.step, handle, 2016, 2, 1, 0, names=(f"handle {handle}",))


@case("call-finalize-twice")
def _(s):
    handle = s.init()
    bridge.finalize(handle)
    return refused("ai4land_finalize", bridge.finalize, handle, names=(f"handle {handle}",))


@case("call-invalid-communicator")
def _(s):
    return refused("ai4land_init", bridge.init, 12345, str(s.namelist()), names=("12345",))


@case("call-empty-namelist-path")
def _(s):
    return refused("ai4land_init", bridge.init, COMM, "")


@case("call-level-out-of-range")
def _(s):
    return refused("ai4land_level_name", bridge.level_name, s.running(), "landuse_fraction", 8,
                   names=("'landuse_fraction'",))


# ----------------------------------------------------------------------------- model time


@case("time-backwards")
def _(s):
    return refused("ai4land_step", bridge.step, s.stepped(), 2015, 12, 31, 0, names=("2015-12-31", "2016-01-01"))


@case("time-date-not-in-calendar")
def _(s):
    return refused("ai4land_step", bridge.step, s.running(), 2016, 2, 30, 0, names=("2016-02-30", "noleap"))


@case("time-leap-day-in-noleap-calendar")
def _(s):
    return refused("ai4land_step", bridge.step, s.running(), 2016, 2, 29, 0, names=("2016-02-29", "noleap"))


@case("time-second-of-day-out-of-range")
def _(s):
    return refused("ai4land_step", bridge.step, s.running(), 2016, 1, 1, 86400, names=("86400",))


# ----------------------------------------------------------------------------- restarts


def a_restart(s: Scene) -> Path:
    """A restart of a run with LAI, after its first step."""
    handle = s.stepped(do_dynamic_lai=".true.")
    path = s.restarts / "restart.nc"
    bridge.write_restart(handle, str(path))
    bridge.finalize(handle)
    return path


@case("restart-of-another-run")
def _(s):
    path = a_restart(s)
    handle = s.running(do_dynamic_lai=".true.", calendar="'360_day'")
    return refused("ai4land_read_restart", bridge.read_restart, handle, str(path), names=(path, "calendar"))


@case("restart-not-a-restart")
def _(s):
    return refused("ai4land_read_restart", bridge.read_restart, s.running(), str(s.world / "static.nc"),
                   names=(s.world / "static.nc",))


@case("restart-not-netcdf")
def _(s):
    path = s.tmp / "restart.txt"
    path.write_text("2016-01-01\n")
    return refused("ai4land_read_restart", bridge.read_restart, s.running(), str(path), names=(path,))


@case("restart-missing-file")
def _(s):
    return refused("ai4land_read_restart", bridge.read_restart, s.running(), str(s.tmp / "none.nc"),
                   names=(s.tmp / "none.nc",))


@case("call-read-restart-after-step")
def _(s):
    path = a_restart(s)
    handle = s.stepped(do_dynamic_lai=".true.")
    return refused("ai4land_read_restart", bridge.read_restart, handle, str(path), names=("read_restart()",))


@case("call-empty-restart-path")
def _(s):
    return refused("ai4land_write_restart", bridge.write_restart, s.running(), "")


@case("restart-write-into-missing-folder")
def _(s):
    handle = s.stepped(do_dynamic_lai=".true.")
    path = s.restarts / "missing" / "restart.nc"
    return refused("ai4land_write_restart", bridge.write_restart, handle, str(path), names=(path,))


@case("restart-write-onto-a-folder")
def _(s):
    handle = s.stepped(do_dynamic_lai=".true.")
    path = s.restarts / "taken"
    path.mkdir()
    return refused("ai4land_write_restart", bridge.write_restart, handle, str(path), names=(path,))


# ----------------------------------------------------------------------------- output


@case("output-dir-used-by-another-component")
def _(s):
    s.init()
    history = s.out / "ai4land_fine_history.nc"
    return refused("ai4land_init", bridge.init, COMM, str(s.namelist()), names=(history,))


# ----------------------------------------------------------------------------- the tests


@pytest.fixture
def scene(tmp_path, small_dir, monkeypatch):
    monkeypatch.setattr(bridge, "COMPONENT_FACTORY", None)
    monkeypatch.setattr(bridge, "_components", {})
    monkeypatch.setattr(bridge, "_finalized", set())
    s = Scene(tmp_path, small_dir)
    yield s
    s.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("provoke", CASES.values())
def test_bad_input(provoke, scene, request):
    row = ROWS.get(request.node.name)
    assert row is not None, f"{request.node.name} is not in {CATALOGUE}"
    answer = provoke(scene)
    scene.close()
    assert scene.partial_output() == []
    assert (answer.status, row.pattern.fullmatch(answer.message) is not None) == (row.status, True), answer.message
    for name in answer.names:
        assert name in answer.message, f"the message does not name {name}"


# Fortran and C hosts: the kind of an array is checked by the compiler.
FORTRAN_HOST = """\
program host
  use ai4land
  implicit none
  type(ai4land_component) :: comp
  integer :: ierr
  {declaration} :: values(4)
  values = 0
  call {call}(comp, 'tas', values, ierr)
end program host
"""
C_HOST = """\
#include "ai4land.h"
int host(int handle, {declaration} *values) {{ return {call}(handle, "tas", values, 4); }}
"""
COMPILE_CASES = {  # id: (language, declaration, declaration that compiles, call)
    "fortran-integer-put": ("fortran", "integer", "real(8)", "ai4land_put"),
    "fortran-real16-get": ("fortran", "real(16)", "real(4)", "ai4land_get"),
    "c-int-to-put-double": ("c", "const int", "const double", "ai4land_put_double"),
    "c-double-to-get-float": ("c", "double", "float", "ai4land_get_float"),
}


@pytest.fixture(scope="module")
def fortran_module(tmp_path_factory):
    """The ai4land module compiled from the sources (its .mod only)."""
    if not shutil.which("gfortran"):
        pytest.skip("no gfortran")
    folder = tmp_path_factory.mktemp("mod")
    build = subprocess.run(["gfortran", "-fsyntax-only", "-I", str(REPO / "fortran_bridge"), "-J", str(folder),
                            str(REPO / "fortran_bridge" / "ai4land.F90")], capture_output=True, text=True, timeout=60)
    assert build.returncode == 0, build.stderr
    return folder


def compile_host(language: str, declaration: str, call: str, source: Path,
                 modules: Path | None) -> subprocess.CompletedProcess:
    if language == "fortran":
        source = source.with_suffix(".f90")
        source.write_text(FORTRAN_HOST.format(declaration=declaration, call=call))
        command = ["gfortran", "-fsyntax-only", "-I", str(modules), str(source)]
    else:
        source = source.with_suffix(".c")
        source.write_text(C_HOST.format(declaration=declaration, call=call))
        command = ["gcc", "-fsyntax-only", "-Werror=incompatible-pointer-types", "-I", str(REPO / "fortran_bridge"),
                   str(source)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "LC_ALL": "C"})


@pytest.mark.parametrize("case_id", COMPILE_CASES)
def test_wrong_kind_does_not_compile(case_id, request, tmp_path):
    row = ROWS.get(request.node.name)
    assert row is not None and row.status is None, f"{request.node.name} is not a compile-time row of {CATALOGUE}"
    language, wrong, right, call = COMPILE_CASES[case_id]
    if language == "c" and not shutil.which("gcc"):
        pytest.skip("no gcc")
    modules = request.getfixturevalue("fortran_module") if language == "fortran" else None
    good = compile_host(language, right, call, tmp_path / "right_kind", modules)
    assert good.returncode == 0, good.stderr  # the same host with the right kind compiles
    bad = compile_host(language, wrong, call, tmp_path / "wrong_kind", modules)
    assert bad.returncode != 0 and row.pattern.search(bad.stderr), bad.stderr


def test_every_row_of_the_catalogue_is_a_test_and_every_test_a_row():
    documented = [row.test for row in read_catalogue()]
    assert len(documented) == len(set(documented)), "a test is listed twice"
    tests = {f"test_bad_input[{c}]" for c in CASES} | {f"test_wrong_kind_does_not_compile[{c}]" for c in COMPILE_CASES}
    assert set(documented) == tests
    for needed in ("namelist", "data files", "emulator files", "host arrays", "partitions", "call order"):
        assert any(row.source == needed for row in ROWS.values()), needed


def test_write_restart_before_the_first_step_and_without_lai(scene):
    for first_step_taken in (False, True):
        handle = scene.stepped() if first_step_taken else scene.running()
        bridge.write_restart(handle, str(scene.restarts / f"restart_{first_step_taken}.nc"))
        bridge.finalize(handle)
    assert scene.partial_output() == []
