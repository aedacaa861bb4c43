"""The compiled bridge: libai4land (C ABI), the Fortran module, the Fortran mock host, the
find_package(AI4Land) route. Needs the CMake build in build/ (the setup makes it):

    cmake -S . -B build -DPython3_EXECUTABLE=$PWD/.venv/bin/python && cmake --build build -j2
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from ai4land_coupler import errors
from bridge_fakes import CLASS_NAMES, landuse_fractions, lai_values, write_fake_shim
from conftest import BUILD, MPI_ENV, REPO, run_mpi, write_namelist

netCDF4 = pytest.importorskip("netCDF4")

MOCK_HOST = BUILD / "ai4land_mock_host"
LIBRARY = BUILD / "libai4land.so"
BUILD_HINT = "cmake -S . -B build -DPython3_EXECUTABLE=$PWD/.venv/bin/python && cmake --build build -j2"
needs_build = pytest.mark.skipif(not MOCK_HOST.exists(), reason=f"no CMake build in {BUILD}; run: {BUILD_HINT}")


def component_importable() -> bool:
    try:
        import ai4land_coupler.component  # noqa: F401
    except Exception:
        return False
    return True


needs_component = pytest.mark.skipif(not component_importable(), reason="ai4land_coupler.component is not importable")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AI4LAND_"))}
    return {**env, **MPI_ENV, **extra}


def write_host_nml(path: Path, ai4land_namelist: Path, output: Path, **overrides) -> Path:
    values = {"nlat": 9, "nlon": 12, "start_year": 2015, "nyears": 2, "step_frequency": "'monthly'",
              "output_file": f"'{output}'", "ai4land_namelist": f"'{ai4land_namelist}'", **overrides}
    path.write_text("&mock_host_nml\n" + "\n".join(f"  {k} = {v}" for k, v in values.items()) + "\n/\n")
    return path


def small_plugin_namelist(path: Path, nlat=9, nlon=12, **extra) -> Path:
    body = {"host_nlat": nlat, "host_nlon": nlon, "input_dir": "'unused-by-the-fake'", **extra}
    path.write_text("&ai4land_nml\n" + "\n".join(f"  {k} = {v}" for k, v in body.items()) + "\n/\n")
    return path


def run_host(n: int, nml: Path, cwd: Path, timeout=300, **env) -> subprocess.CompletedProcess:
    return run_mpi(n, [str(MOCK_HOST), str(nml)], cwd=cwd, timeout=timeout, env_extra=env)


def output_of(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- build artefacts


@needs_build
def test_library_exports_the_abi_with_soname_and_rpath():
    header = (REPO / "fortran_bridge" / "ai4land.h").read_text()
    declared = {line.split("(")[0].split()[-1] for line in header.splitlines() if line.startswith("AI4LAND_API int")}
    assert len(declared) == 17
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(LIBRARY)], capture_output=True, text=True,
                             timeout=60).stdout
    exported = {line.split()[-1] for line in symbols.splitlines()}
    assert declared <= exported
    assert "ai4land_set_error_message" not in exported  # internal helpers stay hidden
    dynamic = subprocess.run(["readelf", "-d", str(LIBRARY)], capture_output=True, text=True, timeout=60).stdout
    assert "Library soname: [libai4land.so.0]" in dynamic
    assert sysconfig.get_config_var("LIBDIR") in dynamic  # rpath to libpython


C_HOST = r"""
#include <stdio.h>
#include <string.h>
#include "ai4land.h"

#define EXPECT(cond) do { if (!(cond)) { printf("FAILED line %d: %s\n", __LINE__, #cond); return 1; } } while (0)

