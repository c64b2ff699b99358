"""Training configuration (the paper's defaults, each with the reason it has that value) and
the synthetic dataset's (`arnet synth`, `arnet demo`).

Standard library only: the command line reads its options' choices, help and defaults here
without loading torch."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_json_atomic

# A segment is 16 frames: the clip length the I3D and C3D extractors consume (SPEC §1).
FRAMES_PER_SEGMENT = 16

# The naive baseline: each video's label copied onto all its segments, as a plain segment
# classifier sees weak labels. Dynamic top-k with k = 1 takes every segment, and without the
# center loss nothing else remains: the same model and loop as AR-Net, minus its two ideas.
NAIVE_BASELINE = {"topk_divisor": 1, "center_weight": 0.0}

# `--compat reference`: every training behaviour of the reference AR-Net code where arnet
# deliberately differs (README, "What differs from the reference implementation").
REFERENCE_COMPAT = {
    "lr": 1e-4,
    "center_loss": "padded",
    "window_start": "reference",
    "strided_window": "reference",
    "perturbed_sampling": "reference",
    "dropout_mask": "torch",
    "fused_adam": False,
}
COMPAT_PRESETS = {"reference": REFERENCE_COMPAT}


def _field(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    choices: tuple[str, ...] | None = None,
    help: str | None = None,
    resumable: bool = False,
    test: bool = False,
    layout: bool = False,
    path: bool = False,
) -> Any:
    """A TrainConfig field and what the command line and validation need to know of it:
    `choices` (the only values it takes), `help` (its option's help text), `resumable` (it
    may change when a run is resumed: how long it runs and how it reports, not what it
    learns), `test` (a test run may give it anew: the data and how it is scored), `layout`
    (it describes one dataset's layout rather than its features) and `path` (a path, saved
    absolute so that a run is valid from any working directory)."""
    metadata = {
        "choices": choices,
        "help": help,
        "resumable": resumable,
        "test": test,
        "layout": layout,
        "path": path,
    }
    return field(default=default, default_factory=factory, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that decides a training run. Defaults reproduce AR-Net's reference run."""

    # --- data ---
    data: str | None = _field(
        None,
        help="dataset: AR-Net folder, train list, crops folder or store",
        resumable=True,
        test=True,
        path=True,
    )
    """Dataset: an AR-Net layout folder, a train list (.list/.txt/.csv), a per-crop folder or
    an `arnet pack` store (see arnet.formats)."""
    format: str = _field(
        "auto",
        help="dataset layout; auto detects it",
        test=True,
        layout=True,
    )
    """On-disk layout: a registered layout's name (`arnet.formats.list_formats()`), or "auto"
    to detect it; an unknown name is refused when the data is opened."""
    feature_modal: str = _field(
        "combine",
        choices=("rgb", "flow", "combine"),
        help="features to read: rgb, flow, or combine (both, concatenated)",
        test=True,
    )
    """rgb, flow or combine (concat of both): the reference's best input is combine."""
    feature_backbone: str = _field(
        "i3d",
        help="feature folder under features_video/: i3d, c3d, or an `arnet extract` backbone "
        "such as efficientnet-lite0",
        test=True,
    )
    """i3d, c3d, or any `arnet extract` backbone (efficientnet-lite0): the feature folder name."""
    feature_layer: str = _field(
        "fc6", choices=("fc6", "fc7"), help="C3D features: the layer (unused for I3D)", test=True
    )
    """C3D layer (fc6 or fc7); unused for I3D."""
    feature_dim: int | None = _field(
        None, help="expected feature dimension (checked against the data)", test=True
    )
    """Expected feature size; None accepts what the data holds (checked either way)."""
    in_memory: bool = _field(
        False,
        help="keep all features in memory instead of memory-mapping them",
        resumable=True,
        test=True,
    )
    """Keep every feature in RAM (reference --larger_mem 1) instead of memory-mapping files."""
    train_crop: str = _field(
        "random",
        choices=("random", "mean", "all"),
        help="multi-crop features in training: a random crop per video per iteration, the "
        "mean over crops, or all: every crop its own sample (RTFM, MGFN)",
    )
    """Multi-crop features: a random crop per video per iteration, "mean" over crops, or "all":
    every crop of every drawn video its own row of the batch (RTFM's and MGFN's ten-crop
    training; `data.dataset.CROP_MODES`)."""
    test_crop: str = _field(
        "mean",
        choices=("mean", "per_crop"),
        help="multi-crop features in testing: the mean over crops, or per_crop scores averaged",
        test=True,
    )
    """Multi-crop features at test time: "mean" features, or "per_crop" scores averaged."""
    test_list: str | None = _field(
        None,
        help="list layouts: the test list",
        resumable=True,
        test=True,
        layout=True,
        path=True,
    )
    """List layouts: the test list; None finds it next to the train list."""
    ground_truth: str | None = _field(
        None,
        help="frame ground truth: masks folder, .npz, concatenated gt .npy, .pickle, .json, "
        "or UCF-Crime / XD-Violence annotation .txt",
        resumable=True,
        test=True,
        layout=True,
        path=True,
    )
    """Frame ground truth replacing the layout's own: masks folder, .npz, concatenated .npy,
    frame_label.pickle, .json, or UCF-Crime / XD-Violence annotation .txt."""
    list_root: str | None = _field(
        None,
        help="list layouts: re-root the listed feature paths (NEW, or OLD=NEW)",
        resumable=True,
        test=True,
        layout=True,
    )
    """List layouts: re-root the listed paths (NEW, or OLD=NEW): lists hold absolute paths of
    the machine they were written on."""
    train_anomalous: int | None = _field(
        None,
        help="text lists: the first N lines of the train list are anomalous",
        test=True,
        layout=True,
    )
    """Text lists: the first N lines of the train list are anomalous, as RTFM/MGFN cut them
    (ShanghaiTech 63, UCF-Crime 810); None reads labels from the file names."""
    tail: str = _field(
        "drop",
        choices=("drop", "pad"),
        help="frames that fill no last 16-frame segment: dropped (drop), or padded into one "
        "more segment (pad)",
        test=True,
    )
    """Frames that fill no last segment: "drop" (the extractor drops them, SPEC §1) or "pad"
    (it pads them into one more segment); frame labels must agree with it."""

    # --- model ---
    model: str = _field(
        "single",
        help="model name (see `arnet models`); reference names like model_single too",
    )
    """Registry name; `single` is the paper's model."""
    model_args: dict[str, Any] = _field(
        factory=dict, help="extra model constructor argument (repeatable), e.g. hidden_dim=256"
    )
    """Extra constructor arguments of the chosen model."""
    objective_args: dict[str, Any] = _field(
        factory=dict,
        help="an option of the model's objective (repeatable; `arnet models` lists each "
        "objective's options)",
    )
    """Options of the model's objective beyond the TrainConfig fields of the same names
    (`models.registry.ObjectiveEntry.arguments`)."""
    instances: str = _field(
        "segment",
        choices=("segment", "cells"),
        help="what the model scores: each segment, or each cell of grid features "
        "(motion-grid, efficientnet-lite0 --grid), a segment scoring as its highest cell",
    )
    """"segment": the model scores segment features; "cells": it scores each cell of grid
    features as its own instance and a segment's score is its highest cell's
    (`models.cells.CellInstances`)."""
    cells: int | None = _field(
        None,
        help="--instances cells: cells per segment, for features without a recorded grid (a "
        "packed store; each segment read as N equal blocks, cell-major); default: the grid in "
        "the training data's extraction.json",
    )
    """Cells per segment of `instances="cells"`; filled in from the training data's
    extraction.json when a run starts, and stored with the run so that its checkpoints
    rebuild the cell model."""
    cell_widths: list[int] | None = None
    """Numbers per cell of each part of the features (rgb, then flow with feature_modal
    combine), filled in with `cells`."""

    # --- batch sampling (SPEC §2) ---
    videos_per_class: int = _field(
        30, help="anomalous videos, and as many normal ones, drawn per iteration"
    )
    """30 anomalous + 30 normal videos per iteration, as in the paper."""
    draws_per_step: int = _field(1, help="balanced draws per iteration")
    """Balanced draws stacked into one iteration (reference --batch_size)."""
    max_segments: int = _field(300, help="longer videos are sampled down to this many segments")
    """Longer videos are sampled down to 300 segments (reference --max-seqlen)."""
    uniform_segments: int | None = _field(
        None,
        help="train on each video seen as N segments, each the mean of consecutive ones "
        "(RTFM, MGFN and UR-DMU train on 32); default: AR-Net's sampled segments",
    )
    """None: AR-Net's sampling (all segments up to max_segments, then sampled). N: each training
    video is seen as N uniform segments, the mean of consecutive ones
    (`data.dataset.UniformSegments`); held-out and test videos are scored whole either way."""
    sample_step: int = _field(1, help="stride of the window taken from long normal videos")
    """Stride of the random window taken from long normal videos."""
    window_start: str = _field(
        "any",
        choices=("any", "reference"),
        help="start of a long normal video's window: any, or as the reference code draws it "
        "(never the last possible start)",
    )
    """Start of a long normal video's window: "any" of the T - L + 1, or "reference" (never
    the last one, as the reference code draws it)."""
    strided_window: str = _field(
        "full",
        choices=("full", "reference"),
        help="with --sample-step s > 1: full windows of --max-segments segments, or the "
        "reference code's ceil(max_segments / s) segments",
    )
    """With sample_step s > 1: "full" windows of max_segments segments, or "reference"
    (ceil(max_segments / s) segments, the rest padding)."""
    perturbed_sampling: str = _field(
        "bins",
        choices=("bins", "reference"),
        help="long anomalous videos: one segment per bin, in order, or the reference code's "
        "closed bins (a segment may repeat, the last position is fixed)",
    )
    """Long anomalous videos: one segment per bin, in order ("bins"), or "reference" (closed
    bins that can repeat a segment, the last one fixed)."""

    # --- losses (SPEC §4) ---
    mil_loss: str = _field(
        "bce",
        choices=("bce", "mse", "hinge"),
        help="multiple-instance loss: bce (the paper's), mse, or hinge (ranking)",
    )
    """Multiple-instance loss: bce (paper), mse, or hinge (ranking)."""
    topk_divisor: int = _field(
        4, help="k: each video's ceil(T/k) highest segment scores enter the MIL loss"
    )
    """k: each video contributes its ceil(T/k) highest scores to the MIL loss."""
    mil_weight: float = _field(1.0, help="weight of the MIL loss (the 1 of --Lambda 1_20)")
    """lambda_1 of --Lambda 1_20."""
    center_weight: float = _field(
        20.0, help="weight of the center loss (the 20 of --Lambda 1_20); 0 turns it off"
    )
    """lambda_2 of --Lambda 1_20: the center loss dominates the scale, as published."""
    center_loss: str = _field(
        "padded",
        choices=("padded", "anchored", "valid"),
        help="center loss of normal videos: padded (the reference code's: over the batch's "
        "longest length), anchored (each video's scores and as many scores of an empty scene "
        "share one center) or valid (each video's own variance)",
    )
    """Center loss of normal videos: "padded" (the reference code's: each normal video's
    variance over the batch's longest length, padded positions scored on all-zero features;
    chosen by leave-one-family-out on four families of data, docs/generalisation.md),
    "anchored" (each video's variance taken together with as many scores of an empty scene, an
    all-zero feature: one level for normal scores; the default before, chosen on featuregen
    sets alone) or "valid" (each video's own variance only)."""
    bas_base_weight: float = _field(1.0, help="model bas: weight of the base-branch loss")
    """BaS-Net (model bas): base-branch loss weight; BaS-Net weighs both branches equally."""
    bas_suppressed_weight: float = _field(
        1.0, help="model bas: weight of the suppressed-branch loss"
    )
    """BaS-Net: suppressed-branch loss weight; equal to the base branch, as published."""
    bas_foreground_weight: float = _field(
        1e-4, help="model bas: weight of the L1 norm of the foreground weights"
    )
    """BaS-Net: weight of the L1 norm of the foreground weights; BaS-Net's alpha, small
    because the norm sums over up to max_segments segments per video."""

    # --- optimisation (SPEC §5) ---
    lr: float = _field(
        1e-4, help="Adam learning rate; a model with a rate of its own (`arnet models`) uses it"
    )
    """Adam learning rate of the paper. 1e-3 learns faster on every synthetic family of
    `benchmarks/suite.py` and loses on UCSD Ped2 (docs/generalisation.md): not adopted."""
    weight_decay: float = _field(5e-4, help="Adam weight decay")
    """Adam weight decay of the reference code."""
    max_grad_norm: float | None = _field(
        None,
        help="clip the gradients' total norm at N before each step (BN-WVAD's code: 1); "
        "default: no clipping",
    )
    """Gradient clipping before each Adam step; None (AR-Net, UR-DMU) clips nothing."""
    epochs: int = _field(
        20,
        help="training length in epochs of as many iterations as there are training videos "
        "(--iterations overrides it)",
        resumable=True,
    )
    """One epoch = as many iterations as there are training videos."""
    iterations: int | None = _field(
        None, help="total iterations (overrides epochs)", resumable=True
    )
    """Total iterations; overrides epochs when set."""
    snapshot_every: int = _field(
        200, help="checkpoint, test, evaluate and plot every N iterations", resumable=True
    )
    """Checkpoint, test, evaluate and plot every 200 iterations."""
    keep_checkpoints: int = _field(
        0, help="snapshot checkpoints to keep, newest first; 0 keeps them all", resumable=True
    )
    """How many snapshot checkpoints to keep (newest first); 0 keeps them all."""
    seed: int = _field(1, help="random seed of the run (sampling, initial weights, dropout)")
    """Seed of the reference run."""
    device: str = _field(
        "auto", help="auto, cpu, cuda, cuda:N or a GPU number", resumable=True, test=True
    )
    """auto (CUDA when present), cpu, cuda, cuda:N."""
    precision: str = _field(
        "fp32",
        choices=("fp32", "bf16", "fp16"),
        help="model arithmetic: fp32, bf16 autocast (CPU with AVX512-BF16/AMX, GPU), "
        "fp16 autocast with loss scaling (CUDA); weights, losses and scores stay float32",
        resumable=True,
        test=True,
    )
    """Arithmetic of the model: fp32 (the reference's; results reproduce across machines),
    bf16 (autocast; ~1.9x faster steps on CPUs with AVX512-BF16 or AMX, and on GPUs), or fp16
    (autocast with loss scaling; CUDA only). Weights, optimiser state, losses and scores stay
    float32 (benchmarks/speed.py measures each)."""
    compile: bool = _field(
        False,
        help="torch.compile the model (compiles at the first step)",
        resumable=True,
        test=True,
    )
    """torch.compile the model. Off by default: on the CPU it did not speed up `single` (its
    hot path is already fused by hand) and it costs a compilation at the first step."""
    reuse_memory: bool = _field(
        True,
        help="return freed tensor memory to the system every step (slower on the CPU)",
        resumable=True,
        test=True,
    )
    """Linux: keep freed tensor memory in the heap for the next step instead of returning it to
    the system, which costs page faults and zero-filling every step (~10% of a CPU step of
    `single`); resident memory then stays at its peak."""
    features_on_device: bool = _field(
        True,
        help="CUDA: keep the training features in host memory, copying each batch over",
        resumable=True,
        test=True,
    )
    """CUDA: copy the training features to the GPU once and gather every batch there (no
    per-step host-to-device copy); needs them in memory or in a packed store."""
    dropout_mask: str = _field(
        "fast",
        choices=("fast", "torch"),
        help="model single on the CPU: dropout masks from 16 random bits (fast, a tenth of the "
        "cost) or torch's Bernoulli masks (the reference code's)",
    )
    """Model `single` on the CPU: dropout masks from 16 random bits ("fast", a tenth of the
    cost) or torch's Bernoulli masks ("torch", the reference code's)."""
    fused_adam: bool = _field(
        True, help="Adam's fused update where torch has it (off: the reference code's)"
    )
    """Adam's fused update (one pass per parameter) where torch has it; False: torch's
    default per-parameter update, the reference code's. Equal up to float rounding."""
    pretrained: str | None = _field(
        None, help="initialise from this checkpoint or state dict", path=True
    )
    """Start from the weights of this checkpoint (reference --pretrained_ckpt)."""

    # --- evaluation and output ---
    frames_per_segment: int = _field(
        FRAMES_PER_SEGMENT,
        help="frames each segment score stands for against the frame labels",
        test=True,
    )
    """Each segment score stands for this many frames when scored against frame labels."""
    threshold: float = _field(
        0.5,
        help="score threshold of the false-alarm rates (with --val-fraction, the one chosen on "
        "the held-out videos instead)",
        test=True,
    )
    """Decision threshold of the false-alarm rates (with `val_fraction`, the threshold chosen
    on the held-out videos is used instead)."""
    fps: float | None = _field(
        None,
        help="frame rate of the test videos, for the event figures' delays in seconds and "
        "false alerts per hour; unset, the rates arnet extract recorded, else frames only",
        test=True,
    )
    """Frames per second of the test videos for the event-level figures; None: the rates
    recorded per video by `arnet extract` (when every test video has one), else the figures
    count frames and the hourly rate is undefined."""
    val_fraction: float = _field(
        0.0,
        help="hold out this share of the training videos (of each class; stratified, seeded) "
        "to choose the snapshot (best held-out video AUC) and the alert threshold; 0 holds "
        "none out",
    )
    """Share of the training videos (anomalous and normal alike, at least one of each) held out
    of training, by video label only: every snapshot scores them, the one with the best
    video-level AUC on them is the run's, and the alert threshold is chosen on their normal
    frames (arnet.training.validation). 0 trains on every video and reports the last snapshot."""
    val_false_alarm_rate: float = _field(
        0.05,
        help="with --val-fraction: the alert threshold is the lowest at which at most this "
        "share of the held-out normal videos' frames alert",
    )
    """Target false-alarm rate of the threshold chosen on the held-out normal videos."""
    plot: bool = _field(
        True,
        help="1: plot every test video at every evaluation, 0: no plots (as --no-plot)",
        resumable=True,
        test=True,
    )
    """Write one score plot per test video at every evaluation."""
    tensorboard: bool = _field(
        True, help="no TensorBoard log (written when TensorBoard is installed)", resumable=True
    )
    """Log to TensorBoard when it is installed; never required."""
    log_every: int = _field(
        20, help="iterations between two lines of the training log", resumable=True
    )
    """Iterations between two lines of the JSON-lines training log."""

    def total_iterations(self, n_train_videos: int) -> int:
        """Iterations of the whole run: `iterations`, or `epochs` x training videos."""
        if self.iterations is not None:
            return self.iterations
        return self.epochs * n_train_videos

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value cannot work."""
        positive = {
            "videos_per_class": self.videos_per_class,
            "draws_per_step": self.draws_per_step,
            "max_segments": self.max_segments,
            "sample_step": self.sample_step,
            "topk_divisor": self.topk_divisor,
            "epochs": self.epochs,
            "snapshot_every": self.snapshot_every,
            "frames_per_segment": self.frames_per_segment,
            "log_every": self.log_every,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"config field {name!r} must be >= 1, got {value}")
        if self.max_grad_norm is not None and not (
            math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0
        ):
            raise ValueError(
                "config field 'max_grad_norm' (--max-grad-norm) must be a positive number, "
                f"got {self.max_grad_norm}"
            )
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"config field 'iterations' must be >= 1, got {self.iterations}")
        if self.uniform_segments is not None and not (
            1 <= self.uniform_segments <= self.max_segments
        ):
            raise ValueError(
                "config field 'uniform_segments' (--uniform-segments) must be in [1, "
                f"max_segments = {self.max_segments}], got {self.uniform_segments}"
            )
        # before the finite check: NaN is out of range too, and the error names the option
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(
                "config field 'val_fraction' (--val-fraction) must be in [0, 1), "
                f"got {self.val_fraction}"
            )
        if not 0.0 <= self.val_false_alarm_rate < 1.0:
            raise ValueError(
                "config field 'val_false_alarm_rate' (--val-false-alarm-rate) must be in [0, 1), "
                f"got {self.val_false_alarm_rate}"
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"config field {f.name!r} must be a finite number, got {value}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"config field 'seed' must be in [0, 2**32), got {self.seed}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"config field 'fps' (--fps) must be > 0, got {self.fps}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"config field 'threshold' must be in [0, 1], got {self.threshold}")
        if self.lr <= 0:
            raise ValueError(f"config field 'lr' must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"config field 'weight_decay' must be >= 0, got {self.weight_decay}")
        if self.mil_weight < 0 or self.center_weight < 0:
            raise ValueError("config fields 'mil_weight' and 'center_weight' must be >= 0")
        for name in ("bas_base_weight", "bas_suppressed_weight", "bas_foreground_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"config field {name!r} must be >= 0, got {getattr(self, name)}")
        if self.keep_checkpoints < 0:
            raise ValueError("config field 'keep_checkpoints' must be >= 0")
        if self.train_anomalous is not None and self.train_anomalous < 1:
            raise ValueError(
                f"config field 'train_anomalous' must be >= 1, got {self.train_anomalous}"
            )
        if not self.feature_backbone or any(c in self.feature_backbone for c in "/\\"):
            raise ValueError(
                "config field 'feature_backbone' must be a folder name, "
                f"got {self.feature_backbone!r}"
            )
        if self.instances != "cells" and (self.cells is not None or self.cell_widths):
            raise ValueError(
                "config field 'cells' (--cells) applies to --instances cells only, but "
                f"'instances' is {self.instances!r}"
            )
        if self.cells is not None and self.cells < 1:
            raise ValueError(f"config field 'cells' must be >= 1, got {self.cells}")
        if self.cell_widths is not None and (
            not self.cell_widths or any(int(w) != w or w < 1 for w in self.cell_widths)
        ):
            raise ValueError(
                f"config field 'cell_widths' must be positive integers, got {self.cell_widths}"
            )
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            value = getattr(self, f.name)
            if allowed is not None and value not in allowed:
                name = f.name
                raise ValueError(f"config field {name!r} must be one of {allowed}, got {value!r}")

    def reference_sampling(self) -> tuple[str, ...]:
        """The reference code's sampling behaviours this config turns on."""
        chosen = {
            "window_start": self.window_start,
            "strided_window": self.strided_window,
            "perturbed_sampling": self.perturbed_sampling,
        }
        return tuple(name for name, value in chosen.items() if value == "reference")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a saved config.json or a checkpoint); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**values)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())


