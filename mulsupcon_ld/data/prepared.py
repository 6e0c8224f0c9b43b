"""The one prepared format (see docs/architecture.md) and the functions that read it.

``DATA_DIR/<name>/`` or ``DATA_DIR/<name>-synthetic/`` holds ``train.npz``, ``val.npz``,
``test.npz`` and ``meta.json``. A directory is built under a hidden temporary name and renamed
into place only when complete, with ``meta.json`` written last, so a killed ``prepare`` never
leaves anything that looks done.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..atomic import save_npz
from ..errors import UserError
from ..paths import data_dir as resolve_data_dir
from ..registry import DatasetSpec, get_dataset

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
META = "meta.json"


@dataclass
class PreparedContent:
    """What a preparer hands back: arrays per split plus how they were made."""

    splits: dict[str, dict[str, np.ndarray]]  # split -> {"x": …, "y": …, optional extra keys}
    label_names: list[str]
    val_split: dict[str, Any]
    test_split: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    extra_meta: dict[str, Any] = field(default_factory=dict)


def base_meta(name: str, kind: str, label_names: list[str], split_sizes: dict[str, int], *,
              synthetic: bool, **fields: Any) -> dict[str, Any]:
    """The ``meta.json`` fields every prepared dataset has, plus ``fields`` (one builder for all)."""
    return {"format_version": FORMAT_VERSION, "name": name, "kind": kind, "n_labels": len(label_names),
            "label_names": list(label_names), "splits": dict(split_sizes), "synthetic": bool(synthetic),
            **fields}


def label_stats(y_trainval: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """Table 1's statistics computed from label matrices (train = train + val)."""
    return {"n_train_total": int(len(y_trainval)), "n_test": int(len(y_test)),
            "mean_labels_train": float(y_trainval.sum(1).mean()),
            "mean_labels_test": float(y_test.sum(1).mean())}


