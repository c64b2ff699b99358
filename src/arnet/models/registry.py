"""The model registry: names, constructors and the helpers every model shares.

A model is registered with `@register_model(name, description, objective)` and built with
`create_model(name, feature_dim, **kwargs)`, which records the name and arguments on the
model so that a checkpoint can rebuild it without being told what it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

# The reference's names (--model_name model_single, ...) map onto the registry's short names.
REFERENCE_NAMES = {
    "model_single": "single",
    "model_mean": "mean",
    "model_sequence": "sequence",
    "model_concatcate": "concat",
    "model_lstm": "lstm",
    "model_bas": "bas",
}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, class, one-line description and training objective."""

    name: str
    cls: type[nn.Module]
    description: str
    objective: str = "mil"
    """Which loss trains it: "mil" (top-k MIL + center loss) or a model-specific one."""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, description: str, objective: str = "mil"
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a model to the registry under `name`."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, cls, description, objective)
        return cls

    return add


def resolve_model_name(name: str) -> str:
    """The registry name for `name`, accepting the reference's spellings (model_single, ...)."""
    name = REFERENCE_NAMES.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return name


def model_entry(name: str) -> ModelEntry:
    """The registry entry of `name` (reference spellings accepted)."""
    return _REGISTRY[resolve_model_name(name)]


def list_models() -> list[ModelEntry]:
    """Every registered model, in registration order."""
    return list(_REGISTRY.values())


def create_model(name: str, feature_dim: int, **kwargs: Any) -> nn.Module:
    """Build a registered model; it remembers its name and arguments for checkpoints."""
    entry = model_entry(name)
    sizes = {"feature_dim": feature_dim, **{k: v for k, v in kwargs.items() if k.endswith("_dim")}}
    for key, value in sizes.items():
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(
                f"model {entry.name!r}: {key} must be a positive integer, got {value!r}"
            )
    try:
        model = entry.cls(feature_dim=feature_dim, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:  # a bad --model-arg: name it
        raise ValueError(
            f"model {entry.name!r}: bad constructor arguments {kwargs}: {exc}"
        ) from exc
    model.arnet_spec = {"name": entry.name, "kwargs": {"feature_dim": feature_dim, **kwargs}}
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The {"name", "kwargs"} that `create_model` needs to rebuild `model`."""
    spec = getattr(model, "arnet_spec", None)
    if spec is None:
        raise ValueError("model was not built by create_model: its name and arguments are unknown")
    return spec


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for linear and convolution layers (SPEC §3)."""
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
