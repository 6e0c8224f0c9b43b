"""One run's settings as a typed, frozen object: :func:`resolve_settings` builds it once.

``resolve_settings(dataset, scale, preset, overrides)`` looks the dataset up in the registry (the
one lookup of a run), takes its row of :mod:`mulsupcon_ld.settings`, applies the preset, the scale
and the ``--set`` overrides, validates everything once (every key and type, by building the typed
blocks of :mod:`.setting_blocks`; then ranges and choices, α and β included) and returns a
:class:`RunSettings`. Everything below the CLI receives that object; nothing re-derives settings
from the dataset name. :meth:`RunSettings.to_dict` is the nested dict that ``metrics.json`` records
and the config/result hashes are taken of: the same keys in the same order as before the object
existed, so an unchanged run keeps its hashes.

The optimiser and scheduler are blocks of their own (:class:`OptimizerSettings`,
:class:`CosineSchedule`, :class:`PlateauSchedule`), ``loss.options`` an :class:`~.ld_options.LDOptions`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Literal, Mapping

from .errors import UserError
from .ld_options import LDOptions
from .names import SCALES
from .registry import DatasetSpec, get_dataset
from .setting_blocks import GIVEN_IN, RECORDED, AsGiven, build, recorded
from .settings import PLATEAU_EXAMPLE, PRESETS, SMOKE, apply_overrides, canonical_name, table_settings, validate

#: chosen by their own arguments (--dataset, --scale, --preset; kind follows the dataset): a --set of
#: one of them would relabel the run without changing it
IDENTITY_KEYS = {"dataset": "--dataset", "kind": "--dataset", "scale": "--scale", "preset": "--preset"}


_WHOLE_SCHEDULER = ("set the whole scheduler, e.g. --set '{path}=" + json.dumps(PLATEAU_EXAMPLE) + "'")


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ValueError(f"{name} must be >= {low:g}, got {value!r}")


@dataclass(frozen=True)
class OptimizerSettings(AsGiven):
    """AdamW (the paper) or Adam (MulSupCon's code; ``weight_decay`` is then the L2 term); train.make_optimizer."""

    name: Literal["AdamW", "Adam"]
    lr: float
    weight_decay: float

    def __post_init__(self) -> None:
        _at_least("lr", self.lr, 0)
        _at_least("weight_decay", self.weight_decay, 0)


@dataclass(frozen=True)
class CosineSchedule(AsGiven):
    """CosineAnnealingWarmRestarts(T_0, T_mult, eta_min) (the paper)."""

    WHOLE_HINT: ClassVar[str] = _WHOLE_SCHEDULER
    name: Literal["CosineAnnealingWarmRestarts"]
    T_0: int
    T_mult: int
    eta_min: float

    def __post_init__(self) -> None:
        _at_least("T_0", self.T_0, 1)
        _at_least("T_mult", self.T_mult, 1)
        _at_least("eta_min", self.eta_min, 0)


@dataclass(frozen=True)
class PlateauSchedule(AsGiven):
    """ReduceLROnPlateau on the monitored loss (MulSupCon's fine-tuning; stepped once per epoch)."""

    WHOLE_HINT: ClassVar[str] = _WHOLE_SCHEDULER
    name: Literal["ReduceLROnPlateau"]
    factor: float
    patience: int
    cooldown: int
    threshold: float
    threshold_mode: Literal["rel", "abs"] = "rel"
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {self.factor!r}")
        for name in ("patience", "cooldown", "threshold", "min_lr"):
            _at_least(name, getattr(self, name), 0)


@dataclass(frozen=True)
class ModelSettings:
    backbone: str
    hidden: tuple[int, ...]
    dropout: float
    weights: str | None
    channels_last: bool
    proj_dim: int
    proj_hidden_layers: int
    proj_dropout: float
    fc_input: str


@dataclass(frozen=True)
class _PhaseSettings:
    """What pretraining and fine-tuning both have (the loops read them the same way)."""

    epochs: int
    batch_size: int
    mask: float
    optimizer: OptimizerSettings
    scheduler: CosineSchedule | PlateauSchedule
    scheduler_step: str
    iters_per_epoch: int | None
    compile: bool | str


@dataclass(frozen=True)
class PretrainSettings(_PhaseSettings):
    queue_size: int
    momentum: float
    temperature: float
    drop_last: bool
    keep: str
    hotpath: str


@dataclass(frozen=True)
class FinetuneSettings(_PhaseSettings):
    select: str
    backbone_lr_mult: float
    early_stop_patience: int | None
    eval_batch_size: int


@dataclass(frozen=True)
class ASLSettings:
    """``--method asl``'s loss (asl.py; settings.ASL_OFFICIAL)."""

    gamma_neg: float
    gamma_pos: float
    clip: float
    reduction: str
    focal_weights: str

    def __post_init__(self) -> None:
        for name in ("gamma_neg", "gamma_pos", "clip"):  # recorded as floats since ASL's settings began
            object.__setattr__(self, name, float(getattr(self, name)))


@dataclass(frozen=True)
class LossSettings:
    alpha: float
    beta: float
    sigma: float
    options: LDOptions | None = field(metadata={GIVEN_IN: "options_given"})  # None: eqs. 12-15 as printed
    asl: ASLSettings
    #: the fields ``options`` was given, in order: what is recorded (runs recorded only those)
    options_given: tuple[str, ...] | None = field(default=None, kw_only=True, repr=False, compare=False,
                                                  metadata={RECORDED: False})


@dataclass(frozen=True)
class VectorDataSettings:
    standardize: bool


@dataclass(frozen=True)
class ImageDataSettings:
    image_size: int | None
    num_workers: int | None
    prefetch_factor: int | None
    augment_on: str
    precrop_size: int | None


@dataclass(frozen=True)
class RunSettings:
    """All hyperparameters of one run (settings.py's table after preset, scale and overrides)."""

    spec: DatasetSpec = field(repr=False, compare=False, metadata={RECORDED: False})
    dataset: str
    kind: str
    scale: str
    preset: str
    model: ModelSettings
    pretrain: PretrainSettings
    finetune: FinetuneSettings
    loss: LossSettings
    data: VectorDataSettings | ImageDataSettings
    threads: int | None
    precision: str
    flush_denormal: bool
    checkpoint_every: int
    checkpoint_seconds: float
    log_every: int

    @property
    def fast_lane(self) -> bool:
        """Whether pretraining takes the fast lane (mulsupcon_ld/hotpath.py) — the one place it is decided:
        ``pretrain.hotpath="fast"``, or ``precision="bf16"`` (which changes every product anyway and was
        validated with the lane on)."""
        return self.pretrain.hotpath == "fast" or self.precision == "bf16"

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON-serialisable dict recorded in ``metrics.json`` and hashed."""
        return recorded(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], spec: DatasetSpec) -> "RunSettings":
        """The object of a settings dict, every key and type checked (UserError naming the key);
        ``d`` is not kept."""
        data_cls = VectorDataSettings if d["kind"] == "vector" else ImageDataSettings
        return build(cls, {**d, "data": build(data_cls, d["data"], "data")}, "", spec=spec)


def _refuse_identity(overrides: Iterable[str]) -> None:
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in IDENTITY_KEYS:
            raise UserError(f"--set {key}=… would relabel the run without changing it; "
                            f"choose the {key} with {IDENTITY_KEYS[key]}")


def _check_alpha_beta(loss: Mapping[str, Any]) -> None:
    for name in ("alpha", "beta"):
        v = loss[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise UserError(f"{name} must be a finite number >= 0, got {v!r}")


def resolve_settings(dataset: str, scale: str = "paper", preset: str = "paper",
                     overrides: Iterable[str] = ()) -> RunSettings:
    """The settings of one run: ``dataset``'s row under ``preset`` at ``scale``, then ``overrides``
    (``"a.b=value"``), validated. Raises :class:`UserError` for anything invalid."""
    overrides = list(overrides or ())
    _refuse_identity(overrides)
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose {', '.join(PRESETS)}")
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; choose {' or '.join(repr(s) for s in SCALES)}")
    spec = get_dataset(canonical_name(dataset))
    d = table_settings(spec.name)
    if preset != "paper" and d["kind"] != "vector":
        raise UserError(f"preset {preset!r} is for vector datasets (the published configs are Yeast's)")
    apply_overrides(d, [f"{path}={json.dumps(value)}" for path, value in PRESETS[preset].items()])
    if scale == "smoke":
        apply_overrides(d, [f"{k}={v}" for k, v in SMOKE.items()])
    d["preset"], d["scale"] = preset, scale
    apply_overrides(d, overrides)
    settings = RunSettings.from_dict(d, spec)   # keys and types first: the checks below read the values
    validate(d)
    _check_alpha_beta(d["loss"])
    return settings

