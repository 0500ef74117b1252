"""Opt-in Weights & Biases tracking: a mirror of a run's metrics.jsonl, never a replacement for it.

``tracking.wandb.mode`` (configs/tracking/default.yaml) is one of

- ``disabled`` (default): nothing is imported or written; every :class:`WandbTracker` method is a no-op.
- ``offline``: a local wandb run folder ``<run folder>/wandb/offline-run-*``; no network and no API key
  needed; upload later with ``wandb sync <run folder>/wandb/offline-run-*``.
- ``online``: streams to the wandb server; needs ``wandb login`` or ``WANDB_API_KEY`` (without a key it
  fails at once). With no network ``wandb.init`` would retry for ~100 s (its default ``init_timeout`` of
  90 s); here the limit is ``init_timeout`` (15 s; wandb gives up after about twice that) and the failure
  is a one-line MupxError suggesting offline mode. If the network drops during a run, wandb keeps retrying
  in the background and ``finish`` waits for the upload: use offline mode where the network is unreliable.

Start the tracker on one rank only (rank 0); other ranks keep ``disabled``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import MupxError

MODES = ("online", "offline", "disabled")
DEFAULT_PROJECT = "mupx"


@dataclass(frozen=True)
class WandbConfig:
    """The ``tracking.wandb`` config section."""

    project: str | None = None  # None: "mupx"
    mode: Literal["online", "offline", "disabled"] = "disabled"
    group: str | None = None  # runs grouped in the wandb UI, e.g. a sweep's name


@dataclass(frozen=True)
class TrackingConfig:
    """The ``tracking`` config section: where a run is mirrored besides its own run folder. It never
    changes the result, so it is left out of the run id."""

    wandb: WandbConfig = field(default_factory=WandbConfig)


def flatten(row: dict, prefix: str = "") -> dict:
    """Nested dicts become ``outer/inner`` keys (wandb groups charts by the part before the slash)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out


def wandb_id(run_id: str, out: Path) -> str:
    """The wandb run id: one per mupx run folder, so a resumed run continues its wandb run while the same
    config in another folder (another sweep) gets its own."""
    return hashlib.sha256(f"{run_id}\0{Path(out).resolve()}".encode()).hexdigest()[:16]


class WandbTracker:
    """Mirrors one mupx run into wandb: config and plan at start, each metrics row, the result at the end."""

    def __init__(self) -> None:
        self.run: Any = None  # the wandb Run while started in online/offline mode

    def start(
        self,
        run_id: str,
        group: str | None,
        config: dict,
        plan_rows: list[dict],
        out: Path,
        mode: str = "disabled",
        project: str | None = None,
        init_timeout: float = 15.0,
    ) -> None:
        """Start the wandb run (a no-op when ``mode`` is disabled); its files go in ``<out>/wandb``."""
        if mode not in MODES:
            raise MupxError(f"tracking.wandb.mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            raise MupxError(
                f"tracking.wandb.mode={mode} needs the wandb package: pip install 'mupx[wandb]'"
            ) from None
        Path(out, "wandb").mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(init_timeout=init_timeout, silent=True, console="off")
        try:
            self.run = wandb.init(
                project=project or DEFAULT_PROJECT,
                group=group,
                name=run_id,
                id=wandb_id(run_id, out),
                resume="allow",
                config=config,
                dir=str(out),  # wandb adds the wandb/ folder
                mode=mode,
                reinit="create_new",
                settings=settings,
            )
        except Exception as e:  # UsageError (no API key), CommError (no network), ...
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise MupxError(
                f"wandb could not start in tracking.wandb.mode={mode} ({first}); "
                "use tracking.wandb.mode=offline (then wandb sync) or disabled"
            ) from None
        if plan_rows:
            columns = list(plan_rows[0])
            data = [[_cell(row.get(c)) for c in columns] for row in plan_rows]
            plan = wandb.Table(columns=columns, data=data, allow_mixed_types=True)
            self.run.log({"plan": plan}, commit=False)  # shown with the first metrics row

    def log(self, row: dict) -> None:
        """One metrics.jsonl row at ``row["step"]``; nested dicts (``spectral``) are flattened."""
        if self.run is None:
            return
        values = flatten({k: v for k, v in row.items() if k != "step"})
        self.run.log(values, step=int(row["step"]))

    def upload_images(self, paths: list[Path]) -> None:
        """Log image files (report plots) as ``report/<file stem>``; call between start and finish."""
        if self.run is None:
            return
        import wandb

        self.run.log({f"report/{Path(p).stem}": wandb.Image(str(p)) for p in paths})

    def finish(self, result: dict) -> None:
        """Put the run's result in the wandb summary and close the run; completed and diverged runs end
        with exit code 0, interrupted and failed ones with 1 (wandb shows them as failed). wandb's service
        writes the offline log out just after this returns, at the latest when the process exits."""
        if self.run is None:
            return
        self.run.summary.update(flatten(result))
        self.run.finish(exit_code=0 if result.get("status") in ("completed", "diverged") else 1)
        self.run = None


def _cell(value: Any) -> Any:
    """A wandb.Table cell: numbers, strings and None as they are, lists and dicts as JSON."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def upload_report(folder: Path, project: str | None, mode: str) -> None:
    """Upload a report's plots (``<sweep>/report/*.png``) as one wandb run ``<sweep>-report`` in the sweep's
    group, beside the sweep's runs."""
    sweep = Path(folder).resolve().parent.name
    tracker = WandbTracker()
    tracker.start(f"{sweep}-report", sweep, {"report": str(folder)}, [], folder, mode, project)
    tracker.upload_images(sorted(Path(folder).glob("*.png")))
    tracker.finish({"status": "completed"})
