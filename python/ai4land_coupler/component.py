"""The coupled component: OASIS-like lifecycle around the land-use and LAI emulators.

init(comm, namelist) → def_partition(Box | Points) → enddef() → [put, step, get]* → finalize()

The fine-grid state (last year's land-use map, LAI) is held whole on every rank and computed on a
global tile lattice, so what a host cell receives never depends on the host's decomposition.
"""
from __future__ import annotations

import time
from enum import Enum

import numpy as np

from . import crosswalks
from .clock import Events, ModelClock
from .datasets import NODATA, fill_nodata, group_shares
from .comm import Communicator, as_communicator
from .errors import ArgumentError, CallOrderError, ClockError, EmulatorError, PartitionError
from .grids import LatLonGrid, area_weighted_block_mean
from .inference import tiled_predict
from .namelist import Config, read_namelist
from .hostmap import HostMap, make_host_map
from .partition import Box, Points, validate_cover
from .runtime import RankRuntime, plan_runtime, setup_logging

DRIVERS = ("tas", "pr", "rsds")  # fields the host may put: monthly means on its cells
OUTPUTS = ("landuse_fraction", "landuse_uncertainty", "lai", "lai_per_class")  # fields the host may get, and those of
# the namelist's crosswalk (crosswalks.field_levels)
CONSERVATION_TOLERANCE = 1e-6  # largest |emulated − scenario| group share per coarse cell


class State(Enum):
    NEW = "new"
    INITIALISED = "initialised"
    PARTITIONED = "partitioned"
    RUNNING = "running"
    FINALISED = "finalised"


