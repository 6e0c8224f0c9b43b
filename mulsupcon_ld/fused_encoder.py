"""The fast lane's pretraining step for MLP encoders on CPU in float32: both encoders in one call.

What :class:`~mulsupcon_ld.hotpath.FusedSequential` still leaves per step on a small MLP is not
arithmetic: one autograd node per block, eight ``random_`` calls and their conversions for the
dropout masks, the key encoder's forward going through autograd Functions under ``no_grad``, a
BatchNorm module, and fourteen parameters for AdamW and the momentum update to walk. Here
(:class:`FlatPair`), for an encoder whose backbone is ``Linear-ReLU-Dropout`` blocks and whose
projection head is ``Linear-BatchNorm1d-ReLU-Dropout`` blocks then a ``Linear`` (encoders.py):

* every dropout mask of the step — the query encoder's, then the key encoder's — comes from ONE
  ``random_`` call and one conversion (:func:`draw_keep_masks`);
* the query encoder is ONE autograd node (:class:`_EncoderNode`: the products, BatchNorm through
  ``aten.native_batch_norm`` and its backward, masks applied in place) whose input is ONE flat
  parameter: the encoder's parameters are views of it, and the backward writes every gradient
  into one flat gradient, so AdamW steps one tensor (plus ``fc``);
* the momentum update is one ``lerp_`` between the two flat buffers;
* the key encoder runs the same forward as plain code, without autograd.

The numbers are the fast lane's bit for bit (tests/test_fused_encoder.py: same seed, same losses,
weights, queues and BatchNorm statistics after training): the masks are the same bits in the same
order of torch's global generator (``random_`` of 64-bit words is serial on CPU, so one call for
the concatenated words gives each mask the words its own :func:`~mulsupcon_ld.hotpath.keep_mask`
call would have drawn); the node calls the same kernels on the same operands as the per-block
autograd functions and modules (``addmm`` forward; ``g W`` and ``gᵀ x`` backward, as
``torch/csrc/autograd/FunctionsManual.cpp`` ``mm_mat1_backward`` / ``mm_mat2_backward`` do for
``nn.Linear``); fused AdamW and ``lerp`` are elementwise. :func:`train.pretrain` turns the path on
(:meth:`mulsupcon_ld.moco.MoCo.optimizer_parameters`) for fp32 runs on CPU without
``torch.compile``; bf16 autocast, CUDA (where one ``random_`` call is not two), other module
layouts and eval mode keep the per-module path.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn

from .hotpath import FusedSequential, mask_threshold, masked_grad

__all__ = ["EncoderPlan", "FlatPair", "plan", "draw_keep_masks", "encoder_backward"]


@dataclass(frozen=True)
class _Block:
    """``Linear`` (→ ``BatchNorm1d``) → ``ReLU`` → ``Dropout(p)``."""

    linear: nn.Linear
    bn: nn.BatchNorm1d | None
    p: float


@dataclass(frozen=True)
class EncoderPlan:
    """An encoder read as blocks: the backbone's (the representation ``h`` is the output of block
    ``n_backbone - 1``), the head's, then the head's last ``Linear`` (the projection ``p``)."""

    blocks: tuple[_Block, ...]
    n_backbone: int
    out: nn.Linear

    @property
    def starts(self) -> tuple[int, ...]:
        """Index in :meth:`params` of each block's W (then b, then BatchNorm's γ, β), then the last W."""
        at, k = [], 0
        for blk in self.blocks:
            at.append(k)
            k += 4 if blk.bn is not None else 2
        return tuple(at + [k])

    def params(self) -> list[torch.Tensor]:
        """The parameters in the node's order: per block W, b (γ, β), then the last W, b."""
        ps: list[torch.Tensor] = []
        for blk in self.blocks:
            ps += [blk.linear.weight, blk.linear.bias]
            if blk.bn is not None:
                ps += [blk.bn.weight, blk.bn.bias]
        return ps + [self.out.weight, self.out.bias]

    def dropouts(self, batch: int) -> list[tuple[int, int, float]]:
        """``(rows, width, p)`` of each mask a forward draws, in order (blocks with ``p > 0``)."""
        return [(batch, blk.linear.out_features, blk.p) for blk in self.blocks if blk.p > 0.0]


