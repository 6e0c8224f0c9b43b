"""Aggregation, paper-layout tables, the diff against the paper and Figure 2.

* :mod:`.plan` — the tables' layouts and the training runs behind each cell (shared with the
  Snakemake workflow, which asks it which result files a target needs);
* :mod:`.jobs` — bodies of the workflow's download / prepare / train jobs;
* :mod:`.aggregate` — ``metrics.json`` files → ``results/runs.csv``, one row per run;
* :mod:`.tables` — Tables 2–8 (markdown + CSV), ours next to the paper's numbers;
* :mod:`.diff` — ``mulsupcon-ld diff``: per-cell ours − paper and a summary;
* :mod:`.figure` — Figure 2 (PNG + PDF).
"""
