"""Build a Python module over the Fortran layer with f90wrap, so pytest can call it routine by routine.

    python fortran_bridge/build_f90wrap.py [--build-dir build] [--out build/f90wrap] [--force]

Needs the CMake build (``build/libai4land_fortran.so``, ``build/modules/ai4land.mod``), f90wrap and
f2py-f90wrap (pyproject's ``test`` extra, with meson and ninja), and MPI Fortran + netCDF-Fortran
(``mpif90``, ``nf-config``), as the mock hosts do. It wraps

* module ``ai4land`` (``ai4land.F90``): used through the ``.mod`` of the CMake build and linked
  against ``libai4land_fortran``/``libai4land`` there, so the tests call the library the hosts use;
* module ``mock_host_support``: the routines in ``SUPPORT_ROUTINES``, compiled here (``-fPIC``);
* module ``ai4land_wrap_adapters`` (``ai4land_wrap_adapters.F90``): fixed-rank adapters for what
  f2py cannot pass (assumed-rank put/get, the deferred-length error message, arrays of ``box_t``).

The kind map (``KIND_MAP``) makes ``real(c_double)``/``real(8)``/``real(dp)`` float64, ``c_float``
float32, ``c_int`` int32 and ``c_int64_t`` int64; without it f90wrap silently makes ``real(dp)``
4 bytes. Output: ``<out>/ai4land_f90wrap.py`` and ``<out>/_ai4land_f90wrap*.so`` (RUNPATH to the
CMake build). A stamp of every input makes a rebuild with unchanged inputs a no-op; a file lock
serialises concurrent builds. ``build()`` raises :class:`Unavailable` (tests skip) when a tool or
the CMake build is missing, and :class:`BuildError` (tests fail) when a step fails.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODULE = "ai4land_f90wrap"

# f2py_f2cmap format: Fortran kind -> C type. Every kind spelling the wrapped sources use.
KIND_MAP = {
    "real": {"c_double": "double", "real64": "double", "dp": "double", "8": "double",
             "c_float": "float", "real32": "float", "4": "float"},
    "integer": {"c_int": "int", "4": "int", "c_int64_t": "long_long", "int64": "long_long", "8": "long_long"},
    "character": {"c_char": "char"},
}

AI4LAND_ROUTINES = [
    "ai4land_component", "ai4land_init", "ai4land_def_partition_box", "def_partition_points_i4",
    "def_partition_points_i8", "ai4land_enddef", "local_size_i4", "local_size_i8", "ai4land_field_levels",
    "ai4land_level_name", "ai4land_step", "ai4land_finalize",
]
SUPPORT_ROUTINES = [
    "box_t", "split", "box_of_rank", "open_argument_file", "fail", "check_plugin", "check_nc", "day_of_year",
    "put_climate",
]
ADAPTER_ROUTINES = [
    "error_message", "level_name_in", "put_real8_1d", "put_real8_2d", "put_real4_1d", "get_real8_1d",
    "get_real8_2d", "get_real8_3d", "get_real4_2d", "gather_boxes_of", "unit_first_line",
]

# Modules whose module-level parameters are wrapped too (the status codes).
KEEP_MODULE_DATA = {"ai4land"}

SOURCES = {
    "ai4land": HERE / "ai4land.F90",
    "mock_host_support": HERE / "mock_host_support.F90",
    "ai4land_wrap_adapters": HERE / "ai4land_wrap_adapters.F90",
}


class Unavailable(RuntimeError):
    """A prerequisite (a tool, the CMake build) is missing: the f90wrap tests cannot run here."""


class BuildError(RuntimeError):
    """A build step failed: a real error in the sources or the wrapping."""


def _tool(name: str) -> str:
    """A console script of this interpreter's environment first, then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise Unavailable(f"'{name}' not found (install the test extra: pip install -e '.[test]')")
    return found


