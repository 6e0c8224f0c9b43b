"""The prepared image store: every image resized once and kept as JPEG bytes in one blob.

Layout (inside ``DATA_DIR/<name>/``)::

    images.bin          uint8, the JPEG files of all images of all splits, back to back
    images_offsets.npy  int64 [M + 1]; image i is images.bin[offsets[i]:offsets[i + 1]]
    train.npz / val.npz / test.npz
                        y     uint8 [N, C]   labels
                        index int64 [N]      row of each sample in the store
                        ids   str   [N]      original image id / member name (traceability)

Images are resized so that their shorter side is ``short_side`` (256; never upscaled) and
re-encoded as baseline JPEG (quality 90, 4:2:0 as libjpeg's default) — the eval transform's
"resize 256" is then a no-op and a DataLoader worker only decodes ~256×340 pixels per image.
Reading memory-maps ``images.bin``; the mapping is opened lazily in each worker process.

Sources are read straight from the official archives (zip members, or byte ranges of an
uncompressed tar) or from an extracted folder, by a pool of processes; nothing is extracted to disk.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..atomic import atomic_path
from ..errors import UserError

STORE_BLOB = "images.bin"
STORE_OFFSETS = "images_offsets.npy"
STORE_FORMAT = "jpeg-blob-v1"
DEFAULT_SHORT_SIDE = 256
DEFAULT_QUALITY = 90


# ------------------------------------------------------------------------------------------
# sources: where the original image bytes come from
# ------------------------------------------------------------------------------------------
@dataclass
class Source:
    """A picklable reader of named members: an extracted folder, a zip file, or a plain tar.

    ``kind`` is ``"dir"``, ``"zip"`` or ``"tar"``. For a tar, ``tar_index`` maps member names to
    ``(offset, size)`` of their data, so workers read with a seek instead of scanning the tar.
    """

    kind: str
    path: Path
    tar_index: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    _handle: object = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Source":
        path = Path(path)
        if path.is_dir():
            return cls("dir", path)
        if zipfile.is_zipfile(path):
            return cls("zip", path)
        if tarfile.is_tarfile(path):
            index: dict[str, tuple[int, int]] = {}
            with tarfile.open(path, "r:") as tf:  # plain tar only: byte ranges must be seekable
                for m in tf:
                    if m.isfile():
                        index[m.name.removeprefix("./")] = (m.offset_data, m.size)
            return cls("tar", path, index)
        raise UserError(f"{path} is neither a folder, a zip file nor an uncompressed tar; "
                        "re-download it (`mulsupcon-ld download NAME`)")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"] = None
        return state

    def names(self) -> list[str]:
        """All file members (relative paths with ``/``)."""
        if self.kind == "dir":
            return sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
        if self.kind == "zip":
            with zipfile.ZipFile(self.path) as zf:
                return [n for n in zf.namelist() if not n.endswith("/")]
        return list(self.tar_index)

    def exists(self, name: str) -> bool:
        if self.kind == "dir":
            return (self.path / name).is_file()
        if self.kind == "tar":
            return name in self.tar_index
        try:
            self._zip().getinfo(name)
            return True
        except KeyError:
            return False

    def _zip(self) -> zipfile.ZipFile:
        if self._handle is None:
            self._handle = zipfile.ZipFile(self.path)
        return self._handle  # type: ignore[return-value]

    def read(self, name: str) -> bytes:
        if self.kind == "dir":
            return (self.path / name).read_bytes()
        if self.kind == "zip":
            return self._zip().read(name)
        offset, size = self.tar_index[name]
        if self._handle is None:
            self._handle = open(self.path, "rb")
        fh = self._handle
        fh.seek(offset)  # type: ignore[attr-defined]
        return fh.read(size)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # type: ignore[attr-defined]
            self._handle = None


# ------------------------------------------------------------------------------------------
# resizing
# ------------------------------------------------------------------------------------------
def resize_jpeg(data: bytes, short_side: int = DEFAULT_SHORT_SIDE, quality: int = DEFAULT_QUALITY) -> bytes:
    """Decode any PIL-readable image, resize its shorter side to ``short_side`` (no upscaling), re-encode as JPEG.

    JPEG decoding uses PIL's ``draft`` (DCT-domain downscaling) whenever the image is at least
    twice the target size, which is exact up to the final bicubic resize and several times faster.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        scale = short_side / min(w, h)
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if im.format == "JPEG":
                im.draft("RGB", size)
            rgb = im.convert("RGB")
            if rgb.size != size:
                rgb = rgb.resize(size, Image.Resampling.BICUBIC)
        else:
            rgb = im.convert("RGB")
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=quality)
        return out.getvalue()


