"""The ``&ai4land_nml`` namelist group: schema, reading with f90nml, validation.

Other groups in the same file are ignored, so a host can keep its own groups beside ours.
Every error names the file and the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import NamelistError

GROUP = "ai4land_nml"
CALENDARS = ("noleap", "365_day", "360_day", "gregorian", "standard", "proleptic_gregorian")


def _opt(default, help, *, choices=None, minimum=None, maximum=None):
    return field(
        default=default,
        metadata={"help": help, "choices": choices, "min": minimum, "max": maximum},
    )


@dataclass(frozen=True)
class Config:
    """Validated plugin settings; field docs double as the namelist reference."""

    do_dynamic_landuse: bool = _opt(True, "emulate a new land-use map at each new model year")
    do_dynamic_lai: bool = _opt(True, "emulate LAI at the sub-annual cadence")
    lai_cadence: str = _opt("monthly", "when LAI is updated: 'monthly' (first day of each month) or "
                            "'ndays' (every lai_interval_days days from 1 January)",
                            choices=("monthly", "ndays"))
    lai_interval_days: int = _opt(10, "interval in days when lai_cadence = 'ndays'", minimum=1, maximum=366)
    calendar: str = _opt("noleap", "the host model's calendar", choices=CALENDARS)
    host_nlat: int = _opt(0, "latitude rows of the host's global lat-lon grid", minimum=1)
    host_nlon: int = _opt(0, "longitude columns of the host's global lat-lon grid", minimum=1)
    input_dir: str = _opt("", "folder with the input files: luh2_states.nc, static.nc, lulc_maps.nc, "
                          "drivers_climatology.nc, drivers_anomaly.nc")
    landuse_emulator: str = _opt("landuse_unet_v1", "registry name or path of the land-use emulator")
    lai_emulator: str = _opt("lai_unet_v1", "registry name or path of the LAI emulator")
    output_dir: str = _opt("", "folder for the plugin's CF netCDF history of fine-grid maps ('' = none)")
    device: str = _opt("auto", "'auto' (GPU when present), 'cpu' or 'cuda'", choices=("auto", "cpu", "cuda"))
    torch_threads: int = _opt(0, "torch threads per inference rank (0 = cores on the node / ranks on the node)",
                              minimum=0, maximum=1024)
    inference_ranks: int = _opt(0, "ranks that run the emulators (0 = all ranks on CPU, one per GPU)",
                                minimum=0)
    tile_size: int = _opt(64, "edge of the square inference tiles in fine cells (multiple of 8)",
                          minimum=16, maximum=4096)
    tile_overlap: float = _opt(0.5, "fraction of a tile shared with its neighbour", minimum=0.0, maximum=0.9)
    log_level: str = _opt("info", "logging level", choices=("debug", "info", "warning", "error"))

    @property
    def input_path(self) -> Path:
        return Path(self.input_dir)


SCHEMA = {f.name: f for f in fields(Config)}


def _check(path: Path, key: str, value: Any):
    spec = SCHEMA[key]
    want = spec.type if isinstance(spec.type, type) else {"bool": bool, "int": int, "str": str, "float": float}[spec.type]
    where = f"{path}: &{GROUP} key '{key}'"
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is str and value is None:
        value = ""
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise NamelistError(f"{where} must be {want.__name__}, got {value!r} ({type(value).__name__})")
    meta = spec.metadata
    if meta["choices"] and value not in meta["choices"]:
        raise NamelistError(f"{where} = {value!r} is not one of {', '.join(meta['choices'])}")
    if meta["min"] is not None and value < meta["min"]:
        raise NamelistError(f"{where} = {value!r} is below the minimum {meta['min']}")
    if meta["max"] is not None and value > meta["max"]:
        raise NamelistError(f"{where} = {value!r} is above the maximum {meta['max']}")
    return value


def read_namelist(path: str | Path) -> Config:
    """Read and validate ``&ai4land_nml`` from ``path``; relative paths inside are relative to it."""
    import f90nml

    path = Path(path)
    if not path.is_file():
        raise NamelistError(f"namelist file {path} does not exist")
    try:
        nml = f90nml.read(str(path))
    except Exception as exc:  # f90nml raises many types on malformed input
        raise NamelistError(f"{path}: cannot parse as a Fortran namelist: {exc}") from exc
    if GROUP not in nml:
        found = ", ".join(f"&{g}" for g in nml.keys()) or "no groups"
        raise NamelistError(f"{path}: group &{GROUP} not found (found {found})")
    group = nml[GROUP]
    values = {}
    for key, value in group.items():
        if key not in SCHEMA:
            raise NamelistError(f"{path}: &{GROUP} has unknown key '{key}'; known keys: {', '.join(SCHEMA)}")
        values[key] = _check(path, key, value)
    for key in ("host_nlat", "host_nlon", "input_dir"):
        if key not in values:
            raise NamelistError(f"{path}: &{GROUP} key '{key}' is required")
    for key in ("input_dir", "output_dir"):
        if values.get(key):
            p = Path(values[key])
            values[key] = str(p if p.is_absolute() else (path.parent / p).resolve())
    if not Path(values["input_dir"]).is_dir():
        raise NamelistError(f"{path}: &{GROUP} key 'input_dir': folder {values['input_dir']} does not exist")
    for key in ("landuse_emulator", "lai_emulator"):
        v = values.get(key)
        if v and ("/" in v or v.endswith(".safetensors")):
            p = Path(v) if Path(v).is_absolute() else (path.parent / v).resolve()
            if not p.exists():
                raise NamelistError(f"{path}: &{GROUP} key '{key}': file {p} does not exist")
            values[key] = str(p)
    config = Config(**values)
    if config.tile_size % 8:
        raise NamelistError(f"{path}: &{GROUP} key 'tile_size' = {config.tile_size} must be a multiple of 8")
    return config


def render_reference() -> str:
    """Markdown table of every key: the namelist reference in docs/namelist.md."""
    lines = ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
    for f in fields(Config):
        m = f.metadata
        t = f.type if isinstance(f.type, str) else f.type.__name__
        allowed = ", ".join(m["choices"]) if m["choices"] else (
            f"{'' if m['min'] is None else '≥ ' + str(m['min'])}"
            f"{'' if m['max'] is None else (', ' if m['min'] is not None else '') + '≤ ' + str(m['max'])}")
        lines.append(f"| `{f.name}` | {t} | `{f.default!r}` | {allowed} | {m['help']} |")
    return "\n".join(lines) + "\n"
