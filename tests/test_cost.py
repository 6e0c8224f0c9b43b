"""`mulsupcon-ld cost` and the CPU-only guard for image runs at paper scale."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
import torch

from mulsupcon_ld import cli, cost
from mulsupcon_ld.pipeline import cost as pipeline_cost, plan
from mulsupcon_ld.run_settings import resolve_settings
from mulsupcon_ld.settings import BF16_VALIDATED

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "config" / "config.yaml")


def test_cost_prints_runs_and_hours_per_table(capsys):
    assert cli.main(["cost", "2", "table4", "paper_tables/table5.md", "--configfile", CONFIG]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line and not line.startswith(("#", "target"))}
    rc = plan.RunConfig.from_config(pipeline_cost._load_config(CONFIG, []))
    assert int(rows["2"][1]) == len(plan.runs_for_target("2", rc))
    assert int(rows["table4"][1]) == len(plan.runs_for_target("4", rc))
    assert float(rows["2"][2].replace(",", "")) > 0 and float(rows["2"][3]) == 0       # vector: CPU only
    assert float(rows["table4"][3].replace(",", "")) > 0 and float(rows["table4"][2]) == 0   # image: GPU
    assert "# CPU rates of " in out


def run_cost(dataset: str, scale: str = "paper", device: str = "cpu", overrides: tuple[str, ...] = (),
             preset: str = "paper") -> cost.RunCost:
    return cost.run_cost(resolve_settings(dataset, scale, preset, overrides), device)


def test_cost_scales_with_the_iterations():
    paper = run_cost("yeast", "paper", "cpu")
    smoke = run_cost("yeast", "smoke", "cpu")
    longer = run_cost("yeast", "paper", "cpu", overrides=("pretrain.iters_per_epoch=1000",))
    assert longer.pretrain_iters == 400 * 1000 and paper.pretrain_iters == 400 * (1200 // 128)
    assert smoke.hours < paper.hours < longer.hours
    on_cpu, on_gpu = run_cost("pascal", "paper", "cpu"), run_cost("pascal", "paper", "cuda")
    assert on_cpu.hours > 50 * on_gpu.hours


def test_cost_rejects_an_unknown_target(capsys):
    assert cli.main(["cost", "table9", "--configfile", CONFIG]) == 2
    assert "unknown target" in capsys.readouterr().err


def test_image_run_at_paper_scale_without_cuda_stops_before_any_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    raw, data = tmp_path / "raw", tmp_path / "data"
    code = cli.main(["run", "--dataset", "pascal", "--method", "cld", "--out", str(tmp_path / "out"),
                     "--raw-dir", str(raw), "--data-dir", str(data)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "CPU-hours" in err and "--device cpu" in err and "--scale smoke" in err
    assert not raw.exists() and not data.exists() and not (tmp_path / "out").exists()


def test_guard_lets_overrides_and_vector_runs_through():
    image = resolve_settings("pascal")
    cost.guard_image_run(image, "cpu", False, False)                      # explicit --device cpu
    cost.guard_image_run(resolve_settings("pascal", "smoke"), None, False, False)
    cost.guard_image_run(image, None, False, True)                        # synthetic stand-in
    cost.guard_image_run(image, None, True, False)                        # CUDA present
    cost.guard_image_run(resolve_settings("yeast"), None, False, False)
    with pytest.raises(cost.UserError):
        cost.guard_image_run(image, None, False, False)
    # the estimate is of the settings as resolved: a few iterations at paper scale pass
    tiny = resolve_settings("pascal", overrides=["pretrain.epochs=1", "pretrain.iters_per_epoch=1",
                                                 "finetune.epochs=1", "finetune.iters_per_epoch=1"])
    cost.guard_image_run(tiny, None, False, False)


def test_the_guard_of_a_run_sees_its_set_values(tmp_path, monkeypatch, capsys):
    seen = []

    def spy(settings, device):
        seen.append(settings)
        return cost.RunCost(settings.dataset, settings.kind, 1, 1, 1.0, 1e6, device)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cost, "run_cost", spy)
    code = cli.main(["run", "--dataset", "pascal", "--method", "cld", "--out", str(tmp_path / "out"),
                     "--raw-dir", str(tmp_path / "raw"), "--data-dir", str(tmp_path / "data"),
                     "--set", "pretrain.epochs=7", "--set", "finetune.batch_size=16"])
    assert code == 2 and "CPU-hours" in capsys.readouterr().err
    assert [(s.pretrain.epochs, s.finetune.batch_size) for s in seen] == [(7, 16)]


def test_cost_follows_the_preset(capsys):
    paper = run_cost("yeast")
    official = run_cost("yeast", preset="mulsupcon-official")
    assert official.pretrain_iters == 150 * 1000 and paper.pretrain_iters == 400 * (1200 // 128)
    assert official.hours > 10 * paper.hours
    hours = {}
    for preset in ("paper", "mulsupcon-official"):
        assert cli.main(["cost", "paper_tables/table2.md", "--configfile", CONFIG, "--config",
                         f"preset={preset}", "datasets=[yeast]"]) == 0
        hours[preset] = float(capsys.readouterr().out.strip().splitlines()[-1].split()[2].replace(",", ""))
    assert hours["mulsupcon-official"] > 10 * hours["paper"] > 0


def test_workflow_start_line_survives_a_bad_measurements_file(monkeypatch):
    """The start line is information: a measurements file without the needed rate gives one line
    saying why, and the workflow goes on."""
    monkeypatch.setattr(cost, "measurements", lambda: {"cpu": {}, "cuda": {}})
    config = yaml.safe_load(Path(CONFIG).read_text())
    lines = pipeline_cost.start_lines(["paper_tables/table2.md"], plan.RunConfig.from_config(config))
    assert len(lines) == 1 and lines[0].startswith("cost: no estimate (KeyError")


def _without_shapes(monkeypatch) -> dict:
    m = cost.measurements()
    for rates in m["cpu_machines"].values():
        rates.pop("vector_pretrain_ms_per_iter", None)
    monkeypatch.setattr(cost, "measurements", lambda: m)
    return m


def test_cost_uses_the_rate_of_the_configured_lane(monkeypatch):
    rates = cost.cpu_rates(_without_shapes(monkeypatch))[0]["vector_pretrain_gflops"]
    fast = run_cost("yeast", "paper", "cpu", overrides=("precision=fp32",))
    ref = run_cost("yeast", "paper", "cpu", overrides=("pretrain.hotpath=reference", "precision=fp32"))
    assert fast.gflop == ref.gflop
    assert fast.hours / ref.hours == pytest.approx(rates["fp32-reference"] / rates["fp32-fast"])


def test_cost_takes_a_measured_iteration_of_the_dataset_shape(monkeypatch):
    ms = cost.cpu_rates()[0]["vector_pretrain_ms_per_iter"]["fp32-fast"]["delicious"]
    fp32 = ("precision=fp32",)
    with_shape = run_cost("delicious", "paper", "cpu", overrides=fp32)
    flop_model = run_cost("delicious", "paper", "cpu", overrides=("pretrain.queue_size=4000", *fp32))
    assert with_shape.hours * 3600 >= with_shape.pretrain_iters * ms / 1e3          # + fine-tuning
    assert with_shape.hours * 3600 < with_shape.pretrain_iters * ms / 1e3 * 1.5
    _without_shapes(monkeypatch)
    assert run_cost("delicious", "paper", "cpu", overrides=fp32).hours == pytest.approx(
        flop_model.hours * with_shape.gflop / flop_model.gflop, rel=0.05)           # no table: FLOPs only


def test_cost_cli_takes_the_pretraining_lane(capsys, monkeypatch):
    _without_shapes(monkeypatch)
    hours = {}
    for lane in ("reference", "fast"):
        assert cli.main(["cost", "2", "--configfile", CONFIG, "--hotpath", lane, "--precision", "fp32"]) == 0
        hours[lane] = float(capsys.readouterr().out.strip().splitlines()[-1].split()[2].replace(",", ""))
    rates = cost.cpu_rates()[0]["vector_pretrain_gflops"]
    assert hours["reference"] > hours["fast"] > 0
    assert hours["reference"] / hours["fast"] == pytest.approx(rates["fp32-fast"] / rates["fp32-reference"], rel=0.02)


def test_methods_without_pretraining_are_costed_without_it():
    """bce and asl only fine-tune: their runs cost no pretraining (they were charged CLD's)."""
    config = yaml.safe_load(Path(CONFIG).read_text())
    hours = {}
    for method in ("bce", "asl", "cld"):
        cfg = dict(config, datasets=["delicious"], methods=[method], seeds=[0])
        hours[method] = pipeline_cost.table_costs(["2"], cfg, "cpu")[0]["cpu_hours"]
    s = resolve_settings("delicious")
    assert cost.run_cost(s, "cpu", pretrain=False).pretrain_iters == 0
    assert 0 < hours["bce"] == hours["asl"] < hours["cld"] / 5


def test_rates_of_this_machine_class_else_the_default_said_so(monkeypatch, capsys):
    m = cost.measurements()
    for isa, rates in m["cpu_machines"].items():
        assert cost.cpu_rates(m, isa) == (rates, True) and rates["isa_class"] == isa
    assert cost.cpu_rates(m, "riscv64") == (m["cpu_machines"][m["cpu_default"]], False)
    monkeypatch.setattr(cost, "isa_class", lambda: "riscv64")
    monkeypatch.setattr(pipeline_cost, "isa_class", lambda: "riscv64")
    assert cli.main(["cost", "2", "--configfile", CONFIG]) == 0
    assert "NOT this machine's class (riscv64: not measured; figures from " in capsys.readouterr().out


def test_auto_precision_costs_the_faster_lane_where_bf16_is_native(monkeypatch):
    """auto = what the calibration would choose: the faster of fp32 and bf16 on a machine class with
    native bf16 for a dataset whose bf16 is validated, fp32 where bf16 is emulated or not validated;
    a lane timed at the dataset's shape beats the FLOP model."""
    real = cost.measurements
    m = _without_shapes(monkeypatch)
    assert "yeast" in BF16_VALIDATED and "mediamill" not in BF16_VALIDATED
    for rates in m["cpu_machines"].values():      # bf16 much faster wherever native: only the rule says no
        gflops = rates["vector_pretrain_gflops"]
        gflops["bf16-fast"] = 10 * gflops["fp32-fast"]
    for isa, rates in m["cpu_machines"].items():
        monkeypatch.setattr(cost, "isa_class", lambda isa=isa: isa)
        for dataset in ("yeast", "mediamill"):
            h = {p: run_cost(dataset, "paper", "cpu", overrides=(f"precision={p}",)).hours
                 for p in ("fp32", "bf16", "auto")}
            bf16_allowed = rates["onednn_bf16"] and dataset in BF16_VALIDATED
            assert h["auto"] == (min(h["fp32"], h["bf16"]) if bf16_allowed else h["fp32"])
            assert h["bf16"] < h["fp32"]
    monkeypatch.setattr(cost, "measurements", real)
    monkeypatch.setattr(cost, "isa_class", lambda: "x86_64-amx")
    timed = cost.cpu_rates()[0]["vector_pretrain_ms_per_iter"]
    shaped = [p for p in ("fp32", "bf16") if "yeast" in timed.get(f"{p}-fast", {})]
    assert shaped and run_cost("yeast", "paper", "cpu", overrides=("precision=auto",)).hours == min(
        run_cost("yeast", "paper", "cpu", overrides=(f"precision={p}",)).hours for p in shaped)


def test_cost_reads_the_workflow_config_precision(capsys):
    """config ``precision`` (what the jobs pass as --set precision) is what cost charges, as --precision."""
    def hours(*extra):
        assert cli.main(["cost", "2", "--configfile", CONFIG, *extra]) == 0
        return capsys.readouterr().out.strip().splitlines()[-1].split()[2]
    assert hours("--config", "precision=bf16") == hours("--precision", "bf16") != hours("--precision", "fp32")
