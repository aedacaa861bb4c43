"""The ``&ai4land_nml`` namelist group: schema, reading with f90nml, validation.

Other groups in the same file are ignored, so a host can keep its own groups beside ours.
Every error names the file and the key. Input files are found at read time: a ``*_file`` key names
its file; left empty, the file is ``input_dir`` / its default name (docs/data.md describes them).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .crosswalks import CROSSWALKS
from .datasets import FILE_NAMES, REQUIRED_FILES
from .errors import NamelistError
from .grids import Region

GROUP = "ai4land_nml"
CALENDARS = ("noleap", "365_day", "360_day", "gregorian", "standard", "proleptic_gregorian")


# Namelist key → world file key (datasets.FILE_NAMES).
FILE_KEYS = {
    "static_file": "static", "bioclim_file": "bioclim", "luh2_file": "luh2_states", "lulc_file": "lulc_maps",
    "drivers_climatology_file": "drivers_climatology", "drivers_anomaly_file": "drivers_anomaly",
    "lai_file": "lai_monthly",
}


def _opt(default, help, *, choices=None, minimum=None, maximum=None, parse=None, type_name=None):
    """A key: ``parse`` turns the namelist value into the field's value (ValueError if invalid);
    ``type_name`` is its Fortran type for the reference when the Python type does not say it."""
    return field(
        default=default,
        metadata={"help": help, "choices": choices, "min": minimum, "max": maximum, "parse": parse,
                  "type_name": type_name},
    )


def _file_opt(key: str, what: str):
    """A *_file key: '' = the default name in input_dir (for an optional file: if it is there)."""
    file_key = FILE_KEYS[key]
    optional = "" if file_key in REQUIRED_FILES else ", if present"
    return _opt("", f"{what} ('' = input_dir/{FILE_NAMES[file_key]}{optional})")


@dataclass(frozen=True)
class Config:
    """Validated plugin settings; field docs double as the namelist reference."""

    do_dynamic_landuse: bool = _opt(True, "emulate a new land-use map at each new model year")
    do_dynamic_lai: bool = _opt(True, "emulate LAI at the sub-annual cadence")
    lai_cadence: str = _opt("monthly", "when LAI is updated: 'monthly' (first day of each month), "
                            "'ndays' (every lai_interval_days days from 1 January) or 'daily' (every day, "
                            "interpolated linearly in time between the emulated values of the middles of the "
                            "months around it)", choices=("monthly", "ndays", "daily"))
    lai_interval_days: int = _opt(10, "interval in days when lai_cadence = 'ndays'", minimum=1, maximum=366)
    calendar: str = _opt("noleap", "the host model's calendar", choices=CALENDARS)
    host_nlat: int = _opt(0, "latitude rows of the host's lat-lon grid over the emulator's domain (an integer "
                          "coarsening or refinement of it); not used with host_weights_file", minimum=1)
    host_nlon: int = _opt(0, "longitude columns of the host's lat-lon grid", minimum=1)
    host_weights_file: str = _opt("", "ESMF/SCRIP remapping weights (row, col, S) from the emulator grid to the "
                                  "host's cells, for unstructured or other hosts ('' = the lat-lon host grid)")
    input_dir: str = _opt("", "folder with the input files under their default names; needed when the key of a "
                          "required file is empty")
    static_file: str = _file_opt("static_file", "land_mask, elevation (m), slope (degree), soil_quality (1)")
    bioclim_file: str = _file_opt("bioclim_file", "WorldClim-style bio01, bio04, bio12, bio15")
    luh2_file: str = _file_opt("luh2_file", "LUH2 states: the 12 area fractions primf…range, yearly")
    lulc_file: str = _file_opt("lulc_file", "HILDA+-style yearly class maps: lulc or LULC_states")
    drivers_climatology_file: str = _file_opt("drivers_climatology_file", "monthly climatology of tas, pr, rsds")
    drivers_anomaly_file: str = _file_opt("drivers_anomaly_file", "monthly anomalies tas_anom, pr_anom, rsds_anom "
                                          "on the LUH2 grid")
    lai_file: str = _file_opt("lai_file", "observed monthly LAI")
    region: Region | None = _opt(None, "lat_min, lat_max, lon_min, lon_max in degrees (lon in -180..180 or 0..360; "
                                 "lon_min > lon_max crosses the dateline), snapped outward to whole LUH2 cells; "
                                 "unset = the domain of the static file", parse=Region.from_values, type_name="real(4)")
    landuse_emulator: str = _opt("landuse_unet_v1", "registry name or path of the land-use emulator")
    lai_emulator: str = _opt("lai_unet_v1", "registry name or path of the LAI emulator")
    output_dir: str = _opt("", "folder for the plugin's CF netCDF history of fine-grid maps ('' = none)")
    history_files: str = _opt("one", "'one': the fine-grid history gathered to rank 0 and written there; "
                              "'per_slab': each inference rank writes the rows it holds to a file of its own, with "
                              "no gather (grids too large for one rank), joined by `ai4land join-history`",
                              choices=("one", "per_slab"))
    device: str = _opt("auto", "'auto' (GPU when present), 'cpu' or 'cuda'", choices=("auto", "cpu", "cuda"))
    torch_threads: int = _opt(0, "torch threads per inference rank (0 = cores on the node / ranks on the node)",
                              minimum=0, maximum=1024)
    precision: str = _opt("fp32", "arithmetic of the networks: 'fp32', or 'bf16' (autocast: convolutions and matrix "
                          "products in bfloat16; faster on GPUs and on CPUs with AMX or AVX-512 BF16; the change in "
                          "the outputs is measured in docs/performance.md)", choices=("fp32", "bf16"))
    inference_ranks: int = _opt(0, "ranks that run the emulators (0 = all ranks on CPU, one per GPU)",
                                minimum=0)
    tile_size: int = _opt(128, "edge of the square inference tiles in fine cells (multiple of 8)",
                          minimum=16, maximum=4096)
    tile_overlap: float = _opt(0.5, "fraction of a tile shared with its neighbour (the step between tiles is "
                               "rounded down to a multiple of 8)", minimum=0.0, maximum=0.9)
    prefetch_landuse: bool = _opt(True, "compute next year's land use in the background while the host integrates "
                                  "this year (the same bits; the host waits less at the year boundary)")
    keep_freed_memory: bool = _opt(True, "keep freed blocks of up to 32 MB in the process heap (glibc mallopt, "
                                   "process-wide) instead of returning them to the system: the U-Net's tensors then "
                                   "reuse pages instead of faulting in fresh ones (about 1.2x on the CPU)")
    band_rows: int = _opt(0, "fine rows per band, the unit in which the fine grid is held and its tile sums are "
                          "added (a multiple of the fine cells per LUH2 cell; 0 = the tile step rounded up to one); "
                          "bands are fixed in global index space, so results do not depend on the ranks",
                          minimum=0)
    crosswalk: str = _opt("none", "extra host fields in a land scheme's tile types: 'ecland' (cvh, cvl, lai_hv, "
                          "lai_lv) or 'clm' (pct_pft); see ai4land_coupler/crosswalks.py", choices=CROSSWALKS)
    log_level: str = _opt("info", "logging level", choices=("debug", "info", "warning", "error"))

    @property
    def input_path(self) -> Path:
        return Path(self.input_dir)

    def world_files(self) -> dict[str, Path]:
        """World file key (datasets.FILE_NAMES) → path, for the files that were found."""
        return {FILE_KEYS[key]: Path(getattr(self, key)) for key in FILE_KEYS if getattr(self, key)}


SCHEMA = {f.name: f for f in fields(Config)}


def _check(path: Path, key: str, value: Any):
    spec = SCHEMA[key]
    meta = spec.metadata
    where = f"{path}: &{GROUP} key '{key}'"
    if meta["parse"]:
        try:
            return meta["parse"](value)
        except (TypeError, ValueError) as exc:
            raise NamelistError(f"{where}: {exc}") from None
    want = spec.type if isinstance(spec.type, type) else {"bool": bool, "int": int, "str": str, "float": float}[spec.type]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is str and value is None:
        value = ""
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise NamelistError(f"{where} must be {want.__name__}, got {value!r} ({type(value).__name__})")
    if meta["choices"] and value not in meta["choices"]:
        raise NamelistError(f"{where} = {value!r} is not one of {', '.join(meta['choices'])}")
    if meta["min"] is not None and value < meta["min"]:
        raise NamelistError(f"{where} = {value!r} is below the minimum {meta['min']}")
    if meta["max"] is not None and value > meta["max"]:
        raise NamelistError(f"{where} = {value!r} is above the maximum {meta['max']}")
    return value


def _resolve_files(path: Path, values: dict) -> None:
    """Each *_file key → an existing absolute path, or '' for an optional file that input_dir lacks."""
    input_dir = Path(values["input_dir"]) if values.get("input_dir") else None
    for key, file_key in FILE_KEYS.items():
        required = file_key in REQUIRED_FILES
        if values.get(key):
            p = Path(values[key]) if Path(values[key]).is_absolute() else (path.parent / values[key]).resolve()
        elif input_dir is not None:
            p = input_dir / FILE_NAMES[file_key]
            if not required and not p.is_file():
                continue
        elif required:
            raise NamelistError(f"{path}: &{GROUP} key 'input_dir' is required: key '{key}' is empty")
        else:
            continue
        if not p.is_file():
            raise NamelistError(f"{path}: &{GROUP} key '{key}': file {p} does not exist")
        values[key] = str(p)


def _check_output_dir(path: Path, folder: Path) -> None:
    """``folder`` is a folder, or can be made one: its nearest existing ancestor is a folder."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise NamelistError(f"{path}: &{GROUP} key 'output_dir': folder {folder} cannot be created: "
                            f"{existing} is a file")


