"""``mulsupcon-ld run | pretrain | finetune`` end to end on the synthetic Yeast at smoke scale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mulsupcon_ld import losses
from mulsupcon_ld.cli import main
from mulsupcon_ld.commands import experiment_spec
from mulsupcon_ld.experiment import run_experiment

torch.set_num_threads(1)

METRIC_KEYS = {"mAP", "p_at_1", "maF1", "miF1", "HA", "ebF1"}
# smaller batches than the paper's 128 so the synthetic train split gives several iterations
# checkpoint_seconds=0: a checkpoint at every epoch end, which the resume tests interrupt right after
FAST = ["--set", "pretrain.batch_size=64", "--set", "finetune.batch_size=64", "--set", "pretrain.queue_size=96",
        "--set", "checkpoint_seconds=0"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def args(out, data_dir, method="cld", *extra, command="run"):
    return [command, "--dataset", "yeast", "--method", method, "--scale", "smoke", "--synthetic",
            "--device", "cpu", "--data-dir", str(data_dir), "--out", str(out), *FAST, *extra]


def load(out):
    return json.loads((out / "metrics.json").read_text())


def assert_valid(rec, method, ablation="none"):
    assert rec["dataset"] == "yeast" and rec["method"] == method and rec["ablation"] == ablation
    assert rec["synthetic"] is True and rec["scale"] == "smoke" and rec["seed"] == 0
    for protocol in ("paper", "val-threshold"):
        m = rec["metrics"][protocol]
        assert METRIC_KEYS <= set(m)
        assert all(0.0 <= m[k] <= 1.0 for k in METRIC_KEYS), m
    assert "threshold" in rec["metrics"]["val-threshold"]
    for key in ("config", "config_hash", "git_commit", "versions", "device", "host"):
        assert rec[key], key
    assert set(rec["wall_time_s"]) == {"pretrain", "finetune", "evaluate", "total"}
    assert {"n_train", "n_val", "n_test", "source"} <= set(rec["data"]) and rec["data"]["n_test"] > 0
    if method in ("mulsupcon", "bce", "asl"):
        assert rec["alpha"] is None and rec["beta"] is None
    else:
        assert (rec["alpha"], rec["beta"]) == (0.1, 1.0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """One uninterrupted cld run, shared by the comparisons below."""
    out = tmp_path_factory.mktemp("ref")
    assert main(args(out, data_dir)) == 0
    return out


def test_run_cld_writes_metrics_and_arrays(reference, data_dir):
    rec = load(reference)
    assert_valid(rec, "cld")
    scores = np.load(reference / "test_scores.npy")
    labels = np.load(reference / "test_labels.npy")
    assert scores.shape == labels.shape == (rec["data"]["n_test"], 14)
    assert np.load(reference / "val_scores.npy").shape[0] == rec["data"]["n_val"]
    assert (reference / "pretrained.pt").exists() and not (reference / "state").exists()
    # fine-tuning keeps the epoch of the lowest validation BCE (select="val_loss"; the first one on a tie)
    ft = rec["training"]["finetune"]
    assert ft["select"] == "val_loss" and len(ft["val_loss"]) == ft["stopped_epoch"] == 3
    assert ft["selected_epoch"] == 1 + int(np.argmin(ft["val_loss"]))
    # the terms of eqs. 9/11 per pretraining epoch (issue: the scale of the LD terms); they add up to the loss
    parts = rec["training"]["pretrain"]["parts"]
    assert len(parts) == len(rec["training"]["pretrain"]["loss"])
    assert set(parts[0]) == {"contrastive", "g", "h", "alpha_h", "w_sq", "beta_w", "loss"}
    for p, loss in zip(parts, rec["training"]["pretrain"]["loss"]):
        assert p["loss"] == pytest.approx(loss, rel=1e-5)
        assert p["contrastive"] + p["g"] + p["alpha_h"] + p["beta_w"] == pytest.approx(p["loss"], rel=1e-4)


class _Reached(Exception):
    """Raised by the loss spies below once they have seen the first batch's call."""


def _first_loss_call(monkeypatch, tmp_path, data_dir, method, *extra):
    """The keyword arguments the CLI's choices give the pretraining loss on the first batch."""
    seen = {}

    def spy(name):
        def record(*a, **kw):
            seen.update(kw, _loss=name, _n_args=len(a))
            raise _Reached
        return record

    monkeypatch.setattr(losses, "ld_loss", spy("ld_loss"))
    monkeypatch.setattr(losses, "mulsupcon_loss", spy("mulsupcon_loss"))
    with pytest.raises(_Reached):
        main(args(tmp_path, data_dir, method, *extra))
    return seen


