"""A private single-node SLURM cluster for the tests (munged + slurmctld + slurmd).

Everything lives in one temporary directory: munge key and socket, ``slurm.conf``, state, spool,
pid and log files. The daemons run in the foreground (``-F`` / ``-D``) as children of the test
process, so they are stopped by their own PIDs (never by name) in :meth:`SlurmCluster.stop`
(after cancelling the cluster's jobs); should the test process die without cleaning up, they get
SIGTERM through ``PR_SET_PDEATHSIG``.
Clients find the cluster through ``SLURM_CONF`` (see :attr:`SlurmCluster.env`); munge clients
find the private munged through ``AuthInfo=socket=…`` in that ``slurm.conf``.

Choices, because this runs in containers / CI VMs:

* ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``,
  ``JobAcctGatherType=jobacct_gather/none``: no cgroups needed.
* ``AccountingStorageType=accounting_storage/none``: there is no slurmdbd, so ``sacct`` does not
  work and job states come from ``squeue``; ``MinJobAge`` is long (15 min) so finished jobs stay
  visible to ``squeue --states=all`` for the whole test.
* The real node is configured from ``slurmd -C`` (its true CPU layout), ``RealMemory`` from
  ``MemAvailable`` (what jobs can actually get), and no GPU.
* GPU requests: one *placeholder* node ``gpu-placeholder`` (the real node's shape plus
  ``Gres=gpu:1``) is declared ``State=DOWN`` and never has a slurmd. It only makes SLURM *accept*
  ``--gpus=1`` jobs (instead of rejecting them at submission), so the tests can inspect them with
  ``scontrol show job``; they stay PENDING and can never run here. It is in the default partition
  ``debug`` (with the real node) and alone in partition ``gpu``.

* ``ROOT/bin/srun``: a two-line wrapper that sets ``SLURM_CONF`` for the real ``srun`` (the
  executor's job step strips ``SLURM_CONF`` from srun's environment; real clusters don't need
  it because their slurm.conf is at the default path). The jobs get it through ``PATH``.

Use :func:`existing_cluster` first: if SLURM is already running (``scontrol ping`` answers with
the caller's environment), the tests use it and start/stop nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel", "munge", "unmunge")
GPU_PLACEHOLDER_NODE = "gpu-placeholder"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be used on this host; the message says why (used as the skip reason)."""


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def missing_binaries() -> list[str]:
    return [b for b in DAEMONS + CLIENTS if _which(b) is None]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: the daemon gets SIGTERM if the test process dies without cleaning up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort (non-Linux)
        pass


def _mem_available_mb() -> int:
    with open("/proc/meminfo") as fh:
        info = {line.split(":")[0]: line.split()[1] for line in fh if ":" in line}
    return int(info.get("MemAvailable", info["MemTotal"])) // 1024


def existing_cluster(env: dict | None = None) -> dict | None:
    """The environment of an already-running SLURM (``scontrol ping`` succeeds), else None."""
    env = dict(os.environ if env is None else env)
    if _which("scontrol") is None:
        return None
    try:
        r = subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode == 0 and re.search(r"\bUP\b", r.stdout):
        return env
    return None


class _Client:
    """What the tests need from any SLURM: an environment and a few client commands."""

    env: dict
    private = False

    def run(self, *argv: str, check: bool = True, timeout: float = 30, **kw):
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                              check=check, timeout=timeout, **kw)

    def show_job(self, jobid: str | int) -> dict:
        """``scontrol show job -o`` as a dict (``{}`` when the job is unknown)."""
        r = self.run("scontrol", "show", "job", "-o", str(jobid), check=False)
        if r.returncode != 0:
            return {}
        return dict(re.findall(r"(\S+?)=(\S*)", r.stdout))

    def jobs(self, ids=None) -> list[dict]:
        """Jobs slurmctld still knows (``squeue --states=all``), all or only ``ids``:
        id, state, name, comment."""
        argv = ["squeue", "-h", "--states=all", "-o", "%i|%T|%j|%k"]
        if ids is not None:
            ids = [str(i) for i in ids]
            if not ids:
                return []
            argv += ["-j", ",".join(ids)]
        r = self.run(*argv, check=False)
        out = []
        for line in r.stdout.splitlines():
            parts = line.split("|", 3)
            if len(parts) == 4:
                out.append(dict(zip(("id", "state", "name", "comment"), (p.strip() for p in parts))))
        return out

    def cancel(self, ids) -> None:
        ids = [str(i) for i in ids]
        if ids:
            self.run("scancel", *ids, check=False)

    def diagnostics(self, tail: int = 30) -> str:
        return ""


