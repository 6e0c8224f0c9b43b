"""The pretraining step's fast lane (``pretrain.hotpath="fast"``, the default; ``precision="bf16"`` implies it).

``hotpath="reference"`` is the reference arithmetic and stays bit for bit what it was before the lane:
``nn.Linear`` → ``nn.ReLU`` → ``nn.Dropout`` module by module, the per-parameter AdamW loop and the
momentum update as ``mul`` + ``add``. The fast lane removes what is not arithmetic from a step whose
matrix products are small (docs/workflow.md, "Cost", has the measured effect and the 3-seed
validation against the reference that made it the default):

* Fused blocks. The encoders' containers are :class:`FusedSequential` (built so, no patching):
  ``Linear → ReLU → Dropout`` runs as one autograd node
  (:class:`_LinearReLUDropout`: ``addmm``, one in-place clamp, one in-place mask multiply; backward
  three products and one mask) and ``ReLU → Dropout`` (after the projection head's BatchNorm) as
  another (:class:`_ReLUDropout`). The reference's four nodes and about ten element-wise passes
  per block become one node and three passes; no gradient is computed for the network's input.
* Dropout masks from 16 random bits per element. ``nn.Dropout`` draws one Bernoulli per element
  (``bernoulli_``, a visible share of a small MLP's step; docs/performance.md, "Dropout masks from
  16 random bits"); here one 64-bit ``random_`` word gives four
  16-bit integers, kept iff ``u >= round(p * 2^16) - 2^15``, so P(dropped) = ``round(p * 65536) /
  65536`` (0.2 -> 0.199997). Kept values are scaled by ``1 / (1 - p)`` as ``nn.Dropout`` does, and
  the bits come from torch's global generator (checkpoints and resume keep working as before).
* AdamW with ``fused=True``: one kernel over all parameters instead of a Python loop of ~10 ops
  per parameter (equal up to the last ulp; many times faster for the MLP's step: docs/performance.md,
  "Fused AdamW").
* The momentum update as one ``_foreach_lerp_`` (one pass instead of two; equal up to rounding).

The fused blocks give the same numbers as ReLU then :func:`fast_dropout` module by module (tested:
same seed, same outputs and gradients bit for bit), so the fast lane differs from the reference
only by its dropout bits and the two rounding-level changes above. The lane is pretraining's:
the fine-tuning classifier is a :func:`reference_copy` of the pretrained networks.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from .names import HOTPATHS

__all__ = ["HOTPATHS", "FusedSequential", "l2_normalize", "sequential", "reference_copy", "fast_dropout",
           "keep_mask", "mask_threshold", "masked_grad", "linear_relu_dropout", "relu_dropout", "momentum_update_",
           "optimizer_kwargs", "bf16_cpu_note"]

_BITS = 16
_LEVELS = 1 << _BITS          # integers in [-2^15, 2^15) after viewing int64 words as int16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device) -> torch.Tensor:
    """A float32 ``shape`` tensor of 1 (kept, probability ``1 - round(p 2^16) / 2^16``) and 0.

    Float, not bool: on CPU a comparison to bool and a product with a bool tensor each cost several
    float passes (docs/performance.md, "Float dropout masks"). Under
    ``torch.compile`` (which cannot trace the in-place ``random_``) the mask is ``rand >= p``:
    compiled code draws its own random numbers anyway, and P(dropped) is then exactly ``p``."""
    if torch.compiler.is_compiling():
        return (torch.rand(shape, device=device) >= p).to(torch.float32)
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    u = words.view(torch.int16)[:n].view(shape).to(torch.float32)      # exact: |u| <= 2^15
    # integers: u - threshold + 1 >= 1 iff kept, <= 0 otherwise, so clamp(0, 1) is the 0/1 mask
    return u.sub_(mask_threshold(p) - 1).clamp_(0.0, 1.0)


def mask_threshold(p: float) -> int:
    """:func:`keep_mask` keeps an element iff its 16 random bits, read as a signed integer ``u``,
    are ``>= mask_threshold(p)``: P(dropped) = ``round(p * 2^16) / 2^16``."""
    return -(_LEVELS // 2) + round(p * _LEVELS)


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with :func:`keep_mask`'s bits."""
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return x * keep_mask(x.shape, p, x.device).mul_(1.0 / (1.0 - p)).to(x.dtype)