def _output(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def _link_flags(flags: str) -> tuple[list[str], list[str]]:
    """(-L/-l arguments that f2py understands, the library directories for the RUNPATH)."""
    args, dirs = [], []
    for token in shlex.split(flags):
        if token.startswith("-L"):
            args.append(token)
            dirs.append(token[2:])
        elif token.startswith("-l") and re.fullmatch(r"\w+", token[2:]):
            # f2py's meson backend names a dependency after each library: only identifiers work
            # (Open MPI's -lopen-rte/-lopen-pal are libmpi's own dependencies, not needed here).
            if token not in args:
                args.append(token)
        elif token.startswith("-Wl,-rpath,"):
            dirs.extend(token[len("-Wl,-rpath,"):].split(","))
    return args, dirs


def _mpi_and_netcdf() -> dict:
    mpif90 = shutil.which("mpif90")
    nf_config = shutil.which("nf-config")
    if mpif90 is None or nf_config is None:
        raise Unavailable("mpif90 and nf-config are needed to compile mock_host_support (MPI + netCDF-Fortran)")
    try:
        mpi_link = _output([mpif90, "--showme:link"])  # Open MPI
    except (subprocess.CalledProcessError, OSError):
        mpi_link = _output([mpif90, "-link_info"]).split(None, 1)[-1]  # MPICH: "<compiler> <flags>"
    nf_include = _output([nf_config, "--includedir"])
    nf_libs = _output([nf_config, "--flibs"])
    return {"mpif90": mpif90, "mpi_link": mpi_link, "nf_include": nf_include, "nf_libs": nf_libs}


def _digest(paths: list[Path], extra: dict) -> str:
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _run(argv: list[str], cwd: Path, log: Path, env: dict | None = None) -> None:
    with log.open("a") as out:
        out.write("$ " + shlex.join(argv) + "\n")
        out.flush()
        proc = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=600)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise BuildError(f"{argv[0]} failed (exit {proc.returncode}); log {log}:\n{tail}")


DATA_DECLARATION = re.compile(r"\s*(integer|real|character|logical|complex|double\s+precision|type\s*\(|class\s*\()",
                              re.IGNORECASE)
BLOCK_START = re.compile(r"\s*(type\s*(,|::|\s+[a-z_])|(abstract\s+)?interface\b)", re.IGNORECASE)
BLOCK_END = re.compile(r"\s*end\s*(type|interface)\b", re.IGNORECASE)


def parse_copy(name: str, folder: Path) -> Path:
    """The copy of a source that f90wrap parses (what is compiled is the original): `include`
    lines inlined and, for a module not in KEEP_MODULE_DATA, its module-level variables and
    parameters left out, because f90wrap wraps all of them whatever --only says and f2py cannot
    take some (e.g. character(len=*) parameters). Type and interface blocks are kept whole."""
    lines: list[str] = []
    in_spec, in_block, dropping = name not in KEEP_MODULE_DATA, False, False
    for line in SOURCES[name].read_text().splitlines(keepends=True):
        stripped = line.strip()
        if stripped.lower().startswith("include ") and stripped[8:].strip()[:1] in "'\"":
            lines.append((SOURCES[name].parent / stripped[8:].strip().strip("'\"")).read_text())
            continue
        if in_spec:
            if dropping:  # a continuation line of a dropped declaration
                dropping = stripped.endswith("&")
                continue
            if stripped.lower() == "contains":
                in_spec = False
            elif BLOCK_END.match(line):
                in_block = False
            elif BLOCK_START.match(line) and not stripped.lower().startswith("type("):
                in_block = True
            elif not in_block and DATA_DECLARATION.match(line):
                dropping = stripped.endswith("&")
                continue
        lines.append(line)
    out = folder / f"{name}.f90"
    out.write_text("".join(lines))
    return out


