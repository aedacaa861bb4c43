"""The Python mock host: a stand-in climate model that drives the plugin as a Fortran host would.

Reads ``&mock_host_nml``, splits its global lat-lon grid into uneven boxes over the ranks, steps
N model years, puts an analytic climate, gets land use each new year and LAI when it changes,
gathers to rank 0, writes a CF netCDF file and prints one summary line per year. Its Fortran twin
is ``fortran_bridge/mock_host.F90``; both write the same file layout.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from .partition import Box

MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # noleap
NAME_LENGTH = 64  # class_name characters, as in mock_host.F90


@dataclass(frozen=True)
class HostSettings:
    nlat: int
    nlon: int
    start_year: int
    nyears: int
    step_frequency: str
    output_file: str
    ai4land_namelist: str
    put_drivers: bool
    read_restart: str = ""
    write_restart: str = ""
    host_seconds_per_step: float = 0.0


def read_host_namelist(path: str) -> HostSettings:
    import f90nml

    group = f90nml.read(path)["mock_host_nml"]
    s = HostSettings(
        nlat=int(group["nlat"]), nlon=int(group["nlon"]), start_year=int(group["start_year"]),
        nyears=int(group["nyears"]), step_frequency=str(group.get("step_frequency", "monthly")),
        output_file=str(group.get("output_file", "mock_host_out.nc")),
        ai4land_namelist=str(group.get("ai4land_namelist", "ai4land_in")),
        put_drivers=bool(group.get("put_drivers", True)),
        read_restart=str(group.get("read_restart", "") or ""), write_restart=str(group.get("write_restart", "") or ""),
        host_seconds_per_step=float(group.get("host_seconds_per_step", 0.0)),
    )
    if s.step_frequency not in ("monthly", "daily"):
        raise ValueError(f"{path}: step_frequency must be 'monthly' or 'daily', got {s.step_frequency!r}")
    return s


def host_work(seconds: float) -> None:
    """Stand-in for the host's own integration: compute for about ``seconds`` of wall time."""
    until = time.perf_counter() + seconds
    x = 1.0
    while time.perf_counter() < until:
        for _ in range(1000):
            x = x * 1.0000001 + 1e-9


def process_grid(size: int) -> tuple[int, int]:
    """(p_lon, p_lat) with p_lon * p_lat = size, as square as possible, more columns than rows."""
    p_lat = max(d for d in range(1, int(math.isqrt(size)) + 1) if size % d == 0)
    return size // p_lat, p_lat


def split(n: int, parts: int, index: int) -> tuple[int, int]:
    """Offset and length of block ``index`` when ``n`` is split into ``parts`` uneven blocks."""
    base, extra = divmod(n, parts)
    return index * base + min(index, extra), base + (index < extra)


