#!/usr/bin/env bash
# Install the Debian SLURM + munge packages that tests/test_slurm.py needs for its single-node
# cluster. Called by .ci/run before pytest.
#
# - Does nothing when the binaries are already there (idempotent; also covers hosts where SLURM
#   is installed some other way).
# - Never prompts (DEBIAN_FRONTEND=noninteractive, -y) and never starts services itself: the
#   test brings up its own private munged/slurmctld/slurmd in a temporary directory.
# - Always exits 0. When apt cannot install the packages (no root, no apt, no registry) it says
#   why; the SLURM tests then skip with that reason.
set -u

PKGS="slurmctld slurmd slurm-client munge"
NEEDED_BINS="munged slurmctld slurmd sbatch squeue sinfo scontrol scancel"

version() {
  # slurmd -V needs no slurm.conf (sinfo --version does)
  { slurmd -V 2>/dev/null || /usr/sbin/slurmd -V 2>/dev/null || echo "version unknown"; } | head -n 1
}

have_all() {
  local b
  for b in $NEEDED_BINS; do
    # slurmctld/slurmd/munged live in /usr/sbin, which is not always on a CI user's PATH
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
  done
  return 0
}

if have_all; then
  echo "install_slurm: SLURM and munge already installed ($(version))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_slurm: apt-get not available; SLURM tests will be skipped"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "install_slurm: not root and no passwordless sudo; cannot install $PKGS; SLURM tests will be skipped"
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp -t install_slurm.XXXXXX.log)"
echo "install_slurm: installing $PKGS (log: $log)"
# policy-rc.d exit 101 keeps the packages' maintainer scripts from starting system daemons
# (the test runs its own private ones); only added when we created it, and removed again.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  if printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null 2>&1 && $SUDO chmod 755 "$policy"; then
    created_policy=1
  fi
fi
cleanup() { if [ "$created_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

if ! $SUDO apt-get update -qq >>"$log" 2>&1; then
  echo "install_slurm: 'apt-get update' failed (see $log); trying the install with the existing package lists"
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      $PKGS >>"$log" 2>&1; then
  echo "install_slurm: apt-get could not install $PKGS; SLURM tests will be skipped. Last lines of $log:"
  tail -n 5 "$log" | sed 's/^/  /'
  exit 0
fi

if have_all; then
  echo "install_slurm: installed ($(version))"
else
  echo "install_slurm: packages installed but some of '$NEEDED_BINS' are still missing; SLURM tests will be skipped"
fi
exit 0