@pytest.mark.parametrize("method,ablation", [
    ("rld", "none"), ("cld", "none"), ("cld", "no-alpha"), ("cld", "no-beta"), ("cld", "no-all"),
    ("rld", "no-alpha"), ("rld", "no-beta"), ("rld", "no-all")])
def test_cli_method_and_ablation_reach_ld_loss(tmp_path, data_dir, monkeypatch, method, ablation):
    kw = _first_loss_call(monkeypatch, tmp_path, data_dir, method, "--ablation", ablation)
    assert kw["_loss"] == "ld_loss" and kw["_n_args"] == 7
    assert (kw["variant"], kw["ablation"]) == (method, ablation)
    assert (kw["alpha"], kw["beta"], kw["sigma"], kw["temperature"]) == (0.1, 1.0, 0.01, 0.1)
    assert kw["options"] is None


def test_cli_mulsupcon_reaches_mulsupcon_loss(tmp_path, data_dir, monkeypatch):
    kw = _first_loss_call(monkeypatch, tmp_path, data_dir, "mulsupcon")
    assert isinstance(kw.pop("queue"), losses.Queue)        # the MoCo queue as its own block
    assert kw == {"_loss": "mulsupcon_loss", "_n_args": 4, "temperature": 0.1}


def test_cli_alpha_beta_and_options_reach_ld_loss(tmp_path, data_dir, monkeypatch):
    kw = _first_loss_call(monkeypatch, tmp_path, data_dir, "cld", "--alpha", "0.003", "--beta", "0.25",
                          "--set", 'loss.options={"ld_positive_set": "all", "reduction": "mean"}',
                          "--set", "loss.sigma=0.5", "--set", "pretrain.temperature=0.2")
    assert (kw["variant"], kw["alpha"], kw["beta"], kw["sigma"], kw["temperature"]) == ("cld", 0.003, 0.25, 0.5, 0.2)
    assert kw["options"] == losses.LDOptions(ld_positive_set="all", reduction="mean")   # typed when resolved


def test_run_rld_ablation_end_to_end(tmp_path, data_dir):
    """One full non-default run (the loss arguments of every choice are checked above)."""
    assert main(args(tmp_path, data_dir, "rld", "--ablation", "no-all")) == 0
    assert_valid(load(tmp_path), "rld", "no-all")


def test_bce_control_finetunes_without_pretraining(tmp_path, data_dir, reference, capsys):
    out = tmp_path / "bce"
    assert main(args(out, data_dir, "bce", "--preset", "mulsupcon-official")) == 0
    rec = load(out)
    assert_valid(rec, "bce")
    assert rec["preset"] == "mulsupcon-official" and load(reference)["preset"] == "paper"
    assert rec["config"]["settings"]["finetune"]["scheduler"]["name"] == "ReduceLROnPlateau"
    assert not (out / "pretrained.pt").exists() and rec["wall_time_s"]["pretrain"] == 0.0
    assert rec["training"]["pretrain"]["loss"] is None
    assert rec["training"]["finetune"]["stopped_epoch"] == 3  # smoke: 3 epochs, patience 20
    assert main(args(tmp_path / "pre", data_dir, "bce", command="pretrain")) == 2
    assert "no pretraining phase" in capsys.readouterr().err
    assert main(args(tmp_path / "abl", data_dir, "bce", "--ablation", "no-beta")) == 2


