"""The registries of models and of their training objectives, and what every model shares.

A method is one module: its model class registered with `@register_model`, and, when no
registered objective trains it, its loss registered with `@register_objective` beside it:

```python
@dataclass
class MineArgs:                      # the objective's options, with the paper's values
    margin: float = 100.0

@register_objective("mine", args=MineArgs)
class MineObjective:                 # objective(model, batch) -> (total, {name: part})
    def __init__(self, margin: float = 100.0): ...

@register_model("mine", "what it is", objective="mine", example={"hidden_dim": 8},
                train_defaults={"lr": 1e-3})
class Mine(ScoringModel): ...
```

`create_model(name, feature_dim, **kwargs)` records the name and arguments on the model so that
a checkpoint can rebuild it without being told what it holds; `build_objective(name, config)`
gives the loss that trains it, its arguments taken from the config (the fields of the same
names, then `objective_args`). A model declares what it can do beyond
`model(features, mask) -> scores` as `ScoringModel` attributes; code asks those, never probes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
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


class ScoringModel(nn.Module):
    """What every registered model is: `model(features (B, T, D), mask (B, T) bool) -> scores
    (B, T)` in [0, 1], 0 at padding, no valid score depending on a padded input.

    The class attributes below are its capabilities, declared by each model (the defaults
    are what a model without them has):
    """

    independent_segments: bool = False
    """Each score depends on its own segment alone: scoring may pack the segments of many
    videos into one row with no padding (`evaluation.evaluate.predict`)."""
    cells: int = 1
    """Instances scored per segment (`CellInstances`: the grid's cells)."""
    has_empty_scores: bool = False
    """`empty_scores(n)` gives the scores of n all-zero features without computing them
    (the anchored center loss asks for them at every step)."""
    has_contributions: bool = False
    """`contributions(features)` gives each feature group's share of a segment's score (the
    cell heat maps of `arnet detect`)."""

    def empty_scores(self, n: int) -> torch.Tensor:
        """(n,) scores of all-zero features, each with its own dropout mask in training."""
        raise NotImplementedError(f"{type(self).__name__} declares no empty_scores")

    def contributions(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N, D) each feature's share of its segment's score."""
        raise NotImplementedError(f"{type(self).__name__} declares no contributions")

    def cell_scores(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, cells) scores of each instance of a segment; one per segment by default."""
        return self(features, mask)[..., None]


def declared(model: nn.Module, capability: str) -> Any:
    """A model's declared `capability` (an attribute of `ScoringModel`). Wrappers forward their
    model's (autocast, torch.compile); a plain module that declares nothing scores with
    ScoringModel's defaults."""
    if not hasattr(ScoringModel, capability):
        raise AttributeError(f"ScoringModel declares no capability {capability!r}")
    return getattr(model, capability, getattr(ScoringModel, capability))


class Objective(Protocol):
    """A training loss: `objective(model, batch) -> (total, {part name: value})`."""

    def __call__(
        self, model: nn.Module, batch: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


@dataclass(frozen=True)
class ObjectiveEntry:
    """A registered objective.

    Attributes:
        name: its registry name (a model entry's `objective`).
        factory: `factory(**args) -> Objective`; None for a model fitted without gradients.
        args: the dataclass of its options (field defaults: the published values), or None.
        gradient: trained by gradient steps (False: fitted in one go, `training.bank`).
        refuses: TrainConfig fields that must keep these values with it (options of another
            objective that a user might expect to apply).
        scores_only: it reads nothing of the model but `model(features, mask)` scores, so a
            wrapper scoring each cell as its own instance (`--instances cells`) trains with it.
    """

    name: str
    factory: Callable[..., Objective] | None
    args: type | None
    gradient: bool = True
    refuses: Mapping[str, Any] = field(default_factory=dict)
    scores_only: bool = True

    def arguments(self, config: Any = None, **overrides: Any) -> dict[str, Any]:
        """Its options: the args dataclass's defaults, then a TrainConfig's fields of the same
        names, then the config's `objective_args`, then `overrides`.

        Raises:
            ValueError: an option it does not have, naming it and the ones it has.
        """
        if self.args is None:
            names: list[str] = []
            values: dict[str, Any] = {}
        else:
            names = [f.name for f in dataclasses.fields(self.args)]
            values = dataclasses.asdict(self.args())
        if config is not None:
            values.update({n: getattr(config, n) for n in names if hasattr(config, n)})
            overrides = {**dict(getattr(config, "objective_args", {}) or {}), **overrides}
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            have = ", ".join(names) or "none"
            raise ValueError(
                f"objective {self.name!r} has no option {', '.join(unknown)} (its options: {have})"
            )
        return {**values, **overrides}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: its registry name (the CLI's `--model` choice).
        cls: its class.
        description: one line for `arnet models`.
        objective: the registered objective that trains it.
        example: small constructor arguments for quick checks (the registry sweep in the
            tests builds every model with them).
        train_defaults: TrainConfig fields its paper trains it with, used where the command
            line does not set them (an AR-Net model has none: the config's are the paper's).
        citation: where it was published.
    """

    name: str
    cls: type[nn.Module]
    description: str
    objective: str = "mil"
    example: Mapping[str, Any] = field(default_factory=dict)
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    citation: str = ""


_REGISTRY: dict[str, ModelEntry] = {}
_OBJECTIVES: dict[str, ObjectiveEntry] = {}


def register_objective(
    name: str,
    args: type | None = None,
    *,
    refuses: Mapping[str, Any] | None = None,
    scores_only: bool = True,
) -> Callable[[Callable[..., Objective]], Callable[..., Objective]]:
    """Decorator adding an objective (a class or factory taking `args`'s fields) under `name`
    (see `ObjectiveEntry`)."""

    def add(factory: Callable[..., Objective]) -> Callable[..., Objective]:
        if name in _OBJECTIVES:
            raise ValueError(f"objective {name!r} is registered twice")
        _OBJECTIVES[name] = ObjectiveEntry(
            name, factory, args, True, dict(refuses or {}), scores_only
        )
        return factory

    return add


def register_fitted_objective(name: str) -> None:
    """Register `name` as the objective of models fitted without gradients."""
    if name in _OBJECTIVES:
        raise ValueError(f"objective {name!r} is registered twice")
    _OBJECTIVES[name] = ObjectiveEntry(name, None, None, gradient=False, scores_only=False)


def objective_entry(name: str) -> ObjectiveEntry:
    try:
        return _OBJECTIVES[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; registered: {', '.join(_OBJECTIVES)}"
        ) from None


def list_objectives() -> list[ObjectiveEntry]:
    return list(_OBJECTIVES.values())


def register_model(
    name: str,
    description: str,
    objective: str = "mil",
    *,
    example: Mapping[str, Any] | None = None,
    train_defaults: Mapping[str, Any] | None = None,
    citation: str = "",
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a model to the registry under `name` (see `ModelEntry`)."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name,
            cls,
            description,
            objective,
            dict(example or {}),
            dict(train_defaults or {}),
            citation,
        )
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
    # nn.Module's __setattr__ stub admits tensors and modules only; any value is kept
    model.arnet_spec = {"name": entry.name, "kwargs": {"feature_dim": feature_dim, **kwargs}}  # type: ignore[assignment]
    return model


def build_objective(model_name: str, config: Any) -> Objective:
    """The loss that trains `model_name`, its options from a TrainConfig (the config stops
    here: `ObjectiveEntry.arguments`).

    Raises:
        ValueError: a model fitted without gradients, or an option the objective refuses.
    """
    entry = objective_entry(model_entry(model_name).objective)
    if entry.factory is None:
        raise ValueError(f"model {model_name!r} is fitted without gradients: it has no loss")
    for name, wanted in entry.refuses.items():
        value = getattr(config, name, wanted)
        if value != wanted:
            raise ValueError(
                f"config field {name!r} is {value!r}, but model {model_name!r} trains with its "
                f"own objective ({entry.name}: {', '.join(entry.arguments())}), not that option"
            )
    return entry.factory(**entry.arguments(config))


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