@dataclass
class SynthConfig:
    """Knobs of the synthetic dataset."""

    train_videos: int = 238
    train_anomalous: int = 63
    test_videos: int = 199
    test_anomalous: int = 44
    dim: int = 512
    """Feature dimension (I3D: 1024 per modality, 2048 combined)."""
    scenes: int = 13
    min_segments: int = 24
    max_segments: int = 240
    difficulty: float = 1.0
    """Scales the per-segment noise: higher is harder."""
    event_strength: float = 0.6
    """Amplitude of anomalous events (scene patterns are about 1)."""
    distractor_strength: float = 1.0
    """Amplitude of rare normal events: more salient than anomalies, and not anomalous."""
    busy_strength: float = 0.8
    """Amplitude of the busy-scene pattern that most anomalous and some normal videos carry."""
    distractor_rate: float = 0.3
    """Share of videos (of either class) with a rare normal event."""
    anomaly_types: int = 6
    distractor_types: int = 4
    crops: int = 1
    """Views per segment: 1 gives (T, D) features; C > 1 gives (T, C, D), as ten-crop I3D
    features do (each view its own gains and noise, an event more or less visible in it)."""
    frames_per_segment: int = FRAMES_PER_SEGMENT
    seed: int = 0

    def validate(self) -> None:
        if not 0 < self.train_anomalous < self.train_videos:
            raise ValueError("train_anomalous must be between 1 and train_videos - 1")
        if not 0 < self.test_anomalous < self.test_videos:
            raise ValueError("test_anomalous must be between 1 and test_videos - 1")
        if self.dim < 8:
            raise ValueError("dim must be >= 8")
        if not 2 <= self.min_segments <= self.max_segments:
            raise ValueError("need 2 <= min_segments <= max_segments")
        if self.difficulty <= 0 or self.event_strength <= 0 or self.busy_strength < 0:
            raise ValueError("difficulty and event_strength must be > 0, busy_strength >= 0")
        if not 0 <= self.distractor_rate <= 1:
            raise ValueError("distractor_rate must be in [0, 1]")
        if self.scenes < 1 or self.anomaly_types < 1 or self.distractor_types < 1:
            raise ValueError("scenes, anomaly_types and distractor_types must be >= 1")
        if self.crops < 1:
            raise ValueError("crops must be >= 1")


