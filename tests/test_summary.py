"""The end-of-workflow summary (mulsupcon_ld/pipeline/summary.py), on hand-made result files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mulsupcon_ld.pipeline import jobs, plan, summary
from mulsupcon_ld.run_settings import resolve_settings

RC = plan.RunConfig(datasets=("pascal", "nuswide", "coco"), methods=("cld", "mulsupcon"), seeds=(0,),
                    image_seeds=(0,), alphas=(1.0,), betas=(0.001,), ablations=("none",), scale="smoke")


def _settings(key: plan.RunKey):
    """A run's dataset's settings, as the workflow resolves them (plan.RunConfig)."""
    return resolve_settings(key.dataset, key.scale, key.preset)


def _write(root: Path, rel: str, record: dict) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_summary_counts_groups_and_blank_cells(tmp_path):
    keys = {(k.dataset, k.method): k for k in plan.runs_for_table("4", RC)}
    assert len(keys) == 6
    _write(tmp_path, keys["pascal", "cld"].result, {"metrics": {"paper": {}}})
    _write(tmp_path, keys["pascal", "mulsupcon"].result,
           jobs.unavailable_record(keys["pascal", "mulsupcon"], "could not download pascal: is this machine offline?"))
    for method in ("cld", "mulsupcon"):
        _write(tmp_path, keys["nuswide", method].result,
               jobs.unavailable_record(keys["nuswide", method], "nuswide needs a manual download. …"))
    # coco: no result; its prepare job says why (strict mode writes no placeholder)
    _write(tmp_path, plan.PREPARED_STATUS.format(data="coco"), {"status": "unavailable", "reason": "needs a GPU"})
    s = summary.summarize(["paper_tables/table4.md"], RC, tmp_path)
    assert len(s.ok) == 1 and s.n_unavailable == 5 and not s.missing
    assert {g: len(k) for g, k in s.unavailable.items()} == {
        "offline (no network)": 1, "needs a manual download": 2, "needs CUDA": 2}
    assert s.blank == {"4": ["coco: cld, mulsupcon", "nuswide: cld, mulsupcon", "pascal: mulsupcon"]}
    lines = summary.summary_lines(s)
    assert lines[0] == "summary: 6 runs: 1 ok, 5 unavailable, 0 failed or not run"
    assert any("table 4 will show \"—\" for coco: cld, mulsupcon" in line for line in lines)
    assert summary.report(["table4"], RC, strict=False, root=tmp_path) == 0
    assert summary.report(["table4"], RC, strict=True, root=tmp_path) == summary.STRICT_EXIT
    assert [k.dataset for k in summary.placeholders(["table4"], RC, tmp_path)] == ["nuswide", "nuswide", "pascal"]


def test_summary_of_a_finished_workflow_and_of_failed_jobs(tmp_path):
    for key in plan.runs_for_target("all", RC):
        _write(tmp_path, key.result, {"metrics": {"paper": {}}})
    s = summary.summarize(None, RC, tmp_path)   # no targets: the default target, everything
    assert s.n_unavailable == 0 and not s.missing and not any(s.blank.values())
    assert summary.report(None, RC, strict=True, root=tmp_path) == 0
    s = summary.summarize(["paper_tables/table4.md"], RC, tmp_path / "elsewhere")
    assert len(s.missing) == 6 and summary.summary_lines(s)[1].startswith("  failed or not run: 6 runs")
    assert summary.requested_tables(["results/runs.csv"]) == (list(plan.TABLE_IDS), True)
    assert summary.requested_tables(["paper_tables/table5.md", "figure2"]) == (["5"], True)


def test_an_image_run_at_paper_scale_without_cuda_is_unavailable_not_a_failed_job(tmp_path, monkeypatch):
    import pytest
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(jobs, "run_cli", lambda *a, **k: pytest.fail("the run must not start"))
    prepared = tmp_path / "prepared.json"
    prepared.write_text(json.dumps({"status": "ok"}))
    key = plan.RunKey("pascal", "cld", "none", "1", "0.001", 0, "paper", False)
    out, log = tmp_path / "metrics.json", tmp_path / "train.log"
    record = jobs.train_job(key, _settings(key), str(prepared), str(out), str(log))
    assert record["status"] == "unavailable" and "needs a GPU" in record["reason"]
    assert summary.reason_group(record["reason"]) == "needs CUDA"
    assert json.loads(out.read_text()) == record and log.read_text().startswith("# not run: not run on this machine")
    out.unlink()
    with pytest.raises(RuntimeError, match="strict=true"):
        jobs.train_job(key, _settings(key), str(prepared), str(out), str(log), strict=True)
    assert not out.exists()
    # an explicit --device cpu, or smoke scale, is the override: the run starts
    smoke = plan.RunKey("pascal", "cld", "none", "1", "0.001", 0, "smoke", False)
    assert jobs.cpu_refusal(key, _settings(key), "cpu") == ""
    assert jobs.cpu_refusal(smoke, _settings(smoke), None) == ""


def test_workflow_hotpath_reaches_the_runs_that_pretrain_an_mlp(tmp_path, monkeypatch):
    """config ``hotpath`` → ``--set pretrain.hotpath=…`` for vector runs that pretrain, nothing else."""
    calls = []

    def fake_run_cli(args, log, threads=None):
        calls.append(args)
        _write(tmp_path, f"{args[args.index('--out') + 1]}/metrics.json", {"metrics": {"paper": {}}})
        return 0, ""

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jobs, "run_cli", fake_run_cli)
    prepared = tmp_path / "prepared.json"
    prepared.write_text(json.dumps({"status": "ok"}))
    keys = [plan.RunKey("yeast", "cld", "none", "0.1", "1", 5, "paper", False),
            plan.RunKey("yeast", "bce", "none", "na", "na", 5, "paper", False),
            plan.RunKey("pascal", "cld", "none", "1", "0.001", 0, "smoke", False)]
    for i, key in enumerate(keys):
        jobs.train_job(key, _settings(key), str(prepared), str(tmp_path / f"m{i}.json"), str(tmp_path / f"l{i}.log"),
                       hotpath="reference")
    sets = [a[a.index("--set") + 1] if "--set" in a else None for a in calls]
    assert sets == ["pretrain.hotpath=reference", None, None]
    jobs.train_job(keys[0], _settings(keys[0]), str(prepared), str(tmp_path / "m9.json"), str(tmp_path / "l9.log"))
    assert "--set" not in calls[-1]
    for i, key in enumerate(keys):      # config precision: every run, image runs included
        jobs.train_job(key, _settings(key), str(prepared), str(tmp_path / f"p{i}.json"), str(tmp_path / f"p{i}.log"),
                       precision="fp32")
    assert all(a[a.index("--set") + 1] == "precision=fp32" for a in calls[-3:])


def test_the_end_summary_sets_the_runs_time_beside_the_estimate(tmp_path):
    import json as _json

    from mulsupcon_ld.cost import run_cost
    from mulsupcon_ld.pipeline import plan as _plan, summary as _summary
    from mulsupcon_ld.run_settings import resolve_settings

    rc = _plan.RunConfig.from_config({"datasets": ["yeast"], "methods": ["cld", "bce"], "seeds": [0],
                                      "alphas": [0.1], "betas": [1], "ablations": ["none"], "scale": "paper",
                                      "synthetic": False, "image_seeds": None})
    keys = _plan.runs_for_table("2", rc)
    walls = {"cld": 40.0, "bce": 20.0}
    for key in keys:
        path = tmp_path / key.result
        path.parent.mkdir(parents=True)
        path.write_text(_json.dumps({"metrics": {"paper": {}}, "wall_time_s": {"total": walls[key.method]},
                                     "arithmetic": {"threads": 2 if key.method == "bce" else 1}, "device": "cpu"}))
    s = _summary.summarize(["2"], rc, tmp_path)
    assert s.cpu_s == 40.0 + 2 * 20.0
    settings = resolve_settings("yeast")
    want = run_cost(settings, "cpu").hours + run_cost(settings, "cpu", pretrain=False).hours
    assert s.estimate_h == pytest.approx(want)
    (line,) = _summary.time_lines(s)
    assert "the 2 ok runs took 0.02 CPU-hours" in line and f"estimates {want:.2f}" in line
    assert f"{(80 / 3600) / want:.2f}× the estimate" in line
