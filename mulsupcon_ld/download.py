"""Verified, resumable downloads, looking at a pre-staged directory first.

Order of search for each dataset file ``F`` of dataset ``D``:

1. the pre-staged directory (``--raw-dir`` or ``$MULSUPCON_RAW_DIR``): ``RAW/D/F``, used in place;
2. the download cache (``$MULSUPCON_CACHE_DIR`` or ``~/.cache/mulsupcon_ld/raw``): ``CACHE/D/F``;
3. the network, every address of the file in turn, into the cache.

``D`` is the dataset's raw folder (``DatasetSpec.raw_folder_name``): its name, or for a variant
such as ``nuswide21`` the dataset it derives from. For image datasets, an official layout already
extracted in ``RAW/D/`` or ``CACHE/D/`` also counts as downloaded (:func:`is_downloaded`; see
:func:`mulsupcon_ld.data.image_prepare.extracted_source`): it has no checksum, so ``prepare`` checks its
structure and records expected and found counts instead.

A file is only ever given its final name after its checksum matched (where one is published);
transfers land in ``.F.partial`` next to it and are resumed with an HTTP Range request, so an
interrupted download of a 13 GB archive costs only the missing bytes. Only the standard library's
``urllib`` is used, so proxies configured through the usual environment variables work.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from . import __version__
from .data.readers import has_image_layout
from .errors import UserError
from .paths import download_cache_dir, raw_dir as resolve_raw_dir
from .registry import DatasetSpec, RawFile, Source, get_dataset

USER_AGENT = f"mulsupcon-ld/{__version__} (+python-urllib; dataset download)"
CHUNK = 1 << 20
DEFAULT_RETRIES = 4  # attempts per address
DEFAULT_BACKOFF = 1.0  # seconds; attempt k waits backoff * 2**(k-1)
DEFAULT_TIMEOUT = 60.0  # seconds without data before an attempt is abandoned

# ---------------------------------------------------------------------------------------------
# results


@dataclass
class ResolvedFile:
    """A raw file on disk that matched its published checksum (or has none)."""

    spec: RawFile
    path: Path
    sha256: str
    origin: str  # "pre-staged" | "cache" | "downloaded"
    verified: bool  # True when checked against a published checksum


@dataclass
class ResolvedSource:
    """All files of one source of a dataset, ready to be prepared."""

    dataset: DatasetSpec
    source: Source
    files: dict[str, ResolvedFile] = field(default_factory=dict)
    # set (and ``files`` left empty) when the source is an extracted official layout of an image
    # dataset rather than its archives; see mulsupcon_ld.data.image_prepare.extracted_source
    extracted_folder: Path | None = None

    def path(self, name: str) -> Path:
        return self.files[name].path

    def source_files(self) -> dict[str, str]:
        """file name -> sha256, as recorded in ``meta.json``."""
        return {n: f.sha256 for n, f in self.files.items()}


# ---------------------------------------------------------------------------------------------
# checksums


def file_digests(path: str | os.PathLike, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of ``path`` for each algorithm, reading the file once."""
    hashers = {a: hashlib.new(a) for a in dict.fromkeys(algorithms)}
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHUNK)
            if not block:
                break
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _check(path: Path, spec: RawFile) -> tuple[bool, str, str | None]:
    """(matches, sha256, actual digest of the published algorithm)."""
    want = spec.checksum
    algos = ["sha256"] + ([want[0]] if want and want[0] != "sha256" else [])
    got = file_digests(path, algos)
    if want is None:
        return True, got["sha256"], None
    return got[want[0]] == want[1], got["sha256"], got[want[0]]


