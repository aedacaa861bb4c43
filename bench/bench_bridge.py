"""Cost of the C/Fortran bridge seen from Fortran, and proof that put/get do not copy the arrays.

    python bench/bench_bridge.py [--ncalls 200000] [--nvalues 1000000] [--nputs N]

Runs ``build/ai4land_bench_bridge`` (bench/bridge_latency.F90, CMake target of the same name) under
``mpirun -n 1`` with the do-nothing component of bench/bridge_bench_component.py injected through a
``sitecustomize.py`` shim, as the bridge tests inject their fake. Measures, in µs per call:

* an empty call into the plugin (``ai4land_local_size``, ``ai4land_field_levels``; goal ≤ 5 µs);
* ``ai4land_put`` / ``ai4land_get`` of a real(8) array of 1 and of ``nvalues`` elements, for a host
  array passed as it is (allocatable, explicit-shape or CONTIGUOUS) and for one passed through a
  plain assumed-shape ``x(:)`` dummy; and one Fortran copy ``y = x`` of the array for comparison;
* copies: the address of each array the component was handed against the one Fortran printed for
  its own array; "0" only if both put and get saw the host's memory (goal 0);
* in Python alone, what wrapping 1e6 doubles costs (``np.frombuffer`` of a cffi buffer).

:func:`bench_bridge` returns the rows; :func:`markdown` makes the table :func:`main` prints.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import timeit
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
EXE = REPO / "build" / "ai4land_bench_bridge"
EMPTY_CALL_GOAL_US = 5.0
PREFIX = "ai4land_bench "
_PAIR = re.compile(r"(\w+)=\s*(\S+)")


# ----------------------------------------------------------------------------- parsing and checks


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_output(text: str) -> tuple[list[dict], list[dict]]:
    """(timings, probes) from the ``ai4land_bench key=value ...`` lines of the Fortran program.

    A timing has ``what`` (empty_call, put, get, fortran_copy), ``us_per_call`` and more; a probe
    (``what=probe``) has ``op``, ``host``, ``name``, ``n``, ``fortran_address``, ``first``, ``last``.
    """
    timings, probes = [], []
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        fields = {key: _value(value) for key, value in _PAIR.findall(line[len(PREFIX):])}
        if fields.get("what") == "probe":
            probes.append(fields)
        elif "us_per_call" in fields:
            timings.append(fields)
    return timings, probes


def check_probe(probe: dict, record: dict | None) -> list[str]:
    """Why the array the component was handed is not the host's own memory ([] if it is)."""
    if record is None:
        return [f"{probe['op']} '{probe['name']}': the component recorded nothing"]
    problems = []
    if record["address"] != probe["fortran_address"]:
        problems.append(f"{probe['op']} '{probe['name']}': component saw address {record['address']:#x}, "
                        f"Fortran's array is at {probe['fortran_address']:#x}")
    if record["nbytes"] != 8 * probe["n"] or record["dtype"] != "float64":
        problems.append(f"{probe['op']} '{probe['name']}': component saw {record['nbytes']} bytes of "
                        f"{record['dtype']}, Fortran has {probe['n']} real(8)")
    if record["owndata"] or not record["shares_memory_with_base"]:
        problems.append(f"{probe['op']} '{probe['name']}': the numpy array is not a view of the C buffer")
    if record["writeable"] != (probe["op"] == "get"):
        problems.append(f"{probe['op']} '{probe['name']}': writeable={record['writeable']}")
    if (record["first"], record["last"]) != (probe["first"], probe["last"]):
        problems.append(f"{probe['op']} '{probe['name']}': component has first/last {record['first']}/{record['last']}, "
                        f"Fortran {probe['first']}/{probe['last']}")
    return problems


def compare_addresses(probes: list[dict], records: list[dict]) -> dict[str, dict]:
    """Per host kind: {"copies": "0" or ">=1", "problems": [...], "probes": n}.

    "0" only if there were probes of both put and get and every one of them saw the host's own
    memory (same address, a view, the values Fortran set or read back).
    """
    by_key = {(r["op"], r["name"]): r for r in records}
    out: dict[str, dict] = {}
    for probe in probes:
        entry = out.setdefault(probe["host"], {"problems": [], "ops": set(), "probes": 0})
        entry["probes"] += 1
        entry["ops"].add(probe["op"])
        entry["problems"] += check_probe(probe, by_key.get((probe["op"], probe["name"])))
    for entry in out.values():
        if entry["ops"] != {"put", "get"}:
            entry["problems"].append(f"probes of {sorted(entry['ops'])} only; need put and get")
        entry["copies"] = "0" if not entry["problems"] else ">=1"
        del entry["ops"]
    return out


# ----------------------------------------------------------------------------- running


def write_shim(folder: Path) -> Path:
    """A folder to put on PYTHONPATH so the embedded plugin runs the bench component."""
    sys.path.insert(0, str(BENCH))
    from bridge_bench_component import SITECUSTOMIZE

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(bench=str(BENCH)))
    return folder


