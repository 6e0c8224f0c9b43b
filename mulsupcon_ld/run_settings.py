"""One run's settings as a typed, frozen object: :func:`resolve_settings` builds it once.

``resolve_settings(dataset, scale, preset, overrides)`` looks the dataset up in the registry (the
one lookup of a run), takes its row of :mod:`mulsupcon_ld.settings`, applies the preset, the scale
and the ``--set`` overrides, validates everything (α and β included) and returns a
:class:`RunSettings`. Everything below the CLI receives that object; nothing re-derives settings
from the dataset name. :meth:`RunSettings.to_dict` is the nested dict that ``metrics.json`` records
and the config/result hashes are taken of: the same keys in the same order as before the object
existed, so an unchanged run keeps its hashes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Iterable, Mapping

from .errors import UserError
from .names import SCALES
from .registry import DatasetSpec, get_dataset
from .settings import PRESETS, SMOKE, apply_overrides, canonical_name, table_settings, validate

#: chosen by their own arguments (--dataset, --scale, --preset; kind follows the dataset): a --set of
#: one of them would relabel the run without changing it
IDENTITY_KEYS = {"dataset": "--dataset", "kind": "--dataset", "scale": "--scale", "preset": "--preset"}


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
    optimizer: Mapping[str, Any]
    scheduler: Mapping[str, Any]
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


@dataclass(frozen=True)
class LossSettings:
    alpha: float
    beta: float
    sigma: float
    options: Mapping[str, Any] | None
    asl: ASLSettings


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

    spec: DatasetSpec = field(repr=False, compare=False, metadata={"recorded": False})
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
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], spec: DatasetSpec) -> "RunSettings":
        """The object of a validated settings dict (``d`` is not kept: nested dicts are copied)."""
        data_cls = VectorDataSettings if d["kind"] == "vector" else ImageDataSettings
        model = dict(d["model"], hidden=tuple(d["model"]["hidden"]))
        return cls(spec=spec, dataset=d["dataset"], kind=d["kind"], scale=d["scale"], preset=d["preset"],
                   model=ModelSettings(**model), pretrain=PretrainSettings(**_copied(d["pretrain"])),
                   finetune=FinetuneSettings(**_copied(d["finetune"])), loss=_loss_settings(d["loss"]),
                   data=data_cls(**d["data"]), threads=d["threads"], precision=d["precision"],
                   flush_denormal=d["flush_denormal"],
                   checkpoint_every=d["checkpoint_every"], checkpoint_seconds=d["checkpoint_seconds"],
                   log_every=d["log_every"])


def _loss_settings(block: Mapping[str, Any]) -> LossSettings:
    loss = _copied(block)
    loss["asl"] = ASLSettings(**{k: (float(v) if k in ("gamma_neg", "gamma_pos", "clip") else v)
                                 for k, v in loss["asl"].items()})
    return LossSettings(**loss)


def _copied(block: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(block))


def _plain(obj: Any) -> Any:
    """Dataclasses to dicts (in field order, unrecorded fields left out), tuples to lists."""
    if is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj) if f.metadata.get("recorded", True)}
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


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
    validate(d)
    _check_alpha_beta(d["loss"])
    return RunSettings.from_dict(d, spec)


def get_settings(dataset: str, scale: str = "paper", overrides: Iterable[str] = (),
                 preset: str = "paper") -> dict[str, Any]:
    """``resolve_settings(...).to_dict()``: the settings as a plain dict (printing, benchmarks, tests)."""
    return resolve_settings(dataset, scale, preset, overrides).to_dict()