def _sniff_bad_content(path: Path, spec: RawFile) -> str | None:
    """Catch the two classic wrong downloads of unpinned files: LFS pointers and HTML pages."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return "got a Git LFS pointer instead of the file"
    low = head.lstrip().lower()
    if not spec.name.lower().endswith((".html", ".htm")) and (
            low.startswith(b"<!doctype html") or low.startswith(b"<html")):
        return "got an HTML page instead of the file"
    return None


# ---------------------------------------------------------------------------------------------
# one file from a list of addresses


class _Transient(Exception):
    """Worth retrying the same address (dropped connection, timeout, 5xx, refused)."""


class _Permanent(Exception):
    """Not worth retrying this address (404, 403, bad content)."""


class DownloadFailed(Exception):
    """Every address of one file failed; ``errors`` says why, one entry per address."""

    def __init__(self, errors: list[str], mismatch: bool = False):
        super().__init__("; ".join(errors))
        self.errors = errors
        self.mismatch = mismatch


def partial_path(dest: Path) -> Path:
    """Where an unfinished transfer of ``dest`` lives (hidden, ``.partial``, never mistaken)."""
    return dest.parent / f".{dest.name}.partial"


def _validator_path(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.partial.json"


def _progress(total: int | None, initial: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, leave=False, disable=quiet or not sys.stderr.isatty(), file=sys.stderr)


def _transfer(url: str, dest: Path, timeout: float, quiet: bool) -> None:
    """One attempt: fetch ``url`` into ``dest``'s partial file, resuming what is there."""
    part, vfile = partial_path(dest), _validator_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    validator = None
    if offset:
        headers["Range"] = f"bytes={offset}-"
        try:
            saved = json.loads(vfile.read_text())
            validator = saved.get("etag") or saved.get("last_modified")
        except (OSError, ValueError):
            validator = None
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # the partial file is already complete; the caller verifies it
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise _Permanent(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise _Transient("connection refused") from None
        if isinstance(reason, socket.gaierror):  # no DNS: offline, retrying will not help
            raise _Permanent(f"cannot resolve the host, is this machine offline? ({reason})"
                             ) from None
        raise _Transient(f"{reason}") from None
    except (socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None

    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206 and offset:
            crange = resp.headers.get("Content-Range", "")
            start = crange.split(" ", 1)[-1].split("-", 1)[0]
            if not start.isdigit() or int(start) != offset:
                raise _Transient(f"server answered Range {offset}- with {crange!r}; restarting")
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # no resume (200): start again from byte 0
            tag = {"url": url, "etag": resp.headers.get("ETag"),
                   "last_modified": resp.headers.get("Last-Modified")}
            try:
                vfile.write_text(json.dumps(tag))
            except OSError:
                pass
        total = offset + length if length is not None else None
        done = offset
        bar = _progress(total, offset, dest.name, quiet)
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (socket.timeout, TimeoutError, ConnectionError,
                            http.client.HTTPException, OSError) as exc:
                        raise _Transient(f"transfer interrupted after {done} bytes "
                                         f"({type(exc).__name__})") from None
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
        if total is not None and done < total:
            raise _Transient(f"connection dropped after {done} of {total} bytes")


def fetch(urls: Sequence[str], dest: str | os.PathLike, spec: RawFile | None = None, *,
          retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
          timeout: float = DEFAULT_TIMEOUT, quiet: bool = False,
          sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download ``dest`` from the first address that works; verify; then rename into place.

    Each address gets ``retries`` attempts with exponential backoff; every attempt resumes the
    partial file. A checksum mismatch deletes the partial file and moves on to the next address.
    Raises :class:`DownloadFailed` (with one reason per address) when no address delivered.
    """
    return _fetch(urls, dest, spec, retries=retries, backoff=backoff, timeout=timeout,
                  quiet=quiet, sleep=sleep)[0]


def _fetch(urls: Sequence[str], dest: str | os.PathLike, spec: RawFile | None, *, retries: int,
           backoff: float, timeout: float, quiet: bool,
           sleep: Callable[[float], None] = time.sleep) -> tuple[Path, str]:
    """:func:`fetch`, also returning the sha256 computed while verifying."""
    dest = Path(dest)
    spec = spec or RawFile(dest.name, tuple(urls))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    errors: list[str] = []
    mismatch = False

    def attempts(url: str) -> str | None:
        """Up to ``retries`` transfers of ``url``; the reason it failed, or None."""
        last = None
        for attempt in range(1, max(1, retries) + 1):
            try:
                if not quiet:
                    verb = "resuming" if part.exists() and part.stat().st_size else "downloading"
                    print(f"{verb} {dest.name} from {url}", file=sys.stderr)
                _transfer(url, dest, timeout, quiet)
                return None
            except _Permanent as exc:
                return f"{url}: {exc}"
            except _Transient as exc:
                last = f"{url}: {exc} (attempt {attempt}/{retries})"
                if attempt < retries:
                    sleep(backoff * 2 ** (attempt - 1))
        return last

    for url in urls:
        resumed = part.exists() and part.stat().st_size > 0
        failure = attempts(url)
        if failure is None:
            ok, sha256, actual = _check(part, spec)
            if not ok and resumed:  # a stale partial file from elsewhere: start once afresh
                part.unlink(missing_ok=True)
                failure = attempts(url)
                if failure is None:
                    ok, sha256, actual = _check(part, spec)
        if failure is not None:
            errors.append(failure)
            continue
        bad = None if not ok else _sniff_bad_content(part, spec)
        if not ok or bad:
            part.unlink(missing_ok=True)
            _validator_path(dest).unlink(missing_ok=True)
            if not ok:
                algo, want = spec.checksum  # type: ignore[misc]
                errors.append(f"{url}: {algo} mismatch (expected {want}, got {actual})")
                mismatch = True
            else:
                errors.append(f"{url}: {bad}")
            continue
        os.replace(part, dest)
        _validator_path(dest).unlink(missing_ok=True)
        return dest, sha256
    if not urls:
        errors.append("no public address is known for this file")
    raise DownloadFailed(errors, mismatch)


# ---------------------------------------------------------------------------------------------
# a whole dataset


def _roots(spec: DatasetSpec, raw: Path | None, cache: Path) -> list[tuple[str, Path]]:
    folder = spec.raw_folder_name
    roots = []
    if raw is not None:
        roots.append(("pre-staged", raw / folder))
    roots.append(("cache", cache / folder))
    return roots


def _where_to_put(spec: DatasetSpec, raw: Path | None, cache: Path) -> str:
    folder = spec.raw_folder_name
    if raw is not None:
        return f"{raw / folder}/ (your --raw-dir) or {cache / folder}/"
    return (f"{cache / folder}/ (or DIR/{folder}/ with --raw-dir DIR or "
            f"$MULSUPCON_RAW_DIR=DIR)")


def _local(source: Source, roots: list[tuple[str, Path]]) -> dict[str, tuple[str, Path]]:
    found = {}
    for f in source.files:
        for origin, root in roots:
            if (root / f.name).is_file():
                found[f.name] = (origin, root / f.name)
                break
    return found


def _verify_local(f: RawFile, origin: str, path: Path, spec: DatasetSpec,
                  raw: Path | None, cache: Path) -> ResolvedFile | None:
    ok, sha256, actual = _check(path, f)
    if ok:
        return ResolvedFile(f, path, sha256, origin, f.checksum is not None)
    algo, want = f.checksum  # type: ignore[misc]
    if origin == "cache":  # our own copy: drop it and fetch again
        path.unlink(missing_ok=True)
        return None
    raise UserError(f"{path} does not match the published {algo} of {f.name} for {spec.name} "
                    f"(expected {want}, got {actual}); replace it with a good copy "
                    f"({', '.join(f.urls) or 'see the dataset instructions'}) and re-run")


def is_downloaded(name_or_spec: str | DatasetSpec, raw_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None) -> bool:
    """Cheap check (existence only, no hashing) that some source's files are all present, or,
    for an image dataset, that its official layout is extracted in the raw or cache folder."""
    spec = get_dataset(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    raw = resolve_raw_dir(raw_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else download_cache_dir()
    roots = _roots(spec, raw, cache)
    if any(len(_local(s, roots)) == len(s.files) for s in spec.sources):
        return True
    return spec.kind == "image" and _has_extracted_layout(spec, [r for _, r in roots])


def folder_origin(folder: str | os.PathLike, raw_dir: str | os.PathLike | None = None) -> str:
    """``"pre-staged"`` when ``folder`` lies in the pre-staged directory, else ``"cache"``."""
    raw = resolve_raw_dir(raw_dir)
    if raw is not None and Path(folder).resolve().is_relative_to(raw.resolve()):
        return "pre-staged"
    return "cache"


def _has_extracted_layout(spec: DatasetSpec, folders: list[Path]) -> bool:
    return any(has_image_layout(spec, f) for f in folders)


def download_spec(spec: DatasetSpec, raw_dir: str | os.PathLike | None = None, *,
                  cache_dir: str | os.PathLike | None = None, source: str | None = None,
                  retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                  timeout: float = DEFAULT_TIMEOUT, quiet: bool = False) -> ResolvedSource:
    """Find or fetch every file of one source of ``spec``; see :func:`download_dataset`."""
    raw = resolve_raw_dir(raw_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else download_cache_dir()
    if raw is not None and not raw.is_dir() and not quiet:
        print(f"warning: pre-staged directory {raw} does not exist; looking elsewhere",
              file=sys.stderr)
    sources = spec.sources
    if source is not None:
        sources = tuple(s for s in spec.sources if s.name == source)
        if not sources:
            raise UserError(f"dataset {spec.name} has no source {source!r}; sources: "
                            f"{', '.join(s.name for s in spec.sources)}")
    roots = _roots(spec, raw, cache)

    # 1. a source whose files are all on disk already (pre-staged first)
    for src in sources:
        found = _local(src, roots)
        if len(found) == len(src.files):
            resolved = ResolvedSource(spec, src)
            for f in src.files:
                r = _verify_local(f, *found[f.name], spec, raw, cache)
                if r is None:
                    break
                resolved.files[f.name] = r
            else:
                return resolved

    # 2. the network, source by source, into the cache
    failures: list[str] = []
    for src in sources:
        if src.manual_download:
            continue
        resolved = ResolvedSource(spec, src)
        found = _local(src, roots)
        try:
            for f in src.files:
                if f.name in found:
                    r = _verify_local(f, *found[f.name], spec, raw, cache)
                    if r is not None:
                        resolved.files[f.name] = r
                        continue
                dest = cache / spec.raw_folder_name / f.name
                _, sha256 = _fetch(f.urls, dest, f, retries=retries, backoff=backoff,
                                   timeout=timeout, quiet=quiet)
                resolved.files[f.name] = ResolvedFile(f, dest, sha256, "downloaded",
                                                      f.checksum is not None)
        except DownloadFailed as exc:
            failures.append(f"{f.name}: " + "; ".join(exc.errors))
            if exc.mismatch:
                raise UserError(
                    f"checksum mismatch for {f.name} of {spec.name}, no good copy was kept "
                    f"({'; '.join(exc.errors)}); fetch it by hand and put it in "
                    f"{_where_to_put(spec, raw, cache)}") from None
            continue
        return resolved

    # 3. nothing worked: say what was tried and where the files go by hand
    where = _where_to_put(spec, raw, cache)
    manual = [s for s in sources if s.manual_download]
    if manual and not failures:
        src = manual[0]
        missing = [f.name for f in src.files if f.name not in _local(src, roots)]
        raise UserError(f"{spec.name} needs a manual download. {src.instructions} Folder: {where}; "
                        f"missing: {', '.join(missing)}")
    pref = sources[0]
    raise UserError(
        f"could not download {spec.name}: {' | '.join(failures)}. If this machine is offline, "
        f"put {', '.join(f.name for f in pref.files)} in {where} and re-run")


def download_dataset(name: str, raw_dir: str | os.PathLike | None = None, *,
                     cache_dir: str | os.PathLike | None = None, source: str | None = None,
                     retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                     timeout: float = DEFAULT_TIMEOUT, quiet: bool = False) -> ResolvedSource:
    """Make the raw files of dataset ``name`` available and verified.

    Sources are tried in registry order, first among files already on disk (pre-staged, then
    cache), then over the network. Raises :class:`UserError` naming every address tried and the
    folder where the files can be put by hand.
    """
    return download_spec(get_dataset(name), raw_dir, cache_dir=cache_dir, source=source,
                         retries=retries, backoff=backoff, timeout=timeout, quiet=quiet)