def run_fortran(ncalls: int, nvalues: int, nputs: int | None = None, timeout: int = 600,
                exe: Path = EXE) -> tuple[str, list[dict]]:
    """(stdout, component records) of one ``mpirun -n 1`` run of the Fortran bench."""
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not built: cmake --build build -j2 --target ai4land_bench_bridge")
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import run_mpi

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shim, log = write_shim(tmp / "shim"), tmp / "records.json"
        argv = [str(exe), str(ncalls), str(nvalues)] + ([str(nputs)] if nputs else [])
        proc = run_mpi(1, argv, cwd=tmp, timeout=timeout,
                       env_extra={"PYTHONPATH": str(shim), "AI4LAND_BENCH_LOG": str(log)})
        if proc.returncode:
            raise RuntimeError(f"{exe.name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout, json.loads(log.read_text())


def frombuffer_us(n: int = 1_000_000, number: int = 100_000) -> dict[str, float]:
    """µs to wrap n doubles at a C pointer as numpy, as the bridge does (no copy), in Python alone."""
    import cffi
    import numpy as np

    ffi = cffi.FFI()
    memory = ffi.new("double[]", n)
    ptr = ffi.cast("double *", memory)

    def wrap():
        return np.frombuffer(ffi.buffer(ptr, n * 8), dtype=np.float64)

    def wrap_read_only():  # bridge.attach's array() for a put
        view = np.frombuffer(ffi.buffer(ptr, n * 8), dtype=np.float64)
        view.flags.writeable = False
        return view

    return {name: 1e6 * min(timeit.repeat(fn, number=number, repeat=3)) / number
            for name, fn in (("frombuffer", wrap), ("frombuffer_read_only", wrap_read_only))}


def rows_from(timings: list[dict], copies: dict[str, dict], wrap: dict[str, float] | None = None) -> list[dict]:
    """Result rows: case, value, unit, goal, met (None: no goal), detail."""
    rows = []
    for t in timings:
        if t["what"] == "empty_call":
            us = t["us_per_call"]
            rows.append({"case": f"empty call {t['call']}", "value": us, "unit": "µs/call",
                         "goal": f"≤ {EMPTY_CALL_GOAL_US:g}", "met": us <= EMPTY_CALL_GOAL_US,
                         "detail": f"{t['calls']} calls after a warm-up"})
        elif t["what"] in ("put", "get"):
            rows.append({"case": f"ai4land_{t['what']} real(8) n={t['n']} ({t['host']} host array)",
                         "value": t["us_per_call"], "unit": "µs/call", "goal": None, "met": None,
                         "detail": f"{t['calls']} calls"})
        elif t["what"] == "fortran_copy":
            rows.append({"case": f"Fortran copy y = x, real(8) n={t['n']}", "value": t["us_per_call"],
                         "unit": "µs/copy", "goal": None, "met": None, "detail": "what one copy would cost"})
    for host, c in copies.items():
        problems = c["problems"]
        detail = (f"put and get saw the host array's address ({c['probes']} probes)" if not problems else
                  problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        rows.append({"case": f"copies ({host} host array)", "value": c["copies"], "unit": "per put/get",
                     "goal": "0", "met": c["copies"] == "0", "detail": detail})
    for name, us in (wrap or {}).items():
        what = "np.frombuffer of a cffi buffer" + (" + read-only flag" if name.endswith("read_only") else "")
        rows.append({"case": f"{what}, 1e6 doubles (Python only)", "value": us, "unit": "µs/call",
                     "goal": None, "met": None, "detail": "the wrapping inside every put/get"})
    return rows


def bench_bridge(ncalls: int = 200_000, nvalues: int = 1_000_000, nputs: int | None = None,
                 python_wrap: bool = True) -> list[dict]:
    """Run the Fortran bench once and return its result rows (see :func:`rows_from`)."""
    stdout, records = run_fortran(ncalls, nvalues, nputs)
    timings, probes = parse_output(stdout)
    return rows_from(timings, compare_addresses(probes, records), frombuffer_us() if python_wrap else None)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def markdown(rows: list[dict]) -> str:
    lines = ["| case | value | unit | goal | met | detail |", "| --- | ---: | --- | --- | --- | --- |"]
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['case']} | {_cell(r['value'])} | {r['unit']} | {r['goal'] or ''} | {met} | {r['detail']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ncalls", type=int, default=200_000, help="empty calls to time")
    parser.add_argument("--nvalues", type=int, default=1_000_000, help="real(8) values per put/get")
    parser.add_argument("--nputs", type=int, default=None, help="puts and gets to time (default ncalls/10)")
    args = parser.parse_args(argv)
    print(markdown(bench_bridge(args.ncalls, args.nvalues, args.nputs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