def test_asl_is_the_bce_control_with_the_asymmetric_loss(tmp_path, data_dir):
    # same data, seed, budget and selection as --method bce; only the training loss differs
    runs = {}
    for method in ("asl", "bce"):
        assert main(args(tmp_path / method, data_dir, method)) == 0
        runs[method] = load(tmp_path / method)
    asl, bce = runs["asl"], runs["bce"]
    assert_valid(asl, "asl")
    assert not (tmp_path / "asl" / "pretrained.pt").exists() and asl["wall_time_s"]["pretrain"] == 0.0
    # the same fine-tuning but for the model selection, which follows the official ASL training
    # (the highest validation mAP; settings.METHOD_SETTINGS)
    assert asl["config"]["settings"]["finetune"]["select"] == "val_mAP" == asl["training"]["finetune"]["select"]
    assert bce["config"]["settings"]["finetune"]["select"] == "val_loss"
    assert ({**asl["config"]["settings"]["finetune"], "select": "val_loss"} == bce["config"]["settings"]["finetune"])
    ft = asl["training"]["finetune"]
    assert ft["selected_epoch"] == 1 + int(np.argmax(ft["val_mAP"]))
    ft_asl, ft_bce = asl["training"]["finetune"], bce["training"]["finetune"]
    assert ft_asl["stopped_epoch"] == ft_bce["stopped_epoch"]
    # the official recipe (asl.py): summed over labels and examples, focusing weights detached
    assert asl["arithmetic"]["reading"] == "asl:sum,detached,gamma_neg=4,gamma_pos=0,clip=0.05"
    assert bce["arithmetic"]["reading"] == "none" and asl["cell_key"] != bce["cell_key"]
    # ASL down-weights easy negatives: per label and example, its first-epoch training loss is far below
    # BCE's (a mean). A full batch's sum holds batch × labels terms; a short last batch only lowers it.
    n_labels = np.load(tmp_path / "asl" / "test_labels.npy").shape[1]
    per_element = ft_asl["train_loss"][0] / (asl["config"]["settings"]["finetune"]["batch_size"] * n_labels)
    assert per_element < 0.5 * ft_bce["train_loss"][0]


def test_same_seed_same_numbers_other_seed_differs(tmp_path, data_dir, reference):
    assert main(args(tmp_path / "again", data_dir)) == 0
    assert load(tmp_path / "again")["metrics"] == load(reference)["metrics"]
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "test_scores.npy"),
                                  np.load(reference / "test_scores.npy"))
    assert main(args(tmp_path / "seed1", data_dir, "cld", "--seed", "1")) == 0
    assert not np.array_equal(np.load(tmp_path / "seed1" / "test_scores.npy"),
                              np.load(reference / "test_scores.npy"))


def _spec(out, data_dir, *extra):
    from mulsupcon_ld.cli import build_parser

    return experiment_spec(build_parser().parse_args(args(out, data_dir, "cld", *extra)), ("pretrain", "finetune"))


@pytest.mark.parametrize("phase,epoch", [("pretrain", 2), ("finetune", 1)])
def test_resume_after_interrupt_equals_uninterrupted(tmp_path, data_dir, reference, phase, epoch):
    def stop(p, e):
        if p == phase and e + 1 == epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(_spec(tmp_path, data_dir), on_epoch_end=stop)
    assert (tmp_path / "state" / f"{phase}.pt").exists() and not (tmp_path / "metrics.json").exists()
    torch.manual_seed(1234)  # the resumed process must not depend on the RNG it starts with
    assert main(args(tmp_path, data_dir)) == 0
    assert load(tmp_path)["metrics"] == load(reference)["metrics"]
    np.testing.assert_array_equal(np.load(tmp_path / "test_scores.npy"), np.load(reference / "test_scores.npy"))


def test_resume_after_sigkill_equals_uninterrupted(tmp_path, data_dir, reference):
    """A real process killed with SIGKILL right after pretraining epoch 2's checkpoint."""
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        torch.set_num_threads(1)
        from mulsupcon_ld.cli import build_parser
        from mulsupcon_ld.commands import experiment_spec
        from mulsupcon_ld.experiment import run_experiment
        def kill(phase, epoch):
            if phase == "pretrain" and epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        spec = experiment_spec(build_parser().parse_args({args(tmp_path, data_dir)!r}), ("pretrain", "finetune"))
        run_experiment(spec, on_epoch_end=kill)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "state" / "pretrain.pt").exists()
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "state").iterdir())
    assert main(args(tmp_path, data_dir)) == 0
    assert load(tmp_path)["metrics"] == load(reference)["metrics"]
    for name in ("test_scores", "val_scores"):  # bit for bit, not only the rounded metrics
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), np.load(reference / f"{name}.npy"))


def test_pretrain_then_finetune_commands_equal_run(tmp_path, data_dir, reference):
    assert main(args(tmp_path, data_dir, command="pretrain")) == 0
    assert (tmp_path / "pretrained.pt").exists() and not (tmp_path / "metrics.json").exists()
    assert main(args(tmp_path, data_dir, command="finetune")) == 0
    assert load(tmp_path)["metrics"] == load(reference)["metrics"]


