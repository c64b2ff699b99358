"""Models that score each segment on its own: AR-Net's `single` MLP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ScoringModel, init_weights, register_model

AR_NET = (
    'Wan, Fang, Xia, Mei, "Weakly Supervised Video Anomaly Detection via Center-Guided '
    'Discriminative Learning", ICME 2020'
)


def per_segment(
    fn: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Apply a per-segment function `(N, D) -> (N,)` to every valid segment: (B, T) scores.

    On the CPU only valid rows are computed, because there padding costs as many FLOPs as
    data; a batch without padding is passed on as a view, without copying its rows. On
    accelerators the whole padded tensor is computed (its cost is small there) so the step
    needs no host synchronisation to count valid rows; padded scores are zeroed. The scores
    have `fn`'s dtype (float32 also under autocast when `fn` ends in `score_head`).
    """
    if features.device.type != "cpu":
        scores = fn(features.flatten(0, 1)).view(mask.shape)
        return torch.where(mask, scores, 0.0)  # not `* mask`: NaN padding would stay NaN
    if bool(mask.all()):  # reading a CPU mask costs no device synchronisation
        return fn(features.reshape(-1, features.shape[-1])).view(mask.shape)
    valid = fn(features[mask])  # (N,) for the N valid segments
    return valid.new_zeros(mask.shape).masked_scatter(mask, valid)


DROPOUT_MASKS = ("fast", "torch")

# Dropout masks on the CPU come from 16 random bits per element: drawing 64-bit integers and
# splitting them costs a tenth of torch's Bernoulli sampler, which took ~10% of a training
# step of `single` at the paper's settings (benchmarks/speed.py).
_MASK_BITS = 16


def _keep_threshold(p: float) -> int | None:
    """Lanes (int16, uniform in [-2^15, 2^15)) at or above this are kept, so an element is
    dropped with probability round(p 2^16) / 2^16. None when p rounds to 0 or 1."""
    steps = round(p * (1 << _MASK_BITS))
    if steps <= 0 or steps >= 1 << _MASK_BITS:
        return None
    return steps - (1 << (_MASK_BITS - 1))


def dropout_keep_mask(
    shape: torch.Size | tuple[int, ...],
    p: float,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A mask of `shape` for dropout with rate p: 1 where an element is kept, 0 where dropped.

    Each element is dropped independently with probability round(p * 65536) / 65536
    (0.7 -> 0.69999695), drawn from torch's default generator (seeded by torch.manual_seed).
    The mask is made in `dtype` directly: multiplying by it is several times faster on the
    CPU than masking with a bool tensor.
    """
    threshold = _keep_threshold(p)
    if threshold is None:
        raise ValueError(f"dropout rate {p} leaves no random mask to draw")
    n = 1
    for size in shape:
        n *= int(size)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    lanes = words.random_(-(1 << 63), None).view(torch.int16)[:n]  # the full 64-bit range
    keep = torch.empty(n, dtype=dtype, device=device)
    return torch.ge(lanes, threshold, out=keep).view(shape)


class _ReluDropout(torch.autograd.Function):
    """relu then inverted dropout, as one autograd node that saves only its output: the
    output is non-zero exactly where the gradient passes (kept and positive)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:  # ctx: a FunctionCtx
        scale = 1.0 / (1.0 - p)
        out = x.clamp_min(0).mul_(dropout_keep_mask(x.shape, p, x.device, x.dtype)).mul_(scale)
        ctx.save_for_backward(out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0).mul_(ctx.scale), None


def relu_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(torch.relu(x), p, training)`, with the mask drawn by `dropout_keep_mask` on
    the CPU (10x cheaper); on other devices, and for p that rounds to 0 or 1, torch's own."""
    if not training or x.device.type != "cpu" or _keep_threshold(p) is None:
        return F.dropout(torch.relu(x), p, training)
    return _relu_dropout_cpu(x, p)


# torch.compile runs this node as it is: measured on the CPU, inductor's fused dropout made a
# training step of `single` 35% slower than this.
@torch.compiler.disable
def _relu_dropout_cpu(x: torch.Tensor, p: float) -> torch.Tensor:
    return _ReluDropout.apply(x, p)


def score_head(classifier: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """sigmoid(classifier(h)) in float32, also under autocast: (N, H) -> (N,).

    The head is 1/H of the model's arithmetic; in bfloat16 its logits would keep 8 significant
    bits, and nearby scores would tie frames in the AUC.
    """
    with torch.autocast(h.device.type, enabled=False):
        return torch.sigmoid(F.linear(h.float(), classifier.weight, classifier.bias)).squeeze(-1)


@register_model(
    "single",
    "AR-Net (paper): Linear(D,D)+ReLU, dropout 0.7, Linear(D,1)+sigmoid per segment",
    citation=AR_NET,
)
class SingleLayer(ScoringModel):
    """The AR-Net model: an MLP scoring each segment on its own.

    Args:
        feature_dim: D.
        hidden_dim: width of the hidden layer (default D, as published).
        dropout: dropout rate after the hidden layer in training.
        dropout_mask: "fast" (16-bit masks on the CPU, `dropout_keep_mask`) or "torch"
            (torch's own Bernoulli masks, as the reference code draws them).
    """

    independent_segments = True
    has_empty_scores = True

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int | None = None,
        dropout: float = 0.7,
        dropout_mask: str = "fast",
    ) -> None:
        super().__init__()
        if dropout_mask not in DROPOUT_MASKS:
            raise ValueError(f"dropout_mask must be one of {DROPOUT_MASKS}, got {dropout_mask!r}")
        self.fast_mask = dropout_mask == "fast"
        hidden = hidden_dim or feature_dim
        self.fc = nn.Linear(feature_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, 1)
        self.apply(init_weights)

    def segment_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N,) scores."""
        if self.fast_mask:
            h = relu_dropout(self.fc(x), self.dropout.p, self.training)
        else:
            h = F.dropout(torch.relu(self.fc(x)), self.dropout.p, self.training)
        return score_head(self.classifier, h)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, T, D), mask (B, T) -> scores (B, T)."""
        return per_segment(self.segment_scores, features, mask)

    def empty_scores(self, n: int) -> torch.Tensor:
        """(n,) scores of an all-zero feature, each with its own dropout mask in training:
        `segment_scores(zeros(n, D))` without multiplying zeros, since fc(0) is fc's bias."""
        pre = self.fc.bias.expand(n, -1)
        if self.fast_mask:
            h = relu_dropout(pre, self.dropout.p, self.training)
        else:
            h = F.dropout(torch.relu(pre), self.dropout.p, self.training)
        return score_head(self.classifier, h)
