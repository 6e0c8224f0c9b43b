"""Settings table, vector batches and masking, training loops, checkpoints and resume (CPU, tiny)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from mulsupcon_ld import losses, train as T
from mulsupcon_ld.augment import VectorBatches, epoch_seed, random_mask
from mulsupcon_ld.encoders import Classifier, Encoder, MLPBackbone
from mulsupcon_ld.errors import UserError
from mulsupcon_ld.moco import MoCo
from mulsupcon_ld.run_settings import CosineSchedule, OptimizerSettings, PlateauSchedule, RunSettings, resolve_settings
from mulsupcon_ld.settings import TABLE

torch.set_num_threads(1)


# ---------------------------------------------------------------------------- settings
@pytest.mark.parametrize("name,batch,queue", [
    ("yeast", 128, 256), ("scene", 256, 1024), ("bookmarks", 256, 8192), ("delicious", 128, 4096),
    ("mediamill", 512, 8192), ("coco", 128, 4096), ("nuswide", 128, 4096), ("mirflickr", 128, 8192),
    ("pascal", 128, 1024)])
def test_section4_batch_and_queue_sizes(name, batch, queue):
    s = resolve_settings(name)
    assert s.pretrain.batch_size == batch and s.pretrain.queue_size == queue


def test_section4_shared_values():
    for name in TABLE:
        s = resolve_settings(name)
        p, f = s.pretrain, s.finetune
        assert (p.epochs, f.epochs, p.momentum, p.temperature) == (400, 100, 0.999, 0.1)
        assert p.optimizer == OptimizerSettings("AdamW", 4e-5, 1e-4)
        assert p.scheduler == CosineSchedule("CosineAnnealingWarmRestarts", 50, 2, 1e-5)
        assert s.loss.sigma == 0.01
        assert p.mask == (0.5 if s.kind == "vector" else 0.0)
    assert resolve_settings("pascal").model.backbone == "resnet50"
    assert resolve_settings("yeast").model.backbone == "mlp"


def test_section4_finetune_exceptions():
    def ft(name):
        f = resolve_settings(name).finetune
        return (f.optimizer.lr, f.optimizer.weight_decay, f.mask, (f.scheduler.T_0, f.scheduler.T_mult, f.scheduler.eta_min))

    assert ft("scene") == (4e-4, 1e-5, 0.4, (25, 2, 1e-4))
    assert ft("bookmarks") == (4e-4, 1e-5, 0.4, (25, 2, 1e-4))
    assert ft("delicious") == (4e-4, 1e-5, 0.2, (50, 2, 1e-4))
    assert ft("yeast") == (4e-4, 1e-5, 0.4, (50, 2, 1e-4))
    assert ft("mediamill") == (4e-3, 1e-4, 0.0, (50, 2, 1e-3))
    assert ft("coco") == (4e-4, 1e-5, 0.0, (25, 2, 1e-4))


def test_default_alpha_beta_inferred_from_tables():
    assert (resolve_settings("scene").loss.alpha, resolve_settings("scene").loss.beta) == (0.1, 1.0)
    assert (resolve_settings("pascal").loss.alpha, resolve_settings("pascal").loss.beta) == (1.0, 0.001)


def test_overrides_scale_and_errors():
    s = resolve_settings("Yeast", "smoke", overrides=["pretrain.epochs=10", "finetune.select=val_mAP",
                                                      "pretrain.optimizer.lr=1e-3", "pretrain.iters_per_epoch=null"])
    assert s.pretrain.epochs == 10 and s.finetune.epochs == 3
    assert s.finetune.select == "val_mAP" and s.pretrain.optimizer.lr == 1e-3
    assert resolve_settings("ms-coco").dataset == "coco"
    json.dumps(s.to_dict())
    assert resolve_settings("yeast", overrides=["threads=1", "precision=bf16"]).threads == 1
    for bad in (["pretrain.epoch=3"], ["pretrain.epochs"], ["pretrain.epochs=0"], ["finetune.select=best"],
                ["nope.x=1"], ["threads=0"], ["precision=fp8"]):
        with pytest.raises(UserError):
            resolve_settings("yeast", overrides=bad)
    with pytest.raises(UserError, match="no settings"):
        resolve_settings("mnist")


def test_settings_command(capsys):
    from mulsupcon_ld.cli import main

    assert main(["settings", "--dataset", "scene", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pretrain"]["queue_size"] == 1024
    assert main(["settings", "--dataset", "scene", "--scale", "smoke"]) == 0
    assert "pretrain.epochs = 3" in capsys.readouterr().out
    assert main(["settings", "--dataset", "mnist"]) == 2


def test_preset_mulsupcon_official_settings_json(capsys):
    from mulsupcon_ld.cli import main

    assert main(["settings", "--dataset", "yeast", "--preset", "mulsupcon-official", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    p, f = s["pretrain"], s["finetune"]
    assert s["preset"] == "mulsupcon-official"
    assert p["optimizer"] == {"name": "Adam", "lr": 0.0004, "weight_decay": 0.00001}
    assert (p["batch_size"], p["epochs"], p["iters_per_epoch"]) == (64, 150, 1000)
    assert p["scheduler"] == {"name": "CosineAnnealingWarmRestarts", "T_0": 50, "T_mult": 2, "eta_min": 0.0001}
    assert p["keep"] == "best_train_loss" and p["queue_size"] == 256 and p["mask"] == 0.5
    assert (f["batch_size"], f["epochs"], f["iters_per_epoch"], f["mask"]) == (32, 30, 50, 0)
    assert f["optimizer"] == {"name": "Adam", "lr": 0.0004, "weight_decay": 0.0}
    assert f["backbone_lr_mult"] == 0.1 and f["early_stop_patience"] == 20
    assert f["scheduler"] == {"name": "ReduceLROnPlateau", "factor": 0.1, "patience": 2, "cooldown": 1,
                              "threshold": 0.001}
    # preset paper is today's default, value for value; --set still applies on top of a preset
    assert resolve_settings("yeast", preset="paper") == resolve_settings("yeast")
    assert resolve_settings("yeast", "paper", "mulsupcon-official",
                            ["pretrain.iters_per_epoch=100"]).pretrain.iters_per_epoch == 100
    for bad in (dict(preset="nope"), dict(preset="mulsupcon-official", dataset="coco"),
                dict(overrides=["finetune.scheduler.name=ReduceLROnPlateau"]),
                dict(overrides=["finetune.backbone_lr_mult=-1"]), dict(overrides=["finetune.early_stop_patience=0"]),
                dict(overrides=["pretrain.keep=best"]), dict(overrides=["pretrain.optimizer.name=SGD"])):
        with pytest.raises(UserError):
            resolve_settings(bad.pop("dataset", "yeast"), **bad)


@pytest.mark.parametrize("key,value", [("dataset", "coco"), ("kind", "image"), ("scale", "smoke"),
                                       ("preset", "mulsupcon-official")])
def test_identity_keys_cannot_be_set(key, value):
    with pytest.raises(UserError, match=f"--set {key}=.*relabel"):
        resolve_settings("scene", overrides=[f"{key}={value}"])


def test_set_dataset_is_one_error_line_before_any_work(tmp_path, capsys):
    from mulsupcon_ld import cli

    code = cli.main(["run", "--dataset", "scene", "--method", "cld", "--scale", "smoke", "--out", str(tmp_path / "o"),
                     "--data-dir", str(tmp_path / "d"), "--set", "dataset=coco", "--set", "kind=image"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --set dataset=")
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()


def _one_error_line(tmp_path, capsys, *extra: str) -> str:
    """``mulsupcon-ld run`` with ``extra``: exit 2, one ``error:`` line, nothing prepared or written."""
    from mulsupcon_ld import cli

    code = cli.main(["run", "--dataset", "scene", "--method", "cld", "--scale", "smoke", "--synthetic",
                     "--out", str(tmp_path / "o"), "--data-dir", str(tmp_path / "d"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
    return err[0]


def test_unknown_loss_option_is_one_error_line_before_any_work(tmp_path, capsys):
    assert "loss.options.bogus" in _one_error_line(tmp_path, capsys, "--set", 'loss.options={"bogus":1}')


def test_optimizer_value_of_the_wrong_type_is_one_error_line_before_any_work(tmp_path, capsys):
    line = _one_error_line(tmp_path, capsys, "--set", "pretrain.optimizer.lr=abc")
    assert "pretrain.optimizer.lr must be a number" in line


def test_negative_seed_is_one_error_line_before_any_work(tmp_path, capsys):
    assert "--seed" in _one_error_line(tmp_path, capsys, "--seed", "-1")


def test_typed_blocks_check_keys_types_and_ranges_once_resolved():
    from mulsupcon_ld.losses import LDOptions

    s = resolve_settings("yeast", overrides=['loss.options={"reduction": "mean", "h_target": "normalized"}'])
    assert s.loss.options == LDOptions(reduction="mean", h_target="normalized")
    assert s.to_dict()["loss"]["options"] == {"reduction": "mean", "h_target": "normalized"}  # as given
    plateau = '{"threshold": 0.001, "name": "ReduceLROnPlateau", "factor": 0.5, "patience": 2, "cooldown": 0}'
    s = resolve_settings("yeast", overrides=[f"finetune.scheduler={plateau}", "pretrain.optimizer.lr=1"])
    assert s.finetune.scheduler == PlateauSchedule("ReduceLROnPlateau", 0.5, 2, 0, 0.001)
    assert s.to_dict()["finetune"]["scheduler"] == json.loads(plateau)             # keys and order as given
    assert list(s.to_dict()["finetune"]["scheduler"]) == list(json.loads(plateau))
    assert s.to_dict()["pretrain"]["optimizer"]["lr"] == 1 and isinstance(s.pretrain.optimizer.lr, int)
    for bad, said in ((["pretrain.scheduler.T_0=50.5"], "pretrain.scheduler.T_0 must be an integer"),
                      (["finetune.optimizer.weight_decay=-1"], "weight_decay must be >= 0"),
                      (["finetune.scheduler.name=ReduceLROnPlateau"], "set the whole scheduler"),
                      (['loss.options={"reduction": "max"}'], "loss.options"),
                      (["pretrain.momentum=fast"], "pretrain.momentum must be a number"),
                      (["model.hidden=[256, \"a\"]"], r"model.hidden\[1\] must be an integer")):
        with pytest.raises(UserError, match=said):
            resolve_settings("yeast", overrides=bad)
    with pytest.raises(Exception):  # frozen all the way down: the hash cannot change behind the object
        resolve_settings("yeast").pretrain.optimizer.lr = 1.0


def test_run_settings_object_round_trips_the_dict():
    for name in TABLE:
        for scale in ("paper", "smoke"):
            s = resolve_settings(name, scale, overrides=["loss.alpha=0.5"])
            d = s.to_dict()
            assert list(d) == ["dataset", "kind", "scale", "preset", "model", "pretrain", "finetune", "loss",
                               "data", "threads", "precision", "flush_denormal", "checkpoint_every",
                               "checkpoint_seconds", "log_every"]
            assert RunSettings.from_dict(d, s.spec) == s and d["loss"]["alpha"] == 0.5
            assert s.spec.name == s.dataset and s.kind == s.spec.kind
    with pytest.raises(UserError, match="alpha must be a finite number"):
        resolve_settings("scene", overrides=["loss.alpha=-1"])
    with pytest.raises(Exception):  # frozen
        resolve_settings("scene").threads = 2


# ---------------------------------------------------------------------------- batches
def data(n=50, d=7, c=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32) + 3.0, (rng.random((n, c)) < 0.4).astype(np.uint8)


def test_vector_batches_two_views_masking_and_determinism():
    x, y = data(n=2000, d=30)
    vb = VectorBatches(x, y, 500, mask=0.5, two_views=True, drop_last=True, seed=3)
    assert len(vb) == 4
    b = list(vb.epoch(0))
    v1, v2, yb = b[0]
    assert v1.shape == (500, 30) and yb.shape == (500, 4) and yb.dtype == torch.float32
    assert abs(float((v1 == 0).float().mean()) - 0.5) < 0.02
    assert not torch.equal(v1 == 0, v2 == 0)                 # independent masks per view
    both = (v1 != 0) & (v2 != 0)
    assert torch.equal(v1[both], v2[both])                  # the same sample under both views
    again = list(vb.epoch(0))
    assert all(torch.equal(a, c) for p, q in zip(b, again) for a, c in zip(p, q))
    other = list(vb.epoch(1))
    assert not torch.equal(b[0][0], other[0][0])


def test_masking_only_zeroes_and_keeps_values():
    x = torch.arange(1, 1001, dtype=torch.float32).reshape(10, 100)
    m = random_mask(x, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(m[m != 0], x[m != 0]) and 0.2 < float((m == 0).float().mean()) < 0.4
    assert random_mask(x, 0.0) is x


def test_vector_batches_cover_the_split_once_and_eval_order():
    x, y = data(n=23)
    vb = VectorBatches(x, y, 5, shuffle=True)
    rows = torch.cat([b[0] for b in vb.epoch(2)])
    assert len(vb) == 5 and rows.shape[0] == 23                 # last batch of 3 kept
    assert sorted(rows[:, 0].tolist()) == sorted(x[:, 0].tolist())
    ev = VectorBatches(x, y, 10, shuffle=False)
    assert torch.equal(torch.cat([b[0] for b in ev.epoch(0)]), torch.as_tensor(x))
    assert len(VectorBatches(x, y, 11, shuffle=True)) == 2     # a final single sample is dropped
    assert len(VectorBatches(x, y, 5, drop_last=True)) == 4
    assert len(VectorBatches(x, y, 100)) == 1                  # batch capped at the split size


def test_iters_per_epoch_draws_fixed_number_of_batches():
    x, y = data(n=23)
    vb = VectorBatches(x, y, 5, iters_per_epoch=12)
    batches = list(vb.epoch(0))
    assert len(vb) == 12 and len(batches) == 12 and all(b[0].shape[0] == 5 for b in batches)


def test_epoch_seed_is_stable():
    assert epoch_seed(0, "a", 1) == epoch_seed(0, "a", 1)
    assert len({epoch_seed(0, "a", 1), epoch_seed(0, "a", 2), epoch_seed(1, "a", 1), epoch_seed(0, "b", 1)}) == 4


# ---------------------------------------------------------------------------- RNG
def test_rng_state_roundtrip(tmp_path):
    T.seed_everything(5)
    state = T.get_rng_state()
    T.save_state(tmp_path / "s.pt", {"config_hash": "h", "rng": state})
    a = (random.random(), np.random.rand(), torch.rand(1))
    T.set_rng_state(T.load_state(tmp_path / "s.pt", "h")["rng"])
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    with pytest.raises(UserError, match="different configuration"):
        T.load_state(tmp_path / "s.pt", "other")


# ---------------------------------------------------------------------------- loops
def simple_loss(out, y, moco):
    sim = out.q @ out.keys.T / 0.1
    pos = (y @ out.key_labels.T > 0).float()
    logp = torch.log_softmax(sim, 1)
    loss = -(logp * pos).sum() / pos.sum() + 0.01 * ((y - out.dist) ** 2).sum(1).mean()
    return loss, {"loss": loss.detach()}


# train.* takes a resolved precision; a checkpoint at every epoch end (not only every 30 s), which the
# resume tests interrupt after
BASE = resolve_settings("yeast", overrides=["precision=fp32", "checkpoint_seconds=0"])


def pretrain_cfg(epochs=4, step="epoch", precision="fp32", log_every=10, **extra) -> RunSettings:
    """Yeast's settings with the tiny problem's pretraining."""
    pre = replace(BASE.pretrain, **{
        "epochs": epochs, "optimizer": OptimizerSettings("AdamW", 1e-3, 1e-4),
        "scheduler": CosineSchedule("CosineAnnealingWarmRestarts", 2, 2, 1e-5),
        "scheduler_step": step, "compile": False, "keep": "last", "hotpath": "reference", **extra})
    return replace(BASE, pretrain=pre, precision=precision, log_every=log_every)


def finetune_cfg(**cfg) -> RunSettings:
    return replace(BASE, finetune=replace(BASE.finetune, **cfg))


def new_moco(d=7, c=4, queue=24, fast=False):
    torch.manual_seed(0)
    return MoCo(Encoder(MLPBackbone(d, hidden=(16, 16, 8), fast=fast), proj_dim=8, fast=fast), c, queue,
                momentum=0.9, fast_lane=fast)


def run_pretrain(tmp_path, epochs=4, hook=None, step="epoch", name="pre.pt", precision="fp32", seconds=0,
                 loss_fn=simple_loss, **extra):
    x, y = data(n=40)
    settings = replace(pretrain_cfg(epochs, step, precision, log_every=2, **extra), checkpoint_seconds=seconds)
    moco = new_moco(fast=settings.fast_lane)
    vb = VectorBatches(x, y, 8, mask=0.5, two_views=True, drop_last=True, seed=1, stream="pretrain")
    hist = T.pretrain(moco, vb, settings, loss_fn, seed=0,
                      device=torch.device("cpu"), state_path=tmp_path / name, config_hash="h", on_epoch_end=hook)
    return moco, hist


def test_pretrain_fills_queue_trains_fc_and_checkpoints(tmp_path):
    moco0 = new_moco()
    moco, hist = run_pretrain(tmp_path)
    assert len(hist["loss"]) == 4 and all(np.isfinite(hist["loss"]))
    assert int(moco.queue_count) == 24 and int(moco.queue_ptr) == (4 * 5 * 8) % 24
    assert not torch.equal(moco.fc.weight, moco0.fc.weight)
    state = torch.load(tmp_path / "pre.pt", weights_only=True)
    assert state["epoch"] == 4 and "queue" in state["model"] and "rng" in state


def test_fast_lane_trains_as_the_reference_does_but_with_its_own_dropout_bits(tmp_path):
    ref, hist_ref = run_pretrain(tmp_path, epochs=2, name="r.pt")
    fast, hist_fast = run_pretrain(tmp_path, epochs=2, name="f.pt", hotpath="fast")
    again, hist_again = run_pretrain(tmp_path, epochs=2, name="g.pt", hotpath="fast")
    assert hist_fast["loss"] == hist_again["loss"]                     # same seed, same numbers
    assert hist_fast["loss"] != hist_ref["loss"]                       # other dropout bits
    assert np.allclose(hist_fast["loss"], hist_ref["loss"], rtol=0.2)  # the same training, though
    assert fast.fast_lane and not ref.fast_lane
    with pytest.raises(ValueError, match="fast_lane"):  # a model built for the other lane is refused
        T.pretrain(new_moco(fast=False), None, pretrain_cfg(hotpath="fast"), simple_loss, seed=0,
                   device=torch.device("cpu"), state_path=tmp_path / "x.pt", config_hash="h")


# bf16 keeps 8 significant bits (relative rounding up to 2^-8 per operation); on these batches the CLD loss
# (beta = 0: every term comes from the network) moves by 0.007-0.085% (seeds 0-5), so 1% is a tenfold
# margin that a wrong cast or a lost term still breaks
BF16_LOSS_RTOL = 1e-2


@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_autocast_computes_the_network_in_bf16_and_the_loss_near_fp32(seed):
    """Same weights, same batch, no dropout (eval: no momentum update either): under ``autocast(bf16)``
    the embeddings are bf16, the loss is float32 (it turns autocast off) and within BF16_LOSS_RTOL
    of the fp32 loss, and not equal to it (the network did run in bf16)."""
    x, y = data(n=8, seed=seed)
    x, y = torch.from_numpy(x), torch.from_numpy(y).float()
    moco = new_moco().eval()
    g = torch.Generator().manual_seed(seed)
    moco.enqueue(torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1),
                 (torch.rand(16, 4, generator=g) < 0.4).float(), torch.softmax(torch.randn(16, 4, generator=g), 1))
    got = {}
    for precision in ("fp32", "bf16"):
        with T.autocast(torch.device("cpu"), precision):
            out = moco(x, x + 0.01, y)
            loss = losses.ld_loss(out.q, out.keys, y, out.key_labels, out.dist, out.key_dist, moco.fc.weight,
                                  variant="cld", alpha=0.1, beta=0.0)
        got[precision] = (out.q.dtype, loss.dtype, loss.item())
    assert got["fp32"][:2] == (torch.float32, torch.float32)
    assert got["bf16"][:2] == (torch.bfloat16, torch.float32)
    fp32, bf16 = got["fp32"][2], got["bf16"][2]
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=BF16_LOSS_RTOL)


def test_pretrain_bf16_runs_the_network_in_bf16_and_keeps_the_queue_float32(tmp_path):
    dtypes = []

    def loss_fn(out, y, moco):
        dtypes.append(out.q.dtype)
        return simple_loss(out, y, moco)

    moco, hist = run_pretrain(tmp_path, epochs=1, precision="bf16", loss_fn=loss_fn)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert np.isfinite(hist["loss"][0]) and moco.queue.dtype == torch.float32 and int(moco.queue_count) > 0


class Stop(Exception):
    pass


def stop_after(phase, k):
    def hook(p, epoch):
        if p == phase and epoch + 1 == k:
            raise Stop
    return hook


@pytest.mark.parametrize("step,hotpath", [("epoch", "reference"), ("iter", "reference"), ("epoch", "fast")])
def test_pretrain_resume_equals_uninterrupted(tmp_path, step, hotpath):
    full, hist_full = run_pretrain(tmp_path, step=step, name="a.pt", hotpath=hotpath)
    with pytest.raises(Stop):
        run_pretrain(tmp_path, hook=stop_after("pretrain", 2), step=step, name="b.pt", hotpath=hotpath)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["epoch"] == 2
    random.seed(99), np.random.seed(99), torch.manual_seed(99)  # a fresh process has other RNG states
    resumed, hist_res = run_pretrain(tmp_path, step=step, name="b.pt", hotpath=hotpath)
    assert hist_res["loss"] == hist_full["loss"]
    sd_a, sd_b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_checkpoint_clock_spaces_writes_by_epochs_and_seconds(tmp_path):
    every_epoch, every_second_epoch = T.CheckpointClock(1, 0), T.CheckpointClock(2, 0)
    assert [every_epoch.due(e, False) for e in (1, 2, 3)] == [True, True, True]
    assert [every_second_epoch.due(e, False) for e in (1, 2, 3)] == [False, True, False]
    slow = T.CheckpointClock(1, 3600)
    assert not slow.due(1, False) and not slow.due(2, False) and slow.due(3, True)   # the last one always
    # a run stopped before its first 3600 s wrote nothing, and the rerun equals an uninterrupted run
    full, hist_full = run_pretrain(tmp_path, name="a.pt")
    with pytest.raises(Stop):
        run_pretrain(tmp_path, hook=stop_after("pretrain", 2), name="b.pt", seconds=3600)
    assert not (tmp_path / "b.pt").exists()
    again, hist_again = run_pretrain(tmp_path, name="b.pt", seconds=3600)
    assert hist_again["loss"] == hist_full["loss"] and (tmp_path / "b.pt").exists()
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in full.state_dict().items())


def test_scheduler_modes_follow_cosine_warm_restarts(tmp_path):
    _, by_epoch = run_pretrain(tmp_path, epochs=3, name="e.pt")
    _, by_iter = run_pretrain(tmp_path, epochs=3, step="iter", name="i.pt")
    # lr in force at the end of each epoch; T_0=2: epoch 0 -> lr(0), epoch 2 restarts
    assert by_epoch["lr"][0] == pytest.approx(1e-3) and by_epoch["lr"][2] == pytest.approx(1e-3)
    assert by_iter["lr"][0] < 1e-3 and by_iter["lr"][1] == pytest.approx(1e-3)  # restart at epoch 2.0


def finetune_run(tmp_path, select="val_loss", epochs=4, hook=None, name="ft.pt", **extra):
    x, y = data(n=60)
    torch.manual_seed(0)
    model = Classifier(MLPBackbone(7, hidden=(16, 16, 8)), 4)
    cfg = {"epochs": epochs, "optimizer": OptimizerSettings("AdamW", 1e-2, 1e-5),
           "scheduler": CosineSchedule("CosineAnnealingWarmRestarts", 2, 2, 1e-4),
           "scheduler_step": "epoch", "select": select, "compile": False, "backbone_lr_mult": 1.0,
           "early_stop_patience": None, **extra}
    train = VectorBatches(x[:40], y[:40], 8, mask=0.4, seed=0, stream="ft")
    val = VectorBatches(x[40:], y[40:], 100, shuffle=False)
    res = T.finetune(model, train, val, finetune_cfg(**cfg), seed=0, device=torch.device("cpu"),
                     state_path=tmp_path / name, config_hash="h", on_epoch_end=hook)
    return model, res, val


@pytest.mark.parametrize("select", ["val_loss", "val_mAP"])
def test_finetune_selects_best_validation_epoch(tmp_path, select):
    model, res, val = finetune_run(tmp_path, select)
    h = res["history"]
    best = int(np.argmin(h["val_loss"]) if select == "val_loss" else np.argmax(h["val_mAP"]))
    assert res["best_epoch"] == best + 1
    scores, labels, loss = T.predict(model, val, torch.device("cpu"))
    np.testing.assert_array_equal(scores, res["val_scores"])      # the model holds the selected weights
    assert loss == pytest.approx(h["val_loss"][best])
    assert scores.dtype == np.float32 and labels.dtype == np.uint8 and ((scores >= 0) & (scores <= 1)).all()


def test_finetune_resume_equals_uninterrupted(tmp_path):
    m1, r1, _ = finetune_run(tmp_path, name="a.pt")
    with pytest.raises(Stop):
        finetune_run(tmp_path, hook=stop_after("finetune", 3), name="b.pt")
    torch.manual_seed(123)
    m2, r2, _ = finetune_run(tmp_path, name="b.pt")
    assert r1["history"] == r2["history"] and r1["best_epoch"] == r2["best_epoch"]
    np.testing.assert_array_equal(r1["val_scores"], r2["val_scores"])
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


# MulSupCon's fine-tuning recipe (preset mulsupcon-official) on the tiny problem: Adam, plateau
# scheduler on the validation BCE, backbone at 0.1x, early stopping; lr high enough to overfit fast
OFFICIAL_FT = {"optimizer": OptimizerSettings("Adam", 3e-2, 0.0),
               "scheduler": PlateauSchedule("ReduceLROnPlateau", factor=0.1, patience=1, cooldown=1, threshold=0.001),
               "backbone_lr_mult": 0.1, "early_stop_patience": 3}


def test_backbone_lr_mult_makes_two_parameter_groups():
    model = Classifier(MLPBackbone(7, hidden=(16, 16, 8)), 4)
    opt = T.make_optimizer(T.finetune_param_groups(model, 4e-4, 0.1), OptimizerSettings("Adam", 4e-4, 0.0))
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)
    backbone, fc = opt.param_groups
    assert backbone["lr"] == pytest.approx(4e-5) and fc["lr"] == pytest.approx(4e-4)
    assert [id(p) for p in fc["params"]] == [id(p) for p in model.fc.parameters()]
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    # each parameter in exactly one group
    assert len(backbone["params"]) + len(fc["params"]) == len(list(model.parameters()))


def test_official_finetune_recipe_plateau_and_early_stop(tmp_path):
    epochs = 25
    _, res, _ = finetune_run(tmp_path, epochs=epochs, **OFFICIAL_FT)
    h, stopped = res["history"], res["stopped_epoch"]
    assert stopped < epochs, "the recipe is meant to overfit and stop early here"
    assert len(h["val_loss"]) == stopped and stopped - res["best_epoch"] == 3
    assert res["best_epoch"] == int(np.argmin(h["val_loss"])) + 1
    # ReduceLROnPlateau on the validation loss: the lr only falls, by the factor 0.1, and does fall
    lrs = h["lr"]
    assert lrs[0] == pytest.approx(3e-2) and min(lrs) < 3e-2
    assert all(b == pytest.approx(a) or b == pytest.approx(a * 0.1) for a, b in zip(lrs, lrs[1:]))
    # a plateau scheduler built by hand, fed the recorded validation losses, gives the same lrs
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-2)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=1, cooldown=1, threshold=0.001)
    expect = []
    for v in h["val_loss"]:
        expect.append(opt.param_groups[0]["lr"])
        ref.step(v)
    assert lrs == pytest.approx(expect)


@pytest.mark.parametrize("kill", ["mid", "at_stop"])
def test_plateau_and_early_stop_resume_equals_uninterrupted(tmp_path, kill):
    epochs = 25
    m1, r1, _ = finetune_run(tmp_path, epochs=epochs, name="a.pt", **OFFICIAL_FT)
    k = 3 if kill == "mid" else r1["stopped_epoch"]  # at_stop: killed after the last checkpoint
    with pytest.raises(Stop):
        finetune_run(tmp_path, epochs=epochs, hook=stop_after("finetune", k), name="b.pt", **OFFICIAL_FT)
    state = torch.load(tmp_path / "b.pt", weights_only=True)
    assert state["epoch"] == k and "best" in state["scheduler"]  # the plateau scheduler's state is saved
    torch.manual_seed(123)
    m2, r2, _ = finetune_run(tmp_path, epochs=epochs, name="b.pt", **OFFICIAL_FT)
    assert r1["history"] == r2["history"] and r1["best_epoch"] == r2["best_epoch"]
    assert r1["stopped_epoch"] == r2["stopped_epoch"]
    np.testing.assert_array_equal(r1["val_scores"], r2["val_scores"])
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_pretrain_keeps_best_running_train_loss_and_resumes(tmp_path):
    extra = {"keep": "best_train_loss", "optimizer": OptimizerSettings("Adam", 1e-2, 1e-5)}
    best, hist = run_pretrain(tmp_path, epochs=6, name="a.pt", **extra)
    running = hist["running_loss"]
    kept = hist["kept_epoch"]
    assert kept == int(np.argmin(running)) + 1
    # the running loss is ignite's RunningAverage: exponential, alpha 0.98, over the iteration losses
    assert running[0] != pytest.approx(hist["loss"][0])
    # the kept weights are those at the end of epoch `kept`: a run of `kept` epochs keeping the last
    last, _ = run_pretrain(tmp_path, epochs=kept, name="c.pt", optimizer=extra["optimizer"])
    assert all(torch.equal(a, b) for a, b in zip(best.state_dict().values(), last.state_dict().values()))
    # kill and resume: same history, same kept weights
    with pytest.raises(Stop):
        run_pretrain(tmp_path, epochs=6, hook=stop_after("pretrain", 4), name="b.pt", **extra)
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    resumed, hist_res = run_pretrain(tmp_path, epochs=6, name="b.pt", **extra)
    assert hist_res["running_loss"] == running and hist_res["kept_epoch"] == kept
    assert all(torch.equal(a, b) for a, b in zip(best.state_dict().values(), resumed.state_dict().values()))


def test_progress_plain_lines_when_not_a_terminal(capsys):
    p = T.EpochProgress("pretrain", total=4, initial=0, log_every=2)
    for e in range(4):
        p.update(e, loss=1.0)
    p.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[-1].startswith("pretrain: epoch 4/4 loss=1.0000")


# ---------------------------------------------------------------------------- torch.compile
def test_compile_setting_values():
    assert resolve_settings("pascal").pretrain.compile is False
    assert resolve_settings("pascal").finetune.compile is False
    s = resolve_settings("yeast", "smoke",
                         overrides=["pretrain.compile=true", "finetune.compile=max-autotune-no-cudagraphs"])
    assert s.pretrain.compile is True and s.finetune.compile == "max-autotune-no-cudagraphs"
    for bad in ("1", "null", "fast"):
        with pytest.raises(UserError, match="compile"):
            resolve_settings("yeast", overrides=[f"pretrain.compile={bad}"])
    assert T.compile_options(False) is None and T.compile_options(True) == {}
    assert T.compile_options("max-autotune") == {"mode": "max-autotune"}


def _compile_pretrain(tmp_path, name, compile, hook=None):
    x, y = data(n=40)
    moco = new_moco()
    vb = VectorBatches(x, y, 8, mask=0.5, two_views=True, drop_last=True, seed=1, stream="pretrain")
    hist = T.pretrain(moco, vb, pretrain_cfg(3, compile=compile), simple_loss, seed=0,
                      device=torch.device("cpu"), state_path=tmp_path / name, config_hash="h", on_epoch_end=hook)
    return moco, hist


def _compile_finetune(tmp_path, name, compile):
    x, y = data(n=60)
    torch.manual_seed(0)
    model = Classifier(MLPBackbone(7, hidden=(16, 16, 8)), 4)
    cfg = {"epochs": 2, "optimizer": OptimizerSettings("AdamW", 1e-2, 1e-5),
           "scheduler": CosineSchedule("CosineAnnealingWarmRestarts", 2, 2, 1e-4),
           "scheduler_step": "epoch", "select": "val_loss", "compile": compile,
           "backbone_lr_mult": 1.0, "early_stop_patience": None}
    train = VectorBatches(x[:40], y[:40], 8, mask=0.4, seed=0, stream="ft")
    val = VectorBatches(x[40:], y[40:], 100, shuffle=False)
    res = T.finetune(model, train, val, finetune_cfg(**cfg), seed=0, device=torch.device("cpu"),
                     state_path=tmp_path / name, config_hash="h")
    return model, res


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled")
def test_compile_runs_and_keeps_checkpoints_and_resume(tmp_path):
    """compile=true on CPU: a real inductor build (C++ kernels, caches off, dynamo reset), the
    checkpoint keys of the eager run, the eager losses up to float rounding (inductor's own RNG off so
    dropout draws match) — which also shows the compiled key encoder follows its momentum updates —
    resume equal to an uninterrupted compiled run, and the modules back to eager afterwards."""
    import torch._dynamo
    import torch._inductor.config as inductor_config
    import torch._inductor.metrics as inductor_metrics
    from torch._dynamo.utils import counters

    eager, hist_eager = _compile_pretrain(tmp_path, "eager.pt", False)
    ft_eager, res_eager = _compile_finetune(tmp_path, "ft-eager.pt", False)
    torch._dynamo.reset()
    counters.clear()
    inductor_metrics.reset()
    with inductor_config.patch(fallback_random=True, force_disable_caches=True):
        comp, hist_comp = _compile_pretrain(tmp_path, "comp.pt", True)
        n_graphs = counters["stats"]["unique_graphs"]
        assert n_graphs >= 2                                        # query (train) and key (no-grad) graphs
        assert inductor_metrics.generated_kernel_count > 0 and inductor_metrics.generated_cpp_vec_kernel_count > 0
        with pytest.raises(Stop):
            _compile_pretrain(tmp_path, "resumed.pt", True, hook=stop_after("pretrain", 1))
        resumed, hist_res = _compile_pretrain(tmp_path, "resumed.pt", True)
        ft_comp, res_comp = _compile_finetune(tmp_path, "ft-comp.pt", True)
        assert counters["stats"]["unique_graphs"] > n_graphs         # the classifier was compiled too
    for m in (comp.encoder_q, comp.encoder_k, ft_comp):
        assert m._compiled_call_impl is None                         # restored to eager

    def keys(name, part):
        return list(torch.load(tmp_path / name, weights_only=True)[part])

    assert keys("comp.pt", "model") == keys("eager.pt", "model") == list(eager.state_dict())
    assert not any("_orig_mod" in k for k in keys("comp.pt", "model") + keys("ft-comp.pt", "model"))
    assert keys("ft-comp.pt", "model") == keys("ft-eager.pt", "model")
    best = torch.load(tmp_path / "ft-comp.pt", weights_only=True)["best"]["model"]
    assert list(best) == list(ft_eager.state_dict())
    assert hist_comp["loss"] == pytest.approx(hist_eager["loss"], rel=1e-5)
    assert res_comp["history"]["train_loss"] == pytest.approx(res_eager["history"]["train_loss"], rel=1e-5)
    assert res_comp["history"]["val_loss"] == pytest.approx(res_eager["history"]["val_loss"], rel=1e-4)
    assert hist_res["loss"] == hist_comp["loss"]
    assert all(torch.equal(a, b) for a, b in zip(comp.state_dict().values(), resumed.state_dict().values()))


def test_delicious_takes_the_reading_its_validation_split_chose():
    """Delicious' default loss options are the 'normalised' reading (docs/method.md, "Readings at many
    labels"); every other dataset keeps the printed form (options null); --set still overrides."""
    from mulsupcon_ld.losses import LDOptions
    from mulsupcon_ld.settings import LD_READINGS

    assert resolve_settings("delicious").loss.options == LDOptions(**LD_READINGS["normalised"])
    assert resolve_settings("delicious").to_dict()["loss"]["options"] == LD_READINGS["normalised"]   # as recorded
    for name in TABLE:
        if name != "delicious":
            assert resolve_settings(name).loss.options is None, name
    assert resolve_settings("delicious", overrides=["loss.options=null"]).loss.options is None
    LDOptions(**LD_READINGS["normalised"])                  # every named reading is a valid LDOptions
