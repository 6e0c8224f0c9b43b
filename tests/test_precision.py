"""``precision="auto"`` (mulsupcon_ld/precision.py): the decision rules with faked capabilities, the
choice persisted per run, and a run that resolves to fp32 or bf16 computing exactly what that
precision asked for computes."""

from __future__ import annotations

import json

import pytest
import torch

from mulsupcon_ld import machine, precision
from mulsupcon_ld.cli import main
from mulsupcon_ld.experiment import build_moco
from mulsupcon_ld.report.aggregate import run_row
from mulsupcon_ld.run_settings import resolve_settings
from mulsupcon_ld.settings import BF16_VALIDATED

from test_runner import args, load

torch.set_num_threads(1)


def _never():
    pytest.fail("nothing may be measured here")


def test_explicit_precisions_are_taken_as_asked():
    for p in ("fp32", "bf16"):
        c = precision.decide(p, "cpu", False, _never)
        assert (c.requested, c.chosen, c.reason) == (p, p, "asked for")
    with pytest.raises(ValueError, match="fp32, bf16 or auto"):
        precision.decide("fp16", "cpu", True, _never)


def test_auto_is_fp32_on_cuda_and_on_a_cpu_without_native_bf16_without_measuring():
    assert precision.decide("auto", "cuda", True, _never).chosen == "fp32"
    c = precision.decide("auto", "cpu", False, _never, cpu="AMD EPYC (x86_64-avx2)")
    assert c.chosen == "fp32" and c.native_bf16 is False and "no native bf16" in c.reason
    assert c.fp32_ms_per_iter is None and c.cpu == "AMD EPYC (x86_64-avx2)"


@pytest.mark.parametrize("fp32_ms,bf16_ms,chosen", [(10.0, 8.0, "bf16"), (10.0, 10 / precision.AUTO_MARGIN, "bf16"),
                                                     (10.0, 9.5, "fp32"), (10.0, 8.6, "fp32"), (10.0, 12.4, "fp32")])
def test_auto_with_native_bf16_takes_bf16_only_past_the_margin(fp32_ms, bf16_ms, chosen):
    c = precision.decide("auto", "cpu", True, lambda: (fp32_ms, bf16_ms))
    assert c.chosen == chosen and c.native_bf16 is True
    assert (c.fp32_ms_per_iter, c.bf16_ms_per_iter) == (round(fp32_ms, 3), round(bf16_ms, 3))
    assert f"{fp32_ms / bf16_ms:.2f}x" in c.reason


def test_auto_is_fp32_without_measuring_for_a_dataset_whose_bf16_is_not_validated(tmp_path, monkeypatch):
    c = precision.decide("auto", "cpu", True, _never, validated=False)
    assert c.chosen == "fp32" and "not validated" in c.reason
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    monkeypatch.setattr(precision, "calibrate", lambda *a, **k: pytest.fail("nothing may be measured here"))
    assert "mediamill" not in BF16_VALIDATED
    s = resolve_settings("mediamill", "smoke", overrides=["precision=auto"])
    assert precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path, build_moco).chosen == "fp32"


def test_the_default_is_fp32_everywhere_and_auto_only_when_asked():
    # the same command computes alike on every machine: no timing decides the default
    for dataset in ("yeast", "scene", "delicious", "pascal"):
        assert resolve_settings(dataset).precision == "fp32"
        assert resolve_settings(dataset, "smoke").precision == "fp32"
    assert resolve_settings("yeast", "smoke", overrides=["precision=auto"]).precision == "auto"
    assert resolve_settings("yeast", overrides=["precision=bf16"]).precision == "bf16"


def test_the_choice_is_written_once_and_reused_by_a_resumed_or_later_phase(tmp_path, monkeypatch):
    s = resolve_settings("yeast", "smoke", overrides=["precision=auto"])
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    monkeypatch.setattr(precision, "calibrate", lambda *a, **k: (10.0, 5.0))
    first = precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path, build_moco)
    assert first.chosen == "bf16" and json.loads((tmp_path / precision.PRECISION_FILE).read_text())["chosen"] == "bf16"
    monkeypatch.setattr(precision, "calibrate", lambda *a, **k: pytest.fail("decided already"))
    assert precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path, build_moco) == first
    fp32 = resolve_settings("yeast", "smoke", overrides=["precision=fp32"])
    assert precision.resolve_precision(fp32, "cld", torch.device("cpu"), tmp_path, build_moco).chosen == "fp32"


