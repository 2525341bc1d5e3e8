"""The local executor: `infialign run FILE` drives the shared planner with the LocalLauncher.

    observe (process exit, _SUCCESS.json, progress.json) → plan → act (launch, stop, wait) → record

Re-running resumes: a step whose `_SUCCESS.json` matches its config digest is marked done without
starting a process, and training steps resume from their newest checkpoint. Ctrl-C stops the running
stage cleanly and leaves everything resumable.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from infialign.pipeline import evidence, planner, validation
from infialign.pipeline.api import (
    AlignmentRun,
    AlignmentRunStatus,
    EvalResult,
    Failure,
    FailureClass,
    MlflowStatus,
    Reason,
    RunEstimateStatus,
    RunPhase,
    StepPhase,
    truncate,
)
from infialign.pipeline.estimate import publish
from infialign.pipeline.launchers import LocalLauncher, tail
from infialign.pipeline.runtime import entrypoint, markers, tracking
from infialign.pipeline.runtime.config import (
    RunIdentity,
    StageConfig,
    TrackingConfig,
    artifacts_root,
    build_stage_config,
)

__all__ = ["run_file", "LocalExecutor"]

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


def _warnings(marker: markers.SuccessMarker) -> str | None:
    """A succeeded step's status message: the warnings it finished with (a shortfall), or none."""
    return truncate("; ".join(marker.warnings)) if marker.warnings else None


