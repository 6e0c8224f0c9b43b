"""mulsupcon_ld.losses against the literal per-anchor oracles (tests/oracle_losses.py)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from mulsupcon_ld import losses
from mulsupcon_ld.losses import (LDOptions, all_positive_mask, any_positive_mask, ld_loss, mulsupcon_loss,
                                 per_label_positive_counts)
from oracle_losses import literal_ld_loss, literal_mulsupcon_loss

TOL = 1e-5


# ------------------------------------------------------------------------------------ inputs
def make_case(kind: str = "mixed", *, B: int = 8, n_queue: int = 24, C: int = 6, d: int = 5, seed: int = 0,
              dtype=torch.float64, near_dup: bool = False):
    """Leaf tensors + the loss inputs built from them, as the training loop builds them.

    kind: "mixed" (an anchor without labels, one with a single label, one with all labels),
    "duplicates" (queue rows repeated, including copies of batch keys), "full" (every anchor has
    every label), "none" (no anchor has a label).
    """
    g = torch.Generator().manual_seed(seed)
    K = B + n_queue
    q_raw = torch.randn(B, d, generator=g, dtype=dtype, requires_grad=True)
    if near_dup:   # keys close to the queries so that the RBF of eq. 6 with sigma=0.01 is not ~0
        base = q_raw.detach()
        k_b = F.normalize(base + 0.004 * torch.randn(B, d, generator=g, dtype=dtype), dim=1)
        idx = torch.randint(0, B, (n_queue,), generator=g)
        k_q = F.normalize(base[idx] + 0.004 * torch.randn(n_queue, d, generator=g, dtype=dtype), dim=1)
        keys = torch.cat([k_b, k_q])
    else:
        keys = F.normalize(torch.randn(K, d, generator=g, dtype=dtype), dim=1)
    yq = (torch.rand(B, C, generator=g) < 0.35).to(dtype)
    yqueue = (torch.rand(n_queue, C, generator=g) < 0.35).to(dtype)
    if kind == "mixed":
        yq[0] = 0
        yq[1] = 0
        yq[1, 2] = 1
        yq[2] = 1
    elif kind == "full":
        yq[:] = 1
    elif kind == "none":
        yq[:] = 0
    logits_raw = torch.randn(B, C, generator=g, dtype=dtype, requires_grad=True)
    queue_dist = torch.softmax(torch.randn(n_queue, C, generator=g, dtype=dtype), dim=1)
    if kind == "duplicates" and n_queue >= 6:
        keys = keys.clone()
        keys[B + 1] = keys[B]
        keys[B + 2] = keys[0]          # a copy of a batch key in the queue
        yqueue[1] = yqueue[0]
        yqueue[2] = yq[0]
        queue_dist = queue_dist.clone()
        queue_dist[1] = queue_dist[0]
        keys[B + 3: B + 6] = keys[B + 3]
        yqueue[3:6] = yqueue[3]
    fc_weight = torch.randn(3, C, generator=g, dtype=dtype, requires_grad=True)
    return dict(q_raw=q_raw, keys=keys, yq=yq, yk=torch.cat([yq, yqueue]), logits_raw=logits_raw,
                queue_dist=queue_dist, fc_weight=fc_weight)


def ld_inputs(case):
    query = F.normalize(case["q_raw"], dim=1)
    query_dist = torch.softmax(case["logits_raw"], dim=1)
    key_dist = torch.cat([query_dist, case["queue_dist"]])
    return (query, case["keys"], case["yq"], case["yk"], query_dist, key_dist, case["fc_weight"])


def grads(loss, case):
    leaves = [case["q_raw"], case["logits_raw"], case["fc_weight"]]
    out = torch.autograd.grad(loss, leaves, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(x) if gr is None else gr for x, gr in zip(leaves, out)]


def assert_same(a_loss, b_loss, case):
    assert torch.isfinite(a_loss)
    assert a_loss.item() == pytest.approx(b_loss.item(), rel=TOL, abs=TOL)
    for ga, gb in zip(grads(a_loss, case), grads(b_loss, case)):
        assert torch.isfinite(ga).all()
        torch.testing.assert_close(ga, gb, rtol=TOL, atol=TOL)


def run_both(case, **kw):
    kw.setdefault("alpha", 0.3)
    kw.setdefault("beta", 0.05)
    a = ld_loss(*ld_inputs(case), **kw)
    b = literal_ld_loss(*ld_inputs(case), **kw)
    return a, b


# ------------------------------------------------------------------------------------ positive sets
def brute_masks(yq, yk):
    yq_b, yk_b = yq.bool().unsqueeze(1), yk.bool().unsqueeze(0)      # [B, 1, C], [1, K, C]
    return (yq_b & yk_b).any(-1), (yq_b == yk_b).all(-1)


@pytest.mark.parametrize("density", [0.0, 1.0])     # dense matmul path / embedding-bag path
def test_positive_sets_match_brute_force(monkeypatch, density):
    monkeypatch.setattr(losses, "_SPARSE_LABEL_MAX_DENSITY", density)
    case = make_case("duplicates", B=7, n_queue=30, C=9, seed=3)
    yq, yk = case["yq"], case["yk"]
    yq[3] = 0
    yk[:7] = yq
    yk[20] = 0
    any_ref, all_ref = brute_masks(yq, yk)
    assert torch.equal(any_positive_mask(yq, yk), any_ref)
    assert torch.equal(all_positive_mask(yq, yk), all_ref)
    assert torch.equal(any_positive_mask(yq.to(torch.uint8), yk.bool()), any_ref)
    # |P^j(i)| with A(i) = all keys, and with a per-anchor A(i)
    valid = torch.rand(7, 37, generator=torch.Generator().manual_seed(1)) < 0.6
    ref = torch.stack([yk[valid[i]].sum(0) for i in range(7)])
    torch.testing.assert_close(per_label_positive_counts(yk, valid), ref)
    torch.testing.assert_close(per_label_positive_counts(yk, n_anchors=7), yk.sum(0).expand(7, -1))
    own = losses._own_valid(7, 37, yk.device)
    torch.testing.assert_close(losses._counts(yk[:7], yk[7:].sum(0), own=True), per_label_positive_counts(yk, own))
    torch.testing.assert_close(losses._counts(yk[:7], yk[7:].sum(0), own=False), yk.sum(0).expand(7, -1))


# ------------------------------------------------------------------------------------ MulSupCon
@pytest.mark.parametrize("kind,n_queue", [("mixed", 24), ("mixed", 5), ("mixed", 0), ("duplicates", 24),
                                          ("full", 12)])
@pytest.mark.parametrize("density", [0.0, 1.0])
def test_mulsupcon_equals_oracle(monkeypatch, kind, n_queue, density):
    monkeypatch.setattr(losses, "_SPARSE_LABEL_MAX_DENSITY", density)
    case = make_case(kind, n_queue=n_queue, seed=n_queue)
    query = F.normalize(case["q_raw"], dim=1)
    a = mulsupcon_loss(query, case["keys"], case["yq"], case["yk"], temperature=0.1)
    b = literal_mulsupcon_loss(query, case["keys"], case["yq"], case["yk"], temperature=0.1)
    assert_same(a, b, case)


def test_mulsupcon_hand_computed():
    # one anchor with label 0; keys: own key (label 0), a queue key with label 0, one with label 1
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    k = F.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0], [-1.0, 0.5]], dtype=torch.float64), dim=1)
    yq = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    yk = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    s = (k @ q[0]) / 0.1
    logp = s - torch.logsumexp(s, 0)
    expected = -(logp[0] + logp[1]) / 2          # |P^0| = 2, sum_i |y_i| = 1
    assert mulsupcon_loss(q, k, yq, yk).item() == pytest.approx(expected.item(), rel=1e-12)


def test_mulsupcon_no_labels_and_empty_positive_sets():
    case = make_case("none", seed=4)
    query = F.normalize(case["q_raw"], dim=1)
    loss = mulsupcon_loss(query, case["keys"], case["yq"], case["yk"])
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(case["q_raw"].grad).all()
    # a label that no key carries (caller broke key_labels[:B] == query_labels): contributes 0, no NaN
    case = make_case("mixed", seed=5)
    yk = case["yk"].clone()
    yk[:, 4] = 0
    query = F.normalize(case["q_raw"], dim=1)
    a = mulsupcon_loss(query, case["keys"], case["yq"], yk)
    b = literal_mulsupcon_loss(query, case["keys"], case["yq"], yk)
    assert_same(a, b, case)


# ------------------------------------------------------------------------------------ RLD / CLD vs oracle
SWITCHES = [(f.name, v) for f in dataclasses.fields(LDOptions)
            for v in (losses._CHOICES.get(f.name) or (True, False))]


@pytest.mark.parametrize("variant", ["rld", "cld"])
@pytest.mark.parametrize("field,value", SWITCHES)
def test_ld_every_switch_equals_oracle(variant, field, value):
    case = make_case("mixed", seed=7)
    opt = LDOptions(**{field: value})
    a, b = run_both(case, variant=variant, sigma=0.7, options=opt)
    assert_same(a, b, case)


@pytest.mark.parametrize("variant", ["rld", "cld"])
@pytest.mark.parametrize("ablation", ["none", "no-alpha", "no-beta", "no-all"])
def test_ld_every_ablation_equals_oracle(variant, ablation):
    case = make_case("mixed", seed=11)
    a, b = run_both(case, variant=variant, sigma=0.7, ablation=ablation)
    assert_same(a, b, case)


@pytest.mark.parametrize("variant", ["rld", "cld"])
@pytest.mark.parametrize("kind,n_queue,density", [("mixed", 3, 1.0), ("mixed", 0, 0.0), ("duplicates", 24, 1.0),
                                                  ("duplicates", 24, 0.0), ("full", 10, 1.0), ("none", 10, 0.0)])
def test_ld_edge_cases_equal_oracle(monkeypatch, variant, kind, n_queue, density):
    monkeypatch.setattr(losses, "_SPARSE_LABEL_MAX_DENSITY", density)
    case = make_case(kind, n_queue=n_queue, seed=13 + n_queue)
    for opt in (LDOptions(), LDOptions(in_batch_keys="own", ld_positive_set="all", pos_norm="per_label")):
        a, b = run_both(case, variant=variant, sigma=0.7, options=opt)
        assert_same(a, b, case)


def test_rld_paper_sigma_on_near_duplicates():
    # sigma = 0.01 (the paper's): C^(1) is ~0 unless ||z_i - z_p|| is ~0.01; make such pairs
    case = make_case("mixed", seed=17, near_dup=True)
    a, b = run_both(case, variant="rld", sigma=0.01, options=LDOptions(detach_g_weight=False))
    assert_same(a, b, case)
    _, parts = ld_loss(*ld_inputs(case), variant="rld", alpha=0.3, beta=0.05, sigma=0.01, return_parts=True)
    assert parts["g"].item() > 1e-3      # the RBF term is really exercised


@pytest.mark.parametrize("seed", range(6))
def test_ld_random_option_combinations_equal_oracle(seed):
    g = torch.Generator().manual_seed(100 + seed)

    def pick(seq):
        return seq[int(torch.randint(len(seq), (1,), generator=g))]

    kw = {name: pick(choices) for name, choices in losses._CHOICES.items()}
    opt = LDOptions(**kw, detach_g_weight=pick((True, False)))
    case = make_case(pick(("mixed", "duplicates")), n_queue=pick((4, 20)), seed=seed)
    a, b = run_both(case, variant=pick(("rld", "cld")), sigma=0.7, options=opt,
                    ablation=pick(("none", "no-alpha", "no-beta", "no-all")))
    assert_same(a, b, case)


def test_parts_sum_to_loss_and_match_oracle():
    case = make_case("mixed", seed=19)
    opt = LDOptions(reduction="mean", beta_per="batch")
    loss, parts = ld_loss(*ld_inputs(case), variant="cld", alpha=0.3, beta=0.05, options=opt, return_parts=True)
    with torch.no_grad():
        _, ref = literal_ld_loss(*ld_inputs(case), variant="cld", alpha=0.3, beta=0.05, options=opt,
                                 return_parts=True)
    for name in ("contrastive", "g", "h"):
        assert parts[name].item() == pytest.approx(ref[name].item(), rel=TOL, abs=TOL)
    total = parts["contrastive"] + parts["g"] + parts["alpha_h"] + parts["beta_w"]
    assert total.item() == pytest.approx(loss.item(), rel=1e-12)
    assert parts["alpha_h"].item() == pytest.approx(0.3 * parts["h"].item())
    assert parts["beta_w"].item() == pytest.approx(0.05 * parts["w_sq"].item() / 8)
    assert not any(v.requires_grad for v in parts.values())


def test_beta_per_anchor_is_b_times_per_batch():
    case = make_case("mixed", seed=23)
    kw = dict(variant="cld", alpha=0.3, beta=0.05)
    per_anchor = ld_loss(*ld_inputs(case), **kw)
    per_batch = ld_loss(*ld_inputs(case), **kw, options=LDOptions(beta_per="batch"))
    w_sq = case["fc_weight"].pow(2).sum()
    assert (per_anchor - per_batch).item() == pytest.approx((8 - 1) * 0.05 * w_sq.item(), rel=1e-10)


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("method", ["mulsupcon", "rld", "cld"])
def test_gradient_flow(method):
    case = make_case("mixed", seed=29)
    keys = case["keys"].clone().requires_grad_(True)        # a caller that forgot no_grad
    queue_dist = case["queue_dist"].clone().requires_grad_(True)
    query = F.normalize(case["q_raw"], dim=1)
    query_dist = torch.softmax(case["logits_raw"], dim=1)
    key_dist = torch.cat([query_dist, queue_dist])
    if method == "mulsupcon":
        loss = mulsupcon_loss(query, keys, case["yq"], case["yk"])
    else:
        loss = ld_loss(query, keys, case["yq"], case["yk"], query_dist, key_dist, case["fc_weight"],
                       variant=method, alpha=0.3, beta=0.05, sigma=0.7)
    loss.backward()
    assert keys.grad is None                                   # key encoder: none
    # Q_ld: rows B: of key_dist are detached; a grad-requiring queue passed through cat() only sees
    # the zero slice of cat's backward (buffers in MoCo never require grad, so None there)
    assert queue_dist.grad is None or not queue_dist.grad.any()
    assert case["q_raw"].grad is not None and case["q_raw"].grad.abs().sum() > 0
    if method != "mulsupcon":                                  # fc: through query_dist and W
        assert case["logits_raw"].grad.abs().sum() > 0
        assert case["fc_weight"].grad.abs().sum() > 0


def test_keys_without_grad_stay_without_grad():
    case = make_case("mixed", seed=31)
    assert not case["keys"].requires_grad
    loss = ld_loss(*ld_inputs(case), variant="cld", alpha=0.3, beta=0.05)
    loss.backward()
    assert case["keys"].grad is None


def test_weight_grad_none_cuts_only_the_weights():
    # contrastive term alone (sigma -> 0 makes C^(1), hence G, vanish; no-all drops H and ||W||):
    # the label-distribution head is then reached only through the weights d_p^j of eq. (12)
    case = make_case("mixed", seed=37)
    for wg, expect in (("batch", True), ("none", False)):
        loss, parts = ld_loss(*ld_inputs(case), variant="rld", alpha=0.3, beta=0.05, sigma=1e-6,
                              ablation="no-all", options=LDOptions(weight_grad=wg), return_parts=True)
        assert parts["g"].item() == 0.0
        (gl,) = torch.autograd.grad(loss, [case["logits_raw"]], allow_unused=True)
        assert (gl is not None and gl.abs().sum().item() > 0) == expect


# ------------------------------------------------------------------------------------ invariances, dtypes
@pytest.mark.parametrize("method", ["mulsupcon", "rld", "cld"])
def test_queue_order_does_not_matter(method):
    case = make_case("duplicates", seed=41)
    B = 8
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0)) + B
    order = torch.cat([torch.arange(B), perm])
    query = F.normalize(case["q_raw"], dim=1)
    qd = torch.softmax(case["logits_raw"], dim=1)
    kd = torch.cat([qd, case["queue_dist"]])
    out = []
    for idx in (torch.arange(B + 24), order):
        if method == "mulsupcon":
            out.append(mulsupcon_loss(query, case["keys"][idx], case["yq"], case["yk"][idx]))
        else:
            out.append(ld_loss(query, case["keys"][idx], case["yq"], case["yk"][idx], qd, kd[idx],
                               case["fc_weight"], variant=method, alpha=0.3, beta=0.05, sigma=0.7,
                               options=LDOptions(in_batch_keys="own")))
    assert out[0].item() == pytest.approx(out[1].item(), rel=1e-12)


@pytest.mark.parametrize("method", ["mulsupcon", "cld", "rld"])
def test_float32_and_bf16_autocast(method):
    case = make_case("mixed", seed=43, B=16, n_queue=64, C=10, d=16)

    def run(dtype, autocast):
        query = F.normalize(case["q_raw"].detach().to(dtype), dim=1).requires_grad_(True)
        qd = torch.softmax(case["logits_raw"].detach().to(dtype), dim=1).requires_grad_(True)
        kd = torch.cat([qd, case["queue_dist"].to(dtype)])
        keys, yq, yk = case["keys"].to(dtype), case["yq"].bool(), case["yk"].to(torch.uint8)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
        with ctx:
            if method == "mulsupcon":
                loss = mulsupcon_loss(query, keys, yq, yk)
            else:
                loss = ld_loss(query, keys, yq, yk, qd, kd, case["fc_weight"].detach().to(dtype),
                               variant=method, alpha=0.3, beta=0.05, sigma=0.7)
        loss.backward()
        return loss, query.grad

    ref, ref_g = run(torch.float64, False)
    l32, g32 = run(torch.float32, False)
    assert l32.dtype == torch.float32
    assert l32.item() == pytest.approx(ref.item(), rel=1e-5)
    lbf, gbf = run(torch.bfloat16, True)       # bf16 activations, loss computed in fp32
    assert lbf.dtype == torch.float32 and torch.isfinite(lbf) and torch.isfinite(gbf.float()).all()
    assert lbf.item() == pytest.approx(ref.item(), rel=0.05)


# ------------------------------------------------------------------------------------ options API
def test_options_validation_and_coercion():
    assert LDOptions.coerce(None) == LDOptions()
    assert LDOptions.coerce({"g2_weight": "prob"}) == LDOptions(g2_weight="prob")
    with pytest.raises(ValueError, match="g2_weight"):
        LDOptions(g2_weight="abs")
    with pytest.raises(ValueError, match="unknown"):
        LDOptions.coerce({"nope": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        LDOptions().reduction = "mean"
    case = make_case("mixed", seed=47)
    with pytest.raises(ValueError, match="variant"):
        ld_loss(*ld_inputs(case), variant="xld", alpha=0.1, beta=0.1)
    with pytest.raises(ValueError, match="ablation"):
        ld_loss(*ld_inputs(case), variant="cld", alpha=0.1, beta=0.1, ablation="no-gamma")
    with pytest.raises(ValueError, match="keys"):
        mulsupcon_loss(F.normalize(case["q_raw"], dim=1), case["keys"][:4], case["yq"], case["yk"][:4])


def test_defaults_are_the_documented_ones():
    assert LDOptions() == LDOptions(ld_positive_set="any", in_batch_keys="all", g2_weight="neg_log_prob",
                                    detach_g_weight=True, h_target="raw", weight_grad="batch",
                                    pos_norm="none", beta_per="anchor", reduction="sum")
    assert math.isclose(losses.ld_loss.__kwdefaults__["sigma"], 0.01)
    assert math.isclose(losses.ld_loss.__kwdefaults__["temperature"], 0.1)


@pytest.mark.parametrize("scale", [1.0, 30.0])          # shift = norm bound (CPU) / row maximum
@pytest.mark.parametrize("n_own,n_queue", [(0, 9), (5, 9), (5, 0)])
def test_fused_logsumexp_gradcheck(n_own, n_queue, scale):
    g = torch.Generator().manual_seed(53)
    qs = (scale * torch.randn(5, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    k = torch.randn(5 + n_queue, 4, generator=g, dtype=torch.float64)
    for keep in (True, False):
        assert torch.autograd.gradcheck(lambda x: losses._SimLogSumExp.apply(x, k, n_own, keep)[0], (qs,))
    lse, e, shift = losses._SimLogSumExp.apply(qs, k, n_own, True)
    ref = qs @ k.t()
    torch.testing.assert_close(e + shift.unsqueeze(1), ref.detach())
    if n_own:
        ref = ref.masked_fill(~losses._own_valid(5, 5 + n_queue, k.device), float("-inf"))
    torch.testing.assert_close(lse, torch.logsumexp(ref, 1))
    assert not e.requires_grad and not shift.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["mulsupcon", "rld", "cld"])
def test_cuda_fp32_and_bf16_autocast_match_cpu_float64(method):
    case = make_case("mixed", seed=59, B=32, n_queue=96, C=12, d=16)
    ref = None
    for device, autocast in (("cpu", False), ("cuda", False), ("cuda", True)):
        dtype = torch.float64 if device == "cpu" else torch.float32
        q_raw = case["q_raw"].detach().to(device, dtype).requires_grad_(True)
        logits = case["logits_raw"].detach().to(device, dtype).requires_grad_(True)
        keys, yq, yk = (case[n].to(device, dtype) for n in ("keys", "yq", "yk"))
        qdist_q, w = case["queue_dist"].to(device, dtype), case["fc_weight"].detach().to(device, dtype)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            query = F.normalize(q_raw, dim=1)
            if autocast:
                query = query.to(torch.bfloat16)
            qd = torch.softmax(logits, dim=1)
            if method == "mulsupcon":
                loss = mulsupcon_loss(query, keys, yq, yk)
            else:
                loss = ld_loss(query, keys, yq, yk, qd, torch.cat([qd, qdist_q]), w, variant=method,
                               alpha=0.3, beta=0.05, sigma=0.7)
        loss.backward()
        assert loss.dtype != torch.bfloat16 and torch.isfinite(loss)
        assert torch.isfinite(q_raw.grad).all()
        if ref is None:
            ref = (loss.item(), q_raw.grad.cpu())
        else:
            rel = 5e-2 if autocast else 1e-5
            assert loss.item() == pytest.approx(ref[0], rel=rel)
            torch.testing.assert_close(q_raw.grad.cpu().double(), ref[1], rtol=rel, atol=rel * 10)


@pytest.mark.parametrize(("method", "own"), [("mulsupcon", False), ("rld", False), ("rld", True),
                                            ("cld", False), ("cld", True)])
def test_small_temperature_row_max_path_equals_oracle(method, own):
    # tau = 0.02: |l| can reach 50, beyond the norm-bound shift, so the row maximum is used
    case = make_case("mixed", seed=61)
    if method == "mulsupcon":
        # mulsupcon_loss has no in-batch-key switch: A(i) is always every key
        query = F.normalize(case["q_raw"], dim=1)
        a = mulsupcon_loss(query, case["keys"], case["yq"], case["yk"], temperature=0.02)
        b = literal_mulsupcon_loss(query, case["keys"], case["yq"], case["yk"], temperature=0.02)
    else:
        a, b = run_both(case, variant=method, sigma=0.7, temperature=0.02,
                        options=LDOptions(in_batch_keys="own" if own else "all"))
    assert_same(a, b, case)


# ------------------------------------------------------------------------------------ queue as its own block
def queue_block_inputs(case, lists: bool):
    """``ld_loss(..., queue=Queue(...))`` arguments: the batch block and the queue block."""
    query, keys, yq, yk, query_dist, key_dist, fc_weight = ld_inputs(case)
    B = yq.shape[0]
    queue = losses.Queue(keys=keys[B:], labels=yk[B:], dist=case["queue_dist"],
                         lists=losses.label_lists(yk[B:]) if lists else None)
    return (query, keys[:B], yq, yk[:B], query_dist, key_dist[:B], fc_weight), queue


def test_label_lists_round_trip():
    y = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    lists = losses.label_lists(y)
    assert lists.tolist() == [[1, 3, 4, 4], [4, 4, 4, 4], [0, 1, 2, 3]]
    assert losses.label_lists(y, width=6).shape == (3, 6)
    assert losses.label_lists(torch.zeros(2, 5)).tolist() == [[5], [5]]
    ql = losses._ListLabels(lists, 4, torch.float32)
    torch.testing.assert_close(ql.per_label(), y.sum(0))
    torch.testing.assert_close(ql.per_key(), y.sum(1))
    a = torch.rand(5, 4)
    torch.testing.assert_close(ql.overlap(a), a @ y.t())


@pytest.mark.parametrize("lists", [True, False])
@pytest.mark.parametrize("variant", ["rld", "cld"])
@pytest.mark.parametrize("field,value", SWITCHES)
def test_ld_queue_block_equals_oracle(variant, field, value, lists):
    case = make_case("mixed", seed=7)
    opt = LDOptions(**{field: value})
    args, queue = queue_block_inputs(case, lists)
    kw = dict(variant=variant, alpha=0.3, beta=0.05, sigma=0.7, options=opt)
    a = ld_loss(*args, queue=queue, **kw)
    b = literal_ld_loss(*ld_inputs(case), **kw)
    assert_same(a, b, case)


@pytest.mark.parametrize("variant", ["rld", "cld"])
@pytest.mark.parametrize("kind,n_queue", [("mixed", 0), ("mixed", 3), ("duplicates", 24), ("full", 10),
                                          ("none", 10)])
def test_ld_queue_block_edge_cases_equal_oracle(variant, kind, n_queue):
    case = make_case(kind, n_queue=n_queue, seed=13 + n_queue)
    args, queue = queue_block_inputs(case, lists=True)
    for opt in (LDOptions(), LDOptions(in_batch_keys="own", ld_positive_set="all", pos_norm="per_label"),
                LDOptions(ld_positive_set="per_label", h_target="normalized", weight_grad="none")):
        for ablation, reference in (("none", literal_ld_loss), ("no-all", ld_loss)):   # the oracle has
            kw = dict(variant=variant, alpha=0.3, beta=0.05, sigma=0.7, options=opt, ablation=ablation)  # no graph
            assert_same(ld_loss(*args, queue=queue, **kw), reference(*ld_inputs(case), **kw), case)  # for 0 labels


@pytest.mark.parametrize("lists", [True, False])
@pytest.mark.parametrize("kind,n_queue", [("mixed", 24), ("mixed", 0), ("duplicates", 24), ("none", 5)])
def test_mulsupcon_queue_block_equals_oracle(kind, n_queue, lists):
    case = make_case(kind, n_queue=n_queue, seed=5)
    (query, keys_b, yq, yk_b, *_), queue = queue_block_inputs(case, lists)
    a = mulsupcon_loss(query, keys_b, yq, yk_b, queue=queue)
    if kind == "none":       # no label in the batch: 0, with a graph (the oracle has none)
        assert a.item() == 0.0 and a.requires_grad
        return
    b = literal_mulsupcon_loss(query, case["keys"], yq, case["yk"])
    assert_same(a, b, case)


def test_queue_block_at_many_labels_equals_concatenated_keys_float32():
    """Delicious-like shape (C large, ~2% dense): the list path agrees with the dense concatenated
    path to 1e-5 relative in float32, loss and gradients."""
    case = make_case("mixed", B=16, n_queue=200, C=300, d=32, seed=3, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    case["yk"] = (torch.rand(216, 300, generator=g) < 0.02).float()
    case["yq"] = case["yk"][:16]
    for variant in ("rld", "cld"):
        args, queue = queue_block_inputs(case, lists=True)
        kw = dict(variant=variant, alpha=0.1, beta=1.0, sigma=0.7)
        a = ld_loss(*args, queue=queue, **kw)
        b = ld_loss(*ld_inputs(case), **kw)
        assert_same(a, b, case)


def test_queue_block_shape_errors():
    case = make_case("mixed", seed=1)
    args, queue = queue_block_inputs(case, lists=True)
    with pytest.raises(ValueError, match="queue.dist"):
        ld_loss(*args, queue=dataclasses.replace(queue, dist=None), variant="cld", alpha=0.1, beta=1.0)
    with pytest.raises(ValueError, match="queue keys"):
        ld_loss(*args, queue=dataclasses.replace(queue, labels=queue.labels[:, :2]), variant="cld",
                alpha=0.1, beta=1.0)


def _mulsupcon_as_tensor_ops(query, keys, yq, yk, temperature):
    """The dense MulSupCon loss written as autograd operations (the code before the one-node
    version): the reference the node must equal bit for bit."""
    qs = query / temperature
    lse = losses._SimLogSumExp.apply(qs, keys, 0, False)[0]
    m_lab, n, _ = losses._label_sums(yk, None, keys)
    a = yq * losses._safe_inv(n)
    x = (qs * (a @ m_lab)).sum(1)
    return (lse * (a * n).sum(1) - x).sum() / yq.sum().clamp_min(1.0)


@pytest.mark.parametrize("B,n_queue,C,d,tau", [(64, 256, 14, 256, 0.1), (37, 63, 6, 32, 0.07), (8, 0, 3, 5, 1.0)])
def test_mulsupcon_node_equals_the_autograd_composition_bit_for_bit(B, n_queue, C, d, tau):
    g = torch.Generator().manual_seed(B + C)
    p = torch.randn(B, d, generator=g)
    keys = F.normalize(torch.randn(B + n_queue, d, generator=g), dim=1)
    yq = (torch.rand(B, C, generator=g) < 0.3).float()
    yq[0] = 0.0                                      # an anchor without labels
    yk = torch.cat([yq, (torch.rand(n_queue, C, generator=g) < 0.3).float()])
    grad_out = torch.rand((), generator=g) * 3
    got = []
    for fn in (_mulsupcon_as_tensor_ops, losses.mulsupcon_loss):
        q = F.normalize(p, dim=1).requires_grad_(True)
        loss = fn(q, keys, yq, yk, tau)
        loss.backward(grad_out)
        got.append((loss.detach(), q.grad))
    assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1])


def test_mulsupcon_node_gradcheck():
    case = make_case("mixed", seed=61, B=6, n_queue=10, C=5, d=4)
    q = F.normalize(case["q_raw"], dim=1).detach().requires_grad_(True)
    k, yq, yk = case["keys"], case["yq"], case["yk"]
    assert torch.autograd.gradcheck(lambda x: losses.mulsupcon_loss(x, k, yq, yk, temperature=0.3), (q,))