def _linear(m: nn.Module) -> bool:
    return type(m) is nn.Linear and m.bias is not None


def _relu_dropout(mods: list[nn.Module], i: int) -> float | None:
    """``p`` if ``mods[i:i+2]`` is ReLU then a plain Dropout, else None."""
    if i + 2 > len(mods) or type(mods[i]) is not nn.ReLU or type(mods[i + 1]) is not nn.Dropout:
        return None
    return None if mods[i + 1].inplace else float(mods[i + 1].p)


def _batch_norm(m: nn.Module) -> bool:
    return (type(m) is nn.BatchNorm1d and m.affine and m.track_running_stats and m.momentum is not None
            and m.running_mean is not None)


def plan(encoder: nn.Module) -> EncoderPlan | None:
    """The encoder's :class:`EncoderPlan`, or ``None`` if it is not the fast lane's MLP layout."""
    bnet = getattr(getattr(encoder, "backbone", None), "net", None)
    hnet = getattr(getattr(encoder, "head", None), "net", None)
    if type(bnet) is not FusedSequential or type(hnet) is not FusedSequential:
        return None
    if any(getattr(m, "_compiled_call_impl", None) is not None for m in (encoder, encoder.backbone, encoder.head)):
        return None
    blocks: list[_Block] = []
    mods = list(bnet)
    for i in range(0, len(mods), 3):
        p = _relu_dropout(mods, i + 1)
        if not _linear(mods[i]) or p is None:
            return None
        blocks.append(_Block(mods[i], None, p))
    n_backbone = len(blocks)
    mods = list(hnet)
    if not mods or (len(mods) - 1) % 4 or not _linear(mods[-1]):
        return None
    for i in range(0, len(mods) - 1, 4):
        p = _relu_dropout(mods, i + 2)
        if not _linear(mods[i]) or not _batch_norm(mods[i + 1]) or p is None:
            return None
        blocks.append(_Block(mods[i], mods[i + 1], p))
    return EncoderPlan(tuple(blocks), n_backbone, mods[-1]) if n_backbone else None