class Component:
    def __init__(self):
        self.state = State.NEW
        self.comm: Communicator | None = None
        self.config: Config | None = None
        self._fields: dict[str, np.ndarray] = {}  # host-grid outputs, (levels, local cells)
        self._puts: dict[str, np.ndarray] = {}
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def _require(self, *states: State, call: str):
        if self.state not in states:
            want = " or ".join(s.value for s in states)
            raise CallOrderError(f"{call}() called in state '{self.state.value}'; it needs state {want}")

    def init(self, comm, namelist_path) -> None:
        self._require(State.NEW, call="init")
        from .datasets import WorldData
        from .emulators import LANDUSE_CLASSES, load_emulator
        from .emulators.landuse import one_hot_classes

        self.comm = as_communicator(comm)
        self.config = cfg = read_namelist(namelist_path)
        self.log = setup_logging(self.comm.rank, cfg.log_level)
        self.runtime: RankRuntime = plan_runtime(self.comm, cfg.device, cfg.torch_threads, cfg.inference_ranks)
        self.world = WorldData.from_config(cfg)
        self.fine_grid: LatLonGrid = self.world.fine_grid
        self.fine_area = self.fine_grid.cell_area_weights()
        try:
            self.host_map: HostMap = make_host_map(self.fine_grid, cfg.host_nlat, cfg.host_nlon, cfg.host_weights_file)
        except ArgumentError as exc:
            raise ArgumentError(f"{namelist_path}: {exc}") from None
        self.class_codes = np.array([c for c, _ in LANDUSE_CLASSES], dtype=np.uint8)
        self.class_names = [n for _, n in LANDUSE_CLASSES]
        self._onehot = one_hot_classes
        dev = self.runtime.device
        self.landuse_emulator = load_emulator("landuse", cfg.landuse_emulator, dev) if cfg.do_dynamic_landuse else None
        self.lai_emulator = load_emulator("lai", cfg.lai_emulator, dev) if cfg.do_dynamic_lai else None
        self.clock = ModelClock(cfg.calendar, cfg.lai_cadence, cfg.lai_interval_days)
        self.crosswalk_levels = crosswalks.field_levels(cfg.crosswalk)
        self.fine_map: np.ndarray | None = None
        self.fine_lai: np.ndarray | None = None
        self.history = None
        if cfg.output_dir and self.comm.rank == 0:
            from .history import FineHistory

            self.history = FineHistory(cfg.output_dir, self.fine_grid, cfg.calendar, LANDUSE_CLASSES)
        self.state = State.INITIALISED
        self.log.info("initialised on %d ranks: host grid %s, emulator grid %dx%d, device %s, %d torch "
                      "threads, %s inference rank", self.comm.size, self.host_map.description,
                      self.fine_grid.nlat, self.fine_grid.nlon, dev, self.runtime.threads,
                      "an" if self.runtime.is_inference_rank else "not an")

    def def_partition(self, partition: Box | Points) -> None:
        self._require(State.INITIALISED, call="def_partition")
        if not isinstance(partition, (Box, Points)):
            raise ArgumentError(f"partition must be a Box or Points, got {type(partition).__name__}")
        shape = self.host_map.shape
        if shape is None and isinstance(partition, Box):
            raise PartitionError(f"a box partition needs a lat-lon host grid; the host grid is "
                                 f"{self.host_map.description}: define the partition by points")
        self.partition = partition
        self.local_cells = partition.global_indices(*(shape or (1, self.host_map.ncells)))
        self.state = State.PARTITIONED

    def enddef(self) -> None:
        self._require(State.PARTITIONED, call="enddef")
        validate_cover(self.comm, self.local_cells, self.host_map.ncells)
        self.state = State.RUNNING

    @property
    def local_size(self) -> int:
        self._require(State.PARTITIONED, State.RUNNING, call="local_size")
        return int(self.local_cells.size)

    def field_levels(self, name: str) -> list[str]:
        if name in ("landuse_fraction", "lai_per_class"):
            return list(self.class_names)
        if name in self.crosswalk_levels:
            return list(self.crosswalk_levels[name])
        if name in OUTPUTS + DRIVERS:
            return [name]
        raise ArgumentError(f"unknown field '{name}'; known: {', '.join(self.outputs)} (get), {', '.join(DRIVERS)} (put)")

    @property
    def outputs(self) -> tuple[str, ...]:
        return OUTPUTS + tuple(self.crosswalk_levels)

    def put(self, name: str, values) -> None:
        self._require(State.RUNNING, call="put")
        if name not in DRIVERS:
            raise ArgumentError(f"cannot put field '{name}'; the plugin accepts {', '.join(DRIVERS)}")
        values = self._check_host_array(name, values, 1)
        if not np.all(np.isfinite(values)):
            raise ArgumentError(f"put('{name}'): {int(np.sum(~np.isfinite(values)))} values are NaN or Inf")
        self._puts[name] = np.array(values, dtype=np.float64).ravel()

    def step(self, when) -> set[str]:
        self._require(State.RUNNING, call="step")
        events = self.clock.advance(*self._date_tuple(when))
        changed: set[str] = set()
        if events.new_year:
            self._advance_landuse(events)
            changed.update(("landuse_fraction", "landuse_uncertainty", *crosswalks.landuse_fields(self.config.crosswalk)))
        if events.new_lai_period and self.config.do_dynamic_lai:
            self._advance_lai(events)
            lai_fields = set(self.crosswalk_levels) - set(crosswalks.landuse_fields(self.config.crosswalk))
            changed.update(("lai", "lai_per_class", *lai_fields))
        self._puts.clear()
        return changed

    def get(self, name: str, out) -> None:
        self._require(State.RUNNING, call="get")
        nlev = len(self.field_levels(name))
        if name not in self.outputs:
            raise ArgumentError(f"cannot get field '{name}'; available: {', '.join(self.outputs)}")
        if name not in self._fields:
            raise CallOrderError(f"get('{name}') before any step() produced it")
        view = self._check_host_array(name, out, nlev)
        view.reshape(nlev, self.local_size)[...] = self._fields[name]

    def finalize(self) -> None:
        self._require(State.INITIALISED, State.PARTITIONED, State.RUNNING, call="finalize")
        if self.history is not None:
            self.history.close()
        self.landuse_emulator = self.lai_emulator = None
        self._fields.clear()
        if self.runtime.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        self.state = State.FINALISED
        self.log.info("finalised; time in emulators: %s",
                      ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()) or "none")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _date_tuple(when) -> tuple[int, int, int, int]:
        if hasattr(when, "year"):
            return (when.year, when.month, when.day, when.hour * 3600 + when.minute * 60 + when.second)
        try:
            y, m, d, *rest = (int(v) for v in when)
        except (TypeError, ValueError) as exc:
            raise ClockError(f"time must be a date or (year, month, day[, second]), got {when!r}") from exc
        return (y, m, d, rest[0] if rest else 0)

    def _check_host_array(self, name: str, array, nlev: int) -> np.ndarray:
        if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
            raise ArgumentError(f"field '{name}': expected a float32 or float64 array, "
                                f"got {getattr(array, 'dtype', type(array).__name__)}")
        want = nlev * self.local_size
        if array.size != want:
            raise ArgumentError(f"field '{name}': array has {array.size} values, expected {want} "
                                f"({nlev} level(s) x {self.local_size} local cells)")
        return array.reshape(-1)

    def _gather_host(self, local: np.ndarray) -> np.ndarray:
        """A field on all host cells (ncells,) from every rank's local cells."""
        values = self.comm.allgatherv(local)
        cells = self.comm.allgatherv(self.local_cells)
        field = np.empty(self.host_map.ncells)
        field[cells] = values
        return field

    def _host_mean(self, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The area- and ``weights``-weighted mean of ``values`` over each host cell, (levels, local); 0
        where the weights vanish. ``weights`` (levels or 1, H, W), ``values`` (H, W) or (levels, H, W)."""
        total = self._to_host(weights)
        return np.where(total > 0, self._to_host(weights * values) / np.where(total > 0, total, 1.0), 0.0)

    def _to_host(self, fine: np.ndarray) -> np.ndarray:
        """Fine (levels, H, W) → this rank's host cells (levels, local), area-weighted."""
        return self.host_map.to_host(fine)[:, self.local_cells]

    def _predict(self, emulator, inputs: np.ndarray) -> np.ndarray:
        import torch

        device = self.runtime.device

        def predict_batch(x: np.ndarray) -> np.ndarray:
            try:
                with torch.inference_mode():
                    return emulator.model(torch.from_numpy(x).to(device)).float().cpu().numpy()
            except Exception as exc:
                raise EmulatorError(f"{emulator.name}: inference failed on a batch of shape {x.shape}: {exc}") from exc

        cfg = self.config
        return tiled_predict(
            predict_batch, inputs, tile=cfg.tile_size, overlap=cfg.tile_overlap, wrap_lon=self.fine_grid.is_global,
            comm=self.comm, inference_index=self.runtime.inference_index, n_inference=self.runtime.n_inference)

    def _initial_map(self, year: int) -> np.ndarray:
        earlier = [y for y in self.world.years if y < year]
        first = earlier[-1] if earlier else min(self.world.years)
        observed = self.world.lulc(first)
        gaps = int((observed == NODATA).sum())
        self.log.info("year %d: initial land-use prior from the observed map of %d (%d no-data pixels filled "
                      "from their coarse cell)", year, first, gaps)
        return fill_nodata(observed, self.world.factor)

    def _advance_landuse(self, events: Events) -> None:
        """New land use: host fractions are the area-weighted means of the class probabilities
        after the projection onto the scenario (:meth:`LandUseEmulator.conserve`); the fine map
        (next year's prior and the history) is their demand-constrained allocation
        (:meth:`LandUseEmulator.allocate`); the uncertainty is the
        normalised entropy of the probabilities, averaged over the land of each host cell."""
        year = events.date.year
        if self.fine_map is None:
            self.fine_map = self._initial_map(year)
        land = self.world.land_mask
        if self.config.do_dynamic_landuse:
            t0 = time.perf_counter()
            em = self.landuse_emulator
            scenario = self.world.scenario_groups_fine(year)
            probs = em.finish(self._predict(em, em.inputs(scenario, self.world.static, self.fine_map, self.fine_area)))
            probs = em.conserve(em.apply_mask(probs, land), scenario, land, self.fine_area)
            self._check_conservation(year, probs, scenario)
            self.fine_map = em.allocate(probs, scenario, land, self.fine_area, self.fine_map)
            uncertainty = em.uncertainty(probs, land)
            self.timings["landuse"] = self.timings.get("landuse", 0.0) + time.perf_counter() - t0
        else:
            probs = self._onehot(self.fine_map)
            uncertainty = np.zeros(land.shape)
        self._fields["landuse_fraction"] = self._to_host(probs)
        self._fields["landuse_uncertainty"] = self._host_mean(land[None].astype(np.float64), uncertainty)[0]
        if self.config.crosswalk == "ecland":
            for name, cover in crosswalks.ecland_covers(probs).items():
                self._fields[name] = self._to_host(cover[None])
        elif self.config.crosswalk == "clm":
            types = crosswalks.clm_types(probs, self.world.static["bio01"])
            self._fields["pct_pft"] = 100.0 * self._host_mean(land[None].astype(np.float64), types)
        if self.history is not None:
            self.history.write_landuse(events.date, self.fine_map, uncertainty)

    def _check_conservation(self, year: int, probs: np.ndarray, scenario: np.ndarray) -> None:
        """The projection's guarantee, verified every year: emulated group shares = scenario."""
        k = self.world.factor
        emulated = group_shares(probs, k, self.fine_area)
        wanted = scenario[:, ::k, ::k].astype(np.float64)
        land_share = area_weighted_block_mean(self.world.land_mask.astype(np.float64), self.fine_grid, k)
        feasible = wanted.sum(axis=0) <= land_share + CONSERVATION_TOLERANCE  # float32 states: rounding excess
        error = np.abs(emulated - wanted)[:, feasible]
        worst = float(error.max()) if error.size else 0.0
        if worst > CONSERVATION_TOLERANCE:
            raise EmulatorError(f"year {year}: land use breaks the scenario by {worst:.3g} (> {CONSERVATION_TOLERANCE}) "
                                f"in a coarse cell")
        self.log.info("year %d: scenario conserved to %.1e in %d coarse cells%s", year, worst, int(feasible.sum()),
                      "" if feasible.all() else f"; {int((~feasible).sum())} cells ask for more than their land "
                                                f"and were scaled down to fit")

    def _drivers(self, events: Events) -> np.ndarray:
        """Fine (3, H, W) drivers for the LAI period: the host's puts downscaled, else the input files."""
        date = events.date
        put = self.comm.allgather(sorted(self._puts))
        if any(put) and any(p != put[0] for p in put):
            raise ArgumentError(f"ranks put different driver fields before step: {put}")
        missing = [d for d in DRIVERS if d not in put[0]]
        if put[0] and missing:
            raise ArgumentError(f"put the drivers {', '.join(DRIVERS)} together; missing {', '.join(missing)}")
        if not put[0]:
            return self.world.drivers(date.year, date.month)
        clim = self.world.climatology()[date.month - 1]
        out = np.empty_like(clim)
        for n, name in enumerate(DRIVERS):
            host = self._gather_host(self._puts[name])
            anomaly = self.host_map.to_fine(host - self.host_map.to_host(clim[n][None])[0])
            out[n] = clim[n] + np.nan_to_num(anomaly, nan=0.0)  # delta downscaling; no host cell: climatology
        out[1] = np.maximum(out[1], 0.0)
        out[2] = np.maximum(out[2], 0.0)
        return out

    def _advance_lai(self, events: Events) -> None:
        t0 = time.perf_counter()
        drivers = self._drivers(events)
        em = self.lai_emulator
        raw = self._predict(em, em.inputs(self._onehot(self.fine_map), drivers, self._period_middle(events)))
        lai = em.finish(raw)[0]
        self.fine_lai = em.apply_mask(lai, self.world.land_mask)
        self._fields["lai"] = self._to_host(self.fine_lai[None])
        classes = self._onehot(self.fine_map).astype(np.float64)
        self._fields["lai_per_class"] = self._host_mean(classes, self.fine_lai)
        if self.config.crosswalk == "ecland":
            covers = crosswalks.ecland_covers(classes)
            for name, cover in crosswalks.ECLAND_LAI.items():
                self._fields[name] = self._host_mean(covers[cover][None], self.fine_lai)
        self.timings["lai"] = self.timings.get("lai", 0.0) + time.perf_counter() - t0
        if self.history is not None:
            self.history.write_lai(events.date, self.fine_lai)

    def _period_middle(self, events: Events) -> float:
        cfg = self.config
        if cfg.lai_cadence == "monthly":
            d = events.date
            first = self.clock.date(d.year, d.month, 1, 0).dayofyr
            nxt = self.clock.date(d.year + (d.month == 12), d.month % 12 + 1, 1, 0)
            length = (nxt - self.clock.date(d.year, d.month, 1, 0)).days
            return first - 1 + length / 2.0
        start = ((events.day_of_year - 1) // cfg.lai_interval_days) * cfg.lai_interval_days
        return start + min(cfg.lai_interval_days, events.days_in_year - start) / 2.0
