"""The Snakemake workflow's Python side (imported by the Snakefile and workflow/scripts).

* :mod:`.paper_tables` — what each of the paper's tables and Figure 2 holds (kind, datasets, rows);
* :mod:`.plan` — the training runs behind each table (the workflow asks it which result files a
  target needs; ``report.layouts`` finds a cell's runs by the same path text), with each dataset's
  settings resolved once for the config (``RunConfig``);
* :mod:`.config` — the config schema's names from the registry, and ``--config`` coercion;
* :mod:`.cost` — ``mulsupcon-ld cost`` and the cost line printed before a run;
* :mod:`.jobs` — bodies of the workflow's download / prepare / train jobs;
* :mod:`.summary` — the end-of-workflow summary and ``strict`` mode.
"""
