"""Sliding-window drift monitor: bounded ring buffers on the request path, statistics off it.

Request path: :meth:`DriftMonitor.observe` converts a batch to arrays and copies it into
preallocated ring buffers under a short lock -- no per-row Python objects are kept and
memory is fixed at construction.

Background: a thread recomputes after ``recompute_every`` new rows or every
``recompute_interval_s`` seconds, whichever comes first, publishes an immutable
:class:`DriftReport` (read lock-free by ``report()`` and the metric callbacks) and calls
``on_change`` when a feature's drifted state flips.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import divergence
from .ks_pvalue import KsPValueCache
from .multiple_testing import benjamini_hochberg
from .numeric import NumericBatch, prepare_numeric_reference

log = logging.getLogger(__name__)

UNSEEN = "__unseen__"
"""Name of the extra categorical bucket for values not listed in the FeatureSpec."""


@dataclass(frozen=True)
class FeatureSpec:
    """One model input feature, from the model schema."""

    name: str
    kind: Literal["numeric", "categorical"]
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftSettings:
    """Window, decision and scheduling knobs (defaults suit ~1k predictions/window)."""

    window_size: int = 1000
    window_seconds: float | None = None
    min_window: int = 200
    alpha: float = 0.05
    psi_threshold: float = 0.1
    ks_threshold: float = 0.1
    psi_bins: int = 10
    recompute_every: int = 100
    recompute_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.window_size < 1 or self.min_window < 1 or self.recompute_every < 1:
            raise ValueError("window_size, min_window and recompute_every must be >= 1")
        if self.min_window > self.window_size:
            raise ValueError("min_window > window_size: a verdict could never be reached")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if self.psi_bins < 2:
            raise ValueError("psi_bins must be >= 2")
        if self.recompute_interval_s <= 0:
            raise ValueError("recompute_interval_s must be > 0")
        if self.window_seconds is not None and self.window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")


@dataclass(frozen=True)
class WindowInfo:
    size: int
    start_time: float | None
    end_time: float | None


@dataclass(frozen=True)
class FeatureDrift:
    """Per-feature result. Statistics are None when the window holds no usable value."""

    name: str
    kind: str
    test: Literal["ks", "chi2"]
    statistic: float | None
    p_value: float | None
    p_value_adjusted: float | None
    psi: float | None
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """Immutable snapshot of the latest computation (what GET /drift returns)."""

    computed_at: float | None
    window: WindowInfo
    verdict_ready: bool
    drift_share: float
    drifted_features: list[str] = field(default_factory=list)
    features: list[FeatureDrift] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; non-finite floats become None (JSON has no NaN)."""
        return _json_safe(asdict(self))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _opt(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class DriftMonitor:
    """Compares a sliding window of recent model inputs to a fixed reference sample.

    ``reference`` maps each feature name to its reference sample (float array for numeric,
    array of category strings for categorical). ``on_change(report, changed_names)`` is
    called by whichever thread ran :meth:`compute` -- the background thread once
    :meth:`start` is used -- whenever a feature's ``drifted`` flag flips; exceptions from
    it are logged, never propagated. ``ks_pvalues`` replaces the p-value memo (benchmarks
    pass one that counts how p-values were computed).
    """

    def __init__(
        self,
        features: Sequence[FeatureSpec],
        reference: Mapping[str, np.ndarray],
        settings: DriftSettings,
        *,
        on_change: Callable[[DriftReport, list[str]], None] | None = None,
        ks_pvalues: KsPValueCache | None = None,
    ) -> None:
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError("duplicate feature names")
        if not features:
            raise ValueError("at least one feature is required")
        self.features = tuple(features)
        self.settings = settings
        self._on_change = on_change
        self._num = [f for f in self.features if f.kind == "numeric"]
        self._cat = [f for f in self.features if f.kind == "categorical"]
        if len(self._num) + len(self._cat) != len(self.features):
            raise ValueError("feature kind must be 'numeric' or 'categorical'")
        for f in self.features:
            if f.name not in reference:
                raise ValueError(f"no reference data for feature {f.name!r}")

        # --- reference preparation (once) -------------------------------------------------
        self._num_ref = [
            prepare_numeric_reference(reference[f.name], settings.psi_bins) for f in self._num
        ]
        self._num_batch = NumericBatch(self._num_ref)
        self._cat_maps: list[dict[str, int]] = []
        self._cat_ref_counts: list[np.ndarray] = []
        for f in self._cat:
            mapping = {c: i for i, c in enumerate(f.categories)}
            self._cat_maps.append(mapping)
            unseen = len(f.categories)
            ref_codes = np.fromiter(
                (mapping.get(str(v), unseen) for v in np.asarray(reference[f.name]).ravel()),
                dtype=np.int64,
            )
            if ref_codes.size == 0:
                raise ValueError(f"empty reference for feature {f.name!r}")
            self._cat_ref_counts.append(np.bincount(ref_codes, minlength=unseen + 1))

        # --- ring buffers (bounded, preallocated) -----------------------------------------
        cap = settings.window_size
        self._cap = cap
        self._num_names = [f.name for f in self._num]
        self._cat_names = [f.name for f in self._cat]
        self._num_buf = np.full((cap, len(self._num)), np.nan)  # rows x features
        self._cat_buf = np.zeros((cap, len(self._cat)), dtype=np.int32)
        self._ts_buf = np.zeros(cap)
        self._seq = 0  # total rows ever observed; ring position = seq % cap
        self._lock = threading.Lock()  # guards the buffers and _seq (held only to copy)

        # slot codes of numeric window rows, filled lazily by compute() for new rows only
        self._codes = np.zeros((len(self._num), cap), dtype=self._num_batch.code_dtype)
        self._coded_seq = 0
        self._compute_lock = threading.Lock()
        # only used under _compute_lock
        self._ks_pvalues = KsPValueCache() if ks_pvalues is None else ks_pvalues
        self._timing: dict[str, float] = {}
        #: phase durations of the last compute() (seconds) -- for benchmarks and debugging
        self.last_compute_seconds: dict[str, float] = {}

        self._report = self._empty_report()
        self._drifted: dict[str, bool] = {f.name: False for f in self.features}

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending = 0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ request path
    def observe(
        self,
        rows: Sequence[Mapping[str, float | str]],
        timestamp: float | Sequence[float] | None = None,
    ) -> None:
        """Append rows to the window. Cheap and never raises on odd values.

        Conversion happens before taking the lock; the lock is held only for a slice copy.
        Missing or non-numeric values become NaN (excluded from that feature's test);
        unknown categories go to the unseen bucket. Batches larger than the window keep
        only their last ``window_size`` rows. ``timestamp`` is one time for the batch, or
        one per row (the monitor replays stored rows with the time each was predicted).
        """
        n = len(rows)
        if n == 0:
            return
        ts: float | np.ndarray
        if timestamp is None or isinstance(timestamp, int | float):
            ts = time.time() if timestamp is None else float(timestamp)
        else:
            ts = np.asarray(timestamp, dtype=np.float64)
            if ts.shape != (n,):
                raise ValueError("one timestamp per row")
        if n > self._cap:
            rows = rows[n - self._cap :]
            if isinstance(ts, np.ndarray):
                ts = ts[n - self._cap :]
            n = self._cap
        nan = math.nan
        num_names = self._num_names
        try:
            num = np.array([[r.get(k, nan) for k in num_names] for r in rows], dtype=np.float64)
        except (TypeError, ValueError):
            num = np.array([[_to_float(r.get(k, nan)) for k in num_names] for r in rows])
        num = num.reshape(n, len(num_names))
        cat = np.empty((n, len(self._cat)), dtype=np.int32)
        for j, (name, mapping) in enumerate(zip(self._cat_names, self._cat_maps, strict=True)):
            unseen = len(mapping)
            for i, r in enumerate(rows):
                v = r.get(name)
                cat[i, j] = mapping.get(v if isinstance(v, str) else str(v), unseen)

        with self._lock:
            pos = self._seq % self._cap
            first = min(n, self._cap - pos)
            self._num_buf[pos : pos + first] = num[:first]
            self._cat_buf[pos : pos + first] = cat[:first]
            self._ts_buf[pos : pos + first] = ts if isinstance(ts, float) else ts[:first]
            if first < n:
                rest = n - first
                self._num_buf[:rest] = num[first:]
                self._cat_buf[:rest] = cat[first:]
                self._ts_buf[:rest] = ts if isinstance(ts, float) else ts[first:]
            self._seq += n
            self._pending += n
            wake = self._pending >= self.settings.recompute_every
        if wake:
            self._wake.set()

    # ------------------------------------------------------------------ computation
    def compute(self) -> DriftReport:
        """Recompute all features on the current window, publish and return the report.

        Only rows that arrived since the previous computation are ranked against the
        reference; the rest reuse cached slot codes, so steady-state cost is dominated by
        one small integer sort per numeric feature.
        """
        with self._compute_lock:
            t_start = time.perf_counter()
            now = time.time()
            cap = self._cap
            with self._lock:
                seq = self._seq
                self._pending = 0
                start_seq = max(self._coded_seq, seq - cap)
                new_pos = np.arange(start_seq, seq) % cap
                new_num = self._num_buf[new_pos]
                cat_buf = self._cat_buf.copy()
                ts = self._ts_buf.copy()
            if self._num and new_pos.size:
                self._codes[:, new_pos] = self._num_batch.slot_codes(new_num.T)
            self._coded_seq = seq
            self._timing["rank_new_rows"] = time.perf_counter() - t_start

            filled = min(seq, cap)
            positions: np.ndarray | slice = slice(0, filled)
            sel_ts = ts[:filled]
            if self.settings.window_seconds is not None and filled:
                keep = np.flatnonzero(sel_ts >= now - self.settings.window_seconds)
                if keep.size < filled:
                    positions = keep
                    sel_ts = sel_ts[keep]
            size = int(sel_ts.shape[0])
            window = WindowInfo(
                size=size,
                start_time=float(sel_ts.min()) if size else None,
                end_time=float(sel_ts.max()) if size else None,
            )
            report = self._evaluate(now, window, self._codes[:, positions], cat_buf[positions])
            changed = [
                f.name for f in report.features if f.drifted != self._drifted.get(f.name, False)
            ]
            self._drifted = {f.name: f.drifted for f in report.features}
            self._report = report
            self._timing["total"] = time.perf_counter() - t_start
            self.last_compute_seconds = dict(self._timing)
        if changed and self._on_change is not None:
            try:
                self._on_change(report, changed)
            except Exception:
                log.exception("drift on_change callback failed")
        return report

    def _evaluate(
        self, now: float, window: WindowInfo, codes: np.ndarray, cat_codes: np.ndarray
    ) -> DriftReport:
        s = self.settings
        n_num = len(self._num)
        m = n_num + len(self._cat)
        stat = np.full(m, np.nan)
        pval = np.full(m, np.nan)
        psi = np.full(m, np.nan)
        self._timing["ks_p_values"] = 0.0
        n_win = np.zeros(m, dtype=np.int64)
        n_ref = np.zeros(m, dtype=np.int64)
        if window.size:
            if n_num:
                stat[:n_num], n_win[:n_num], psi[:n_num] = self._num_batch.evaluate(codes)
                n_ref[:n_num] = self._num_batch.n1
            if n_num:
                t0 = time.perf_counter()
                pval[:n_num] = self._ks_pvalues(stat[:n_num], n_ref[:n_num], n_win[:n_num])
                self._timing["ks_p_values"] = time.perf_counter() - t0
            for k, ref_counts in enumerate(self._cat_ref_counts):
                j = n_num + k
                counts = np.bincount(cat_codes[:, k], minlength=ref_counts.size)
                stat[j], pval[j], _ = divergence.chi2_two_sample(ref_counts, counts)
                psi[j] = divergence.psi(ref_counts / ref_counts.sum(), counts / counts.sum())
        adjusted = benjamini_hochberg(pval)

        ready = window.size >= s.min_window
        out: list[FeatureDrift] = []
        specs = self._num + self._cat
        for j, f in enumerate(specs):
            numeric = j < n_num
            drifted = False
            if ready and math.isfinite(adjusted[j]) and adjusted[j] < s.alpha:
                big_psi = psi[j] >= s.psi_threshold
                drifted = bool(big_psi or (numeric and stat[j] >= s.ks_threshold))
            out.append(
                FeatureDrift(
                    name=f.name,
                    kind=f.kind,
                    test="ks" if numeric else "chi2",
                    statistic=_opt(stat[j]),
                    p_value=_opt(pval[j]),
                    p_value_adjusted=_opt(adjusted[j]),
                    psi=_opt(psi[j]),
                    drifted=drifted,
                )
            )
        # report in the FeatureSpec order given by the caller
        order = {f.name: i for i, f in enumerate(self.features)}
        out.sort(key=lambda fd: order[fd.name])
        drifted_names = [fd.name for fd in out if fd.drifted]
        return DriftReport(
            computed_at=now,
            window=window,
            verdict_ready=ready,
            drift_share=len(drifted_names) / len(out),
            drifted_features=drifted_names,
            features=out,
        )

    def _empty_report(self) -> DriftReport:
        return DriftReport(
            computed_at=None,
            window=WindowInfo(0, None, None),
            verdict_ready=False,
            drift_share=0.0,
            drifted_features=[],
            features=[
                FeatureDrift(
                    f.name,
                    f.kind,
                    "ks" if f.kind == "numeric" else "chi2",
                    None,
                    None,
                    None,
                    None,
                    False,
                )
                for f in self.features
            ],
        )

    def report(self) -> DriftReport:
        """Latest published report (a reference read; never blocks)."""
        return self._report

    # ------------------------------------------------------------------ background thread
    def start(self) -> None:
        """Start the recompute thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="drift-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the recompute thread and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        interval = self.settings.recompute_interval_s
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.compute()
            except Exception:
                log.exception("drift computation failed")

    # ------------------------------------------------------------------ metrics
    def register_metrics(self, meter: Meter) -> None:
        """Observable gauges named as in docs/contract.md; values come from report().

        Units are empty (unitless) so the Prometheus exporter adds no ``_ratio`` suffix.
        """
        gauges = (
            (
                "modelobs.drift.ks.statistic",
                self._obs_ks,
                "",
                "Two-sample Kolmogorov-Smirnov statistic, window vs reference",
            ),
            (
                "modelobs.drift.p_value",
                self._obs_p,
                "",
                "Unadjusted drift test p-value (ks for numeric, chi2 for categorical)",
            ),
            (
                "modelobs.drift.psi",
                self._obs_psi,
                "",
                "Population Stability Index, window vs reference",
            ),
            (
                "modelobs.drift.detected",
                self._obs_detected,
                "",
                "1 when the feature is flagged as drifted (BH-adjusted and effect-gated)",
            ),
            ("modelobs.drift.share", self._obs_share, "", "Share of features flagged as drifted"),
            ("modelobs.drift.window.size", self._obs_window, "{row}", "Rows in the current window"),
        )
        for name, callback, unit, description in gauges:
            meter.create_observable_gauge(
                name, callbacks=[callback], unit=unit, description=description
            )

    def _obs_ks(self, _: CallbackOptions) -> list[Observation]:
        return [
            Observation(f.statistic, {"feature.name": f.name})
            for f in self._report.features
            if f.test == "ks" and f.statistic is not None
        ]

    def _obs_p(self, _: CallbackOptions) -> list[Observation]:
        return [
            Observation(f.p_value, {"feature.name": f.name, "drift.test": f.test})
            for f in self._report.features
            if f.p_value is not None
        ]

    def _obs_psi(self, _: CallbackOptions) -> list[Observation]:
        return [
            Observation(f.psi, {"feature.name": f.name})
            for f in self._report.features
            if f.psi is not None
        ]

    def _obs_detected(self, _: CallbackOptions) -> list[Observation]:
        return [
            Observation(int(f.drifted), {"feature.name": f.name}) for f in self._report.features
        ]

    def _obs_share(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(self._report.drift_share)]

    def _obs_window(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(self._report.window.size)]


def _to_float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
