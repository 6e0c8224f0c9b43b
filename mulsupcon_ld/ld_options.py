"""LDOptions: the switches between readings of the ambiguous parts of Section 3.2.

It lives below :mod:`mulsupcon_ld.run_settings` (which builds ``loss.options`` as an LDOptions when a
run's settings are resolved) and is re-exported by :mod:`mulsupcon_ld.losses`, which reads it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping


_CHOICES: dict[str, tuple[str, ...]] = {
    "ld_positive_set": ("any", "all", "per_label"),
    "in_batch_keys": ("all", "own"),
    "g2_weight": ("neg_log_prob", "raw", "prob"),
    "h_target": ("raw", "normalized"),
    "weight_grad": ("batch", "none"),
    "pos_norm": ("none", "per_label"),
    "beta_per": ("anchor", "batch"),
    "reduction": ("sum", "mean"),
}


@dataclass(frozen=True)
class LDOptions:
    """Readings of the ambiguous parts of Section 3.2 (docs/method.md, "Ambiguities and readings").

    The defaults are the chosen readings; every other value is a plausible alternative.

    ld_positive_set: positive set P(i) of the label-distribution terms G (eq. 7) and H (eq. 8):
        ``"any"`` (eq. 2; Algorithm 1 line 11, abstract, introduction), ``"all"`` (eq. 1; the
        sentence before eq. 5), ``"per_label"`` (the multiset of the P^j(i) of eq. 12: key p counted
        |y_i & y_p| times). With "any"/"all" the own key k_i is always in P(i) (Algorithm 1 line 13
        stacks k[i] unconditionally; this matters only for an anchor without labels).
    in_batch_keys: ``"all"``: A(i) = every batch key + queue (eqs. 2/5 text, MulSupCon);
        ``"own"``: A(i) = {k_i} + queue (Algorithm 1 stacks only k[i]; MoCo's l_pos/l_neg).
    g2_weight: the weight of G^(2) (eq. 11) built from C^(2) (eq. 10, a log-probability <= 0):
        ``"neg_log_prob"`` (-C^(2) >= 0, the contrastive loss of the pair; eq. 5 lacks its minus
        sign and eq. 10 copies eq. 5), ``"raw"`` (C^(2) as printed; pushes distributions apart),
        ``"prob"`` (exp C^(2), a similarity kernel like C^(1)).
    detach_g_weight: C^(1) / C^(2) inside G are constants (graph weights, as DLDL's RBF graph);
        False lets G also move the embeddings.
    h_target: ``"raw"``: H = ||y_p - d_p||^2 with 0/1 labels as printed; ``"normalized"``: y_p/|y_p|.
    weight_grad: gradient through the weights d_p^j of the contrastive term of eqs. 12/13:
        ``"batch"`` (Algorithm 1: D = softmax(fc(q)) carries gradient; the queue part never does),
        ``"none"`` (the weights are constants).
    pos_norm: ``"none"``: eqs. 12/13 as printed (no 1/|P^j(i)|); ``"per_label"``: divide each label's
        sum by |P^j(i)| as eq. 3 does.
    beta_per: ``"anchor"``: beta*||W||_F^2 inside every L_i and summed by eq. 14 (B times);
        ``"batch"``: once per batch.
    reduction: ``"sum"`` over anchors (eqs. 14/15 as printed) or ``"mean"`` (the sum / B).
    """

    ld_positive_set: str = "any"
    in_batch_keys: str = "all"
    g2_weight: str = "neg_log_prob"
    detach_g_weight: bool = True
    h_target: str = "raw"
    weight_grad: str = "batch"
    pos_norm: str = "none"
    beta_per: str = "anchor"
    reduction: str = "sum"

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"LDOptions.{name}={value!r}; choose one of {', '.join(allowed)}")
        if not isinstance(self.detach_g_weight, bool):
            raise ValueError(f"LDOptions.detach_g_weight must be a bool, got {self.detach_g_weight!r}")

    @classmethod
    def coerce(cls, options: "LDOptions | Mapping[str, Any] | None") -> "LDOptions":
        """``None`` -> defaults; a mapping (e.g. from a config file) -> ``LDOptions(**mapping)``."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise ValueError(f"unknown LDOptions field(s) {unknown}; known: {sorted(known)}")
            return cls(**dict(options))
        raise TypeError(f"options must be LDOptions, a mapping or None, not {type(options).__name__}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