def test_a_calibration_is_reused_by_later_runs_of_the_same_shape_on_this_cpu(tmp_path, monkeypatch):
    s = resolve_settings("yeast", "smoke", overrides=["precision=auto"])
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    monkeypatch.setattr(precision, "git_commit", lambda: "0123abc")
    calls = []
    monkeypatch.setattr(precision, "calibrate", lambda *a, **k: calls.append(1) or (10.0, 5.0))
    first = precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path / "run0", build_moco)
    again = precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path / "run1", build_moco)
    assert len(calls) == 1 and first.chosen == again.chosen == "bf16"
    assert (first.fp32_ms_per_iter, first.bf16_ms_per_iter) == (again.fp32_ms_per_iter, again.bf16_ms_per_iter)
    assert "earlier run" not in first.reason and "earlier run of this shape" in again.reason
    # another shape, another method, or other code: measured again
    other = resolve_settings("yeast", "smoke", overrides=["precision=auto", "pretrain.batch_size=32"])
    precision.resolve_precision(other, "cld", torch.device("cpu"), tmp_path / "run2", build_moco)
    precision.resolve_precision(s, "mulsupcon", torch.device("cpu"), tmp_path / "run3", build_moco)
    monkeypatch.setattr(precision, "git_commit", lambda: "4567def")
    precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path / "run4", build_moco)
    assert len(calls) == 4
    # uncommitted changes, or the cache turned off: measured every time, nothing kept
    monkeypatch.setattr(precision, "git_commit", lambda: "4567def+dirty")
    precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path / "run5", build_moco)
    precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path / "run6", build_moco)
    monkeypatch.setattr(precision, "git_commit", lambda: "0123abc")
    monkeypatch.setenv("MULSUPCON_CALIBRATION_CACHE", "off")
    precision.resolve_precision(s, "cld", torch.device("cpu"), tmp_path / "run7", build_moco)
    assert len(calls) == 7


def test_an_unreadable_calibration_cache_is_measured_again_and_rewritten(tmp_path, monkeypatch):
    cache = tmp_path / "calibrations.json"
    cache.write_text("{not json")
    monkeypatch.setenv("MULSUPCON_CALIBRATION_CACHE", str(cache))
    monkeypatch.setattr(precision, "git_commit", lambda: "0123abc")
    monkeypatch.setattr(precision, "calibrate", lambda *a, **k: (10.0, 11.0))
    s = resolve_settings("yeast", "smoke", overrides=["precision=auto"])
    assert precision.cached_calibration(s, "cld", build_moco) == (10.0, 11.0, None)
    assert list(json.loads(cache.read_text()).values())[0]["fp32_ms"] == 10.0


def test_a_calibration_cache_that_cannot_be_written_warns_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MULSUPCON_CALIBRATION_CACHE", str(blocker / "calibrations.json"))   # parent is a file
    monkeypatch.setattr(precision, "git_commit", lambda: "0123abc")
    monkeypatch.setattr(precision, "calibrate", lambda *a, **k: (10.0, 11.0))
    s = resolve_settings("yeast", "smoke", overrides=["precision=auto"])
    assert precision.cached_calibration(s, "cld", build_moco) == (10.0, 11.0, None)
    assert "cannot keep the precision calibration" in capsys.readouterr().err


def test_calibration_measures_both_precisions_and_leaves_the_rng_alone():
    s = resolve_settings("yeast", "smoke", overrides=["precision=auto", "pretrain.batch_size=32",
                                                      "pretrain.queue_size=64"])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    fp32_ms, bf16_ms = precision.calibrate(s, "cld", build_moco, iters=2, rounds=1)
    assert fp32_ms > 0 and bf16_ms > 0
    assert torch.equal(torch.get_rng_state(), before)


