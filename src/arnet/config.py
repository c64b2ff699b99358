"""Training configuration: the paper's defaults, each with the reason it has that value."""

from __future__ import annotations

import dataclasses
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
    "center_loss": "padded",
    "window_start": "reference",
    "strided_window": "reference",
    "perturbed_sampling": "reference",
    "dropout_mask": "torch",
    "fused_adam": False,
}
COMPAT_PRESETS = {"reference": REFERENCE_COMPAT}


@dataclass
class TrainConfig:
    """Everything that decides a training run. Defaults reproduce AR-Net's reference run."""

    # --- data ---
    data: str | None = None
    """Dataset: an AR-Net layout folder, a train list (.list/.txt/.csv), a per-crop folder or
    an `arnet pack` store (see arnet.formats)."""
    format: str = "auto"
    """On-disk layout (arnet, list, csv, crops, packed); "auto" detects it."""
    feature_modal: str = "combine"
    """rgb, flow or combine (concat of both): the reference's best input is combine."""
    feature_backbone: str = "i3d"
    """i3d, c3d, or any `arnet extract` backbone (efficientnet-lite0): the feature folder name."""
    feature_layer: str = "fc6"
    """C3D layer (fc6 or fc7); unused for I3D."""
    feature_dim: int | None = None
    """Expected feature size; None accepts what the data holds (checked either way)."""
    in_memory: bool = False
    """Keep every feature in RAM (reference --larger_mem 1) instead of memory-mapping files."""
    train_crop: str = "random"
    """Multi-crop features: a random crop per video per iteration, or "mean" over crops."""
    test_crop: str = "mean"
    """Multi-crop features at test time: "mean" features, or "per_crop" scores averaged."""
    test_list: str | None = None
    """List layouts: the test list; None finds it next to the train list."""
    ground_truth: str | None = None
    """Frame ground truth replacing the layout's own: masks folder, .npz, concatenated .npy,
    frame_label.pickle, .json, or UCF-Crime / XD-Violence annotation .txt."""
    list_root: str | None = None
    """List layouts: re-root the listed paths (NEW, or OLD=NEW): lists hold absolute paths of
    the machine they were written on."""
    train_anomalous: int | None = None
    """Text lists: the first N lines of the train list are anomalous, as RTFM/MGFN cut them
    (ShanghaiTech 63, UCF-Crime 810); None reads labels from the file names."""
    tail: str = "drop"
    """Frames that fill no last segment: "drop" (the extractor drops them, SPEC §1) or "pad"
    (it pads them into one more segment); frame labels must agree with it."""

    # --- model ---
    model: str = "single"
    """Registry name; `single` is the paper's model."""
    model_args: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments of the chosen model."""

    # --- batch sampling (SPEC §2) ---
    videos_per_class: int = 30
    """30 anomalous + 30 normal videos per iteration, as in the paper."""
    draws_per_step: int = 1
    """Balanced draws stacked into one iteration (reference --batch_size)."""
    max_segments: int = 300
    """Longer videos are sampled down to 300 segments (reference --max-seqlen)."""
    sample_step: int = 1
    """Stride of the random window taken from long normal videos."""
    window_start: str = "any"
    """Start of a long normal video's window: "any" of the T - L + 1, or "reference" (never
    the last one, as the reference code draws it)."""
    strided_window: str = "full"
    """With sample_step s > 1: "full" windows of max_segments segments, or "reference"
    (ceil(max_segments / s) segments, the rest padding)."""
    perturbed_sampling: str = "bins"
    """Long anomalous videos: one segment per bin, in order ("bins"), or "reference" (closed
    bins that can repeat a segment, the last one fixed)."""

    # --- losses (SPEC §4) ---
    mil_loss: str = "bce"
    """Multiple-instance loss: bce (paper), mse, or hinge (ranking)."""
    topk_divisor: int = 4
    """k: each video contributes its ceil(T/k) highest scores to the MIL loss."""
    mil_weight: float = 1.0
    """lambda_1 of --Lambda 1_20."""
    center_weight: float = 20.0
    """lambda_2 of --Lambda 1_20: the center loss dominates the scale, as published."""
    center_loss: str = "anchored"
    """Center loss of normal videos: "anchored" (each video's variance taken together with as
    many scores of an empty scene, an all-zero feature: one level for normal scores, measured
    in benchmarks/compat.py), "valid" (each video's own variance only) or "padded" (the
    reference code's: over the batch's longest length, padded positions included)."""
    bas_base_weight: float = 1.0
    """BaS-Net (model bas): base-branch loss weight; BaS-Net weighs both branches equally."""
    bas_suppressed_weight: float = 1.0
    """BaS-Net: suppressed-branch loss weight; equal to the base branch, as published."""
    bas_foreground_weight: float = 1e-4
    """BaS-Net: weight of the L1 norm of the foreground weights; BaS-Net's alpha, small
    because the norm sums over up to max_segments segments per video."""

    # --- optimisation (SPEC §5) ---
    lr: float = 1e-4
    """Adam learning rate of the paper."""
    weight_decay: float = 5e-4
    """Adam weight decay of the reference code."""
    epochs: int = 20
    """One epoch = as many iterations as there are training videos."""
    iterations: int | None = None
    """Total iterations; overrides epochs when set."""
    snapshot_every: int = 200
    """Checkpoint, test, evaluate and plot every 200 iterations."""
    keep_checkpoints: int = 0
    """How many snapshot checkpoints to keep (newest first); 0 keeps them all."""
    seed: int = 1
    """Seed of the reference run."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda, cuda:N."""
    precision: str = "fp32"
    """Arithmetic of the model: fp32 (the reference's; results reproduce across machines),
    bf16 (autocast; ~1.9x faster steps on CPUs with AVX512-BF16 or AMX, and on GPUs), or fp16
    (autocast with loss scaling; CUDA only). Weights, optimiser state, losses and scores stay
    float32 (benchmarks/speed.py measures each)."""
    compile: bool = False
    """torch.compile the model. Off by default: on the CPU it did not speed up `single` (its
    hot path is already fused by hand) and it costs a compilation at the first step."""
    reuse_memory: bool = True
    """Linux: keep freed tensor memory in the heap for the next step instead of returning it to
    the system, which costs page faults and zero-filling every step (~10% of a CPU step of
    `single`); resident memory then stays at its peak."""
    features_on_device: bool = True
    """CUDA: copy the training features to the GPU once and gather every batch there (no
    per-step host-to-device copy); needs them in memory or in a packed store."""
    dropout_mask: str = "fast"
    """Model `single` on the CPU: dropout masks from 16 random bits ("fast", a tenth of the
    cost) or torch's Bernoulli masks ("torch", the reference code's)."""
    fused_adam: bool = True
    """Adam's fused update (one pass per parameter) where torch has it; False: torch's
    default per-parameter update, the reference code's. Equal up to float rounding."""
    pretrained: str | None = None
    """Start from the weights of this checkpoint (reference --pretrained_ckpt)."""

    # --- evaluation and output ---
    frames_per_segment: int = FRAMES_PER_SEGMENT
    """Each segment score stands for this many frames when scored against frame labels."""
    threshold: float = 0.5
    """Decision threshold of the false-alarm rates."""
    plot: bool = True
    """Write one score plot per test video at every evaluation."""
    tensorboard: bool = True
    """Log to TensorBoard when it is installed; never required."""
    log_every: int = 20
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
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"config field 'iterations' must be >= 1, got {self.iterations}")
        if self.lr <= 0:
            raise ValueError(f"config field 'lr' must be > 0, got {self.lr}")
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
        choices = {
            "feature_modal": ("rgb", "flow", "combine"),
            "feature_layer": ("fc6", "fc7"),
            "train_crop": ("random", "mean"),
            "test_crop": ("mean", "per_crop"),
            "tail": ("drop", "pad"),
            "mil_loss": ("bce", "mse", "hinge"),
            "precision": ("fp32", "bf16", "fp16"),
            "center_loss": ("anchored", "valid", "padded"),
            "window_start": ("any", "reference"),
            "strided_window": ("full", "reference"),
            "perturbed_sampling": ("bins", "reference"),
            "dropout_mask": ("fast", "torch"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
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
