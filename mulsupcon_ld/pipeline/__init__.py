"""The Snakemake workflow's Python side (imported by the Snakefile and workflow/scripts).

* :mod:`.plan` — the tables' layouts and the training runs behind each cell (the workflow asks it
  which result files a target needs; ``report`` lays tables out from it);
* :mod:`.jobs` — bodies of the workflow's download / prepare / train jobs.
"""