def config_field(name: str) -> dataclasses.Field:
    """The TrainConfig field `name`; its metadata holds choices, help and the flags of
    `_field`."""
    return TrainConfig.__dataclass_fields__[name]


def config_fields(flag: str) -> tuple[str, ...]:
    """Names of the TrainConfig fields whose metadata sets `flag` (resumable, test, layout,
    path), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get(flag))


def absolute_paths(values: Mapping[str, Any]) -> dict[str, Any]:
    """TrainConfig fields with every path field (`config_fields("path")`) made absolute
    against the working directory: a run saved with them is valid from anywhere."""
    out = dict(values)
    for key in config_fields("path"):
        if out.get(key):
            out[key] = str(Path(out[key]).absolute())
    return out


def saved_paths(values: Mapping[str, Any], run: str | Path) -> dict[str, Any]:
    """The fields of a run's saved config with its relative path fields resolved.

    Runs are saved with absolute paths (`absolute_paths`); older ones may hold paths relative
    to the folder they were started from, which lay somewhere above the run (a demo's
    `runs/demo-X/data`). Each such path is read against the run folder and then each folder
    above it, the first under which it exists; a path found under none is left as it is
    (relative to the working directory, as before)."""
    out = dict(values)
    bases = [Path(run).absolute(), *Path(run).absolute().parents]
    for key in config_fields("path"):
        value = out.get(key)
        if not value or Path(value).is_absolute():
            continue
        found = next((base / value for base in bases if (base / value).exists()), None)
        if found is not None:
            out[key] = str(found)
    return out
