"""scripts/screen_readings.py: the command lines of its variants and its validation-only summary."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def screen():
    spec = importlib.util.spec_from_file_location("screen_readings", ROOT / "scripts" / "screen_readings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(**kw) -> argparse.Namespace:
    base = dict(dataset="yeast", epochs=None, raw_dir=None, data_dir=None)
    return argparse.Namespace(**{**base, **kw})


def _sets(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]


def test_precision_variant_sets_precision_only_at_the_preset_budget(screen):
    sets = _sets(screen._command(_args(), "bf16", "cld", 1, Path("out")))
    assert "precision=bf16" in sets
    assert not any(s.startswith("pretrain.epochs=") for s in sets)
    assert not any(s.startswith("loss.options=") for s in sets)


def test_reading_variant_sets_loss_options_and_the_reduced_budget(screen):
    sets = _sets(screen._command(_args(epochs=50), "normalised", "rld", 0, Path("out")))
    assert "pretrain.epochs=50" in sets
    (options,) = [s for s in sets if s.startswith("loss.options=")]
    assert json.loads(options.partition("=")[2]) == screen.READINGS["normalised"]
    assert "loss.options=null" in _sets(screen._command(_args(), "printed", "rld", 0, Path("out")))


def test_unknown_variant_exits_2(screen, tmp_path):
    args = _args(variants="fp32,fp8", seeds="0", methods="cld", out=str(tmp_path), jobs=1)
    with pytest.raises(SystemExit) as exc:
        screen.run(args)
    assert exc.value.code == 2


def test_summary_reads_validation_and_the_precision_computed(screen, tmp_path):
    for variant, chosen, mAP in (("auto", "fp32", 0.5), ("bf16", "bf16", 0.4)):
        path = tmp_path / variant / "cld" / "seed0"
        path.mkdir(parents=True)
        metrics = {"seed": 0, "git_commit": "abc", "precision": {"requested": variant, "chosen": chosen},
                   "wall_time_s": {"pretrain": 10.0, "finetune": 2.0},
                   "config": {"settings": {"pretrain": {"epochs": 400}, "loss": {"options": None},
                                           "precision": variant}},
                   "training": {"pretrain": {"parts": [{"contrastive": 1.0}]},
                                "finetune": {"selected_epoch": 2, "val_mAP": [0.1, mAP], "val_loss": [0.9, 0.3]}},
                   "test": {"mAP": 0.99}}
        (path / "metrics.json").write_text(json.dumps(metrics))
    df = screen.summarise(argparse.Namespace(out=str(tmp_path), csv=None)).set_index("reading")
    assert df.loc["auto", "precision"] == "fp32" and df.loc["bf16", "precision"] == "bf16"
    assert df.loc["auto", "val_mAP"] == 0.5 and df.loc["auto", "val_bce"] == 0.3
    assert "test" not in " ".join(df.columns)


def test_summary_of_several_folders_keeps_dataset_calibration_and_hash(screen, tmp_path):
    for dataset in ("yeast", "scene"):
        path = tmp_path / dataset / "auto" / "cld" / "seed0"
        path.mkdir(parents=True)
        metrics = {"dataset": dataset, "seed": 0, "git_commit": "abc", "result_hash": f"h-{dataset}",
                   "precision": {"chosen": "fp32", "fp32_ms_per_iter": 9.0, "bf16_ms_per_iter": 10.0},
                   "wall_time_s": {"pretrain": 10.0, "finetune": 2.0},
                   "config": {"settings": {"pretrain": {"epochs": 400}, "loss": {"options": None},
                                           "precision": "auto", "flush_denormal": True}},
                   "training": {"pretrain": {"parts": [{"contrastive": 1.0}]},
                                "finetune": {"selected_epoch": 1, "val_mAP": [0.5], "val_loss": [0.3]}}}
        (path / "metrics.json").write_text(json.dumps(metrics))
    out = [str(tmp_path / "yeast"), str(tmp_path / "scene")]
    df = screen.summarise(argparse.Namespace(out=out, csv=None)).set_index("dataset")
    assert sorted(df.index) == ["scene", "yeast"] and df.loc["yeast", "result_hash"] == "h-yeast"
    assert df.loc["scene", "calib_fp32_ms"] == 9.0 and df.loc["scene", "calib_bf16_ms"] == 10.0
    assert df.loc["yeast", "flush_denormal"] and df.loc["yeast", "reading"] == "auto"
    # the printed table keeps the datasets apart: one row per dataset, never a mean across them
    assert "YEAST CLD" in screen.readings_table(df.reset_index()) and "SCENE CLD" in screen.readings_table(df.reset_index())
