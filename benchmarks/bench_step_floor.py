"""The fused fp32 step beside its floor (the same kernels without autograd) and the published iteration.

How far the step is from its own arithmetic, in one run:

    python benchmarks/bench_step_floor.py [--raw-dir ../shared/data] [--peer CLONE/codes] [--iters 1000]
        [--rounds 5]

MulSupCon at the published Yeast setting (batch 64, queue 256), real Yeast, one torch thread. Two steps on
two models, interleaved in rounds of ``--iters`` iterations:

* ``step``: the loop body of :func:`mulsupcon_ld.train.pretrain` in the fast lane's fused CPU fp32 step
  (MoCo forward, the loss function, ``loss.backward()``, AdamW, enqueue);
* ``floor``: the same operator calls on the same operands in the same order — the masks, both encoders
  (``fused_encoder._forward``), the momentum ``lerp``, the loss node's forward and backward
  (``losses._MulSupConNode``), the normalisation's backward, :func:`fused_encoder.encoder_backward`,
  the same ``torch.optim.AdamW`` — but without autograd, the MoCo / loss-function layers and the checks.

``floor`` is what removing every layer of Python and autograd could give without changing the
arithmetic: if the published iteration is not 8x ``floor``, no rewrite of the glue reaches 8x on this
machine. With ``--peer`` the published iteration runs in the same rounds (bench_pretrain.peer_step).
One JSON line per measurement; times are medians (and minima) over the rounds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pretrain import OurStep, common_arguments, load, load_yeast, peer_step  # noqa: E402

from mulsupcon_ld import fused_encoder, hotpath, losses, train as T  # noqa: E402
from mulsupcon_ld.augment import VectorBatches  # noqa: E402
from mulsupcon_ld.experiment import build_moco  # noqa: E402
from mulsupcon_ld.machine import cpu_facts  # noqa: E402


class _Ctx:
    """What ``losses._MulSupConNode``'s forward and backward read from their autograd context."""

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self.saved_tensors = tensors


def _model(ours: OurStep, x, y):
    torch.manual_seed(0)
    moco = build_moco(ours.s, y.shape[1], x.shape[1])
    moco.train()
    params = moco.optimizer_parameters(True)
    opt = T.make_optimizer(params, ours.s.pretrain.optimizer, **hotpath.optimizer_kwargs(True, params))
    batches = iter(VectorBatches(x, y, ours.batch, mask=ours.s.pretrain.mask, two_views=True,
                                 iters_per_epoch=10**7, seed=0).epoch(0))
    return moco, opt, batches


def make_steps(x, y, batch: int = 64, queue: int = 256):
    """``(step, floor, same)``: one iteration each, on two models built alike and fed the same batches;
    ``same()`` whether their weights are equal bit for bit (after equally many iterations, each pair
    started from one RNG state)."""
    ours = OurStep(x, y, "mulsupcon", batch, queue, "fp32", Path("."), "fast")
    moco, opt, batches = _model(ours, x, y)
    moco2, opt2, batches2 = _model(ours, x, y)
    fused, tau = moco2._fused, ours.s.pretrain.temperature
    assert moco._fused is not None and fused is not None, "the fused step does not apply here"

    def step() -> None:
        v1, v2, labels = next(batches)
        out = moco(v1, v2, labels)
        loss, _ = ours.loss_fn(out, out.labels, moco)
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        moco.enqueue(out.k, out.labels, out.dist)

    def floor() -> None:
        v1, v2, labels = next(batches2)
        with torch.no_grad():
            dq = fused.plan_q.dropouts(v1.shape[0])
            masks = fused_encoder.draw_keep_masks(dq + fused.plan_k.dropouts(v2.shape[0]))
            saved: list[torch.Tensor] = []
            h, p = fused_encoder._forward(fused.plan_q, v1, masks[:len(dq)], fused.views_q.params, saved)
            fused.momentum_update(moco2.momentum)
            _, pk = fused_encoder._forward(fused.plan_k, v2, masks[len(dq):], fused.views_k.params, None)
            norm = torch.linalg.vector_norm(p, 2, 1, keepdim=True).clamp_min(1e-12)
            q = p / norm
            k = F.normalize(pk, dim=1)
            dist = torch.softmax(torch.addmm(moco2.fc.bias, h, moco2.fc.weight.t()), 1)
            block = moco2.queue_block()
            ctx = _Ctx()
            ctx.temperature = tau
            losses._MulSupConNode.forward(ctx, q, torch.cat([k, block.keys]), labels,
                                          torch.cat([labels, block.labels]), tau)
            grad_q = losses._MulSupConNode.backward(ctx, torch.ones(()))[0]
            grad_norm = ((-grad_q) * (q / norm)).sum(1, keepdim=True)
            grad_p = grad_q / norm + grad_norm * q
            fused.flat_q.grad = fused_encoder.encoder_backward(fused.views_q, saved, None, grad_p, False)[1]
        opt2.step()
        opt2.zero_grad(set_to_none=True)
        moco2.enqueue(k, labels, dist)

    def same() -> bool:
        state = moco.state_dict()
        return all(torch.equal(v, moco2.state_dict()[k]) for k, v in state.items())

    return step, floor, same


def main() -> None:
    args = common_arguments(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    x, y, source = load_yeast(args.raw_dir, args.data_dir)
    step, floor, same = make_steps(x, y)
    for i in range(5):                                  # the floor computes the step's numbers
        for fn in (step, floor):
            torch.manual_seed(i)
            fn()
    equal = same()
    peer = peer_step(Path(args.peer)) if args.peer else None
    lanes = {"step": lambda n: _timed(step, n), "floor": lambda n: _timed(floor, n)}
    if peer is not None:
        lanes["published"] = peer
    for run in lanes.values():
        run(20)
    times: dict[str, list[float]] = {name: [] for name in lanes}
    for _ in range(args.rounds):
        for name, run in lanes.items():
            times[name].append(run(args.iters) / args.iters * 1e3)
    row = {"bench": "step_floor", "data": source, "method": "mulsupcon", "batch": 64, "queue": 256,
           "iters": args.iters, "rounds": args.rounds, "torch": torch.__version__, **cpu_facts()}
    for name, ts in times.items():
        row[f"{name}_ms_median"], row[f"{name}_ms_min"] = round(float(np.median(ts)), 3), round(min(ts), 3)
    row["floor_equals_step_bit_for_bit"] = equal
    row["step_over_floor"] = round(row["step_ms_median"] / row["floor_ms_median"], 3)
    if peer is not None:
        for name in ("step", "floor"):
            row[f"published_over_{name}"] = round(row["published_ms_median"] / row[f"{name}_ms_median"], 2)
    print(json.dumps({**row, "load_1min": load()}), flush=True)


def _timed(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
