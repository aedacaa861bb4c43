"""The coupled component: OASIS-like lifecycle around the land-use and LAI emulators.

init(comm, namelist) → def_partition(Box | Points) → enddef() → [put, step, get]* → finalize()

The fine-grid state (last year's land-use map, LAI) lives in bands of rows on the inference ranks
(:class:`~.inference.BandLayout`); each reads only its slab of the input files. Tiles of a global
lattice are predicted by the slab that holds their first row, their sums travel to the bands they
cover, and the host fields reach the host's cells through :class:`~.redistribution.HostExchange`.
Every sum runs in an order fixed in global index space, so what a host cell receives never depends
on the host's decomposition or on the number of inference ranks.
"""
from __future__ import annotations

import functools
import threading
import time
from enum import Enum

import numpy as np

from . import cells, crosswalks
from .clock import Events, ModelClock
from .datasets import NODATA, fill_nodata
from .emulators.landuse import class_levels, one_hot_classes
from .comm import Communicator, as_communicator, collective
from .errors import (Ai4LandError, ArgumentError, CallOrderError, ClockError, EmulatorError, InputFileError,
                     NamelistError, PartitionError)
from .grids import LatLonGrid, block_sum
from .inference import BandLayout, blend, field_buffer, make_layout, predict_slab, slab_sums, tile_step, with_halo
from .namelist import Config, read_namelist
from .hostmap import HostMap, make_host_map
from .partition import Box, CellDirectory, Points
from .redistribution import HostExchange, OneHot
from .runtime import RankRuntime, keep_freed_memory, plan_runtime, setup_logging

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


def _local(call: str):
    """A call on one rank whose failure leaves the ranks out of step (put, def_partition): it is raised
    here, and again on every rank by the next collective call (:meth:`Component._agree`)."""
    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if self.comm is not None and self._failure is None:
                    self._failure = type(exc)(f"{call}() failed: {exc}") if isinstance(exc, Ai4LandError) else exc
                raise
        return run
    return wrap