def test_calibration_takes_the_median_round_not_the_luckiest(monkeypatch):
    """One round disturbed by load must not decide: medians of the rounds, per precision."""
    rounds = {"fp32": iter([10.0, 2.0, 10.0, 10.0, 11.0]), "bf16": iter([9.5, 9.0, 30.0, 9.8, 9.9])}

    class FakeTimer:
        def __init__(self, settings, method, build):
            self.p = settings.precision

        def ms(self, iters):
            return next(rounds[self.p])

    monkeypatch.setattr(precision, "IterationTimer", FakeTimer)
    s = resolve_settings("yeast", "smoke", overrides=["precision=auto"])
    assert precision.calibrate(s, "cld", build_moco) == (10.0, 9.8)   # best-of would say 2.0 vs 9.0
    assert precision.decide("auto", "cpu", True, lambda: (10.0, 9.8)).chosen == "fp32"


def test_single_threaded_calibration_counts_this_process_cpu_time(monkeypatch):
    """With one torch thread the clock is process CPU time (time waiting for a shared core is not the
    iteration's); the fake clock advances only when read, so the wall clock would give another number."""
    ticks = iter(range(0, 10**6, 3))
    monkeypatch.setattr(precision.time, "process_time", lambda: float(next(ticks)))
    s = resolve_settings("yeast", "smoke", overrides=["precision=fp32", "pretrain.batch_size=32",
                                                      "pretrain.queue_size=64"])
    timer = precision.IterationTimer(s, "mulsupcon", build_moco)
    assert timer.ms(2) == 0.0        # both calls read 3 s: (3 - 3) / 4 iterations


@pytest.mark.parametrize("native,calibrated,chosen", [(False, None, "fp32"), (True, (10.0, 5.0), "bf16")])
def test_an_auto_run_computes_exactly_what_its_choice_computes(tmp_path, monkeypatch, native, calibrated, chosen):
    """auto → X gives X's numbers bit for bit (the calibration draws nothing from the run's RNG) and
    records the choice; the hashes keep the requested ``auto``."""
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    monkeypatch.setattr(precision, "calibrate", lambda *a, **k: calibrated)
    data = tmp_path / "data"
    auto, fixed = tmp_path / "auto", tmp_path / "fixed"
    assert main(args(auto, data, "cld", "--set", "precision=auto", "--set", "finetune.epochs=2")) == 0
    assert main(args(fixed, data, "cld", "--set", f"precision={chosen}", "--set", "finetune.epochs=2")) == 0
    a, f = load(auto), load(fixed)
    assert a["metrics"] == f["metrics"]
    assert a["precision"]["requested"] == "auto" and a["precision"]["chosen"] == chosen
    # auto is resolved before hashing: the run is recorded, hashed and keyed as what it computed
    assert a["config"]["settings"]["precision"] == chosen and a["config_hash"] == f["config_hash"]
    assert a["result_hash"] == f["result_hash"] and a["cell_key"] == f["cell_key"]
    assert a["arithmetic"]["precision"] == f["arithmetic"]["precision"] == chosen
    assert f["precision"] == {"requested": chosen, "chosen": chosen, "reason": "asked for", "native_bf16": None,
                              "fp32_ms_per_iter": None, "bf16_ms_per_iter": None, "cpu": None}
    assert run_row(a)["precision"] == chosen and run_row({"config": {"settings": {"precision": "fp32"}}})["precision"] == "fp32"
    assert a["cpu"] == machine.cpu_description()


def test_isa_class_names_the_best_matrix_unit():
    assert machine.isa_class(frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}), "x86_64") == "x86_64-amx"
    assert machine.isa_class(frozenset({"avx2", "avx512f", "avx512_bf16"}), "x86_64") == "x86_64-avx512_bf16"
    assert machine.isa_class(frozenset({"avx2", "fma"}), "x86_64") == "x86_64-avx2"
    assert machine.isa_class(frozenset(), "aarch64") == "aarch64"


@pytest.mark.parametrize("flush", [True, False])
def test_the_run_sets_the_subnormal_mode_of_its_settings(tmp_path, flush):
    """``flush_denormal`` (default true) is set at the process edge: subnormal floats become 0."""
    tiny = torch.tensor([1e-39])          # below float32's smallest normal, 1.18e-38
    extra = () if flush else ("--set", "flush_denormal=false")
    try:
        assert main(args(tmp_path / "out", tmp_path / "data", "mulsupcon", "--set", "finetune.epochs=1", *extra)) == 0
        assert ((tiny * 1.0).item() == 0.0) is flush
        assert load(tmp_path / "out")["config"]["settings"]["flush_denormal"] is flush
    finally:
        torch.set_flush_denormal(False)
