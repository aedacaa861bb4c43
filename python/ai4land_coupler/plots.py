"""PNG maps of land use and LAI from the plugin's or the mock hosts' netCDF output."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASS_COLOURS = {
    "ocean": "#1f4e79", "urban": "#d62728", "cropland": "#f2d04b", "pasture_rangeland": "#c9a86a",
    "forest": "#1e7b34", "grass_shrubland": "#9acd5a", "sparse_vegetation": "#d9cdb8", "water": "#5fa8e8",
}


def _axes(title: str, nfig: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, nfig, figsize=(6.5 * nfig, 3.8), squeeze=False, constrained_layout=True)
    fig.suptitle(title)
    return plt, fig, axes[0]


def _dominant_map(ax, fractions: np.ndarray, classes: list[str], lon, lat, title: str):
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    dominant = np.argmax(fractions, axis=0)
    cmap = ListedColormap([CLASS_COLOURS.get(c, "#888888") for c in classes])
    ax.pcolormesh(lon, lat, dominant, cmap=cmap, vmin=-0.5, vmax=len(classes) - 0.5, shading="auto")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    return [Patch(color=CLASS_COLOURS.get(c, "#888888"), label=c.replace("_", " ")) for c in classes]


def plot_host_output(nc_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Maps from a mock host file: dominant class per year, and LAI in January and July of the last year."""
    import netCDF4

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with netCDF4.Dataset(nc_path) as ds:
        lat, lon = ds["lat"][:], ds["lon"][:]
        classes = ds["landuse_fraction"].class_names.split()
        years = [t.year for t in netCDF4.num2date(ds["year"][:], ds["year"].units, ds["year"].calendar)]
        frac = ds["landuse_fraction"][:]
        lai = ds["lai"][:]
        times = netCDF4.num2date(ds["time"][:], ds["time"].units, ds["time"].calendar)

    plt, fig, axes = _axes("Emulated land use on the host grid (dominant class)", min(3, len(years)))
    shown = years[-len(axes):]
    for ax, year in zip(axes, shown):
        handles = _dominant_map(ax, frac[years.index(year)], classes, lon, lat, f"{year}")
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8)
    path = out_dir / "landuse_dominant_class.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    change = frac[-1] - frac[0]
    plt, fig, axes = _axes(f"Change of land-use fractions {years[0]} → {years[-1]}", 3)
    for ax, name in zip(axes, ("cropland", "forest", "pasture_rangeland")):
        k = classes.index(name)
        lim = max(1e-6, float(np.abs(change[k]).max()))
        im = ax.pcolormesh(lon, lat, change[k], cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto")
        ax.set_title(name.replace("_", " "), fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8, label="Δ fraction")
    path = out_dir / "landuse_change.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    last = [n for n, t in enumerate(times) if t.year == times[-1].year]
    picks = [n for n in last if times[n].month in (1, 7)] or last[:1]
    plt, fig, axes = _axes(f"Emulated leaf area index (m² m⁻²), {times[-1].year}", len(picks))
    vmax = float(np.nanmax(lai[last])) or 1.0
    for ax, n in zip(axes, picks):
        im = ax.pcolormesh(lon, lat, lai[n], cmap="YlGn", vmin=0, vmax=vmax, shading="auto")
        ax.set_title(times[n].strftime("%Y-%m"), fontsize=10)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="LAI")
    path = out_dir / "lai_january_july.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def plot_fine_history(nc_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Map of the last emulated fine-grid land-use map from the plugin's history file."""
    import netCDF4

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(nc_path) as ds:
        lat, lon = ds["lat"][:], ds["lon"][:]
        codes = ds["lulc"].flag_values.tolist()
        classes = ds["lulc"].flag_meanings.split()
        lulc = np.asarray(ds["lulc"][-1])
        uncertainty = np.asarray(ds["landuse_uncertainty"][-1])
        t = netCDF4.num2date(ds["year_time"][-1], ds["year_time"].units, ds["year_time"].calendar)
    onehot = (lulc[None] == np.array(codes)[:, None, None]).astype(float)
    plt, fig, axes = _axes(f"Emulated land use on the emulator grid, {t.year}")
    handles = _dominant_map(axes[0], onehot, classes, lon, lat, "fine-grid classes")
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8)
    path = out_dir / "landuse_fine_grid.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)

    plt, fig, axes = _axes(f"Land-use predictive uncertainty, {t.year}")
    im = axes[0].pcolormesh(lon, lat, np.ma.masked_where(lulc == 0, uncertainty), cmap="magma_r", vmin=0, vmax=1,
                            shading="auto")
    axes[0].set_title("entropy of the class probabilities / log 7 (0 certain, 1 uniform)", fontsize=9)
    fig.colorbar(im, ax=axes[0], shrink=0.7)
    unc_path = out_dir / "landuse_uncertainty.png"
    fig.savefig(unc_path, dpi=110)
    plt.close(fig)
    return [path, unc_path]
