"""Aggregation, paper-layout tables, the diff against the paper and Figure 2.

* :mod:`.aggregate` — ``metrics.json`` files → ``results/runs.csv``, one row per run;
* :mod:`.tables` — Tables 2–8 (markdown + CSV), ours next to the paper's numbers;
* :mod:`.diff` — ``mulsupcon-ld diff``: per-cell ours − paper and a summary;
* :mod:`.figure` — Figure 2 (PNG + PDF).

Run planning (which runs fill which cell) lives in :mod:`mulsupcon_ld.pipeline.plan`.
"""
