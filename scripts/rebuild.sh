#!/usr/bin/env bash
# The snapshot rebuild (README, "Rebuild the snapshot"), run from a worktree of ONE commit:
#   git worktree add ../rebuild COMMIT && python3 -m venv --system-site-packages ../rebuild-venv \
#     && ../rebuild-venv/bin/pip install --no-deps -e ../rebuild
#   nohup bash scripts/rebuild.sh ../rebuild ../rebuild-venv > ../rebuild.log 2>&1 &
# Yeast and Scene first (minutes a run), then Delicious (up to half an hour a run); snakemake skips
# finished runs, so running it again resumes. The first line of the log is what
# `python scripts/publish_snapshot.py --results ../rebuild/results --log ../rebuild.log` reads.
set -u
worktree=$(cd "$1" && pwd) venv=$(cd "$2" && pwd)
cd "$worktree"
export PATH="$venv/bin:$PATH" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
targets="paper_tables/table2.md paper_tables/table3.md paper_tables/table5.md paper_tables/table6.md paper_tables/figure2.png"
echo "# start $(date -u +%FT%TZ) commit $(git rev-parse HEAD) cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
# a session that ended abruptly leaves snakemake's locks behind, and the next start would refuse to run:
# lift them, but only when no snakemake runs from this worktree
if ls .snakemake/locks/* >/dev/null 2>&1 && ! pgrep -f "snakemake.*--configfile config/rebuild.yaml" >/dev/null; then
  echo "# lifting the locks a killed rebuild left"
  python -m snakemake --unlock --cores 1 --configfile config/rebuild.yaml --config raw_dir=../shared/data
fi
for datasets in "[yeast,scene]" "[yeast,scene,delicious]"; do
  python -m snakemake --cores 2 --set-threads train=1 --keep-going --configfile config/rebuild.yaml \
      --config raw_dir=../shared/data "datasets=$datasets" -- $targets
  echo "# datasets $datasets done $(date -u +%FT%TZ) rc $?"
done