def build(build_dir: Path = REPO / "build", out: Path | None = None, force: bool = False) -> Path:
    """Build (or reuse) the f90wrap module; returns the folder to put on ``sys.path``."""
    build_dir = Path(build_dir).resolve()
    out = Path(out).resolve() if out else build_dir / "f90wrap"
    library = build_dir / "libai4land_fortran.so"
    modules = build_dir / "modules"
    if not library.exists() or not (modules / "ai4land.mod").exists():
        raise Unavailable(f"no CMake build of libai4land_fortran in {build_dir}: run "
                          "cmake -S . -B build -DPython3_EXECUTABLE=$PWD/.venv/bin/python && cmake --build build -j2")
    f90wrap, f2py = _tool("f90wrap"), _tool("f2py-f90wrap")
    for name in ("meson", "ninja"):
        _tool(name)
    deps = _mpi_and_netcdf()
    from importlib.metadata import version

    import numpy

    stamp_value = _digest(
        [*SOURCES.values(), HERE / "ai4land_status.inc", Path(__file__).resolve(), modules / "ai4land.mod"],
        {"kind_map": KIND_MAP, "routines": [AI4LAND_ROUTINES, SUPPORT_ROUTINES, ADAPTER_ROUTINES],
         "numpy": numpy.__version__, "f90wrap": version("f90wrap"), "python": sys.version, "deps": deps,
         "build_dir": str(build_dir)})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = out / "stamp"
        if not force and stamp.exists() and stamp.read_text() == stamp_value and list(out.glob(f"_{MODULE}*.so")):
            return out
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            _build_in(work, build_dir, modules, f90wrap, f2py, deps)
            (work / "stamp").write_text(stamp_value)
            if out.exists():
                shutil.rmtree(out)
            work.rename(out)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return out


def _build_in(work: Path, build_dir: Path, modules: Path, f90wrap: str, f2py: str, deps: dict) -> None:
    log = work / "build.log"
    src = work / "src"
    src.mkdir()
    (work / "kind_map").write_text(repr(KIND_MAP) + "\n")

    # 1. Objects of the modules not in a library, position independent, their .mod in `work`.
    fflags = ["-fPIC", "-O1", "-g", f"-I{modules}", f"-I{deps['nf_include']}", f"-J{work}", f"-I{work}"]
    objects = []
    for name in ("mock_host_support", "ai4land_wrap_adapters"):
        obj = work / f"{name}.o"
        _run([deps["mpif90"], *fflags, "-c", str(SOURCES[name]), "-o", str(obj)], work, log)
        objects.append(str(obj))

    # 2. Fortran wrappers + Python classes from the parsed sources.
    parsed = [str(parse_copy(name, src).relative_to(work)) for name in SOURCES]  # docstrings: src/<name>.f90
    _run([f90wrap, "-m", MODULE, "-k", str(work / "kind_map"), "--only",
          *AI4LAND_ROUTINES, *SUPPORT_ROUTINES, *ADAPTER_ROUTINES, "--", *parsed], work, log)
    wrappers = sorted(str(p) for p in work.glob("f90wrap_*.f90"))
    if not wrappers or not (work / f"{MODULE}.py").exists():
        raise BuildError(f"f90wrap wrote no wrappers; log {log}")

    # 3. The extension (f2py, meson backend): wrappers + objects, linked to the CMake build.
    mpi_args, mpi_dirs = _link_flags(deps["mpi_link"])
    nf_args, nf_dirs = _link_flags(deps["nf_libs"])
    runpath = ":".join(dict.fromkeys([str(build_dir), *mpi_dirs, *nf_dirs]))
    env = {**os.environ, "LDFLAGS": f"{os.environ.get('LDFLAGS', '')} -Wl,-rpath,{runpath}".strip()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # meson, ninja
    _run([f2py, "-c", "-m", f"_{MODULE}", f"-I{work}", f"-I{modules}", *wrappers, *objects,
          f"-L{build_dir}", "-lai4land_fortran", "-lai4land", *mpi_args, *nf_args], work, log, env=env)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    if not (work / f"_{MODULE}{suffix}").exists():
        raise BuildError(f"f2py built no _{MODULE}{suffix}; log {log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=str(REPO / "build"), help="the CMake build folder")
    parser.add_argument("--out", default=None, help="output folder (default: <build-dir>/f90wrap)")
    parser.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    args = parser.parse_args(argv)
    try:
        print(build(Path(args.build_dir), Path(args.out) if args.out else None, force=args.force))
    except (Unavailable, BuildError) as exc:
        print(f"build_f90wrap: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, Unavailable) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
