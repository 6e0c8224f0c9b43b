"""Downloads against a real local HTTP server: success, resume, mismatch, 404, refused, pre-staged."""

from __future__ import annotations

import hashlib
import os

import pytest

from mulsupcon_ld.download import (DownloadFailed, download_dataset, download_spec, fetch,
                                   file_digests, is_downloaded, partial_path)
from mulsupcon_ld.errors import UserError
from mulsupcon_ld.registry import DatasetSpec, RawFile, Source, Table1

FAST = {"retries": 3, "backoff": 0.0, "timeout": 10.0, "quiet": True}


def _payload(n: int = 300_000) -> bytes:
    return os.urandom(n)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _spec(files: list[RawFile], name: str = "toy", manual: bool = False) -> DatasetSpec:
    return DatasetSpec(name, "Toy", "vector", 2, Table1(1, 1, 1.0, 1.0),
                       (Source("toy-src", "mulan-arff", tuple(files), manual_download=manual,
                               instructions="get it from the toy shop"),), n_features=3)


def test_fetch_downloads_and_verifies(http_server, tmp_path):
    data = _payload()
    http_server.put("a.bin", data)
    dest = tmp_path / "out" / "a.bin"
    spec = RawFile("a.bin", (http_server.url("a.bin"),), sha256=_sha(data))
    assert fetch(spec.urls, dest, spec, **FAST) == dest
    assert dest.read_bytes() == data
    assert not partial_path(dest).exists()
    assert "Range" not in http_server.gets("a.bin")[0].headers


def test_interrupted_transfer_is_resumed_with_range(http_server, tmp_path):
    data = _payload()
    cut = len(data) // 3
    http_server.put("big.bin", data)
    http_server.interrupt("big.bin", after_bytes=cut, times=1)
    dest = tmp_path / "big.bin"
    spec = RawFile("big.bin", (http_server.url("big.bin"),), sha256=_sha(data))
    fetch(spec.urls, dest, spec, **FAST)
    gets = http_server.gets("big.bin")
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    assert gets[1].headers.get("Range") == f"bytes={cut}-"
    assert dest.read_bytes() == data


def test_partial_file_survives_a_failed_run_and_is_resumed_later(http_server, tmp_path):
    data = _payload()
    cut = 100_000
    http_server.put("big.bin", data)
    http_server.interrupt("big.bin", after_bytes=cut, times=1)
    dest = tmp_path / "big.bin"
    spec = RawFile("big.bin", (http_server.url("big.bin"),), sha256=_sha(data))
    with pytest.raises(DownloadFailed) as exc:
        fetch(spec.urls, dest, spec, **{**FAST, "retries": 1})
    assert "dropped" in str(exc.value) or "interrupted" in str(exc.value)
    assert not dest.exists()
    assert partial_path(dest).stat().st_size == cut
    fetch(spec.urls, dest, spec, **FAST)  # a later run picks up where the first stopped
    assert http_server.gets("big.bin")[-1].headers.get("Range") == f"bytes={cut}-"
    assert dest.read_bytes() == data


def test_server_without_range_support_restarts_cleanly(http_server, tmp_path):
    data = _payload()
    http_server.put("big.bin", data)
    http_server.set_range_support(False)
    http_server.interrupt("big.bin", after_bytes=50_000, times=1)
    dest = tmp_path / "big.bin"
    spec = RawFile("big.bin", (http_server.url("big.bin"),), sha256=_sha(data))
    fetch(spec.urls, dest, spec, **FAST)
    assert dest.read_bytes() == data  # the 200 answer replaced, not appended to, the partial


def test_complete_or_stale_partial_files_are_handled(http_server, tmp_path):
    data = _payload(50_000)
    http_server.put("a.bin", data)
    spec = RawFile("a.bin", (http_server.url("a.bin"),), sha256=_sha(data))
    dest = tmp_path / "a.bin"
    # complete partial (killed before the rename): the server answers 416, the bytes verify
    partial_path(dest).write_bytes(data)
    fetch(spec.urls, dest, spec, **FAST)
    assert dest.read_bytes() == data
    assert http_server.gets("a.bin")[-1].headers.get("Range") == f"bytes={len(data)}-"
    # a stale partial (other content, same length prefix): resumed, fails the check, restarted
    dest.unlink()
    partial_path(dest).write_bytes(b"x" * 1000)
    fetch(spec.urls, dest, spec, **FAST)
    assert dest.read_bytes() == data
    assert "Range" not in http_server.gets("a.bin")[-1].headers