int main(int argc, char **argv)
{
    char buf[8];
    int rc, changed = -1;
    int64_t n = -1;
    if (argc > 1 && strcmp(argv[1], "start-failure") == 0) {
        EXPECT(ai4land_enddef(1) == AI4LAND_ERR_PYTHON_START);
        EXPECT(ai4land_enddef(1) == AI4LAND_ERR_PYTHON_START);
        EXPECT(ai4land_local_size(1, &n) == AI4LAND_ERR_PYTHON_START && n == 0);
        EXPECT(ai4land_finalize(1) == AI4LAND_ERR_PYTHON_START);
    } else {
        EXPECT(ai4land_error_message_length() == 0);
        EXPECT(ai4land_error_message(buf, sizeof buf) == AI4LAND_OK && buf[0] == '\0');
        rc = ai4land_enddef(99);
        EXPECT(rc == AI4LAND_ERR_ARGUMENT);
        EXPECT(ai4land_error_message_length() > 7);
        EXPECT(ai4land_error_message(buf, sizeof buf) == AI4LAND_OK && strlen(buf) == 7);
        EXPECT(ai4land_error_message(NULL, 8) == AI4LAND_ERR_ARGUMENT);
        EXPECT(ai4land_error_message(buf, 0) == AI4LAND_ERR_ARGUMENT);
        EXPECT(ai4land_init(0, "x", NULL) == AI4LAND_ERR_ARGUMENT);
        EXPECT(ai4land_step(99, 2000, 1, 1, 0, NULL) == AI4LAND_ERR_ARGUMENT);
        EXPECT(ai4land_step(99, 2000, 1, 1, 0, &changed) == AI4LAND_ERR_ARGUMENT && changed == 0);
    }
    {
        static char message[65536];
        ai4land_error_message(message, sizeof message);
        printf("last error: %s\nC host OK\n", message);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_host(tmp_path_factory):
    if not LIBRARY.exists():
        pytest.skip(f"no libai4land in {BUILD}; run: {BUILD_HINT}")
    folder = tmp_path_factory.mktemp("c_host")
    (folder / "c_host.c").write_text(C_HOST)
    exe = folder / "c_host"
    compile_ = subprocess.run(
        ["gcc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{REPO / 'fortran_bridge'}",
         str(folder / "c_host.c"), "-o", str(exe), f"-L{BUILD}", "-lai4land", f"-Wl,-rpath,{BUILD}"],
        capture_output=True, text=True, timeout=120)
    assert compile_.returncode == 0, compile_.stderr
    return exe


def test_c_host_gets_statuses_and_messages(c_host):
    proc = subprocess.run([str(c_host)], capture_output=True, text=True, timeout=300, env=clean_env())
    assert proc.returncode == 0 and "C host OK" in proc.stdout, output_of(proc)
    assert "ai4land_step: unknown handle 99" in proc.stdout


def test_c_host_sees_a_failed_python_start_on_every_call(c_host, tmp_path):
    fake = tmp_path / "faketorch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('fake torch: simulated broken installation')\n")
    proc = subprocess.run([str(c_host), "start-failure"], capture_output=True, text=True, timeout=300,
                          env=clean_env(PYTHONPATH=str(fake.parent)))
    assert proc.returncode == 0 and "C host OK" in proc.stdout, output_of(proc)
    assert "fake torch: simulated broken installation" in proc.stdout


# ----------------------------------------------------------------------------- Fortran mock host, fake component


def expected_days(nyears: int) -> list[int]:
    month_starts = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])
    return [365 * y + int(d) for y in range(nyears) for d in month_starts]


