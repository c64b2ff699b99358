"""The training loop (SPEC §5): seeding, resumable runs and snapshots (files: `checkpoint`).

A run folder holds everything of one run:

```
RUN/config.json                 the TrainConfig
RUN/checkpoints/iter_NNNNNN.pt  one per snapshot; last.pt = the newest
RUN/log.jsonl                   training losses, one JSON object per logged iteration
RUN/results.jsonl               one JSON object per evaluation (appended)
RUN/metrics.json, per_video.csv, scores.npz, plots/, report.html   the latest evaluation
RUN/.arnet.lock                 held by the process training into RUN, removed when it ends
RUN/validation.json[l], selected.json, checkpoints/selected.pt   --val-fraction (`validation`)
```

A new run needs a new or empty folder. A resumed run continues in its own folder (the one
holding the checkpoint's `checkpoints/`), its logs cut back to the checkpoint's iteration; given
another folder, which must be new or empty, it continues there as a copy (the logs up to the
checkpoint copied over), leaving the original run untouched.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..atomic import write_json_atomic
from ..config import TrainConfig, absolute_paths
from ..data.dataset import FeatureDataset
from ..data.sampling import BalancedBatchSampler
from ..errors import CheckpointError, DataError, Stopped, TrainingError
from ..evaluation.evaluate import TrainResult, evaluate_model
from ..evaluation.metrics import Metrics
from ..evaluation.report import remove_evaluation
from ..folders import RunFolder, claim_folder
from ..models import build_objective, create_model, model_entry, model_spec, objective_entry
from ..models.cells import instances_model
from .bank import event_fps, fit_run, resolve_instances
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_checkpoint,
    load_pretrained,
    load_weights,
    save_checkpoint,
    training_extraction,
)
from .runlog import RunLog, last_record, prepare_run_folder
from .runtime import (
    interrupt_between_steps,
    keep_freed_memory,
    make_adam,
    prepare_model,
    require_batch_fits,
    resolve_device,
)
from .validation import VALIDATION_FILE, VALIDATION_LOG, Validation

# ---------------------------------------------------------------------- set-up


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_args(config: TrainConfig) -> dict[str, Any]:
    """The model's constructor arguments: `model_args`, plus `dropout_mask` for a model that
    takes it (`single`; the others draw torch's masks anyway)."""
    args = dict(config.model_args)
    takes = inspect.signature(model_entry(config.model).cls).parameters
    if config.dropout_mask != "fast" and "dropout_mask" in takes:
        args.setdefault("dropout_mask", config.dropout_mask)
    return args


# ---------------------------------------------------------------------- the run


class Trainer:
    """One training run: model, optimiser, sampler and objective, from a TrainConfig.

    Args:
        config: the run's configuration.
        train_set: training videos (video labels only are used); with `val_fraction`, some
            are held out of training to choose the snapshot and threshold (`validation`).
        test_set: test videos with frame labels, scored at every snapshot; None skips testing.
        out_dir: the run folder.
        progress: show a progress bar (None: only on a terminal).
        resume_from: a checkpoint payload of this run to continue from (`restore`); the
            `pretrained` weights are then not loaded.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_set: FeatureDataset,
        test_set: FeatureDataset | None,
        out_dir: str | Path,
        progress: bool | None = None,
        *,
        resume_from: Mapping[str, Any] | None = None,
    ) -> None:
        config.validate()
        # saved with the run: its paths valid from any working directory
        config = TrainConfig.from_dict(absolute_paths(config.to_dict()))
        config = resolve_instances(config, train_set.dim)  # the cells of --instances cells
        if config.feature_dim is not None and config.feature_dim != train_set.dim:
            raise DataError(
                f"config field 'feature_dim' is {config.feature_dim}, but the training features "
                f"have dimension {train_set.dim} ({train_set.sources[0]})"
            )
        if train_set.contiguous:  # a store: checked once here, not per batch
            train_set.check_values()
        self.validation = Validation(train_set, config, test_set) if config.val_fraction else None
        train_set = self.validation.train_set if self.validation else train_set
        if config.uniform_segments is not None:  # RTFM's, MGFN's, UR-DMU's training input
            train_set = train_set.uniform_segments(config.uniform_segments)
        self.config = config
        self.train_set = train_set
        self.test_set = test_set
        self._event_fps = None if test_set is None else event_fps(config, test_set)
        self.out_dir = Path(out_dir)
        self.run_folder = RunFolder(self.out_dir)
        # the training features' extraction record, carried by every checkpoint
        self.extraction = training_extraction(config)
        self.progress = progress
        self._evaluated: int | None = None  # the iteration of the run folder's evaluation files
        # A model fitted without gradients (nearest-normal) has no steps: run() fits it.
        self.fitted = not objective_entry(model_entry(config.model).objective).gradient
        self.resumed_from: Path | None = None
        self.iteration = 0
        if self.fitted:
            if resume_from is not None:
                raise TrainingError(f"model {config.model!r} is fitted in one go: no resuming")
            return
        if test_set is not None and len(test_set) and test_set.dim != train_set.dim:
            raise DataError(
                f"{test_set.sources[0]}: test features have {test_set.dim} dimensions, the "
                f"training features {train_set.dim}"
            )
        require_batch_fits(config, train_set)
        self.device = resolve_device(config.device)
        if config.reuse_memory:
            keep_freed_memory()
        seed_everything(config.seed)
        # with --instances cells, the model takes one cell's features
        dim = sum(config.cell_widths) if config.cell_widths else train_set.dim
        self.model = create_model(config.model, dim, **model_args(config)).to(self.device)
        if config.pretrained and resume_from is None:  # a resumed run has its own weights
            load_pretrained(self.model, config.pretrained)
        # What the steps and the snapshots call: the model (on each cell with --instances
        # cells), compiled and/or under autocast.
        scorer = instances_model(self.model, config)
        self.run_model = prepare_model(scorer, self.device, config.precision, config.compile)
        cuda = self.device.type == "cuda"
        self.optimizer = make_adam(self.model, config.lr, config.weight_decay, config.fused_adam)
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
        self.sampler = BalancedBatchSampler(
            train_set,
            config.videos_per_class,
            config.max_segments,
            config.sample_step,
            config.draws_per_step,
            config.train_crop,
            seed=config.seed,
            device=self.device
            if cuda and config.features_on_device and train_set.contiguous
            else None,
            # The step is done with a batch before the next is drawn; on CUDA the copy to the
            # device may still be reading the buffer, so each batch gets its own there.
            reuse_buffer=not cuda,
            reference_sampling=config.reference_sampling(),
        )
        self.objective = build_objective(config.model, config)
        self.total = config.total_iterations(len(train_set))
        self.history: list[dict[str, Any]] = []
        self.metrics: Metrics | None = None
        if resume_from is not None:
            self.restore(resume_from)
            self.resumed_from = Path(resume_from.get("path", out_dir)).absolute()

    # -- state
    def state(self) -> dict[str, Any]:
        rng = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "sampler": self.sampler.state_dict(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        extra = {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}
        if self.validation is not None:
            extra.update(self.validation.state(self.iteration))
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "arnet_version": __version__,
            "model": model_spec(self.model),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "total_iterations": self.total,
            "rng": rng,
            "config": self.config.to_dict(),
            "extraction": self.extraction,
            "metrics": self.metrics.summary() if self.metrics else None,
            **extra,
        }

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Continue from a checkpoint of this run: weights, optimiser, iteration and RNGs."""
        load_weights(self.model, payload["state_dict"], payload.get("path", "checkpoint"))
        if "optimizer" not in payload or "rng" not in payload:
            raise CheckpointError(
                f"{payload.get('path')}: holds weights only; cannot resume from it"
            )
        self.optimizer.load_state_dict(payload["optimizer"])
        self.iteration = int(payload["iteration"])
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"].cpu())  # RNG states are CPU byte tensors
        random.setstate(_as_tuple(rng["python"]))
        self.sampler.load_state_dict(rng["sampler"])
        if "cuda" in rng and self.device.type == "cuda":
            state = rng["cuda"]
            if isinstance(state, (list, tuple)):  # checkpoints of 0.1.0 held every GPU's state
                state = state[min(self.device.index or 0, len(state) - 1)]
            torch.cuda.set_rng_state(state.cpu(), self.device)
        if self.scaler is not None and "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        if self.validation is not None:
            self.validation.load_state(payload.get("selected"), payload.get("path", "checkpoint"))

    def checkpoint(self) -> Path:
        """Save the full state as iter_NNNNNN.pt and last.pt, pruning old snapshots."""
        run = self.run_folder
        payload = self.state()
        # last.pt first: a disk that fills between the two leaves the one --resume reads.
        save_checkpoint(run.last, payload)
        path = save_checkpoint(run.snapshot(self.iteration), payload)
        keep = self.config.keep_checkpoints
        if keep:
            for old in run.snapshots()[:-keep]:
                old.unlink()
        if self.validation is not None:
            self.validation.save_selected(self.out_dir, payload, again=False)
        return path

    # -- loop
    def run(self) -> TrainResult:
        """Train to the end (or to Ctrl-C), holding the run folder for this process."""
        with claim_folder(self.out_dir, "arnet train"):
            self._prepare_folder()
            if self.fitted:
                return fit_run(
                    self.config, self.train_set, self.test_set, self.out_dir, self.validation
                )
            return self._run()

    def _prepare_folder(self) -> None:
        prepare_run_folder(self.out_dir, self.resumed_from, self.iteration)
        self.config.save(self.run_folder.file(RunFolder.CONFIG))
        v = self.validation
        if v is not None:
            write_json_atomic(self.out_dir / VALIDATION_FILE, v.describe())
            if v.best is not None:  # resumed: the folder's selection is the checkpoint's
                v.save_selected(self.out_dir, self.state(), again=True)
        if self.resumed_from is not None and self.test_set is not None:
            self._restore_evaluation()

    def _restore_evaluation(self) -> None:
        """On resume, make the run folder's evaluation files (metrics.json, per_video.csv,
        scores.npz, plots/, curves.png, report.html) those of the evaluation the checkpoint
        stands for: a run stopped between a snapshot's evaluation and its checkpoint left files
        of weights the resumed run never had. They are written anew from that evaluation's
        weights (the selected snapshot's with `val_fraction`, else those of the last one in
        results.jsonl: the checkpoint's own or its iter_*.pt), or removed when there is none
        (the next snapshot writes them)."""
        remove_evaluation(self.out_dir)
        cfg, v = self.config, self.validation
        if v is not None:
            if v.best is None or v.best.get("state_dict") is None:
                return
            best = v.best
            v.best_metrics = self._test(self._model_with(best["state_dict"]), best["threshold"],
                                        True, best["iteration"])  # fmt: skip
            return
        last = last_record(self.run_folder.file(RunFolder.RESULTS))
        if last is None:
            return
        at = last["iteration"]
        model = self.run_model if at == self.iteration else None
        snapshot = (
            self.resumed_from.with_name(RunFolder.snapshot_name(at)) if self.resumed_from else None
        )
        if model is None and snapshot is not None and snapshot.is_file():
            payload = load_checkpoint(snapshot)
            if payload["iteration"] == at:
                model = self._model_with(payload["state_dict"])
        if model is not None:
            self.metrics = self._test(model, cfg.threshold, True, at)

    def _run(self) -> TrainResult:
        last_path = self.run_folder.last
        log = RunLog(self.out_dir, self.config.tensorboard)
        cfg = self.config
        bar = tqdm(
            total=self.total,
            initial=self.iteration,
            disable=None if self.progress is None else not self.progress,
            desc=f"train {cfg.model}",
            unit="it",
            dynamic_ncols=True,
        )
        # Off a terminal (a log file, a pipe) the bar hides itself: plain lines instead.
        lines = ProgressLines(
            f"train {cfg.model}", self.total, self.progress is None and bar.disable
        )
        started, done_at_start = time.perf_counter(), self.iteration
        self.model.train()
        between_steps = True
        try:
            with interrupt_between_steps() as interrupted:
                while self.iteration < self.total:
                    if interrupted():
                        raise Stopped(interrupted())
                    between_steps = False
                    loss, parts = self._step()
                    self.iteration += 1
                    between_steps = True
                    bar.update(1)
                    it = self.iteration
                    rate = (it - done_at_start) / (time.perf_counter() - started)
                    snapshot = it % cfg.snapshot_every == 0 or it == self.total
                    if it % cfg.log_every == 0 or it == self.total:
                        self._log(loss, parts, rate, log, bar)
                    lines.report(it, rate, loss, force=snapshot)
                    if snapshot:
                        self._snapshot(log)
        except KeyboardInterrupt:
            progressed = between_steps and self.iteration > done_at_start
            if progressed and not self._non_finite_parameters():
                save_checkpoint(last_path, self.state())
                what = f"resume from {last_path}"
            else:  # mid-step (a second Ctrl-C) or diverged: keep the last snapshot
                what = self._last_good()
            tqdm.write(f"interrupted at iteration {self.iteration}; {what}", file=sys.stderr)
            raise
        finally:
            bar.close()
            log.close()
        if self.validation is not None and self.validation.best is not None:
            return self._selected_result()
        return TrainResult(
            self.out_dir, self.iteration, last_path, self.metrics, self.history, self.iteration
        )

    def _log(
        self,
        loss: torch.Tensor,
        parts: dict[str, torch.Tensor],
        it_per_s: float,
        log: RunLog,
        bar: Any,
    ) -> None:
        """Append the step's losses to log.jsonl (reading them syncs); stop on a NaN loss."""
        record = {
            "iteration": self.iteration,
            "loss": loss.item(),
            **{k: v.item() for k, v in parts.items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "it_per_s": it_per_s,
        }
        if not np.isfinite(record["loss"]):
            raise TrainingError(
                f"loss became {record['loss']} at iteration {self.iteration}; {self._last_good()}"
            )
        log.append("log.jsonl", record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")

    def step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training iteration outside `run` (no logging, snapshots or checkpoints): for
        callers that drive their own loop, such as benchmarks/compat.py."""
        loss, parts = self._step()
        self.iteration += 1
        return loss, parts

    def _step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimisation step; the loss stays on the device (reading it would sync)."""
        batch = self.sampler.next_batch().to(self.device)
        try:
            loss, parts = self.objective(self.run_model, batch)
        except RuntimeError:
            # Non-finite weights trip the losses' own input checks: say what really happened.
            self._require_finite_parameters()
            raise
        self.optimizer.zero_grad(set_to_none=True)
        clip = self.config.max_grad_norm
        if self.scaler is None:
            loss.backward()
            if clip is not None:  # BN-WVAD's code clips at 1
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
        else:  # fp16: scaled loss; steps with inf/NaN gradients are skipped on the device
            self.scaler.scale(loss).backward()
            if clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss, parts

    def _last_good(self) -> str:
        last = self.run_folder.last
        return f"the last good checkpoint is {last if last.exists() else 'none yet'}"

    def _non_finite_parameters(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]

    def _require_finite_parameters(self) -> None:
        bad = self._non_finite_parameters()
        if bad:
            raise TrainingError(
                f"parameter {bad[0]!r} is NaN or Inf after iteration {self.iteration} "
                f"(the loss diverged); {self._last_good()}"
            )

    def _snapshot(self, log: RunLog) -> None:
        self._require_finite_parameters()
        try:
            self._evaluate(log)
        except BaseException:
            # The training is kept even when its evaluation fails; when saving fails too (a
            # full disk), the evaluation's error is the one reported.
            with contextlib.suppress(Exception):
                self.checkpoint()
            raise
        self.checkpoint()

    def _evaluate(self, log: RunLog) -> None:
        """Score the held-out videos (with `val_fraction`), then the test set: its figures are
        logged at every snapshot, its files written for the last or selected snapshot."""
        cfg, v = self.config, self.validation
        row, threshold = None, cfg.threshold
        if v is not None:
            row = v.score(self.run_model, self.device, self.iteration)
            log.append(VALIDATION_LOG, row)
            threshold = row["threshold"]
        selected = v is not None and row is not None and v.better(row)
        metrics = None
        if self.test_set is not None:
            metrics = self._test(self.run_model, threshold, v is None or selected, self.iteration)
        if metrics is not None:
            self.metrics = metrics
            record = {"iteration": self.iteration, **metrics.summary()}
            log.append(RunFolder.RESULTS, record)
            self.history.append(record)
        if selected:
            assert v is not None and row is not None  # selected by the validation's row
            v.select(row, metrics, self.model.state_dict())

    def _test(self, model: Any, threshold: float, write: bool, iteration: int) -> Metrics | None:
        """Evaluate `model` on the test set; `write`: into the run folder's evaluation files."""
        cfg = self.config
        assert self.test_set is not None  # called when there is a test set
        result = evaluate_model(
            model,
            self.test_set,
            self.device,
            crop_mode=cfg.test_crop,
            frames_per_segment=cfg.frames_per_segment,
            threshold=threshold,
            out_dir=self.out_dir if write else None,
            plot=cfg.plot,
            iteration=iteration,
            require_labels=False,  # unlabelled test videos are scored, not evaluated
            snapshot="selected (selected.json)" if self.validation is not None else None,
            fps=self._event_fps,
        )
        if write:
            self._evaluated = iteration
        return result.metrics

    def _model_with(self, state_dict: dict[str, torch.Tensor]) -> Any:
        """This run's model with other weights (a snapshot's), ready to score. A copy, not a
        new model: initialising one would draw from the random generators that training (a
        resumed run's included) goes on drawing from."""
        model = copy.deepcopy(self.model)
        load_weights(model, state_dict, str(self.out_dir))
        model = instances_model(model, self.config)
        return prepare_model(model, self.device, self.config.precision, False)

    def _selected_result(self) -> TrainResult:
        """The run's result with `val_fraction`: the selected snapshot, its test evaluation
        written into the run folder (again, when a resumed run found no better one)."""
        v = self.validation
        assert v is not None and v.best is not None
        best, metrics = v.best, v.best_metrics
        if self.test_set is not None and self._evaluated != best["iteration"]:
            model = self._model_with(best["state_dict"])
            metrics = self._test(model, best["threshold"], True, best["iteration"])
        selected = self.run_folder.selected
        it = best["iteration"]
        return TrainResult(
            self.out_dir, self.iteration, selected, metrics, self.history, it, v.row()
        )


class ProgressLines:
    """Training progress as plain lines on stderr, for output that is no terminal (where a
    progress bar would be one endless line): `train MODEL: iteration I/N (P%), loss L, R it/s,
    ETA H:MM:SS`, at every snapshot (`force`) and in between at most every `interval` seconds.

    Args:
        what: the line's opening words.
        total: the iterations of the run.
        enabled: print at all (False: every call does nothing).
        interval: seconds between two lines that no snapshot asks for.
    """

    def __init__(self, what: str, total: int, enabled: bool, interval: float = 30.0) -> None:
        self.what, self.total, self.enabled, self.interval = what, total, enabled, interval
        self.last = time.monotonic()

    def report(
        self, iteration: int, it_per_s: float, loss: torch.Tensor, force: bool = False
    ) -> None:
        """A line for the step just done (its `loss` is read, a sync, only when printed)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        left = (self.total - iteration) / it_per_s if it_per_s > 0 else math.inf
        eta = "unknown"
        if math.isfinite(left):
            seconds = round(left)
            eta = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        print(
            f"{self.what}: iteration {iteration}/{self.total} "
            f"({100 * iteration / max(self.total, 1):.0f}%), loss {loss.item():.4f}, "
            f"{it_per_s:.1f} it/s, ETA {eta}",
            file=sys.stderr,
            flush=True,
        )


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples; a checkpoint round trip may hand back lists."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def train(
    config: TrainConfig,
    train_set: FeatureDataset,
    test_set: FeatureDataset | None,
    out_dir: str | Path,
    *,
    resume: str | Path | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train a model per `config`, snapshotting into `out_dir`.

    Args:
        config: the configuration (see TrainConfig).
        train_set: the training videos.
        test_set: the test videos (None: no evaluation).
        out_dir: the run folder.
        resume: a checkpoint (or run folder) to continue from, exactly where it stopped.
        progress: progress bar on/off (None: only on a terminal).
    """
    payload = None if resume is None else load_checkpoint(resume, resume=True)
    trainer = Trainer(config, train_set, test_set, out_dir, progress, resume_from=payload)
    return trainer.run()