def read_namelist(path: str | Path) -> Config:
    """Read and validate ``&ai4land_nml`` from ``path``; relative paths inside are relative to it."""
    import f90nml

    path = Path(path)
    if path.is_dir():
        raise NamelistError(f"namelist file {path} is a folder, not a file")
    if not path.is_file():
        raise NamelistError(f"namelist file {path} does not exist")
    if not path.read_bytes().strip():
        raise NamelistError(f"{path}: the file is empty: group &{GROUP} not found")
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
    for key in () if values.get("host_weights_file") else ("host_nlat", "host_nlon"):
        if key not in values:
            raise NamelistError(f"{path}: &{GROUP} key '{key}' is required (or give host_weights_file)")
    for key in ("input_dir", "output_dir", "host_weights_file"):
        if values.get(key):
            p = Path(values[key])
            values[key] = str(p if p.is_absolute() else (path.parent / p).resolve())
    if values.get("output_dir"):
        _check_output_dir(path, Path(values["output_dir"]))
    if values.get("input_dir") and not Path(values["input_dir"]).is_dir():
        raise NamelistError(f"{path}: &{GROUP} key 'input_dir': folder {values['input_dir']} does not exist")
    _resolve_files(path, values)
    if values.get("host_weights_file") and not Path(values["host_weights_file"]).is_file():
        raise NamelistError(f"{path}: &{GROUP} key 'host_weights_file': file {values['host_weights_file']} does not exist")
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
        t = m["type_name"] or (f.type if isinstance(f.type, str) else f.type.__name__)
        allowed = ", ".join(m["choices"]) if m["choices"] else (
            f"{'' if m['min'] is None else '≥ ' + str(m['min'])}"
            f"{'' if m['max'] is None else (', ' if m['min'] is not None else '') + '≤ ' + str(m['max'])}")
        default = "unset" if f.default is None else f"`{f.default!r}`"
        lines.append(f"| `{f.name}` | {t} | {default} | {allowed} | {m['help']} |")
    return "\n".join(lines) + "\n"