def test_retries_back_off_exponentially(http_server, tmp_path):
    http_server.put("x.bin", b"abc")
    http_server.set_status("x.bin", 503)
    waits = []
    with pytest.raises(DownloadFailed) as exc:
        fetch([http_server.url("x.bin")], tmp_path / "x.bin", retries=4, backoff=0.5,
              quiet=True, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0]
    assert "503" in str(exc.value) and len(http_server.gets("x.bin")) == 4


def test_next_mirror_is_used_after_404(http_server, tmp_path):
    data = b"mirror content\n"
    http_server.put("mirror/a.txt", data)
    urls = (http_server.url("gone/a.txt"), http_server.url("mirror/a.txt"))
    dest = tmp_path / "a.txt"
    fetch(urls, dest, RawFile("a.txt", urls, sha256=_sha(data)), **FAST)
    assert dest.read_bytes() == data
    assert len(http_server.gets("gone/a.txt")) == 1  # 404 is not retried


def test_checksum_mismatch_is_an_error_and_leaves_no_file(http_server, tmp_path):
    http_server.put("toy/a.arff", b"@relation wrong\n")
    f = RawFile("a.arff", (http_server.url("toy/a.arff"),), sha256="0" * 64, role="train")
    with pytest.raises(UserError) as exc:
        download_spec(_spec([f]), cache_dir=tmp_path / "cache", **FAST)
    msg = str(exc.value)
    assert "mismatch" in msg and "0" * 64 in msg and "a.arff" in msg
    dest = tmp_path / "cache" / "toy" / "a.arff"
    assert not dest.exists() and not partial_path(dest).exists()


def test_404_names_the_address_and_where_to_put_the_file(http_server, tmp_path):
    f = RawFile("a.arff", (http_server.url("nowhere/a.arff"),), role="train")
    with pytest.raises(UserError) as exc:
        download_spec(_spec([f]), cache_dir=tmp_path / "cache", **FAST)
    msg = str(exc.value)
    assert http_server.url("nowhere/a.arff") in msg and "404" in msg
    assert str(tmp_path / "cache" / "toy") in msg and "a.arff" in msg


def test_connection_refused_names_the_address_and_where_to_put_the_file(refused_url, tmp_path):
    f = RawFile("missing.bin", (refused_url,), role="train")
    raw = tmp_path / "raw"
    with pytest.raises(UserError) as exc:
        download_spec(_spec([f]), raw, cache_dir=tmp_path / "cache", **FAST)
    msg = str(exc.value)
    assert refused_url in msg and "refused" in msg
    assert str(raw / "toy") in msg and "missing.bin" in msg
    assert "\n" not in msg  # printed as one `error:` line


def test_prestaged_files_are_verified_and_used_in_place(http_server, tmp_path):
    data = b"@relation toy\n"
    raw = tmp_path / "raw"
    (raw / "toy").mkdir(parents=True)
    (raw / "toy" / "a.arff").write_bytes(data)
    f = RawFile("a.arff", (http_server.url("a.arff"),), sha256=_sha(data), role="train")
    resolved = download_spec(_spec([f]), raw, cache_dir=tmp_path / "cache", **FAST)
    rf = resolved.files["a.arff"]
    assert rf.path == raw / "toy" / "a.arff" and rf.origin == "pre-staged" and rf.verified
    assert rf.sha256 == _sha(data)
    assert http_server.requests == []  # nothing fetched
    assert not (tmp_path / "cache" / "toy").exists()  # nothing copied


def test_raw_dir_from_environment(monkeypatch, tmp_path):
    raw = tmp_path / "raw"
    (raw / "toy").mkdir(parents=True)
    (raw / "toy" / "a.arff").write_bytes(b"x")
    monkeypatch.setenv("MULSUPCON_RAW_DIR", str(raw))
    spec = _spec([RawFile("a.arff", ("http://127.0.0.1:9/a.arff",), role="train")])
    assert download_spec(spec, cache_dir=tmp_path / "cache", **FAST).files["a.arff"].origin == \
        "pre-staged"