def seeded_split(n: int, *, fraction: float | None = None, count: int | None = None,
                 seed: int = 0, stream: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)`` row indices, both sorted: the one seeded split of the harness.

    ``held_out`` is ``count`` rows or ``round(fraction * n)`` rows, the first of
    ``numpy.random.default_rng(seed).permutation(n)`` (vector datasets' val split), or of
    ``default_rng([seed, stream])`` when ``stream`` is given (image datasets: stream 7000).
    """
    if fraction is not None and not 0.0 <= fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), not {fraction}")
    k = count if count is not None else int(round((fraction or 0.0) * n))
    if not 0 <= k <= n:
        raise UserError(f"cannot hold out {k} of {n} rows")
    perm = np.random.default_rng(seed if stream is None else [int(seed), int(stream)]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def prepared_dir(name: str | DatasetSpec, data_dir: str | os.PathLike | None = None,
                 synthetic: bool = False) -> Path:
    """``DATA_DIR/<name>`` or ``DATA_DIR/<name>-synthetic``."""
    spec = get_dataset(name)
    return resolve_data_dir(data_dir) / (f"{spec.name}-synthetic" if synthetic else spec.name)


def is_prepared(name: str | DatasetSpec, data_dir: str | os.PathLike | None = None,
                synthetic: bool = False) -> bool:
    """True when the prepared directory is complete (its ``meta.json`` exists)."""
    return (prepared_dir(name, data_dir, synthetic) / META).is_file()


def prepare_command(name: str, data_dir: str | os.PathLike | None = None,
                    synthetic: bool = False) -> str:
    """The exact command that creates what :func:`load_prepared` looks for."""
    cmd = f"mulsupcon-ld prepare {get_dataset(name).name}"
    if synthetic:
        cmd += " --synthetic"
    if data_dir is not None or os.environ.get("MULSUPCON_DATA_DIR"):
        cmd += f" --data-dir {resolve_data_dir(data_dir)}"
    return cmd


@dataclass
class PreparedDataset:
    """A prepared dataset on disk; arrays are read on demand, one split at a time."""

    name: str
    path: Path
    meta: dict[str, Any]
    synthetic: bool = False

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def n_labels(self) -> int:
        return int(self.meta["n_labels"])

    @property
    def n_features(self) -> int | None:
        return self.meta.get("n_features")

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["label_names"])

    @property
    def _fix(self) -> str:
        return prepare_command(self.name, self.path.parent, self.synthetic)

    def arrays(self, which: str, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """All arrays of one split (image stores may keep more than ``x``/``y``)."""
        if which not in SPLITS:
            raise UserError(f"unknown split {which!r}; use one of {', '.join(SPLITS)}")
        file = self.path / f"{which}.npz"
        if not file.is_file():
            raise UserError(f"{file} is missing; re-run `{self._fix}`")
        with np.load(file, allow_pickle=False) as z:
            names = keys if keys is not None else tuple(z.files)
            missing = [k for k in names if k not in z.files]
            if missing:
                raise UserError(f"{file} has no {missing} (it holds {z.files}); re-run `{self._fix}`")
            return {k: z[k] for k in names}

    def shape(self, which: str, key: str = "x") -> tuple[int, ...]:
        """Shape of one stored array, read from its header without loading the data."""
        file = self.path / f"{which}.npz"
        try:
            with zipfile.ZipFile(file) as zf, zf.open(f"{key}.npy") as fh:
                major, _ = np.lib.format.read_magic(fh)
                read = (np.lib.format.read_array_header_1_0 if major == 1
                        else np.lib.format.read_array_header_2_0)
                shape, _, _ = read(fh)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise UserError(f"cannot read {key!r} from {file} ({exc}); re-run `{self._fix}`"
                            ) from None
        return tuple(shape)

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``; shapes checked against meta.json."""
        a = self.arrays(which, ("x", "y"))
        x, y = a["x"], a["y"]
        n = self.meta["splits"][which]
        problems = []
        if x.shape[0] != n or y.shape[0] != n:
            problems.append(f"{x.shape[0]}/{y.shape[0]} rows, meta.json says {n}")
        if y.ndim != 2 or y.shape[1] != self.n_labels:
            problems.append(f"y has shape {y.shape}, expected [N, {self.n_labels}]")
        if self.kind == "vector" and (x.ndim != 2 or x.shape[1] != self.n_features):
            problems.append(f"x has shape {x.shape}, expected [N, {self.n_features}]")
        if problems:
            raise UserError(f"{self.path / (which + '.npz')} is inconsistent "
                            f"({'; '.join(problems)}); re-run `{self._fix}`")
        return x, y

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """All three splits as ``{"train": (x, y), "val": …, "test": …}``."""
        return {s: self.split(s) for s in SPLITS}


def load_prepared(name: str | DatasetSpec, data_dir: str | os.PathLike | None = None,
                  synthetic: bool = False) -> PreparedDataset:
    """Open ``DATA_DIR/<name>[-synthetic]``; a missing one is a :class:`UserError` naming the fix."""
    spec = get_dataset(name)
    path = prepared_dir(spec, data_dir, synthetic)
    meta_file = path / META
    if not meta_file.is_file():
        what = "synthetic stand-in of " if synthetic else ""
        raise UserError(f"the {what}{spec.name} dataset is not prepared in {path}; run "
                        f"`{prepare_command(spec.name, data_dir, synthetic)}`")
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError as exc:
        raise UserError(f"{meta_file} is not valid JSON ({exc}); re-run "
                        f"`{prepare_command(spec.name, data_dir, synthetic)}`") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} was prepared in format {meta.get('format_version')}, this version "
                        f"reads format {FORMAT_VERSION}; re-run "
                        f"`{prepare_command(spec.name, data_dir, synthetic)}`")
    return PreparedDataset(spec.name, path, meta, synthetic=synthetic)


# ---------------------------------------------------------------------------------------------
# writing


@contextlib.contextmanager
def dataset_lock(final: Path) -> Iterator[None]:
    """Serialise preparation of one directory across processes (parallel workflow jobs)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = final.parent / f".{final.name}.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden directory beside ``final``; swap it into place if the block succeeds.

    Write ``meta.json`` last inside it. An existing ``final`` is replaced only after the new
    one is complete; on error (or kill) nothing named ``final`` is created or changed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        if not (tmp / META).is_file():
            raise RuntimeError(f"staging directory for {final} has no {META}")
        _usual_permissions(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.rmdir(old)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _usual_permissions(directory: Path) -> None:
    # mkdtemp/mkstemp create owner-only entries; prepared data is often shared on a cluster
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for p in directory.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def save_split(directory: Path, which: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write one split's arrays as ``<which>.npz`` (compressed: binary features shrink a lot)."""
    if which not in SPLITS:
        raise ValueError(f"unknown split {which!r}")
    path = Path(directory) / f"{which}.npz"
    save_npz(path, compressed=True, **arrays)
    return path