class ExistingCluster(_Client):
    """A SLURM that was already running: used as is, nothing is started or stopped."""

    def __init__(self, env: dict):
        self.env = dict(env)

    def stop(self) -> None:
        pass


class SlurmCluster(_Client):
    """A single-node SLURM in ``root`` (created with :func:`tempfile.mkdtemp` when None)."""

    private = True

    def __init__(self, root: str | Path | None = None, partition: str = "debug",
                 min_job_age_s: int = 900, gpu_placeholder: bool = True):
        missing = missing_binaries()
        if missing:
            raise SlurmUnavailable(
                "SLURM/munge binaries not installed (" + ", ".join(missing) + "); "
                "run .ci/install_slurm.sh (needs root and the Debian packages "
                "slurmctld slurmd slurm-client munge)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting a private slurmd needs root (it runs jobs as their user)")
        # Unix socket paths are limited to ~107 bytes: keep the root short.
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.partition = partition
        self.gpu_partition = "gpu"
        self.min_job_age_s = min_job_age_s
        self.gpu_placeholder = gpu_placeholder
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.log_dir = self.root / "log"
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs = []

    # ------------------------------------------------------------------ config
    @property
    def env(self) -> dict:
        """Environment for SLURM clients (and snakemake) talking to this cluster."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.root / 'bin'}:" + env.get("PATH", "") + ":/usr/sbin:/sbin"
        for k in list(env):  # never inherit an outer job's context
            if k.startswith("SLURM_") and k != "SLURM_CONF":
                del env[k]
        return env

    def _node_line(self) -> str:
        out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True,
                             timeout=30).stdout
        first = out.splitlines()[0] if out else ""
        fields = dict(kv.split("=", 1) for kv in first.split() if "=" in kv)
        cpus = fields.get("CPUs", str(os.cpu_count() or 1))
        layout = " ".join(f"{k}={fields[k]}" for k in
                          ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
                          if k in fields)
        total = int(fields.get("RealMemory", _mem_available_mb()))
        mem = max(256, min(total, _mem_available_mb() - 256))
        self.real_memory_mb = mem
        self.cpus = int(cpus)
        self._node_shape = f"CPUs={cpus} {layout}"
        return (f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} {layout} "
                f"RealMemory={mem} State=UNKNOWN")

    def _write_srun_shim(self) -> None:
        # snakemake-executor-plugin-slurm-jobstep runs each job through an inner `srun` whose
        # environment it strips of SLURM_* variables except the job's identity, SLURM_CONF
        # included. Real clusters keep slurm.conf at the default path (or run configless), so
        # srun finds it anyway; this private cluster's slurm.conf lives in a temp dir, so the
        # job's PATH gets an `srun` that points the real srun at it. Nothing else changes.
        real = _which("srun")
        shim = self.root / "bin" / "srun"
        shim.write_text("#!/bin/sh\n"
                        f": \"${{SLURM_CONF:={self.conf}}}\"\n"
                        "export SLURM_CONF\n"
                        f'exec {real} "$@"\n')
        os.chmod(shim, 0o755)

    def write_config(self) -> None:
        for d in ("state", "spool", "log", "munge", "munge/lib", "bin"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self._write_srun_shim()
        os.chmod(self.root / "munge", 0o755)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        self.ctld_port, self.slurmd_port, dead_port = _free_port(), _free_port(), _free_port()
        lines = [
            "# generated by tests/slurm_cluster.py: private single-node test cluster",
            "ClusterName=mulsupcon-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "DefMemPerCPU=500",  # jobs without --mem must not take the whole node
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            # No accounting database: finished jobs must stay in slurmctld's memory long enough
            # for squeue-based status checks (the plugin wants >= 3 x its first-check delay).
            f"MinJobAge={self.min_job_age_s}",
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            "SchedulerParameters=sched_interval=2",
        ]
        if self.gpu_placeholder:
            lines.append("GresTypes=gpu")
        lines.append(self._node_line())
        nodes = self.node
        if self.gpu_placeholder:
            # Never has a slurmd (its port is a closed one) and is DOWN: GPU jobs are accepted,
            # stay PENDING and can be inspected, but can never run on this GPU-less host.
            # Same shape as the real node, plus one GPU: a job that would fit this host with a
            # GPU is accepted and stays PENDING; one that would not is rejected as on any cluster.
            lines.append(f"NodeName={GPU_PLACEHOLDER_NODE} NodeAddr=127.0.0.1 Port={dead_port} "
                         f"{self._node_shape} RealMemory={self.real_memory_mb} Gres=gpu:1 "
                         "State=DOWN Reason=placeholder_no_GPU_on_this_host")
            nodes += f",{GPU_PLACEHOLDER_NODE}"
        lines.append(f"PartitionName={self.partition} Nodes={nodes} Default=YES "
                     "MaxTime=INFINITE State=UP")
        if self.gpu_placeholder:
            # a GPU-only partition, as many sites have (for partition auto-selection tests)
            lines.append(f"PartitionName={self.gpu_partition} Nodes={GPU_PLACEHOLDER_NODE} "
                         "MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        if self.gpu_placeholder:
            # slurmd on the real node reads gres.conf; it has no GPU, so nothing for it.
            (self.root / "gres.conf").write_text(
                f"# {self.node} has no GPU; {GPU_PLACEHOLDER_NODE} never runs a slurmd\n")

    # ------------------------------------------------------------------ lifecycle
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.log_dir / f"{name}.stdout", "ab")
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env,
                                            start_new_session=True,
                                            preexec_fn=_die_with_parent)

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with status {p.returncode}:\n"
                                   + self.diagnostics())

    def _wait(self, what: str, pred, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if pred():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}:\n"
                           + self.diagnostics())

    def start(self, timeout: float = 90) -> "SlurmCluster":
        try:
            self.write_config()
            self._spawn("munged", [
                _which("munged"), "-F", "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={self.root / 'munge' / 'munge.key'}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--log-file={self.log_dir / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'lib' / 'munged.seed'}",
            ])

            def munge_ok() -> bool:
                if not self.munge_socket.exists():
                    return False
                r = subprocess.run(f"munge -n -S {self.munge_socket} | unmunge -S {self.munge_socket}",
                                   shell=True, capture_output=True, timeout=10)
                return r.returncode == 0

            self._wait("munged", munge_ok, timeout=20)
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._wait("slurmctld (scontrol ping)",
                       lambda: existing_cluster(self.env) is not None, timeout=timeout / 2)
            self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
            self._wait(f"node {self.node} idle", self.node_idle, timeout=timeout / 2)
        except BaseException:
            self.stop()
            raise
        return self

    def node_state(self, node: str | None = None) -> str:
        r = self.run("sinfo", "-h", "-N", "-n", node or self.node, "-o", "%T", check=False)
        return r.stdout.strip().lower() if r.returncode == 0 else ""

    def node_idle(self) -> bool:
        return self.node_state() == "idle"

    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job of this private cluster and wait until none is running."""
        self.run("scancel", "--full", "--partition", self.partition, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.run("squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED",
                         "-o", "%i", check=False)
            if r.returncode != 0 or not r.stdout.strip():
                return
            time.sleep(1)

    def stop(self) -> None:
        """Stop what this object started, by PID: jobs first, then slurmd, slurmctld, munged."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.cancel_all()
            except Exception:  # noqa: BLE001 - best effort; the daemons are stopped regardless
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for log in self._logs:
            log.close()
        self._logs.clear()

    # ------------------------------------------------------------------ inspection
    def diagnostics(self, tail: int = 30) -> str:
        parts = []
        for f in sorted(self.log_dir.glob("*")) if self.log_dir.exists() else []:
            try:
                lines = f.read_text(errors="replace").splitlines()[-tail:]
            except OSError:
                continue
            parts.append(f"--- {f.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