def _recorded(marker: markers.SuccessMarker) -> dict[str, object]:
    """What a succeeded step's status copies from its `_SUCCESS.json`, whether it ran now or earlier."""
    return {"outputs": markers.status_outputs(marker.outputs), "metrics": markers.status_step_metrics(marker.metrics), "message": _warnings(marker)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LocalExecutor:
    def __init__(self, run: AlignmentRun, workdir: Path, console: Console | None = None, clock: Callable[[], dt.datetime] = _now) -> None:
        self.run = run
        self.spec = run.spec
        self.workdir = workdir.resolve()
        self.identity = RunIdentity(namespace=run.metadata.namespace, name=run.metadata.name, uid=run.metadata.uid)
        self.run_dir = self.workdir / "runs" / self.identity.namespace / self.identity.name
        self.status_file = self.run_dir / "status.json"
        self.spec_file = self.run_dir / evidence.SPEC_FILE  # `infialign plan --calibrate-from` scales from it
        self.storage = artifacts_root(self.spec, self.workdir)
        self.console = console or Console(stderr=True)
        self.clock = clock
        self.launcher = LocalLauncher(self.run_dir)
        self.configs: dict[str, StageConfig] = {}
        self.skipped: set[str] = set()
        self.tracking = TrackingConfig(
            enabled=self.spec.tracking.enabled,
            uri=self.spec.tracking.uri or tracking.local_tracking_uri(self.workdir),
            experiment=self.spec.tracking.experiment,
        )

    # ---------------------------------------------------------------- state

    def _load_previous(self) -> AlignmentRunStatus | None:
        try:
            return AlignmentRunStatus.model_validate_json(self.status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _save(self, status: AlignmentRunStatus) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(status.model_dump_json(by_alias=True, exclude_none=True, indent=2), encoding="utf-8")
        tmp.replace(self.status_file)

    def _start_tracking(self, status: AlignmentRunStatus) -> AlignmentRunStatus:
        previous = status.mlflow
        if previous and previous.parent_run_id:
            self.tracking = self.tracking.model_copy(update={"experiment_id": previous.experiment_id, "parent_run_id": previous.parent_run_id})
        self.tracking = tracking.ensure_parent_run(self.tracking, self.identity)
        if self.tracking.parent_run_id:
            mlflow = MlflowStatus(experiment_id=self.tracking.experiment_id, parent_run_id=self.tracking.parent_run_id, url=tracking.parent_run_url(self.tracking))
            status = status.model_copy(update={"mlflow": mlflow})
        return status

    def _estimate(self) -> RunEstimateStatus:
        """`status.estimate` as the operator writes it, but from everything readable here (sources, finished steps)."""
        try:
            found = evidence.gather(self.spec, self.identity, self.workdir)
            return publish.for_spec(self.spec, self.run.metadata.generation, found)
        except Exception as e:  # noqa: BLE001  an estimate never stops a run
            return publish.unavailable(f"no estimate: {str(e)[:300]}", self.run.metadata.generation)

    def _record_spec(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.spec_file.write_text(self.spec.model_dump_json(by_alias=True, exclude_none=True, indent=2), encoding="utf-8")

    # ---------------------------------------------------------------- observe

    def _observe(self, status: AlignmentRunStatus) -> AlignmentRunStatus:
        now = self.clock()
        for step in status.steps:
            if step.phase != StepPhase.RUNNING or step.name in self.skipped:
                continue
            attempt = self.launcher.attempts.get(step.name)
            if attempt is None or attempt.attempt != step.attempt:
                continue
            config = self.configs[step.name]
            code = attempt.process.poll()
            # The same reducer as the operator's: a progress.json older than this attempt (an earlier run's, left
            # in the output folder) is no heartbeat of it, and must not arm the stall clock before the stage beats.
            try:
                progress, error = markers.load_progress(config.output, self.storage), None
            except markers.ProgressUnreadable as e:
                progress, error = None, str(e)
            status = planner.heartbeat_read(
                status, step.name, step.attempt, now,
                progress=markers.status_progress(progress) if progress is not None else None,
                last_checkpoint=progress.last_checkpoint if progress is not None else None,
                error=error,
            )
            if code is None:
                continue
            marker = markers.read_success(config.output, self.storage) if code == entrypoint.EXIT_SUCCESS else None
            if marker is not None and marker.attempt <= step.attempt:
                status = planner.attempt_succeeded(
                    status, step.name, step.attempt, now, reason="Succeeded", duration_seconds=marker.duration_seconds, **_recorded(marker)
                )
                status = planner.record_results(status, step.name, markers.status_results(marker.results))
                continue
            message = attempt.termination_message() or {}
            error = str(message.get("error") or tail(attempt.log_path, 15))
            if code == entrypoint.EXIT_SUCCESS:
                cls, reason, error = FailureClass.APP, Reason.EXIT_CODE, "exited 0 without writing _SUCCESS.json"
            elif code < 0:  # killed by a signal we did not send: the OOM killer, a reboot
                cls, reason = FailureClass.INFRA, Reason.DISRUPTION
                error = f"killed by signal {-code}. {error}"
            else:
                cls, reason = planner.classify_exit_code(code, self.spec.failure_policy.fatal_exit_codes)
            failure = Failure(failure_class=cls, reason=reason, message=truncate(error), exit_code=code, attempt=step.attempt, time=now)
            status = planner.attempt_ended(status, step.name, failure)
        return status

    # ---------------------------------------------------------------- act

    def _config(self, step: str, attempt: int) -> StageConfig:
        config = build_stage_config(self.spec, self.identity, step, attempt, self.storage, self.tracking)
        self.configs[step] = config
        return config

    def _act(self, status: AlignmentRunStatus, action: planner.Action) -> AlignmentRunStatus:
        now = self.clock()
        if isinstance(action, planner.StartAttempt):
            assert action.step is not None
            config = self._config(action.step, action.attempt)
            status = planner.apply(status, action, now, run_name=self.identity.name)
            done = entrypoint.finished_marker(config)
            if done is not None:
                self.skipped.add(action.step)
                status = planner.attempt_cached(
                    status, action.step, action.attempt, now,
                    started_at=done.started, finished_at=done.finished_at, duration_seconds=done.duration_seconds, **_recorded(done),
                )
                return planner.record_results(status, action.step, markers.status_results(done.results))
            self.launcher.start(config)
            return status
        if isinstance(action, planner.StopAttempt):
            assert action.step is not None
            self.launcher.stop(action.step)
        return planner.apply(status, action, now, run_name=self.identity.name)

    # ---------------------------------------------------------------- loop

    def execute(self) -> AlignmentRunStatus:
        status = planner.initial_status(self.spec)
        previous = self._load_previous()
        if previous is not None and previous.mlflow is not None:
            status = status.model_copy(update={"mlflow": previous.mlflow})
        status = self._start_tracking(status).model_copy(update={"estimate": self._estimate()})
        assert status.estimate is not None
        tracking.log_parent_params(self.tracking, publish.mlflow_params(status.estimate))
        self._record_spec()
        started = time.monotonic()
        self._save(status)
        try:
            with Live(self._render(status, started), console=self.console, refresh_per_second=2, transient=False) as live:
                while status.phase not in (RunPhase.SUCCEEDED, RunPhase.FAILED):
                    status = self._observe(status)
                    actions = planner.plan(self.spec, status, self.clock())
                    waits = [a for a in actions if isinstance(a, planner.Wait)]
                    for action in actions:
                        if not isinstance(action, planner.Wait):
                            status = self._act(status, action)
                    self._save(status)
                    live.update(self._render(status, started))
                    if waits and len(waits) == len(actions):
                        until = waits[0].until
                        delay = POLL_SECONDS if until is None else max(0.0, min(POLL_SECONDS * 4, (until - self.clock()).total_seconds()))
                        time.sleep(delay)
        except KeyboardInterrupt:
            self.launcher.stop_all()
            self._save(status)
            tracking.finish_parent_run(self.tracking, "KILLED")
            self.console.print("[yellow]interrupted[/]: the running stage was stopped; run the same command again to resume")
            raise
        tracking.finish_parent_run(self.tracking, "FINISHED" if status.phase == RunPhase.SUCCEEDED else "FAILED")
        return status

    # ---------------------------------------------------------------- display

    def _render(self, status: AlignmentRunStatus, started: float) -> Group:
        table = Table(title=f"AlignmentRun {self.identity.namespace}/{self.identity.name} — {status.phase}", expand=False)
        for column in ("step", "phase", "attempt", "progress", "metrics"):
            table.add_column(column)
        for step in status.steps:
            pct = step.progress.percent if step.progress and step.progress.percent is not None else None
            bar = _bar(pct) if step.phase == StepPhase.RUNNING else ""
            metrics = ""
            if step.progress and step.progress.metrics and step.phase == StepPhase.RUNNING:
                metrics = " ".join(f"{k}={v:.4g}" for k, v in list(step.progress.metrics.items())[:4])
            table.add_row(step.name, _phase_text(step.phase, step.name in self.skipped), str(step.attempt or ""), bar, metrics)
        elapsed = Text(f"elapsed {time.monotonic() - started:.0f}s  {status.progress or ''}", style="dim")
        return Group(table, elapsed)

    def summary(self, status: AlignmentRunStatus) -> Table:
        table = Table(title="Summary")
        for column in ("stage", "status", "duration", "rows", "key metrics"):
            table.add_column(column)
        for step in status.steps:
            marker = markers.read_success(self.configs[step.name].output, self.storage) if step.name in self.configs else None
            duration = f"{marker.duration_seconds:.1f}s" if marker and marker.duration_seconds is not None else ""
            if step.name in self.skipped and marker:
                duration = f"skipped ({duration} before)"
            rows = ", ".join(f"{o.name}={o.rows}" for o in (marker.outputs if marker else []) if o.rows is not None)
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in list((marker.metrics if marker else {}).items())[:5])
            table.add_row(step.name, str(step.phase), duration, rows, metrics)
        return table

    def results(self, status: AlignmentRunStatus) -> Table | None:
        """The eval stage's model × benchmark table, the same entries as `status.results` and `results.json`."""
        return results_table(status.results or [])


def results_table(results: list[EvalResult]) -> Table | None:
    """Rows: models in evaluation order; columns: benchmark (and subset); cells: avg@k and pass@k."""
    if not results:
        return None
    models = list(dict.fromkeys(r.model for r in results))
    columns = list(dict.fromkeys((r.benchmark, r.subset) for r in results))
    cells: dict[tuple[str, str, str | None], list[str]] = {}
    for r in results:
        cells.setdefault((r.model, r.benchmark, r.subset), []).append(f"{r.metric} {r.value:.3f}")
    table = Table(title="Evaluation (status.results, results.json)")
    table.add_column("model")
    for bench, subset in columns:
        table.add_column(f"{bench}/{subset}" if subset else bench)
    for model in models:
        table.add_row(model, *("  ".join(cells.get((model, b, s), [])) for b, s in columns))
    return table


def _bar(percent: float | None, width: int = 20) -> str:
    if percent is None:
        return "…"
    filled = int(width * percent / 100)
    return "█" * filled + "░" * (width - filled) + f" {percent:5.1f}%"


def _phase_text(phase: StepPhase, skipped: bool) -> Text:
    styles = {StepPhase.SUCCEEDED: "green", StepPhase.FAILED: "red", StepPhase.RUNNING: "cyan", StepPhase.BACKOFF: "yellow", StepPhase.SKIPPED: "dim"}
    label = "Succeeded (cached)" if skipped and phase == StepPhase.SUCCEEDED else str(phase)
    return Text(label, style=styles.get(phase, ""))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_file(path: Path, workdir: Path, name: str | None = None, console: Console | None = None) -> int:
    """`infialign run`: validate, execute, summarise. Returns the process exit code."""
    console = console or Console(stderr=True)
    result = validation.load_manifest(path)
    for problem in result.problems:
        console.print(validation.format_problem(str(path), problem), markup=False, highlight=False)
    if not result.ok:
        return 2
    runs = [r for r in result.runs if name is None or r.metadata.name == name]
    if len(runs) != 1:
        names = [r.metadata.name for r in result.runs]
        console.print(f"{path}: holds runs {names}; choose one with --name" if runs else f"{path}: no run named {name!r}; it holds {names}")
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored; a supervisor
    # stops with SIGTERM. Both must reach the clean stop path that leaves the run resumable.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    executor = LocalExecutor(runs[0], workdir, console=console)
    status = executor.execute()
    console.print(executor.summary(status))
    results = executor.results(status)
    if results is not None:
        console.print(results)
    if status.phase == RunPhase.FAILED:
        failed = next((s for s in status.steps if s.phase == StepPhase.FAILED), None)
        if failed is not None:
            failure = failed.last_failure
            cls = failure.failure_class if failure else "unknown"
            console.print(f"[red]{failed.name} failed[/] ({cls}: {failed.reason}): {failed.message or ''}", highlight=False)
            attempt = executor.launcher.attempts.get(failed.name)
            if attempt is not None:
                console.print(f"--- last lines of {attempt.log_path} ---", style="dim")
                console.print(tail(attempt.log_path, 30), markup=False, highlight=False)
    if executor.tracking.uri and executor.tracking.uri.startswith("sqlite:///"):
        console.print(f"MLflow: mlflow ui --backend-store-uri {executor.tracking.uri}", highlight=False)
        if status.mlflow and status.mlflow.experiment_id and status.mlflow.parent_run_id:
            local = executor.tracking.model_copy(
                update={"uri": "http://127.0.0.1:5000", "experiment_id": status.mlflow.experiment_id, "parent_run_id": status.mlflow.parent_run_id}
            )
            console.print(f"        then open {tracking.parent_run_url(local)}", highlight=False)
    elif status.mlflow and status.mlflow.url:
        console.print(f"MLflow: {status.mlflow.url}")
    console.print(f"artifacts: {executor.storage.root}/{executor.identity.namespace}/{executor.identity.name}/")
    console.print(f"status: {executor.status_file}")
    return 0 if status.phase == RunPhase.SUCCEEDED else 1

