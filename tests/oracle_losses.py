"""Literal per-anchor oracles of the losses in mulsupcon_ld/losses.py.

They follow the paper one anchor at a time, as Algorithm 1 does (mask, stack k[i] and Q[mask],
stack D[i] and Q_d[mask], stack y[i] and Q_ll[mask], then the per-anchor equation), and loop over
the anchor's labels where an equation sums over j in y_i. Slow on purpose; used by
tests/test_losses.py and benchmarks/bench_loss.py (which puts tests/ on sys.path).

No code is shared with mulsupcon_ld.losses except LDOptions (the switches).
"""
from __future__ import annotations

import torch

from mulsupcon_ld.losses import LDOptions


def literal_mulsupcon_loss(query, keys, query_labels, key_labels, temperature=0.1):
    """Eqs. (3)-(4), one anchor and one label at a time. A(i) = all keys."""
    B, K = query.shape[0], keys.shape[0]
    keys = keys.detach()
    total = query.new_zeros(())
    n_labels = 0
    for i in range(B):
        log_prob = torch.log_softmax(keys @ query[i] / temperature, dim=0)   # over A(i)
        loss_i = query.new_zeros(())
        for j in torch.nonzero(query_labels[i]).flatten().tolist():          # j in y_i
            n_labels += 1
            in_pj = key_labels[:, j] == 1                                     # P^j(i)
            n_pj = int(in_pj.sum())
            if n_pj == 0:
                continue
            loss_i = loss_i - log_prob[in_pj].sum() / n_pj
        total = total + loss_i
    return total / n_labels if n_labels else total


def literal_ld_loss(query, keys, query_labels, key_labels, query_dist, key_dist, fc_weight, *,
                    variant, alpha, beta, sigma=0.01, temperature=0.1, ablation="none", options=None,
                    return_parts=False):
    """Algorithm 1 with eqs. (5)-(15), one anchor at a time, for the readings in ``options``."""
    opt = LDOptions.coerce(options)
    B, K = query.shape[0], keys.shape[0]
    keys = keys.detach()
    D = query_dist                                     # line 7: D = softmax(fc(q)), with gradient
    Q_d = key_dist[B:].detach()                        # the label-distribution queue
    d_keys = torch.cat([key_dist[:B], Q_d], dim=0)     # distributions aligned with keys
    use_alpha = ablation in ("none", "no-beta")
    use_beta = ablation in ("none", "no-alpha")
    w_sq = (fc_weight ** 2).sum()

    total = query.new_zeros(())
    sums = {"contrastive": 0.0, "g": 0.0, "h": 0.0}
    for i in range(B):
        y_i = query_labels[i]
        z_i = query[i]
        labels_i = torch.nonzero(y_i).flatten().tolist()          # j in y_i
        # A(i) as a mask over the keys; "others" = A(i) without the own key k[i] (Algorithm 1's Q)
        in_a = torch.ones(K, dtype=torch.bool, device=keys.device)
        if opt.in_batch_keys == "own":
            in_a[:B] = False
            in_a[i] = True
        others = in_a.clone()
        others[i] = False
        # C^(2)_{i,a} for every a in A(i) (eq. 10; the summand of eq. 5); -inf outside A(i)
        c2 = torch.log_softmax((keys @ z_i / temperature).masked_fill(~in_a, float("-inf")), dim=0)

        # ---- first term of eq. (12)/(13) over P^j(i) = {p in A(i): y_p^j = 1}: k[i] (with D[i]) + others
        d_w = d_keys if opt.weight_grad == "batch" else d_keys.detach()
        d_own = D[i] if opt.weight_grad == "batch" else D[i].detach()
        t_i = query.new_zeros(())
        for j in labels_i:
            in_pj = others & (key_labels[:, j] == 1)
            term = d_own[j] * y_i[j] * c2[i] + (d_w[in_pj, j] * key_labels[in_pj, j] * c2[in_pj]).sum()
            if opt.pos_norm == "per_label":
                term = term / (1 + int(in_pj.sum()))
            t_i = t_i - term

        # ---- positives of G and H: Algorithm 1 lines 11-17 (stack k[i] and the masked others)
        def stacked(mask):
            return (torch.cat([keys[i:i + 1], keys[mask]]),             # line 13
                    torch.cat([D[i:i + 1], d_keys[mask]]),              # line 15
                    torch.cat([y_i.unsqueeze(0), key_labels[mask]]),    # line 17
                    torch.cat([c2[i:i + 1], c2[mask]]))

        if opt.ld_positive_set == "per_label":       # one group per label j in y_i: P^j(i)
            groups = [stacked(others & (key_labels[:, j] == 1)) for j in labels_i]
        elif opt.ld_positive_set == "any":           # line 11: y[i] & Q_ll != {}
            groups = [stacked(others & ((key_labels @ y_i) > 0))]
        else:                                        # eq. (1): y_p == y_i
            groups = [stacked(others & (key_labels == y_i).all(1))]

        g_i = query.new_zeros(())
        h_i = query.new_zeros(())
        for z_p, d_p, y_p, c2_p in groups:
            if variant == "rld":                       # eq. (6)
                c = torch.exp(-((z_i.unsqueeze(0) - z_p) ** 2).sum(1) / (2 * sigma ** 2))
            elif opt.g2_weight == "neg_log_prob":
                c = -c2_p
            elif opt.g2_weight == "raw":
                c = c2_p
            else:
                c = torch.exp(c2_p)
            if opt.detach_g_weight:
                c = c.detach()
            g_i = g_i + (c * ((D[i].unsqueeze(0) - d_p) ** 2).sum(1)).sum()     # eq. (7)
            target = y_p
            if opt.h_target == "normalized":
                n = y_p.sum(1, keepdim=True)
                target = torch.where(n > 0, y_p / n.clamp_min(1), torch.zeros_like(y_p))
            h_i = h_i + ((target - d_p) ** 2).sum()                            # eq. (8)

        loss_i = t_i + g_i                             # eq. (12)/(13) with (9)/(11)
        if use_alpha:
            loss_i = loss_i + alpha * h_i
        if use_beta and opt.beta_per == "anchor":
            loss_i = loss_i + beta * w_sq
        total = total + loss_i                         # eq. (14)/(15)
        sums["contrastive"] = sums["contrastive"] + t_i
        sums["g"] = sums["g"] + g_i
        sums["h"] = sums["h"] + h_i
    if use_beta and opt.beta_per == "batch":
        total = total + beta * w_sq
    if opt.reduction == "mean":
        total = total / B
        sums = {name: v / B for name, v in sums.items()}
    if return_parts:
        return total, sums
    return total