class _Prefetch:
    """Next year's land use, computed while the host integrates this year: it depends only on the
    scenario and this year's map. It starts at the first step after the year boundary (the
    scenario read, the inputs and their halo on the host's thread), or at the boundary itself for
    a host that steps once a year. Two background stages: the network ("sums"), then, after the
    tile sums are blended at a later step, the projection and allocation ("post"). The background
    threads never call MPI; every collective stays on the host's thread."""

    def __init__(self, year: int, scenario):
        self.year, self.scenario, self.stage = year, scenario, "sums"
        self._thread: threading.Thread | None = None
        self._value = self._error = None

    def run(self, work, timings: dict) -> None:
        def target():
            t0 = time.perf_counter()
            try:
                self._value = work()
            except BaseException as exc:  # noqa: BLE001 - raised on the host's thread by result()
                self._error = exc
            timings["landuse_background"] = timings.get("landuse_background", 0.0) + time.perf_counter() - t0

        self._value = self._error = None
        self._thread = threading.Thread(target=target, name=f"ai4land-prefetch-{self.year}-{self.stage}", daemon=True)
        self._thread.start()

    def finished(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def wait(self) -> None:
        """Until the stage has ended (its value and error are dropped by whoever drops this)."""
        if self._thread is not None:
            self._thread.join()

    def result(self):
        """The stage's value, waiting for it; its error raised here."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class Component:
    def __init__(self):
        self.state = State.NEW
        self.comm: Communicator | None = None
        self.config: Config | None = None
        self._fields: dict[str, np.ndarray] = {}  # host-grid outputs, (levels, local cells)
        self._puts: dict[str, np.ndarray] = {}
        self._failure: Exception | None = None  # of a local call, raised on every rank by the next collective one
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def _require(self, *states: State, call: str):
        if self.state not in states:
            want = " or ".join(s.value for s in states)
            raise CallOrderError(f"{call}() called in state '{self.state.value}'; it needs state {want}")

    def init(self, comm, namelist_path) -> None:
        self._require(State.NEW, call="init")
        from .datasets import WorldData

        self.comm = as_communicator(comm)
        self.namelist_path = str(namelist_path)
        self.config = cfg = collective(self.comm, lambda: read_namelist(namelist_path))
        self.log = setup_logging(self.comm.rank, cfg.log_level)
        self.runtime: RankRuntime = plan_runtime(self.comm, cfg.device, cfg.torch_threads, cfg.inference_ranks)
        if cfg.keep_freed_memory and not keep_freed_memory():
            self.log.warning("keep_freed_memory: the C library is not glibc or refused mallopt; heap left as it is")
        self.domain = collective(self.comm, lambda: WorldData.open_domain(cfg.world_files(), cfg.region))
        self.fine_grid: LatLonGrid = self.domain.fine_grid
        self.layout: BandLayout = self._layout(namelist_path)
        first, end = self.layout.slab_rows(max(self.runtime.inference_index, 0))
        self.slab = self.runtime.inference_index if self.runtime.inference_index >= 0 and end > first else -1
        self.rows = (first, end) if self.slab >= 0 else (0, 0)
        self.fine_area = self.fine_grid.cell_area_weights()[slice(*self.rows)]  # areas from the whole grid: same bits
        collective(self.comm, lambda: self._open_inputs(namelist_path))
        self.clock = ModelClock(cfg.calendar, cfg.lai_cadence, cfg.lai_interval_days)
        self.crosswalk_levels = crosswalks.field_levels(cfg.crosswalk)
        self.fine_map: np.ndarray | None = None  # this slab's rows
        self._classes: tuple | None = None  # (fine map, its one-hot classes, its OneHot, their covers): _map_classes
        self._land_share: np.ndarray | None = None  # the land share of each coarse cell of the slab
        self._land_weights: np.ndarray | None = None
        self._landuse_started = False
        self._prefetch: _Prefetch | None = None
        self._prefetch_due: int | None = None  # the year whose prefetch the next step starts
        self._steps_in_year = 0  # steps since the last year boundary
        self._landuse_field: np.ndarray | None = None  # this slab's land-use tile field, kept for the run
        self.fine_lai: np.ndarray | None = None
        self._lai_months: dict[tuple[int, int], tuple] = {}  # daily cadence: (year, month) → emulated LAI, host fields
        self._driver_months: list[tuple[int, int]] | None = None
        self.history = collective(self.comm, self._open_history)
        self.state = State.INITIALISED
        self.log.info("initialised on %d ranks: host grid %s, emulator grid %dx%d in %d bands, %s, device %s, "
                      "%d torch threads, %s", self.comm.size, self.host_map.description, self.fine_grid.nlat,
                      self.fine_grid.nlon, len(self.layout.bands),
                      f"fine rows {first}-{end}" if self.slab >= 0 else "no fine rows", self.runtime.device,
                      self.runtime.threads, cfg.precision)

    def _open_history(self):
        """The fine-grid history writer of this rank, if the namelist asks for a history: rank 0's
        (``history_files = 'one'``) or each inference rank's, for its slab (``'per_slab'``)."""
        from .history import FineHistory, history_path

        output_dir, per_slab = self.config.output_dir, self.config.history_files == "per_slab"
        if not output_dir or (self.slab < 0 if per_slab else self.comm.rank != 0):
            return None
        slab = (self.slab, self.layout.n_slabs, *self.layout.slab_rows(self.slab)) if per_slab else None
        try:
            return FineHistory(output_dir, self.fine_grid, self.config.calendar, self.classes, slab)
        except OSError as exc:
            raise InputFileError(f"{history_path(output_dir, slab and slab[0])}: cannot create the fine-grid history "
                                 f"({exc.strerror or exc})") from None

    def _history_rows(self, field: np.ndarray | None) -> np.ndarray | None:
        """What this rank's history writer writes of a slab field: the whole grid gathered on rank 0,
        or the slab itself (``history_files = 'per_slab'``). Collective."""
        return field if self.config.history_files == "per_slab" else self.exchange.gather_rows(field)

    def _layout(self, namelist_path) -> BandLayout:
        cfg, k = self.config, self.domain.factor
        step = tile_step(cfg.tile_size, cfg.tile_overlap)
        band_rows = cfg.band_rows or -(-step // k) * k
        if band_rows % k:
            raise NamelistError(f"{namelist_path}: &ai4land_nml key 'band_rows' = {band_rows} is not a multiple of "
                                f"the {k} fine rows of a LUH2 cell")
        grid = self.fine_grid
        return make_layout(grid.nlat, grid.nlon, tile=cfg.tile_size, overlap=cfg.tile_overlap, wrap_lon=grid.is_global,
                           band_rows=band_rows, n_slabs=self.runtime.n_inference)

    def _open_inputs(self, namelist_path) -> None:
        """The host map on every rank; this slab's rows of the input files and the emulators on a slab rank."""
        from .datasets import WorldData
        from .emulators import LANDUSE_CLASSES, load_emulator

        cfg = self.config
        try:
            self.host_map: HostMap = make_host_map(self.fine_grid, cfg.host_nlat, cfg.host_nlon, cfg.host_weights_file)
        except ArgumentError as exc:
            raise NamelistError(f"{namelist_path}: &ai4land_nml keys 'host_nlat', 'host_nlon': {exc}") from None
        self.classes = LANDUSE_CLASSES
        self.class_names = [n for _, n in LANDUSE_CLASSES]
        self.world = self.landuse_emulator = self.lai_emulator = None
        if self.slab >= 0:
            self.world = WorldData.from_config(cfg, self.rows)
            dev = self.runtime.device
            self.landuse_emulator = load_emulator("landuse", cfg.landuse_emulator, dev) if cfg.do_dynamic_landuse else None
            self.lai_emulator = load_emulator("lai", cfg.lai_emulator, dev) if cfg.do_dynamic_lai else None
            for emulator in (self.landuse_emulator, self.lai_emulator):
                if emulator is not None:
                    emulator.precision = cfg.precision

    def _agree(self, call: str, *states: State, then=None):
        """The start of a collective call: every rank checks its state and its failures since the
        last collective call (and runs ``then``), and all raise together if any rank fails."""
        def check():
            failure, self._failure = self._failure, None
            if failure is not None:
                raise failure
            self._require(*states, call=call)
            return then() if then else None
        if self.comm is None:  # before init: no communicator to agree on
            self._require(*states, call=call)
        return collective(self.comm, check)

    @_local("def_partition")
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
        self._agree("enddef", State.PARTITIONED)
        directory = CellDirectory(self.comm, self.local_cells, self.host_map.ncells)  # checks the cover
        self.exchange = HostExchange(self.comm, self.host_map, self.layout, self.slab, self.runtime.inference_ranks,
                                     directory)
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

    @_local("put")
    def put(self, name: str, values) -> None:
        self._require(State.RUNNING, call="put")
        if name not in DRIVERS:
            raise ArgumentError(f"cannot put field '{name}'; the plugin accepts {', '.join(DRIVERS)}")
        values = self._check_host_array(name, values, 1)
        if not np.all(np.isfinite(values)):
            raise ArgumentError(f"put('{name}'): {int(np.sum(~np.isfinite(values)))} values are NaN or Inf")
        self._puts[name] = np.array(values, dtype=np.float64).ravel()

    def step(self, when) -> set[str]:
        events = self._agree("step", State.RUNNING, then=lambda: self.clock.advance(*self._date_tuple(when)))
        self._poll_prefetch()
        changed: set[str] = set()
        if events.new_year:
            self._lai_months.clear()  # emulated under last year's land use
            self._advance_landuse(events)
            changed.update(("landuse_fraction", "landuse_uncertainty", *crosswalks.landuse_fields(self.config.crosswalk)))
            self._steps_in_year = 0
        else:
            self._steps_in_year += 1
        if events.new_lai_period and self.config.do_dynamic_lai:
            self._advance_lai(events)
            lai_fields = set(self.crosswalk_levels) - set(crosswalks.landuse_fields(self.config.crosswalk))
            changed.update(("lai", "lai_per_class", *lai_fields))
        if self._prefetch_due is not None and not events.new_year:
            year, self._prefetch_due = self._prefetch_due, None
            self._start_prefetch(year)
        self._puts.clear()
        return changed

    def get(self, name: str, out) -> None:
        self._require(State.RUNNING, call="get")
        nlev = len(self.field_levels(name))
        if name not in self.outputs:
            raise ArgumentError(f"cannot get field '{name}'; available: {', '.join(self.outputs)}")
        if name not in self._fields:
            raise CallOrderError(f"get('{name}') before any step() produced it")
        view = self._check_host_array(name, out, nlev, output=True)
        view.reshape(nlev, self.local_size)[...] = self._fields[name]

    def write_restart(self, path) -> None:
        """Write the state to ``path`` (netCDF, atomically); collective. See :mod:`.restart`."""
        from . import restart

        self._agree("write_restart", State.RUNNING)
        restart.write(self, path)

    def read_restart(self, path) -> None:
        """Continue from a restart written by :meth:`write_restart`, after ``enddef`` and before the
        first ``step``; collective. A restart of other emulators, grids or calendar is refused."""
        from . import restart

        def first_step_not_taken():
            if self.clock.current is not None:
                raise CallOrderError("read_restart() after step(): a restart is read before the first step")

        self._agree("read_restart", State.RUNNING, then=first_step_not_taken)
        restart.read(self, path)

    @property
    def fine_bytes_held(self) -> int:
        """Bytes of fine-grid data on this rank: its rows of the input fields and of the state."""
        arrays = [self.fine_map, self.fine_lai, self.fine_area]
        arrays += [lai for lai, _ in self._lai_months.values()]
        if self.world is not None:
            arrays += [self.world.land_mask, *self.world.static.values()]
        return int(sum(a.nbytes for a in arrays if a is not None))

    def emulator_hashes(self) -> dict[str, str]:
        """sha256 of the weights of each emulator in use, by kind."""
        return {em.kind: str(em.meta.get("weights_sha256", "")) for em in (self.landuse_emulator, self.lai_emulator)
                if em is not None}

    def restore(self, state: dict) -> None:
        """Set the state read by :func:`.restart.read` (this rank's rows and cells)."""
        if state["current_date"]:
            day, time_of_day = state["current_date"].split("T")
            y, m, d = (int(v) for v in day.split("-"))
            hh, mm, ss = (int(float(v)) for v in time_of_day.split(":"))
            self.clock.current = self.clock.date(y, m, d, hh * 3600 + mm * 60 + ss)
        self._landuse_started = state["landuse_started"]
        self._prefetch_due, self._steps_in_year = None, 0  # a prefetch is for the run it was started in
        self.fine_map, self.fine_lai = state["fine_map"], state["fine_lai"]
        self._lai_months = dict(state["lai_months"])
        self._fields = dict(state["fields"])
        self.log.info("restarted at %s", state["current_date"] or "the beginning")

    def finalize(self) -> None:
        self._require(State.INITIALISED, State.PARTITIONED, State.RUNNING, call="finalize")
        if self._prefetch is not None:  # let a background stage end before the emulators go
            self._prefetch.wait()
            self._prefetch = None
        if self.history is not None:
            self.history.close()
        self.landuse_emulator = self.lai_emulator = None
        self._fields.clear()
        if self.runtime.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        self.state = State.FINALISED
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
        self.log.info("finalised; time in emulators: %s; peak memory %.0f MB, fine-grid data held %.1f MB",
                      ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()) or "none", peak,
                      self.fine_bytes_held / 2**20)

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

    def _check_host_array(self, name: str, array, nlev: int, output: bool = False) -> np.ndarray:
        if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
            raise ArgumentError(f"field '{name}': expected a float32 or float64 array, "
                                f"got {getattr(array, 'dtype', type(array).__name__)}")
        want = nlev * self.local_size
        if array.size != want:
            raise ArgumentError(f"field '{name}': array has {array.size} values, expected {want} "
                                f"({nlev} level(s) x {self.local_size} local cells)")
        flat = array.reshape(-1)
        if output and not array.flags.writeable:
            raise ArgumentError(f"field '{name}': the output array is read-only")
        if output and not np.shares_memory(flat, array):
            raise ArgumentError(f"field '{name}': the output array is not in C order (levels slowest, then cells)")
        return flat

    def _means(self, *fields) -> list[np.ndarray]:
        """Host-cell means of (values, weights or None) pairs on this slab: :meth:`HostExchange.means`."""
        return self.exchange.means(list(fields))

    def _predict(self, emulator, make_inputs) -> np.ndarray | None:
        """The emulator over this slab (None off the slab ranks)."""
        inputs = self._inputs(emulator, make_inputs)
        return predict_slab(emulator.predict_batch if emulator is not None else None, inputs, self.layout,
                            comm=self.comm, slab=self.slab, slab_ranks=self.runtime.inference_ranks)

    def _inputs(self, emulator, make_inputs) -> np.ndarray | None:
        """The emulator's inputs on this slab (None off the slab ranks); collective. ``make_inputs(out)``
        writes them into the leading corner of the slab's tile field (:func:`.inference.field_buffer`)."""
        def make():
            if self.slab < 0:
                return None
            return make_inputs(field_buffer(self.layout, self.slab, len(emulator.meta["channels"])))
        return collective(self.comm, make)

    def _landuse_tiles_field(self, scenario) -> np.ndarray | None:
        """The land-use network's tile field on this slab for the year of ``scenario``
        (:func:`.inference.with_halo`; None off the slab ranks); collective. One buffer serves the
        whole run: the channels of the grid alone (:attr:`LandUseEmulator.grid_channels`) are
        written, exchanged and completed for the first year only. No network may be reading the
        buffer (a prefetch's is waited for before)."""
        em = self.landuse_emulator  # None off the slab ranks
        every_channel = self._landuse_field is None  # on every rank alike: set at the same call on all
        if every_channel:
            self._landuse_field = field_buffer(self.layout, self.slab, len(em.meta["channels"])) if self.slab >= 0 \
                else np.empty(0, np.float32)
        inputs = collective(self.comm, lambda: em.inputs(
            scenario, self.world.static, self.fine_map, self.fine_area, self._landuse_field, with_grid=every_channel)
            if self.slab >= 0 else None)
        changing = None if every_channel or em is None else \
            [c for c in range(len(em.meta["channels"])) if c not in em.grid_channels]
        return with_halo(inputs, self.layout, comm=self.comm, slab=self.slab, slab_ranks=self.runtime.inference_ranks,
                         channels=changing)

    def _landuse_sums(self, field: np.ndarray | None) -> dict:
        """The land-use network's tile sums of this slab's bands from its tile field
        (:func:`.inference.slab_sums`); no communication, so it may run in a background thread."""
        em = self.landuse_emulator
        return slab_sums(em.predict_batch if em is not None else None, field, self.layout, slab=self.slab)

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
        normalised entropy of the probabilities, averaged over the land of each host cell.
        With ``prefetch_landuse``, next year's is then started in the background (:class:`_Prefetch`):
        by the next step when the host steps within the year, else at once."""
        year = events.date.year
        on_slab = self.slab >= 0
        if not self._landuse_started:
            self.fine_map = collective(self.comm, lambda: self._initial_map(year) if on_slab else None)
            self._landuse_started = True
        t0 = time.perf_counter()
        probs = uncertainty = land = None
        prefetched = self._prefetch is not None and self._prefetch.year == year
        if self.config.do_dynamic_landuse:
            result, scenario = self._landuse_of(year)
            self._check_conservation(year, result.group_shares if on_slab else None, scenario)
            if on_slab:
                probs, uncertainty = result.probabilities, result.uncertainty
                self.fine_map, land = result.fine_map, self.world.land_mask
        elif on_slab:
            land = self.world.land_mask
            probs = one_hot_classes(self.fine_map)
            uncertainty = np.zeros(land.shape)
        land_weight = self._land_weight() if on_slab else None
        fields = {"landuse_fraction": (probs, None),
                  "landuse_uncertainty": (uncertainty[None] if on_slab else None, land_weight)}
        if self.config.crosswalk == "ecland":
            covers = crosswalks.ecland_covers(probs) if on_slab else dict.fromkeys(crosswalks.ECLAND_COVERS)
            fields.update({name: (cover[None] if on_slab else None, None) for name, cover in covers.items()})
        elif self.config.crosswalk == "clm":
            fields["pct_pft"] = (crosswalks.clm_types(probs, self.world.static["bio01"]) if on_slab else None, land_weight)
        for name, mean in zip(fields, self._means(*fields.values())):
            self._fields[name] = 100.0 * mean if name == "pct_pft" else mean
        self._fields["landuse_uncertainty"] = self._fields["landuse_uncertainty"][0]
        if self.config.output_dir:
            fine_map, fine_uncertainty = (self._history_rows(f) for f in (self.fine_map, uncertainty))
            if self.history is not None:
                self.history.write_landuse(events.date, fine_map, fine_uncertainty)
        seconds = time.perf_counter() - t0
        self.timings["landuse"] = self.timings.get("landuse", 0.0) + seconds
        if self.config.do_dynamic_landuse:
            self.log.info("year %d: the host waited %.3f s for its land use (%s)", year, seconds,
                          "prefetched in the background" if prefetched else "computed at the year boundary")
        if self.config.do_dynamic_landuse and self.config.prefetch_landuse:
            # A host that steps within the year: the next step starts it, and the boundary step stays
            # short (the host waits there for nothing but this year's blend, check and means).
            if self._steps_in_year > 0:
                self._prefetch_due = year + 1
            else:
                self._start_prefetch(year + 1)

    def _land_weight(self) -> np.ndarray:
        """(1, rows, W) float64: 1 on this slab's land, 0 elsewhere (the weight of means over land);
        made once."""
        if self._land_weights is None:
            self._land_weights = self.world.land_mask[None].astype(np.float64)
            self._land_weights.flags.writeable = False
        return self._land_weights

    def _landuse_of(self, year: int):
        """(:class:`LandUseYear`, scenario) of ``year`` on this slab (Nones off the slab ranks): from
        the prefetch of that year, or computed now."""
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None and prefetch.year == year:
            if prefetch.stage == "sums":
                self._blend_prefetch(prefetch)
            return collective(self.comm, prefetch.result)
        if prefetch is not None:  # of another year: its network may still read the tile field written below
            prefetch.wait()
        scenario = collective(self.comm, lambda: self.world.scenario_groups_fine(year) if self.slab >= 0 else None)
        field = self._landuse_tiles_field(scenario)
        sums = collective(self.comm, lambda: self._landuse_sums(field))
        raw = blend(sums, self.layout, comm=self.comm, slab=self.slab, slab_ranks=self.runtime.inference_ranks)
        return collective(self.comm, lambda: self._landuse_post(raw, scenario))

    def _landuse_post(self, raw: np.ndarray | None, scenario: np.ndarray | None):
        """(:class:`LandUseYear`, scenario) from the blended network output on this slab
        (:meth:`LandUseEmulator.post_process`); no communication."""
        if self.slab < 0:
            return None, None
        return self.landuse_emulator.post_process(raw, scenario, self.world.land_mask, self.fine_area,
                                                  self.fine_map), scenario

    def _start_prefetch(self, year: int) -> None:
        """Start ``year``'s land use from this year's map: inputs and halo now (collective), the
        network in a background thread (no MPI there). Nothing if the scenario ends before."""
        on_slab = self.slab >= 0
        have = self.comm.allgather(year in self.world.scenario_years if on_slab else None)
        if not any(h for h in have if h is not None):
            return
        scenario = collective(self.comm, lambda: self.world.scenario_groups_fine(year) if on_slab else None)
        field = self._landuse_tiles_field(scenario)
        self._prefetch = _Prefetch(year, scenario)
        self._prefetch.run(lambda: self._landuse_sums(field), self.timings)

    def _poll_prefetch(self) -> None:
        """At a step: once the network has finished on every rank, blend its output (collective) and
        start the post-processing in the background."""
        p = self._prefetch
        if p is not None and p.stage == "sums" and all(self.comm.allgather(p.finished())):
            self._blend_prefetch(p)

    def _blend_prefetch(self, p: "_Prefetch") -> None:
        sums = collective(self.comm, p.result)
        raw = blend(sums, self.layout, comm=self.comm, slab=self.slab, slab_ranks=self.runtime.inference_ranks)
        p.stage = "post"
        p.run(lambda: self._landuse_post(raw, p.scenario), self.timings)

    def _check_conservation(self, year: int, emulated: np.ndarray | None, scenario: np.ndarray | None) -> None:
        """The projection's guarantee, verified every year on every slab: the emulated group shares
        (5, coarse rows, columns) of :attr:`LandUseYear.group_shares` = the scenario."""
        worst, feasible_cells, infeasible_cells = 0.0, 0, 0
        if self.slab >= 0:
            k = self.domain.factor
            if self._land_share is None:  # of each coarse cell's area
                self._land_share = block_sum(self.world.land_mask * self.fine_area, k) / block_sum(self.fine_area, k)
            # the tolerance on the feasibility too: float32 states have a rounding excess
            worst, feasible_cells, infeasible_cells = cells.conservation_error(emulated, scenario, k, self._land_share,
                                                                               CONSERVATION_TOLERANCE)
        reports = self.comm.allgather((worst, feasible_cells, infeasible_cells))
        worst = max((r[0] for r in reports), key=lambda w: np.inf if np.isnan(w) else w)
        feasible_cells, infeasible_cells = (sum(r[n] for r in reports) for n in (1, 2))
        if not worst <= CONSERVATION_TOLERANCE:
            raise EmulatorError(f"year {year}: land use breaks the scenario by {worst:.3g} (> {CONSERVATION_TOLERANCE}) "
                                f"in a coarse cell")
        self.log.info("year %d: scenario conserved to %.1e in %d coarse cells%s", year, worst, feasible_cells,
                      f"; {infeasible_cells} cells ask for more than their land and were scaled down to fit"
                      if infeasible_cells else "")

    def _drivers(self, year: int, month: int) -> np.ndarray | None:
        """Fine (3, rows, W) drivers of a month on this slab: the host's puts downscaled by the delta
        method on the month's climatology, else the input files."""
        put = self.comm.allgather(sorted(self._puts))
        if any(put) and any(p != put[0] for p in put):
            raise ArgumentError(f"ranks put different driver fields before step: {put}")
        missing = [d for d in DRIVERS if d not in put[0]]
        if put[0] and missing:
            raise ArgumentError(f"put the drivers {', '.join(DRIVERS)} together; missing {', '.join(missing)}")
        on_slab = self.slab >= 0
        if not put[0]:
            return collective(self.comm, lambda: self.world.drivers(year, month) if on_slab else None)
        clim = collective(self.comm, lambda: self.world.climatology()[month - 1] if on_slab else None)
        clim_host = self._means((clim, None))[0]
        anomaly = self.exchange.to_fine(np.stack([self._puts[name] for name in DRIVERS]) - clim_host)
        if not on_slab:
            return None
        out = (clim + np.nan_to_num(anomaly, nan=0.0)).astype(clim.dtype)  # no host cell: climatology
        out[1:] = np.maximum(out[1:], 0.0)  # pr, rsds
        return out

    def _advance_lai(self, events: Events) -> None:
        t0 = time.perf_counter()
        if self.config.lai_cadence == "daily":
            fine_lai, fields = self._daily_lai(events.date)
        else:
            date = events.date
            fine_lai, fields = self._emulate_lai(self._drivers(date.year, date.month), self._period_middle(events))
        self.fine_lai = fine_lai
        self._fields.update(fields)
        self.timings["lai"] = self.timings.get("lai", 0.0) + time.perf_counter() - t0
        if self.config.output_dir:
            rows = self._history_rows(fine_lai)
            if self.history is not None:
                self.history.write_lai(events.date, rows)

    def _emulate_lai(self, drivers: np.ndarray | None, day_of_year: float) -> tuple[np.ndarray | None, dict]:
        """LAI on this slab (None off the slab ranks) and its host fields, for the drivers of a period
        whose middle is ``day_of_year`` (days since 1 January)."""
        em = self.lai_emulator
        on_slab = self.slab >= 0
        classes, levels, covers = self._map_classes() if on_slab else (None, None, None)
        raw = self._predict(em, lambda out: em.inputs(classes, drivers, day_of_year, out))
        fine_lai = em.masked_lai(raw, self.world.land_mask) if on_slab else None
        lai = fine_lai[None] if on_slab else None
        fields = {"lai": (lai, None), "lai_per_class": (lai, levels)}
        if self.config.crosswalk == "ecland":
            fields.update({name: (lai, covers[cover][None] if on_slab else None)
                           for name, cover in crosswalks.ECLAND_LAI.items()})
        return fine_lai, dict(zip(fields, self._means(*fields.values())))

    def _map_classes(self) -> tuple[np.ndarray, OneHot, dict | None]:
        """The current fine map's one-hot classes (8, rows, W) float32, the same as weights of the
        host-cell means, and, with the ECLand crosswalk, their covers; computed once per map (every
        new map is a new array)."""
        if self._classes is None or self._classes[0] is not self.fine_map:
            classes = one_hot_classes(self.fine_map)
            covers = crosswalks.ecland_covers(classes) if self.config.crosswalk == "ecland" else None
            self._classes = (self.fine_map, classes, OneHot(class_levels(self.fine_map), len(self.classes)), covers)
        return self._classes[1:]

    def _daily_lai(self, date) -> tuple[np.ndarray | None, dict]:
        """LAI of a day: linear in time between the emulated LAI of the middles of the months before
        and after it (each emulated once, with that month's drivers, and kept until passed). Outside
        the driver file's months, the nearest month's value is held."""
        if self._driver_months is None:
            months = self.comm.allgather(collective(self.comm, lambda: self.world.driver_months() if self.slab >= 0
                                                    and not self._puts else None))
            self._driver_months = next((m for m in months if m is not None), [])
        now = self.clock.days(date)
        around = [(date.year - 1, 12)] + [(date.year, m) for m in range(1, 13)] + [(date.year + 1, 1)]
        middle = {key: self.clock.month_middle(*key) for key in around}
        after = next(key for key in around if middle[key][0] > now)
        before = around[around.index(after) - 1]
        if self._driver_months and not self._puts:
            first, last = self._driver_months[0], self._driver_months[-1]
            before, after = (min(max(k, first), last) for k in (before, after))
        for key in (before, after):
            if key not in self._lai_months:
                self._lai_months[key] = self._emulate_lai(self._drivers(*key), middle[key][1])
        for key in set(self._lai_months) - {before, after}:
            del self._lai_months[key]
        span = middle[after][0] - middle[before][0]
        w = min(max((now - middle[before][0]) / span, 0.0), 1.0) if span > 0 else 0.0
        (fine_a, fields_a), (fine_b, fields_b) = self._lai_months[before], self._lai_months[after]
        fine = None if fine_a is None else ((1.0 - w) * fine_a + w * fine_b).astype(np.float32)
        return fine, {name: (1.0 - w) * fields_a[name] + w * fields_b[name] for name in fields_a}

    def _period_middle(self, events: Events) -> float:
        cfg = self.config
        if cfg.lai_cadence == "monthly":
            return self.clock.month_middle(events.date.year, events.date.month)[1]
        start = ((events.day_of_year - 1) // cfg.lai_interval_days) * cfg.lai_interval_days
        return start + min(cfg.lai_interval_days, events.days_in_year - start) / 2.0