def test_bad_prestaged_file_is_reported_not_deleted(tmp_path):
    raw = tmp_path / "raw"
    (raw / "toy").mkdir(parents=True)
    bad = raw / "toy" / "a.arff"
    bad.write_bytes(b"tampered")
    f = RawFile("a.arff", ("http://127.0.0.1:9/a.arff",), sha256="1" * 64, role="train")
    with pytest.raises(UserError) as exc:
        download_spec(_spec([f]), raw, cache_dir=tmp_path / "cache", **FAST)
    assert str(bad) in str(exc.value) and "1" * 64 in str(exc.value)
    assert bad.read_bytes() == b"tampered"


def test_corrupt_cached_copy_is_fetched_again(http_server, tmp_path):
    data = b"good bytes\n"
    http_server.put("a.arff", data)
    cache = tmp_path / "cache"
    (cache / "toy").mkdir(parents=True)
    (cache / "toy" / "a.arff").write_bytes(b"stale")
    f = RawFile("a.arff", (http_server.url("a.arff"),), sha256=_sha(data), role="train")
    resolved = download_spec(_spec([f]), cache_dir=cache, **FAST)
    assert resolved.files["a.arff"].origin == "downloaded"
    assert (cache / "toy" / "a.arff").read_bytes() == data


def test_unpinned_file_is_checked_for_lfs_pointers_and_html(http_server, tmp_path):
    http_server.put("a.arff", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n")
    http_server.put("b.arff", b"<!DOCTYPE html><html><body>Please wait</body></html>")
    for name, why in (("a.arff", "LFS"), ("b.arff", "HTML")):
        f = RawFile(name, (http_server.url(name),), role="train")
        with pytest.raises(UserError, match=why):
            download_spec(_spec([f]), cache_dir=tmp_path / "cache", **FAST)
        assert not (tmp_path / "cache" / "toy" / name).exists()


def test_unpinned_download_records_its_sha256(http_server, tmp_path):
    data = b"@relation toy\n@attribute a numeric\n@data\n1\n"
    http_server.put("a.arff", data)
    f = RawFile("a.arff", (http_server.url("a.arff"),), role="train")
    resolved = download_spec(_spec([f]), cache_dir=tmp_path / "cache", **FAST)
    assert resolved.source_files() == {"a.arff": _sha(data)}
    assert not resolved.files["a.arff"].verified


def test_manual_dataset_explains_what_to_do(tmp_path):
    with pytest.raises(UserError) as exc:
        download_dataset("mediamill", tmp_path / "raw", cache_dir=tmp_path / "cache", **FAST)
    msg = str(exc.value)
    assert "manual" in msg and "mediamill.rar" in msg and str(tmp_path / "raw" / "mediamill") in msg
    assert "mediamill-train.arff" in msg and "\n" not in msg


def test_md5_checksums_are_supported(http_server, tmp_path):
    data = b"tar bytes"
    http_server.put("v.tar", data)
    good = RawFile("v.tar", (http_server.url("v.tar"),), md5=hashlib.md5(data).hexdigest())
    fetch(good.urls, tmp_path / "v.tar", good, **FAST)
    bad = RawFile("w.tar", (http_server.url("v.tar"),), md5="f" * 32)
    with pytest.raises(DownloadFailed, match="md5 mismatch"):
        fetch(bad.urls, tmp_path / "w.tar", bad, **FAST)
    assert not (tmp_path / "w.tar").exists()


def test_real_yeast_from_prestaged_directory(shared_data, tmp_path):
    resolved = download_dataset("yeast", shared_data, cache_dir=tmp_path / "cache", quiet=True)
    assert resolved.source.name == "mulsupcon-hdf5"
    for f in resolved.files.values():
        assert f.origin == "pre-staged" and f.verified
        assert f.path.parent == shared_data / "yeast"
        assert file_digests(f.path)["sha256"] == f.spec.sha256
    arff = download_dataset("yeast", shared_data, cache_dir=tmp_path / "cache",
                            source="mulan-arff", quiet=True)
    assert set(arff.files) == {"yeast-train.arff", "yeast-test.arff", "yeast.xml"}
    assert is_downloaded("scene", shared_data, tmp_path / "cache")
    assert is_downloaded("delicious", shared_data, tmp_path / "cache")    # pre-staged since issue 16
    assert not is_downloaded("bookmarks", shared_data, tmp_path / "cache")