def decompose(nlat: int, nlon: int, size: int, rank: int) -> Box:
    p_lon, p_lat = process_grid(size)
    i0, ni = split(nlon, p_lon, rank % p_lon)
    j0, nj = split(nlat, p_lat, rank // p_lon)
    return Box(i0, j0, ni, nj)


def host_climate(lat_deg: np.ndarray, year: int, month: int) -> dict[str, np.ndarray]:
    """The mock host's analytic monthly climate on its cells (Fortran twin: mock_host.F90, put_climate).

    Zonal structure like the synthetic world's, seasons opposite in the hemispheres, and a warming
    trend of 0.03 K per year from 2015 so that the host's climate visibly drives LAI.
    """
    doy = sum(MONTH_DAYS[: month - 1]) + MONTH_DAYS[month - 1] / 2.0
    season = -math.cos(2.0 * math.pi * (doy - 15.0) / 365.0)  # +1 in the northern summer
    phi = np.deg2rad(lat_deg)
    tas = (299.0 - 55.0 * (lat_deg / 90.0) ** 2 + 0.85 * (1.0 + 13.0 * np.abs(np.sin(phi))) * np.sign(lat_deg) * season
           + 0.03 * (year - 2015))
    a, shifted = np.abs(lat_deg), lat_deg - 7.0 * season
    pr_mm_day = np.maximum(1.0 + 6.0 * np.exp(-((shifted / 9.0) ** 2)) + 2.6 * np.exp(-(((a - 48.0) / 12.0) ** 2))
                           - 0.5 * np.exp(-(((a - 25.0) / 9.0) ** 2)), 0.1)
    decl = math.radians(23.44) * math.sin(2.0 * math.pi * (284.0 + doy + 1.0) / 365.0)
    h0 = np.arccos(np.clip(-np.tan(phi) * math.tan(decl), -1.0, 1.0))
    toa = 1361.0 / math.pi * (h0 * np.sin(phi) * math.sin(decl) + np.cos(phi) * math.cos(decl) * np.sin(h0))
    return {"tas": tas, "pr": pr_mm_day / 86400.0, "rsds": 0.6 * toa}


def run(namelist_path: str, comm) -> int:
    from .component import Component
    from .grids import LatLonGrid

    s = read_host_namelist(namelist_path)
    rank, size = comm.Get_rank(), comm.Get_size()
    box = decompose(s.nlat, s.nlon, size, rank)
    grid = LatLonGrid(s.nlat, s.nlon)
    lat_local = np.repeat(grid.lat[box.j_offset:box.j_offset + box.nj], box.ni)
    area = grid.cell_area_weights()

    plugin = Component()
    plugin.init(comm, s.ai4land_namelist)
    plugin.def_partition(box)
    plugin.enddef()
    if s.read_restart:
        plugin.read_restart(s.read_restart)
    classes = plugin.field_levels("landuse_fraction")
    fractions = np.zeros((len(classes), box.nj, box.ni))
    lai = np.zeros((box.nj, box.ni), dtype=np.float32)  # real(4) on the Fortran side too
    uncertainty = np.zeros((box.nj, box.ni))
    frac_out, lai_out, unc_out = [], [], []

    def gather(local: np.ndarray) -> np.ndarray | None:
        parts = comm.gather((box, local), root=0)
        if rank:
            return None
        full = np.zeros(local.shape[:-2] + (s.nlat, s.nlon), dtype=local.dtype)
        for b, v in parts:
            full[..., b.j_offset:b.j_offset + b.nj, b.i_offset:b.i_offset + b.ni] = v
        return full

    weight = area / area.sum()
    for year in range(s.start_year, s.start_year + s.nyears):
        t0, nsteps, first_lai, boundary = time.perf_counter(), 0, len(lai_out), 0.0
        for month in range(1, 13):
            days = range(1, MONTH_DAYS[month - 1] + 1) if s.step_frequency == "daily" else (1,)
            for day in days:
                if s.put_drivers and day == 1:
                    for name, values in host_climate(lat_local, year, month).items():
                        plugin.put(name, values)
                t_step = time.perf_counter()
                changed = plugin.step((year, month, day, 0))
                if month == 1 and day == 1:
                    boundary = time.perf_counter() - t_step
                nsteps += 1
                if "landuse_fraction" in changed:
                    plugin.get("landuse_fraction", fractions)
                    frac_out.append((year, gather(fractions)))
                if "landuse_uncertainty" in changed:
                    plugin.get("landuse_uncertainty", uncertainty)
                    unc_out.append(gather(uncertainty))
                if "lai" in changed:
                    plugin.get("lai", lai)
                    lai_out.append(((year, month, day), gather(lai)))
                host_work(s.host_seconds_per_step)
        if rank == 0:
            shares = " ".join(f"{n} {np.sum(weight * f):.4f}" for n, f in zip(classes, frac_out[-1][1]))
            records = [v for _, v in lai_out[first_lai:]]
            lai_text = (f"mean LAI {np.mean([np.sum(weight * v) for v in records]):.3f} "
                        f"(min {min(v.min() for v in records):.3f}, max {max(v.max() for v in records):.3f})"
                        if records else "no LAI this year")
            print(f"year {year}: {shares} | {lai_text} [{nsteps} steps, {time.perf_counter() - t0:.2f} s] "
                  f"year-boundary step {boundary:.3f} s", flush=True)
    if s.write_restart:
        plugin.write_restart(s.write_restart)
    plugin.finalize()

    if rank == 0:
        write_host_output(s, grid, classes, frac_out, unc_out, lai_out, size)
        print(f"wrote {s.output_file}", flush=True)
    return 0


def write_host_output(s: HostSettings, grid, classes: list[str], frac_out, unc_out, lai_out, nranks: int) -> None:
    """The host-grid CF file (layout of mock_host.F90's; conventions in docs/outputs.md). Time is in days
    since the first model year (noleap); a land-use record's bounds are its year, an LAI record's run
    from its step to the next LAI record or the end of the run: the time the host held the value."""
    import netCDF4

    from .history import CONVENTIONS, add_latlon, add_time

    days = [(yy - s.start_year) * 365 + sum(MONTH_DAYS[: mm - 1]) + dd - 1 for (yy, mm, dd), _ in lai_out]
    years = [yr for yr, _ in frac_out]
    time_units = f"days since {s.start_year:04d}-01-01 00:00:00"
    with netCDF4.Dataset(s.output_file, "w") as ds:
        ds.Conventions = CONVENTIONS
        ds.title = "ai4land Python mock host output"
        ds.source = "ai4land_coupler.mockhost"
        ds.mpi_ranks = nranks
        ds.step_frequency = s.step_frequency
        add_latlon(ds, grid)
        y = add_time(ds, "year", time_units, "noleap", size=len(years))
        y.long_name = "model year of the land-use state"
        y[:] = [365 * (yr - s.start_year) for yr in years]
        ds["year_bnds"][:] = [[365 * (yr - s.start_year), 365 * (yr + 1 - s.start_year)] for yr in years]
        t = add_time(ds, "time", time_units, "noleap", size=len(days))
        t.long_name = "step at which the host received the LAI"
        t[:] = days
        ds["time_bnds"][:] = np.column_stack([days, days[1:] + [365 * s.nyears]])
        ds.createDimension("class", len(classes))
        ds.createDimension("name_strlen", NAME_LENGTH)
        c = ds.createVariable("class", "i4", ("class",))
        c.long_name = "land-use class index (1-based level)"
        c[:] = np.arange(1, len(classes) + 1)
        names = ds.createVariable("class_name", "S1", ("class", "name_strlen"))
        names.long_name = "land-use class name"
        names[:] = netCDF4.stringtochar(np.array(classes, dtype=f"S{NAME_LENGTH}"))
        f = ds.createVariable("landuse_fraction", "f8", ("year", "class", "lat", "lon"))
        f.standard_name, f.units, f.long_name = "area_fraction", "1", "land-use class fraction of the host cell"
        f.cell_methods, f.coordinates, f.class_names = "area: mean year: mean", "class_name", " ".join(classes)
        f[:] = np.stack([v for _, v in frac_out])
        u = ds.createVariable("landuse_uncertainty", "f8", ("year", "lat", "lon"))
        u.long_name = "land-use predictive uncertainty: class-probability entropy / log(7), mean over the land"
        u.units, u.cell_methods = "1", "area: mean where land year: mean"
        u[:] = np.stack(unc_out)
        lai = ds.createVariable("lai", "f4", ("time", "lat", "lon"))
        lai.standard_name, lai.units, lai.long_name = "leaf_area_index", "1", "leaf area index (m2 m-2)"
        lai.cell_methods = "area: mean time: mean"
        lai[:] = np.stack([v for _, v in lai_out])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ai4land mock-host", description=__doc__.splitlines()[0])
    parser.add_argument("namelist", help="file with &mock_host_nml (and usually &ai4land_nml)")
    args = parser.parse_args(argv)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        return run(args.namelist, comm)
    except Exception as exc:
        from .errors import Ai4LandError

        status = exc.status if isinstance(exc, Ai4LandError) else 99
        print(f"[mock host r{comm.Get_rank()}] ai4land error {status}: {exc}", file=sys.stderr, flush=True)
        comm.Abort(status)
        return status


if __name__ == "__main__":
    sys.exit(main())