def draw_keep_masks(shapes: list[tuple[int, int, float]]) -> list[torch.Tensor]:
    """For each ``(rows, width, p)``, :func:`hotpath.keep_mask`'s mask of that shape scaled by
    ``1 / (1 - p)`` (so ``0`` or ``1 / (1 - p)``), all from one ``random_`` call on CPU: mask ``i``
    gets the ``ceil(rows * width / 4)`` 64-bit words its own ``keep_mask`` call would draw. Masks
    that lie back to back (whole words) with the same ``p`` are thresholded in one pass."""
    words = [(r * w + 3) // 4 for r, w, _ in shapes]
    bits = torch.empty(sum(words), dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    u = bits.view(torch.int16).to(torch.float32)      # exact: |u| <= 2^15
    starts = [4 * sum(words[:i]) for i in range(len(shapes))]
    i = 0
    while i < len(shapes):                            # runs of adjacent masks with one p
        j, p = i + 1, shapes[i][2]
        while j < len(shapes) and shapes[j][2] == p and shapes[j - 1][0] * shapes[j - 1][1] % 4 == 0:
            j += 1
        end = starts[j - 1] + shapes[j - 1][0] * shapes[j - 1][1]
        # keep_mask's rule: kept iff u >= threshold, i.e. u - threshold + 1 >= 1 (else <= 0)
        u[starts[i]:end].sub_(mask_threshold(p) - 1).clamp_(0.0, 1.0).mul_(1.0 / (1.0 - p))
        i = j
    return [u[a:a + r * w].view(r, w) for a, (r, w, _) in zip(starts, shapes)]


def _forward(pl: EncoderPlan, x: torch.Tensor, masks: list[torch.Tensor], params: list[torch.Tensor],
             saved: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h, p)``; with ``saved`` a list, appends what the backward needs (block inputs, BatchNorm
    inputs and statistics, block outputs)."""
    it, mi, h, rep = iter(params), iter(masks), x, x
    for j, blk in enumerate(pl.blocks):
        w, b = next(it), next(it)
        z = torch.addmm(b, h, w.t())
        if saved is not None:
            saved.append(h)
        if blk.bn is not None:
            bn = blk.bn
            gamma, beta = next(it), next(it)
            bn.num_batches_tracked.add_(1)
            zn, mean, invstd = torch.ops.aten.native_batch_norm(z, gamma, beta, bn.running_mean, bn.running_var,
                                                                True, bn.momentum, bn.eps)
            if saved is not None:
                saved += [z, mean, invstd]
            z = zn
        z.clamp_min_(0.0)
        if blk.p > 0.0:
            z.mul_(next(mi))
        h = z
        if j == pl.n_backbone - 1:
            rep = h
    w, b = next(it), next(it)
    if saved is not None:
        saved.append(h)
    return rep, torch.addmm(b, h, w.t())


class _EncoderNode(torch.autograd.Function):
    """The query encoder as one autograd node: ``(x, flat) -> (h, p)``, where ``flat`` is the
    parameter whose views are the encoder's parameters; the backward returns one flat gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, views: "_FlatViews", masks: list[torch.Tensor], flat: torch.Tensor):
        saved: list[torch.Tensor] = []
        h, p = _forward(views.plan, x, masks, views.params, saved)
        ctx.views = views
        ctx.save_for_backward(*saved)
        return h, p

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor | None, grad_p: torch.Tensor | None):
        g_in, grad_flat = encoder_backward(ctx.views, list(ctx.saved_tensors), grad_h, grad_p, ctx.needs_input_grad[0])
        return g_in, None, None, grad_flat


def encoder_backward(views: "_FlatViews", saved: list[torch.Tensor], grad_h: torch.Tensor | None,
                     grad_p: torch.Tensor | None, input_grad: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The query encoder's backward (:class:`_EncoderNode`): from the gradients of ``h`` and ``p`` and
    what the forward saved (consumed), ``(gradient of x or None, the flat parameter gradient)``."""
    pl, params, at = views.plan, views.params, views.starts
    grad_flat, grads = views.new_grad()
    k = at[-1]
    inp = saved.pop()
    g = grad_p if grad_p is not None else inp.new_zeros(inp.shape[0], pl.out.out_features)
    _weight_grads(g, inp, grads[k], grads[k + 1])
    g_in = g.mm(params[k])
    for j in range(len(pl.blocks) - 1, -1, -1):
        blk, w = pl.blocks[j], at[j]
        out = inp                                  # this block's output is the next one's input
        if j == pl.n_backbone - 1 and grad_h is not None:
            g_in = grad_h + g_in
        g = masked_grad(g_in, out, blk.p)          # through ReLU and Dropout, as the per-module lane
        if blk.bn is not None:
            z, mean, invstd = saved[-3:]
            del saved[-3:]
            bn = blk.bn
            g, g_gamma, g_beta = torch.ops.aten.native_batch_norm_backward(
                g, z, params[w + 2], bn.running_mean, bn.running_var, mean, invstd, True, bn.eps,
                [True, True, True])
            grads[w + 2].copy_(g_gamma)
            grads[w + 3].copy_(g_beta)
        inp = saved.pop()
        _weight_grads(g, inp, grads[w], grads[w + 1])
        g_in = g.mm(params[w]) if j > 0 or input_grad else None
    return g_in, grad_flat


def _weight_grads(g: torch.Tensor, inp: torch.Tensor, grad_w: torch.Tensor, grad_b: torch.Tensor) -> None:
    """``nn.Linear``'s weight and bias gradients, written into ``grad_w`` and ``grad_b``: ``gᵀ x``
    (autograd's ``mm_mat2_backward`` for the transposed weight) and ``g`` summed over the batch."""
    torch.mm(g.t(), inp, out=grad_w)
    torch.sum(g, 0, out=grad_b)


def _flatten(params: list[torch.Tensor]) -> torch.Tensor:
    """One buffer holding ``params`` in order; each parameter's ``.data`` becomes its view."""
    flat = torch.empty(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
    start = 0
    with torch.no_grad():
        for p in params:
            view = flat[start:start + p.numel()].view_as(p)
            view.copy_(p)
            p.data = view
            start += p.numel()
    return flat


class _FlatViews:
    """One encoder's flat buffer as the fused step reads it, made once: the plan, the parameters as
    detached views of the buffer (node order), where each block starts, and how to cut a flat
    gradient of the same layout into per-parameter views."""

    def __init__(self, plan: EncoderPlan, flat: torch.Tensor):
        self.plan, self.flat, self.starts = plan, flat, plan.starts
        self.params = [t.detach() for t in plan.params()]
        self.sizes = [t.numel() for t in self.params]
        self.shapes = [t.shape for t in self.params]

    def new_grad(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A flat gradient buffer and its per-parameter views (uninitialised: the backward writes all)."""
        grad = torch.empty_like(self.flat, memory_format=torch.contiguous_format)
        return grad, [t.view(shape) for t, shape in zip(grad.split(self.sizes), self.shapes)]


class FlatPair:
    """The fused path of one MoCo: the two encoders' :class:`EncoderPlan` s and their parameters as
    two flat buffers (the modules' parameters become views, so ``state_dict``, checkpoints and the
    per-module path see the same numbers). The optimiser updates :attr:`flat_q` (one parameter, one
    gradient: the node writes every gradient into it) and the momentum update is one ``lerp_`` over
    the buffers; the fused AdamW and the ``lerp`` are elementwise, so the values are those of the
    per-parameter versions bit for bit (tested)."""

    def __init__(self, plan_q: EncoderPlan, plan_k: EncoderPlan):
        self.plan_q, self.plan_k = plan_q, plan_k
        self.flat_q = nn.Parameter(_flatten(plan_q.params()))
        self.flat_k = _flatten(plan_k.params())
        self.views_q, self.views_k = _FlatViews(plan_q, self.flat_q.detach()), _FlatViews(plan_k, self.flat_k)

    @classmethod
    def build(cls, encoder_q: nn.Module, encoder_k: nn.Module) -> "FlatPair | None":
        """``None`` unless both encoders are the fast lane's MLP layout in float32 on CPU and the plan
        covers every parameter of each."""
        pq, pk = plan(encoder_q), plan(encoder_k)
        if pq is None or pk is None:
            return None
        for pl, enc in ((pq, encoder_q), (pk, encoder_k)):
            ps = pl.params()
            if {id(p) for p in ps} != {id(p) for p in enc.parameters()} or len(ps) != len(list(enc.parameters())):
                return None
            if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in ps):
                return None
        return cls(pq, pk)

    def aliased(self) -> bool:
        """Whether the modules' parameters still are views of the buffers (``.to(device)`` or
        ``load_state_dict(assign=True)`` would have replaced them): the first and the last parameter
        of each encoder, read from the modules, still start and end the buffer."""
        for pl, flat in ((self.plan_q, self.flat_q), (self.plan_k, self.flat_k)):
            first, last = pl.blocks[0].linear.weight, pl.out.bias
            end = last.data_ptr() + last.numel() * last.element_size()
            if first.data_ptr() != flat.data_ptr() or end != flat.data_ptr() + flat.numel() * flat.element_size():
                return False
        return True

    def applies(self, x_q: torch.Tensor) -> bool:
        """Whether this step can take the fused path (CPU float32 without autocast, with gradient)."""
        return (torch.is_grad_enabled() and x_q.device.type == "cpu" and x_q.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and self.aliased())

    def momentum_update(self, momentum: float) -> None:
        """``θ_k ← m θ_k + (1 − m) θ_q`` as one ``lerp_`` over the buffers."""
        with torch.no_grad():
            self.flat_k.lerp_(self.flat_q, 1.0 - momentum)

    def encode(self, x_q: torch.Tensor, x_k: torch.Tensor, momentum: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(h_q, p_q, p_k)``: every mask of the step, the query encoder's node, the momentum
        update, then the key encoder without gradient (the order of the per-module path)."""
        dq = self.plan_q.dropouts(x_q.shape[0])
        masks = draw_keep_masks(dq + self.plan_k.dropouts(x_k.shape[0]))
        h, p = _EncoderNode.apply(x_q, self.views_q, masks[:len(dq)], self.flat_q)
        self.momentum_update(momentum)
        with torch.no_grad():
            _, p_k = _forward(self.plan_k, x_k, masks[len(dq):], self.views_k.params, None)
        return h, p, p_k