@needs_build
@pytest.mark.parametrize("nranks", [1, 2, 3, 4])
def test_mock_host_with_fake_component(tmp_path, nranks):
    nlat, nlon, nyears = 9, 12, 2
    shim, log = write_fake_shim(tmp_path / "shim"), tmp_path / "log"
    log.mkdir()
    plugin_nml = small_plugin_namelist(tmp_path / "ai4land_in", nlat, nlon)
    out = tmp_path / "host_out.nc"
    nml = write_host_nml(tmp_path / "host.nml", plugin_nml, out, nlat=nlat, nlon=nlon, nyears=nyears)
    proc = run_host(nranks, nml, tmp_path, PYTHONPATH=str(shim), AI4LAND_FAKE_LOG=str(log))
    assert proc.returncode == 0, output_of(proc)
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("year ")]
    assert [s.split(":")[0] for s in summaries] == ["year 2015", "year 2016"], proc.stdout
    assert "sparse/no_vegetation" in summaries[0] and "mean LAI" in summaries[0]

    g = np.arange(nlat * nlon)
    with netCDF4.Dataset(out) as ds:
        assert list(netCDF4.chartostring(ds["class_name"][:])) == CLASS_NAMES
        assert ds["landuse_fraction"].dimensions == ("year", "class", "lat", "lon")
        assert ds["time"].calendar == "noleap" and ds["time"].units == "days since 2015-01-01 00:00:00"
        np.testing.assert_allclose(ds["lat"][:], -90 + (np.arange(nlat) + 0.5) * 180 / nlat)
        np.testing.assert_allclose(ds["lon"][:], -180 + (np.arange(nlon) + 0.5) * 360 / nlon)
        lu = ds["landuse_fraction"][:]
        assert not np.ma.is_masked(lu)
        for iy, year in enumerate((2015, 2016)):
            np.testing.assert_array_equal(lu[iy].reshape(8, -1), landuse_fractions(g, year))
        days = ds["time"][:]
        assert list(days) == expected_days(nyears)
        lai = ds["lai"][:]
        for t, day in enumerate(days):
            month = int(np.searchsorted(np.cumsum([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),
                                        day % 365, side="right")) + 1
            np.testing.assert_allclose(lai[t].reshape(-1), lai_values(g, nlon, nlat, month, 1)[0], rtol=1e-6)

    owned = np.zeros((nlat, nlon), int)
    for rank in range(nranks):
        calls = json.loads((log / f"calls_rank{rank}.json").read_text())
        init, box = calls[0], calls[1]
        assert init[2:] == [nranks, "congruent"]  # the host's duplicate of COMM_WORLD, not COMM_WORLD
        _, i0, j0, ni, nj = box
        owned[j0:j0 + nj, i0:i0 + ni] += 1
        puts = [c for c in calls if c[0] == "put"]
        assert {p[1] for p in puts} == {"tas", "pr", "rsds"} and len(puts) == 3 * 12 * nyears
        assert all(p[2] == "float64" and p[3] == ni * nj and p[6] is False for p in puts)
        tas = [p for p in puts if p[1] == "tas"]
        assert all(200 < p[4] <= p[5] < 320 for p in tas)
        steps = [c[1:5] for c in calls if c[0] == "step"]
        assert steps == [[y, m, 1, 0] for y in (2015, 2016) for m in range(1, 13)]
        assert {c[2] for c in calls if c[0] == "get"} == {"float64", "float32"}
        assert (log / f"wheel_rank{rank}.nc").exists()  # the netCDF4 wheel worked inside the host
    assert (owned == 1).all()


@needs_build
def test_mock_host_daily_steps(tmp_path):
    shim = write_fake_shim(tmp_path / "shim")
    plugin_nml = small_plugin_namelist(tmp_path / "ai4land_in")
    out = tmp_path / "daily.nc"
    nml = write_host_nml(tmp_path / "host.nml", plugin_nml, out, nyears=1, step_frequency="'daily'")
    proc = run_host(2, nml, tmp_path, PYTHONPATH=str(shim))
    assert proc.returncode == 0, output_of(proc)
    assert "[365 steps" in proc.stdout
    with netCDF4.Dataset(out) as ds:
        assert list(ds["time"][:]) == expected_days(1)


# ----------------------------------------------------------------------------- error paths


@needs_build
def test_mock_host_reports_a_failed_python_start(tmp_path):
    fake = tmp_path / "faketorch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('fake torch: simulated broken installation')\n")
    plugin_nml = small_plugin_namelist(tmp_path / "ai4land_in")
    nml = write_host_nml(tmp_path / "host.nml", plugin_nml, tmp_path / "out.nc")
    proc = run_host(2, nml, tmp_path, timeout=120, PYTHONPATH=str(fake.parent))
    text = output_of(proc)
    assert proc.returncode != 0
    assert f"failed with status {errors.CODE['AI4LAND_ERR_PYTHON_START']}" in text, text
    assert "fake torch: simulated broken installation" in text


