"""``ai4land`` command line: make-data, train, evaluate, emulators, mock-host, plot, check-namelist, codegen."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _make_data(args) -> int:
    from .datasets import WorldData
    from .world import make_world

    paths = make_world(args.out, seed=args.seed, first_year=args.first_year, last_year=args.last_year,
                       fine_res=args.fine_res, coarse_res=args.coarse_res, region=args.region, progress=True)
    for name, path in paths.items():
        print(f"{name:>22}: {path}")
    with WorldData.open(args.out) as world:  # reads the files back, and says which box they cover
        print(f"{'region':>22}: {world.region} (lat_min,lat_max,lon_min,lon_max)")
    return 0


def _train(args) -> int:
    from .evaluation import markdown_tables
    from .training import main_train

    given = {"steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size, "widths": args.widths, "tile": args.tile}
    metrics = main_train(args.world, args.out, args.kind, epochs=args.epochs, seed=args.seed, threads=args.threads,
                         device=args.device, **{k: v for k, v in given.items() if v is not None})
    for kind, splits in (metrics or {}).items():  # None on ranks other than 0
        print(f"## {kind}: held-out skill\n\n{markdown_tables(kind, splits)}")
    return 0


def _region(text: str):
    """A :class:`~ai4land_coupler.grids.Region` from 'lat_min,lat_max,lon_min,lon_max' (argparse type)."""
    from .grids import Region

    try:
        return Region.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _emulators(args) -> int:
    """The shipped emulators: name, kind, inputs and held-out skill, from their metadata."""
    from .emulators.registry import describe_shipped

    for row in describe_shipped():
        film = f", FiLM on {', '.join(row['film'])}" if row["film"] else ""
        print(f"{row['name']} ({row['kind']}): {row['channels']} input channels{film}, "
              f"{row['resolution_deg']} degree grid, software {row['software_version']}")
        for split, result in row["metrics"].items():
            model = result["methods"]["model"]
            skill = (f"accuracy {model['accuracy']:.4f}, mIoU {model['miou']:.4f}" if "miou" in model
                     else f"RMSE {model['rmse']:.3f}, R2 {model['r2']:.3f}")
            print(f"    {result['description']}: {skill}")
    print("Choose one in &ai4land_nml with landuse_emulator / lai_emulator = '<name>' or a path to a checkpoint.")
    return 0


def _evaluate(args) -> int:
    from .errors import Ai4LandError
    from .evaluation import evaluate_checkpoint, markdown_report
    from .training import resolve_device

    try:
        report = evaluate_checkpoint(args.kind, args.emulator, args.world, years=args.years, region=args.region,
                                     device=resolve_device(args.device))
    except (Ai4LandError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = markdown_report(report)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


def _mock_host(args) -> int:
    from .mockhost import main

    return main([args.namelist])


def _plot(args) -> int:
    from .plots import plot_fine_history, plot_host_output

    written = []
    for path in args.files:
        import netCDF4

        with netCDF4.Dataset(path) as ds:
            fine = "lulc" in ds.variables
        written += (plot_fine_history if fine else plot_host_output)(path, args.out)
    for p in written:
        print(p)
    return 0


def _join_history(args) -> int:
    from .history import join_history

    try:
        print(join_history(args.output_dir))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _check_namelist(args) -> int:
    from .errors import Ai4LandError
    from .namelist import read_namelist

    try:
        config = read_namelist(args.namelist)
    except Ai4LandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, value in vars(config).items():
        print(f"{key:>20} = {value!r}")
    return 0


def _codegen(args) -> int:
    """Regenerate the files derived from Python tables (status codes, namelist reference)."""
    from .errors import render_c_header, render_fortran_include, render_markdown_table
    from .namelist import render_reference

    root = Path(args.root)
    outputs = {
        root / "fortran_bridge" / "ai4land_status.h": render_c_header(),
        root / "fortran_bridge" / "ai4land_status.inc": render_fortran_include(),
        root / "docs" / "status_codes.md": "# Status codes\n\nGenerated by `ai4land codegen`.\n\n" + render_markdown_table(),
        root / "docs" / "namelist.md": "# `&ai4land_nml` reference\n\nGenerated by `ai4land codegen` from "
                                       "`ai4land_coupler/namelist.py`.\n\n" + render_reference(),
    }
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"out of date: {p}", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(outputs[p])
        print(f"wrote {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ai4land", description="ai4land-coupler: land-use and LAI emulators for climate models")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("make-data", help="generate the synthetic world in the real file formats")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--first-year", type=int, default=2015)
    s.add_argument("--last-year", type=int, default=2034)
    s.add_argument("--fine-res", type=float, default=1.0, help="emulator grid spacing (degrees)")
    s.add_argument("--coarse-res", type=float, default=4.0, help="scenario grid spacing (degrees)")
    s.add_argument("--region", type=_region, default=None, metavar="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX",
                   help="make the world on this box only (degrees, snapped outward to whole coarse cells; "
                        "write --region=-10,10,170,-170 when it starts with a minus sign)")
    s.set_defaults(func=_make_data)

    s = sub.add_parser("train", help="train the emulators on a world made by make-data")
    s.add_argument("--world", required=True)
    s.add_argument("--out", required=True, help="folder for <name>.safetensors + <name>.json")
    s.add_argument("--kind", choices=("landuse", "lai", "all"), default="all")
    s.add_argument("--epochs", type=int, default=None, help="default: as for the shipped emulators (40 / 30)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=None, help="torch threads per process (default: 2 // processes, at least 1)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda:LOCAL_RANK when torch sees a GPU, else CPU")
    s.add_argument("--steps-per-epoch", type=int, default=None, help="default 50")
    s.add_argument("--batch-size", type=int, default=None, help="global batch, split over the torchrun processes (default 16)")
    s.add_argument("--widths", type=int, nargs=4, default=None, metavar="W", help="U-Net widths (default 16 32 64 96)")
    s.add_argument("--tile", type=int, default=None, help="training window edge, a multiple of 8 (default 64)")
    s.set_defaults(func=_train)

    s = sub.add_parser("evaluate", help="held-out skill of an emulator against baselines, as coupled (tiled inference)")
    s.add_argument("--kind", choices=("landuse", "lai"), required=True)
    s.add_argument("--emulator", required=True, help="shipped name or checkpoint path")
    s.add_argument("--world", required=True)
    s.add_argument("--years", type=int, nargs="+", default=None, help="held-out years (default: from the checkpoint)")
    s.add_argument("--region", type=_region, default=None, metavar="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX",
                   help="held-out region (default: from the checkpoint; write --region=-25,20,-85,-30 when it starts "
                        "with a minus sign)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="default cpu: the same bits on any machine")
    s.add_argument("--json", default=None, help="write the report as JSON")
    s.add_argument("--markdown", default=None, help="write the tables as markdown")
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("emulators", help="list the shipped emulators and their held-out skill")
    s.set_defaults(func=_emulators)

    s = sub.add_parser("mock-host", help="run the Python mock host (under mpirun for several ranks)")
    s.add_argument("namelist")
    s.set_defaults(func=_mock_host)

    s = sub.add_parser("plot", help="PNG maps from mock-host output or the plugin's fine history")
    s.add_argument("files", nargs="+")
    s.add_argument("--out", default="maps")
    s.set_defaults(func=_plot)

    s = sub.add_parser("join-history", help="join the per-slab fine-grid histories of a run (history_files = "
                                           "'per_slab') into ai4land_fine_history.nc")
    s.add_argument("output_dir")
    s.set_defaults(func=_join_history)

    s = sub.add_parser("check-namelist", help="validate a namelist and print the resolved settings")
    s.add_argument("namelist")
    s.set_defaults(func=_check_namelist)

    s = sub.add_parser("codegen", help="regenerate status-code headers and reference docs")
    s.add_argument("--root", default=str(REPO))
    s.add_argument("--check", action="store_true", help="only report files that are out of date")
    s.set_defaults(func=_codegen)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