def _autocast_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give a product of ``t`` here (``t.dtype`` outside autocast)."""
    kind = t.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else t.dtype


def _relu_drop_(z: torch.Tensor, p: float) -> torch.Tensor:
    """In place: ``relu(z)`` times the kept/scaled mask (``p > 0``) — what ReLU then Dropout give."""
    z.clamp_min_(0.0)
    if p > 0.0:
        z.mul_(keep_mask(z.shape, p, z.device).to(z.dtype)).mul_(1.0 / (1.0 - p))
    return z


def masked_grad(grad: torch.Tensor, out: torch.Tensor, p: float) -> torch.Tensor:
    """The gradient through ReLU and Dropout: ``out > 0`` iff the unit was positive and kept, and
    ``sign(out)`` (``out >= 0``) is that indicator as a float (cheaper than a bool mask on CPU)."""
    g = grad.mul(out.sign())
    return g.mul_(1.0 / (1.0 - p)) if p > 0.0 else g


class _L2Normalize(torch.autograd.Function):
    """``F.normalize(x, dim=1)`` as one autograd node. The backward is, op for op, what autograd
    computes for ``x / x.norm(2, 1, keepdim=True).clamp_min(eps).expand_as(x)`` (``DivBackward0``
    for both operands, ``ExpandBackward0``, ``ClampMinBackward0``, the 2-norm's backward), so the
    values are F.normalize's bit for bit (tests/test_hotpath.py) with four graph nodes fewer."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float):
        norm = torch.linalg.vector_norm(x, 2, 1, keepdim=True)
        denom = norm.clamp_min(eps)
        q = x / denom
        ctx.save_for_backward(x, norm, denom, q)
        ctx.eps = eps
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, norm, denom, q = ctx.saved_tensors
        grad_denom = ((-grad) * (q / denom)).sum(1, keepdim=True)      # x / denom, d/d denom
        grad_norm = torch.where(norm >= ctx.eps, grad_denom, 0.0)       # clamp_min
        grad_x = grad / denom + grad_norm * (x / norm).masked_fill_(norm == 0, 0)
        return grad_x, None


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of ``x`` [N, d] scaled to unit L2 norm: ``F.normalize(x, dim=1, eps=eps)`` in one node."""
    return _L2Normalize.apply(x, eps)


class _LinearReLUDropout(torch.autograd.Function):
    """``dropout(relu(x W^T + b), p)`` as one node (the products in autocast's dtype, if on)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, p: float):
        dt = _autocast_dtype(x)
        x, w = x.to(dt), weight.to(dt)
        z = x @ w.t() if bias is None else torch.addmm(bias.to(dt), x, w.t())
        out = _relu_drop_(z, p)
        ctx.save_for_backward(x, w, out)
        ctx.p, ctx.has_bias = p, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w, out = ctx.saved_tensors
        g = masked_grad(grad.to(out.dtype), out, ctx.p)
        grad_x = g @ w if ctx.needs_input_grad[0] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, g.t() @ x, grad_b, None


class _ReLUDropout(torch.autograd.Function):
    """``dropout(relu(z), p)`` as one node."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, p: float):
        out = _relu_drop_(z.clone(), p)
        ctx.save_for_backward(out)
        ctx.p = p
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (out,) = ctx.saved_tensors
        return masked_grad(grad, out, ctx.p), None


def linear_relu_dropout(x: torch.Tensor, linear: nn.Linear, dropout: nn.Dropout) -> torch.Tensor:
    """``dropout(relu(linear(x)))`` in one autograd node (eval mode: no mask)."""
    p = dropout.p if dropout.training else 0.0
    return _LinearReLUDropout.apply(x, linear.weight, linear.bias, p)


def relu_dropout(z: torch.Tensor, dropout: nn.Dropout) -> torch.Tensor:
    """``dropout(relu(z))`` in one autograd node (eval mode: plain ReLU)."""
    if not dropout.training or dropout.p <= 0.0:
        return F.relu(z)
    return _ReLUDropout.apply(z, dropout.p)


def _is(mods: list[nn.Module], i: int, *kinds: type) -> bool:
    """Whether ``mods[i:]`` starts with modules of exactly these types (plain Dropout only)."""
    if i + len(kinds) > len(mods):
        return False
    ok = all(type(m) is k for m, k in zip(mods[i:], kinds))
    return ok and all(not getattr(m, "inplace", False) or type(m) is nn.ReLU for m in mods[i:i + len(kinds)])


# steps of a FusedSequential's plan: (step, index of its first module)
_LINEAR_RELU_DROPOUT, _RELU_DROPOUT, _DROPOUT, _MODULE = range(4)


def _plan(mods: list[nn.Module]) -> tuple[tuple[int, int], ...]:
    """The steps of ``mods`` with Linear-ReLU-Dropout and ReLU-Dropout runs fused, other Dropouts fast.
    Plain data (no closures over modules), so a deepcopy of the container plans its own children."""
    plan, i = [], 0
    while i < len(mods):
        if _is(mods, i, nn.Linear, nn.ReLU, nn.Dropout):
            plan.append((_LINEAR_RELU_DROPOUT, i))
            i += 3
        elif _is(mods, i, nn.ReLU, nn.Dropout):
            plan.append((_RELU_DROPOUT, i))
            i += 2
        else:
            plan.append((_DROPOUT if _is(mods, i, nn.Dropout) else _MODULE, i))
            i += 1
    return tuple(plan)


class FusedSequential(nn.Sequential):
    """The fast lane's container: the children of an ``nn.Sequential`` (same modules, same
    ``state_dict`` keys), run with Linear-ReLU-Dropout and ReLU-Dropout fused into one autograd node
    each and any other Dropout drawing :func:`keep_mask` bits. The encoders build it when the lane is
    ``fast``; :func:`reference_copy` gives the plain ``nn.Sequential`` back."""

    def __init__(self, *modules: nn.Module):
        super().__init__(*modules)
        self.plan = _plan(list(self))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mods = list(self)
        for step, i in self.plan:
            if step == _LINEAR_RELU_DROPOUT:
                x = linear_relu_dropout(x, mods[i], mods[i + 2])
            elif step == _RELU_DROPOUT:
                x = relu_dropout(x, mods[i + 1])
            elif step == _DROPOUT:
                x = fast_dropout(x, mods[i].p, mods[i].training)
            else:
                x = mods[i](x)
        return x


def sequential(modules: list[nn.Module], fast: bool) -> nn.Sequential:
    """``nn.Sequential(*modules)``, or its :class:`FusedSequential` in the fast lane."""
    return FusedSequential(*modules) if fast else nn.Sequential(*modules)


def reference_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in the reference arithmetic: every :class:`FusedSequential` becomes
    the plain ``nn.Sequential`` of the same (copied) children; parameters and keys unchanged."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is FusedSequential:
                setattr(parent, name, nn.Sequential(*child))
    return module


def momentum_update_(key_params: list[torch.Tensor], query_params: list[torch.Tensor], momentum: float,
                     fast: bool) -> None:
    """``θ_k ← m θ_k + (1 − m) θ_q``: ``mul`` + ``add`` (reference) or one ``lerp`` (fast lane), tensor by
    tensor with public in-place ops (the same elementwise kernels as torch's private ``_foreach_`` forms,
    bit for bit: tests/test_hotpath.py)."""
    for k, q in zip(key_params, query_params):
        if fast:
            k.lerp_(q, 1.0 - momentum)
        else:
            k.mul_(momentum).add_(q, alpha=1.0 - momentum)


def bf16_cpu_note(precision: str, device: torch.device) -> str | None:
    """A warning line when ``precision="bf16"`` runs on a CPU without native bf16 products
    (AVX512-BF16 or AMX, as oneDNN reports): there bf16 is emulated, much slower than fp32
    (docs/performance.md, "A warning for bf16 without native support")."""
    if precision != "bf16" or device.type != "cpu" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    return ("warning: precision=bf16 on a CPU without AVX512-BF16/AMX: bf16 products are emulated here, "
            "about 8x slower than fp32 (docs/workflow.md, \"Cost\"); --set precision=fp32 is faster")


def optimizer_kwargs(fast: bool, params: list[torch.Tensor]) -> dict[str, Any]:
    """Extra ``torch.optim.AdamW`` arguments: ``fused=True`` in the fast lane on CPU/CUDA float32."""
    if not fast or not params:
        return {}
    ok = all(p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if ok else {}
