"""The fused CPU fp32 pretraining step (fused_encoder.py) against the per-module fast lane, end to end at
the paper budget: does it earn its keep (issue 28 item 3: keep it only at >= 1.25x end to end)?

One process, one torch thread, real data, a paper-budget run of ``--dataset`` ``--method`` (pretraining
at the paper's 400 epochs, then the 100 fine-tuning epochs). The two pretraining arms alternate
``--rounds`` times (fused, modules, fused, …; each from the same seeded initialisation); the
fine-tuning is the same code for both and is timed once. Clock: this process's CPU time
(``time.process_time``: with one thread, other processes on the machine do not count). The weights
after pretraining are compared bit for bit in every round (they must be equal). Prints one JSON line
per arm and round, then a summary line with the end-to-end ratio
(pretrain_modules + finetune) / (pretrain_fused + finetune).

    python benchmarks/bench_fused_e2e.py --raw-dir ../shared/data [--dataset yeast --method cld --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mulsupcon_ld import train as T
from mulsupcon_ld.batches import make_batches
from mulsupcon_ld.encoders import Classifier
from mulsupcon_ld.experiment import ExperimentSpec, build_moco, load_data, resolve_run
from mulsupcon_ld.machine import cpu_facts
from mulsupcon_ld.provenance import git_commit


def pretrain_once(run, prepared, fused: bool, tmp: Path) -> tuple[float, dict]:
    s = run.settings
    T.seed_everything(run.seed)
    moco = build_moco(s, int(prepared.meta["n_labels"]), prepared.meta.get("n_features"))
    loss_fn = T.make_pretrain_loss(run.config["method"], s.loss, s.pretrain.temperature, run.config["ablation"])
    batches = make_batches(prepared, "train", s, "pretrain", run.seed, torch.device("cpu"))
    state = tmp / "pretrain.pt"
    state.unlink(missing_ok=True)          # a finished arm's state would make the next one resume, i.e. do nothing
    t = time.process_time()
    T.pretrain(moco, batches, s, loss_fn, seed=run.seed, device=torch.device("cpu"), state_path=state,
               config_hash="bench", fused_step=fused)
    return time.process_time() - t, {k: v.detach().clone() for k, v in moco.state_dict().items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="yeast")
    p.add_argument("--method", default="cld")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--raw-dir", default=None)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    run = resolve_run(ExperimentSpec(args.dataset, args.method, Path("unused"), raw_dir=args.raw_dir,
                                     data_dir=args.data_dir, overrides=("checkpoint_seconds=100000",)))
    prepared = load_data(run)
    facts = {"commit": git_commit(), "torch": torch.__version__, **cpu_facts(), "dataset": args.dataset,
             "method": args.method, "pretrain_epochs": run.settings.pretrain.epochs}
    times: dict[str, list[float]] = {"fused": [], "modules": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            weights = {}
            for arm in ("fused", "modules"):
                sec, weights[arm] = pretrain_once(run, prepared, arm == "fused", Path(tmp))
                times[arm].append(sec)
                print(json.dumps({"round": r, "arm": arm, "pretrain_cpu_s": round(sec, 3)}), flush=True)
            same = all(torch.equal(weights["fused"][k], weights["modules"][k]) for k in weights["fused"])
            if not same:
                raise SystemExit("the two arms trained different weights: the fused step is not bit for bit")
        s = run.settings             # fine-tuning: the same code for both arms, timed once
        T.seed_everything(run.seed)
        moco = build_moco(s, int(prepared.meta["n_labels"]), prepared.meta.get("n_features"))
        moco.load_state_dict(weights["fused"])
        clf = Classifier.from_pretrained(moco)
        t = time.process_time()
        T.finetune(clf, make_batches(prepared, "train", s, "finetune", run.seed, torch.device("cpu")),
                   make_batches(prepared, "val", s, "eval", run.seed, torch.device("cpu")), s, seed=run.seed,
                   device=torch.device("cpu"), state_path=Path(tmp) / "ft.pt", config_hash="bench")
        ft = time.process_time() - t
    fused, modules = statistics.median(times["fused"]), statistics.median(times["modules"])
    print(json.dumps({**facts, "pretrain_fused_cpu_s": times["fused"], "pretrain_modules_cpu_s": times["modules"],
                      "finetune_cpu_s": round(ft, 3), "pretrain_ratio": round(modules / fused, 3),
                      "end_to_end_ratio": round((modules + ft) / (fused + ft), 3), "same_weights": True}))


if __name__ == "__main__":
    main()