@needs_build
def test_mock_host_reports_a_missing_interpreter(tmp_path):
    plugin_nml = small_plugin_namelist(tmp_path / "ai4land_in")
    nml = write_host_nml(tmp_path / "host.nml", plugin_nml, tmp_path / "out.nc")
    proc = run_host(1, nml, tmp_path, timeout=120, AI4LAND_PYTHON=str(tmp_path / "no" / "python"))
    text = output_of(proc)
    assert proc.returncode != 0 and "failed with status 1" in text and "AI4LAND_PYTHON" in text, text


@needs_build
@needs_component
def test_mock_host_reports_an_unknown_namelist_key(tmp_path):
    plugin_nml = small_plugin_namelist(tmp_path / "ai4land_in", no_such_key=3)
    nml = write_host_nml(tmp_path / "host.nml", plugin_nml, tmp_path / "out.nc")
    proc = run_host(1, nml, tmp_path, timeout=300)
    text = output_of(proc)
    assert proc.returncode != 0
    assert f"failed with status {errors.CODE['AI4LAND_ERR_NAMELIST']}" in text, text
    assert "no_such_key" in text and str(plugin_nml) in text


@needs_build
def test_mock_host_rejects_its_own_bad_input(tmp_path):
    proc = run_mpi(1, [str(MOCK_HOST)], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "usage" in output_of(proc)
    bad = tmp_path / "bad.nml"
    bad.write_text("&mock_host_nml\n  nlat = 9\n  bogus = 1\n/\n")
    proc = run_mpi(1, [str(MOCK_HOST), str(bad)], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "bad &mock_host_nml" in output_of(proc)


# ----------------------------------------------------------------------------- downstream find_package


@needs_build
def test_downstream_find_package_example(tmp_path):
    prefix, build = tmp_path / "prefix", tmp_path / "downstream"
    steps = [
        ["cmake", "--install", str(BUILD), "--prefix", str(prefix)],
        ["cmake", "-S", str(REPO / "examples" / "downstream_cmake"), "-B", str(build),
         f"-DCMAKE_PREFIX_PATH={prefix}"],
        ["cmake", "--build", str(build)],
    ]
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, " ".join(argv) + "\n" + output_of(proc)
    exe = build / "downstream_host"
    assert str(prefix) in subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True,
                                         timeout=60).stdout

    proc = run_mpi(1, [str(exe)], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0 and "error path OK" in proc.stdout, output_of(proc)

    shim = write_fake_shim(tmp_path / "shim")
    plugin_nml = small_plugin_namelist(tmp_path / "ai4land_in", 9, 12)
    proc = run_mpi(2, [str(exe), str(plugin_nml), "9", "12"], cwd=tmp_path, timeout=300,
                   env_extra={"PYTHONPATH": str(shim)})
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.count("max |sum of fractions - 1| =   0.000000") == 2, proc.stdout


# ----------------------------------------------------------------------------- end to end, real component


def check_host_output(path: Path, nlat: int, nlon: int, nyears: int) -> tuple[np.ndarray, np.ndarray]:
    """Every host cell written, fractions in [0, 1] summing to 1 within 1e-6, LAI >= 0, no NaN."""
    with netCDF4.Dataset(path) as ds:
        lu = ds["landuse_fraction"][:]
        lai = ds["lai"][:]
    assert lu.shape == (nyears, 8, nlat, nlon) and lai.shape == (12 * nyears, nlat, nlon)
    assert not np.ma.is_masked(lu) and not np.ma.is_masked(lai)  # every host cell written
    lu, lai = np.asarray(lu), np.asarray(lai)
    assert np.isfinite(lu).all() and np.isfinite(lai).all()
    assert lu.min() >= 0.0 and lu.max() <= 1.0
    np.testing.assert_allclose(lu.sum(axis=1), 1.0, atol=1e-6)
    assert lai.min() >= 0.0 and lai.max() > 1.0
    return lu, lai


@pytest.mark.slow
@needs_build
@needs_component
def test_mock_host_end_to_end(tmp_path, world_dir):
    """The Fortran host under mpirun -n 1, 2, 4 with the real plugin: valid fields, the same bits on
    every layout, and the same fields as the Python mock host."""
    nlat, nlon, nyears = 90, 180, 1
    plugin_nml = write_namelist(tmp_path / "ai4land_in", world_dir, host_nlat=nlat, host_nlon=nlon)
    results = {}
    for nranks in (1, 2, 4):
        out = tmp_path / f"out_{nranks}.nc"
        nml = write_host_nml(tmp_path / f"host_{nranks}.nml", plugin_nml, out, nlat=nlat, nlon=nlon,
                             start_year=2031, nyears=nyears)
        proc = run_host(nranks, nml, tmp_path, timeout=600)
        assert proc.returncode == 0, output_of(proc)
        assert sum(line.startswith("year ") for line in proc.stdout.splitlines()) == nyears, proc.stdout
        results[nranks] = check_host_output(out, nlat, nlon, nyears)
    for nranks in (2, 4):
        np.testing.assert_array_equal(results[nranks][0], results[1][0])
        np.testing.assert_array_equal(results[nranks][1], results[1][1])

    out = tmp_path / "python_host.nc"
    nml = write_host_nml(tmp_path / "python_host.nml", plugin_nml, out, nlat=nlat, nlon=nlon,
                         start_year=2031, nyears=nyears)
    proc = run_mpi(2, [sys.executable, "-m", "ai4land_coupler.cli", "mock-host", str(nml)], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, output_of(proc)
    lu, lai = check_host_output(out, nlat, nlon, nyears)
    np.testing.assert_array_equal(lu, results[1][0])  # land use does not see the host's climate
    np.testing.assert_allclose(lai, results[1][1], rtol=1e-4, atol=1e-5)  # host climate: libm vs numpy


@pytest.mark.slow
@needs_build
@needs_component
def test_a_host_linking_the_system_netcdf_runs_while_the_plugin_reads_and_writes_netcdf(tmp_path, world_dir):
    """The case that segfaulted: the host links Debian's netCDF/HDF5 and writes its own file while
    the embedded plugin reads its inputs and writes its history and restart with the netCDF4 wheel."""
    linked = subprocess.run(["ldd", str(MOCK_HOST)], capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"libnetcdf\.so\.\S+ => (/usr)?/lib/\S+", linked), linked  # Debian's, not the wheel's
    history = tmp_path / "history"
    plugin_nml = write_namelist(tmp_path / "ai4land_in", world_dir, host_nlat=45, host_nlon=90,
                                output_dir=f"'{history}'")
    nml = write_host_nml(tmp_path / "host.nml", plugin_nml, tmp_path / "host.nc", nlat=45, nlon=90, start_year=2031,
                         nyears=1, write_restart=f"'{tmp_path / 'restart.nc'}'")
    proc = run_host(2, nml, tmp_path, timeout=600)
    assert proc.returncode == 0, output_of(proc)
    check_host_output(tmp_path / "host.nc", 45, 90, 1)
    with netCDF4.Dataset(history / "ai4land_fine_history.nc") as ds:
        assert ds["lulc"].shape == (1, 180, 360) and ds["lai"].shape == (12, 180, 360)
    with netCDF4.Dataset(tmp_path / "restart.nc") as ds:
        assert ds.current_date == "2031-12-01T00:00:00"


@pytest.mark.slow
@needs_build
@needs_component
def test_fortran_host_restart_on_other_ranks_equals_the_continuous_run(tmp_path, world_dir):
    """ERS and ERP from Fortran: 2 years on 2 ranks = 1 year on 3 ranks, ai4land_write_restart, then
    ai4land_read_restart and 1 year on 2 ranks; bit for bit."""
    nlat, nlon = 45, 90
    plugin_nml = write_namelist(tmp_path / "ai4land_in", world_dir, host_nlat=nlat, host_nlon=nlon)
    restart = tmp_path / "restart.nc"
    runs = {"continuous": (2, dict(start_year=2031, nyears=2)),
            "first": (3, dict(start_year=2031, nyears=1, write_restart=f"'{restart}'")),
            "second": (2, dict(start_year=2032, nyears=1, read_restart=f"'{restart}'"))}
    fields = {}
    for name, (nranks, options) in runs.items():
        out = tmp_path / f"{name}.nc"
        nml = write_host_nml(tmp_path / f"{name}.nml", plugin_nml, out, nlat=nlat, nlon=nlon, **options)
        proc = run_host(nranks, nml, tmp_path, timeout=600)
        assert proc.returncode == 0, output_of(proc)
        fields[name] = check_host_output(out, nlat, nlon, options["nyears"])
        if name == "first":
            assert restart.is_file() and not list(tmp_path.glob(".restart.nc.tmp*"))
    (lu, lai), (lu1, lai1), (lu2, lai2) = fields["continuous"], fields["first"], fields["second"]
    np.testing.assert_array_equal(lu1, lu[:1])
    np.testing.assert_array_equal(lai1, lai[:12])
    np.testing.assert_array_equal(lu2, lu[1:])
    np.testing.assert_array_equal(lai2, lai[12:])

    wrong = write_host_nml(tmp_path / "wrong.nml", write_namelist(tmp_path / "ai4land_360", world_dir, host_nlat=nlat,
                                                                  host_nlon=nlon, calendar="'360_day'"),
                           tmp_path / "wrong.nc", nlat=nlat, nlon=nlon, start_year=2032, nyears=1,
                           read_restart=f"'{restart}'")
    proc = run_host(2, wrong, tmp_path)
    assert proc.returncode != 0 and "calendar = 'noleap', this run has '360_day'" in output_of(proc)


@pytest.mark.slow
@needs_build
@needs_component
def test_unstructured_fortran_host_with_a_weights_file_end_to_end(tmp_path, world_dir):
    """An ICON-like Fortran host: the cells of an ESMF weights file (a Voronoi mesh), dealt round-robin
    over 1, 2 and 3 ranks as points. Same bits on every layout, and the same as the Python component."""
    from ai4land_coupler.datasets import WorldData
    from ai4land_coupler.hostmap import write_weights_file
    from ai4land_coupler.partition import Points
    from conftest import run_lifecycle, unstructured_mesh

    with WorldData.open(world_dir) as world:
        owner, ncells = unstructured_mesh(world.fine_grid, 1500, seed=4)
        weights = write_weights_file(tmp_path / "mesh.nc", world.fine_grid, owner, ncells)
    plugin_nml = write_namelist(tmp_path / "ai4land_in", world_dir, host_weights_file=f"'{weights}'")
    results = {}
    for nranks in (1, 2, 3):
        out = tmp_path / f"points_{nranks}.nc"
        nml = tmp_path / f"points_{nranks}.nml"
        nml.write_text(f"&points_host_nml\n  weights_file = '{weights}'\n  start_year = 2031\n  nyears = 1\n"
                       f"  output_file = '{out}'\n  ai4land_namelist = '{plugin_nml}'\n  put_drivers = .false.\n/\n")
        proc = run_mpi(nranks, [str(BUILD / "ai4land_mock_host_points"), str(nml)], cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, output_of(proc)
        assert f"year 2031: {ncells} cells" in proc.stdout
        with netCDF4.Dataset(out) as ds:
            results[nranks] = (np.array(ds["landuse_fraction"][0]).T, np.array(ds["lai"][:]).T)  # (cell, ...)
    lu, lai = results[1]
    assert lu.shape == (ncells, 8) and lai.shape == (ncells, 12)
    np.testing.assert_allclose(lu.sum(axis=1), 1.0, atol=1e-12)
    for nranks in (2, 3):
        np.testing.assert_array_equal(results[nranks][0], lu)
        np.testing.assert_array_equal(results[nranks][1], lai)
    steps = [(2031, 1, 1, 0)]
    python = run_lifecycle(None, plugin_nml, Points(np.arange(ncells)), steps, 1, ncells)
    np.testing.assert_array_equal(python[(steps[0], "landuse_fraction")].T, lu)
    np.testing.assert_array_equal(python[(steps[0], "lai")][0], lai[:, 0])