def encode_array(img: np.ndarray, quality: int = DEFAULT_QUALITY) -> bytes:
    """uint8 ``[H, W, 3]`` → JPEG bytes (for synthetic images; no resizing)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8), "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


_WORKER_SOURCES: Sequence[Source] = ()
_WORKER_ARGS: tuple[int, int] = (DEFAULT_SHORT_SIDE, DEFAULT_QUALITY)


def _init_worker(sources: Sequence[Source], short_side: int, quality: int) -> None:
    global _WORKER_SOURCES, _WORKER_ARGS
    # fresh copies without open handles: a forked worker must not share the parent's file offset
    _WORKER_SOURCES = [Source(s.kind, s.path, s.tar_index) for s in sources]
    _WORKER_ARGS = (short_side, quality)


def _work(item: tuple[int, str]) -> tuple[bytes | None, str]:
    si, name = item
    try:
        raw = _WORKER_SOURCES[si].read(name)
        return resize_jpeg(raw, *_WORKER_ARGS), ""
    except Exception as exc:  # a corrupt or missing image is reported, not fatal
        return None, f"{type(exc).__name__}: {exc}"


def default_workers() -> int:
    """Processes for resizing: ``$MULSUPCON_PREPARE_WORKERS`` or the usable CPUs (at most 32)."""
    env = os.environ.get("MULSUPCON_PREPARE_WORKERS")
    if env:
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(32, n))


def _mp_context():
    # fork is cheapest on Linux (the parent holds no threads that matter here); spawn elsewhere
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def _resized(sources: Sequence[Source], items: Sequence[tuple[int, str]], short_side: int, quality: int,
             workers: int) -> Iterator[tuple[bytes | None, str]]:
    if workers <= 1 or len(items) < 64:
        _init_worker(sources, short_side, quality)
        try:
            for it in items:
                yield _work(it)
        finally:
            for s in _WORKER_SOURCES:
                s.close()
        return
    chunk = max(8, min(256, len(items) // (workers * 8) or 1))
    with _mp_context().Pool(workers, initializer=_init_worker, initargs=(list(sources), short_side, quality)) as pool:
        yield from pool.imap(_work, items, chunksize=chunk)


@dataclass
class StoreResult:
    n_images: int
    ok: np.ndarray                      # bool [len(items)]: False for images that failed to decode
    failures: list[tuple[str, str]]     # (member, error) for the failed ones
    bytes_total: int


def write_store(out_dir: str | os.PathLike, sources: Sequence[Source], items: Sequence[tuple[int, str]], *,
                short_side: int = DEFAULT_SHORT_SIDE, quality: int = DEFAULT_QUALITY,
                workers: int | None = None, progress: bool = True, label: str = "") -> StoreResult:
    """Resize ``items`` (``(source index, member name)``) into ``out_dir/images.bin`` + offsets.

    Images that fail to decode are left out of the store (their ``ok`` entry is False) and
    listed in ``failures``; row ``i`` of the store is the ``i``-th *successful* item.
    Both files are written atomically.
    """
    out_dir = Path(out_dir)
    workers = default_workers() if workers is None else max(1, int(workers))
    ok = np.zeros(len(items), dtype=bool)
    offsets = [0]
    failures: list[tuple[str, str]] = []
    show = progress and len(items) >= 2000
    step = max(1, len(items) // 20)
    with atomic_path(out_dir / STORE_BLOB) as tmp_blob:
        with open(tmp_blob, "wb") as fh:
            for i, (data, err) in enumerate(_resized(sources, items, short_side, quality, workers)):
                if data is None:
                    failures.append((items[i][1], err))
                else:
                    fh.write(data)
                    offsets.append(offsets[-1] + len(data))
                    ok[i] = True
                if show and (i + 1) % step == 0:
                    print(f"  {label} resized {i + 1}/{len(items)} images", flush=True)
        with atomic_path(out_dir / STORE_OFFSETS) as tmp_off:
            with open(tmp_off, "wb") as fo:
                np.save(fo, np.asarray(offsets, dtype=np.int64))
    return StoreResult(int(ok.sum()), ok, failures, offsets[-1])


def write_store_arrays(out_dir: str | os.PathLike, images: Iterable[np.ndarray], quality: int = DEFAULT_QUALITY) -> int:
    """Encode uint8 ``[H, W, 3]`` arrays (e.g. synthetic images) into the store; returns the count."""
    out_dir = Path(out_dir)
    offsets = [0]
    with atomic_path(out_dir / STORE_BLOB) as tmp_blob:
        with open(tmp_blob, "wb") as fh:
            for img in images:
                data = encode_array(img, quality)
                fh.write(data)
                offsets.append(offsets[-1] + len(data))
        with atomic_path(out_dir / STORE_OFFSETS) as tmp_off:
            with open(tmp_off, "wb") as fo:
                np.save(fo, np.asarray(offsets, dtype=np.int64))
    return len(offsets) - 1


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------
class ImageStore:
    """Random access to the JPEG bytes of a prepared store; safe to pickle into DataLoader workers."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        blob, off = self.root / STORE_BLOB, self.root / STORE_OFFSETS
        if not blob.is_file() or not off.is_file():
            raise UserError(f"{self.root} has no image store ({STORE_BLOB}, {STORE_OFFSETS}); "
                            f"re-run `mulsupcon-ld prepare {self.root.name.removesuffix('-synthetic')}`")
        self.offsets = np.load(off)
        self._blob: np.memmap | None = None
        size = blob.stat().st_size
        if int(self.offsets[-1]) != size:
            raise UserError(f"{blob} has {size} bytes but its offsets say {int(self.offsets[-1])}; "
                            "the store is damaged: delete the folder and prepare again")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_blob"] = None  # each process maps the file itself
        return state

    def get(self, i: int) -> bytes:
        if self._blob is None:
            self._blob = np.memmap(self.root / STORE_BLOB, dtype=np.uint8, mode="r")
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self._blob[a:b].tobytes()

    def image(self, i: int, draft: tuple[int, int] | None = None):
        """Image ``i`` as an RGB PIL image (``draft``: decode at a reduced scale ≥ this size)."""
        from PIL import Image

        im = Image.open(io.BytesIO(self.get(i)))
        if draft is not None:
            im.draft("RGB", draft)
        return im.convert("RGB")