def test_rerun_finished_is_a_noop_and_other_config_is_refused(tmp_path, data_dir, reference, capsys):
    before = (reference / "metrics.json").read_text()
    assert main(args(reference, data_dir)) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert (reference / "metrics.json").read_text() == before
    assert main(args(reference, data_dir, "cld", "--alpha", "0.5")) == 2
    assert "different configuration" in capsys.readouterr().err


def test_user_errors(tmp_path, data_dir, capsys):
    assert main(args(tmp_path / "a", data_dir, "mulsupcon", "--ablation", "no-beta")) == 2
    assert "rld and cld only" in capsys.readouterr().err
    assert main(args(tmp_path / "b", data_dir, command="finetune")) == 2
    assert "pretrained.pt does not exist" in capsys.readouterr().err
    assert main(args(tmp_path / "c", data_dir, "cld", "--set", "pretrain.epochz=3")) == 2
    assert "unknown setting" in capsys.readouterr().err
    assert main(args(tmp_path / "d", data_dir, "cld", "--alpha", "-1")) == 2
    assert main(args(tmp_path / "e", data_dir, "cld", "--device", "gpu7")) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_evaluate_recomputes_saved_metrics(reference, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--scores", str(reference / "test_scores.npy"),
                 "--labels", str(reference / "test_labels.npy"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == load(reference)["metrics"]["paper"]
    assert main(["evaluate", "--scores", str(reference / "test_scores.npy"),
                 "--labels", str(reference / "test_labels.npy"), "--protocol", "val-threshold",
                 "--val-scores", str(reference / "val_scores.npy"),
                 "--val-labels", str(reference / "val_labels.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == load(reference)["metrics"]["val-threshold"]


def test_standardize_uses_train_statistics_only():
    from mulsupcon_ld.batches import standardize as _standardize

    class Prepared:  # the two methods _standardize needs
        kind = "vector"

        def __init__(self, splits):
            self._splits = splits

        def split(self, name):
            return self._splits[name]

    rng = np.random.default_rng(0)
    train = np.c_[rng.normal(5.0, 3.0, size=(50, 2)), np.full(50, 7.0)].astype(np.float32)
    test = np.array([[5.0, 5.0, 7.0], [8.0, 2.0, 9.0]], dtype=np.float32)
    prepared = Prepared({"train": (train, None), "test": (test, None)})
    z_train = _standardize(prepared, train)
    np.testing.assert_allclose(z_train[:, :2].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z_train[:, :2].std(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(z_train[:, 2], 0.0)  # constant feature: centred, not divided by 0
    z_test = _standardize(prepared, test)
    mean, std = train.mean(0, dtype=np.float64), train.std(0, dtype=np.float64)
    np.testing.assert_allclose(z_test[1, :2], (test[1, :2] - mean[:2]) / std[:2], rtol=1e-5)
    assert z_test[1, 2] == pytest.approx(2.0)  # test-time deviation of a train-constant feature kept
    assert z_test.dtype == np.float32


def test_a_run_resolves_its_settings_once_and_looks_the_dataset_up_once(tmp_path, data_dir, monkeypatch):
    """Followed from the CLI, the registry is asked by name once and the settings are built once;
    everything below receives the objects (RunSettings, DatasetSpec)."""
    from mulsupcon_ld import registry, run_settings, settings

    calls = {"lookup": 0, "resolve": 0, "table": 0}

    def counting(name, real):
        def wrapped(*a, **kw):
            if name != "lookup" or isinstance(a[0], str):   # a DatasetSpec passed down is not a lookup
                calls[name] += 1
            return real(*a, **kw)
        return wrapped

    for attr, name, real in (("get_dataset", "lookup", registry.get_dataset),
                             ("resolve_settings", "resolve", run_settings.resolve_settings),
                             ("table_settings", "table", settings.table_settings)):
        for mod in [m for n, m in sys.modules.items() if n.startswith("mulsupcon_ld") and m is not None]:
            if getattr(mod, attr, None) is real:
                monkeypatch.setattr(mod, attr, counting(name, real))
    assert main(args(tmp_path / "warm", data_dir)) == 0   # the stand-in prepared beforehand
    calls.update(lookup=0, resolve=0, table=0)
    assert main(args(tmp_path / "out", data_dir)) == 0
    assert calls == {"lookup": 1, "resolve": 1, "table": 1}
