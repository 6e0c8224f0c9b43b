"""Shared fixtures: the pre-staged public data, an isolated download cache, a local HTTP server.

The HTTP server is deliberately small but real (sockets, threads): it serves a directory,
honours ``Range`` (and ``If-Range``), can answer any status for a path, and can drop the
connection part-way through a body to simulate an interrupted transfer. Every request is
logged with its headers so tests can assert what the client sent.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest
from prereq import missing

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (pre-staged public files, one folder per dataset); skips if absent."""
    path = (REPO_ROOT.parent / "shared" / "data").resolve()
    if not path.is_dir():
        missing(f"pre-staged public data not found at {path} (see README: ../shared/data)")
    return path


@pytest.fixture(autouse=True)
def _isolated_download_cache(tmp_path_factory, monkeypatch) -> Path:
    """Never let a test read or write the user's real download cache (nor its calibration cache)."""
    cache = tmp_path_factory.mktemp("download-cache")
    monkeypatch.setenv("MULSUPCON_CACHE_DIR", str(cache))
    monkeypatch.setenv("MULSUPCON_CALIBRATION_CACHE", str(cache / "calibrations.json"))
    return cache


@pytest.fixture
def download_cache(_isolated_download_cache) -> Path:
    """The per-test download cache directory ($MULSUPCON_CACHE_DIR)."""
    return _isolated_download_cache


# ---------------------------------------------------------------------------------------------
# local HTTP server


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _ServerState:
    root: Path
    requests: list[LoggedRequest] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    interrupts: dict[str, list[int]] = field(default_factory=dict)  # path -> [after_bytes, times]
    range_support: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        st: _ServerState = self.server.state  # type: ignore[attr-defined]
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        with st.lock:
            st.requests.append(LoggedRequest(self.command, rel, dict(self.headers.items())))
            forced = st.status.get(rel)
        if forced is not None:
            self.send_response(forced)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        file = (st.root / rel).resolve()
        if st.root.resolve() not in file.parents or not file.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = file.read_bytes()
        size = len(data)
        etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range") if st.range_support else None
        if_range = self.headers.get("If-Range")
        if rng and (if_range is None or if_range == etag):
            spec = rng.strip().removeprefix("bytes=")
            a, _, b = spec.partition("-")
            start = int(a) if a else 0
            end = min(int(b), size - 1) if b else size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        chunk = data[start:end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("ETag", etag)
        if st.range_support:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with st.lock:
            cut = st.interrupts.get(rel)
            drop_after = None
            if cut and cut[1] > 0:
                drop_after, cut[1] = cut[0], cut[1] - 1
        if drop_after is not None:
            self.wfile.write(chunk[:drop_after])
            self.wfile.flush()
            self.close_connection = True
            try:  # a real drop: no more bytes, the socket goes away mid-body
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(chunk)


class LocalHTTPServer:
    """A real HTTP server on 127.0.0.1 serving ``root``; see the module docstring."""

    def __init__(self, root: Path):
        self.state = _ServerState(Path(root))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.state = self.state  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    @property
    def root(self) -> Path:
        return self.state.root

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{urllib.parse.quote(path)}"

    @property
    def requests(self) -> list[LoggedRequest]:
        return self.state.requests

    def gets(self, path: str) -> list[LoggedRequest]:
        """GET requests for ``path``, in order."""
        return [r for r in self.state.requests if r.method == "GET" and r.path == path]

    def put(self, path: str, data: bytes) -> Path:
        """Create a file to serve (parents created)."""
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        return file

    def interrupt(self, path: str, after_bytes: int, times: int = 1) -> None:
        """Drop the connection after ``after_bytes`` of the body, for the next ``times`` GETs."""
        self.state.interrupts[path] = [after_bytes, times]

    def set_status(self, path: str, code: int | None) -> None:
        """Answer ``code`` (e.g. 404, 500) for ``path``; None restores normal serving."""
        if code is None:
            self.state.status.pop(path, None)
        else:
            self.state.status[path] = code

    def set_range_support(self, enabled: bool) -> None:
        """With False, ``Range`` is ignored and every GET gets the whole file (200)."""
        self.state.range_support = enabled

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def make_http_server(monkeypatch) -> Iterator[Callable[[Path], LocalHTTPServer]]:
    """Factory: ``server = make_http_server(directory)``; all servers stop at teardown."""
    # a proxy configured in the environment must not intercept 127.0.0.1
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    servers: list[LocalHTTPServer] = []

    def make(root: Path) -> LocalHTTPServer:
        Path(root).mkdir(parents=True, exist_ok=True)
        servers.append(LocalHTTPServer(Path(root)))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def http_server(make_http_server, tmp_path) -> LocalHTTPServer:
    """A local HTTP server serving a fresh empty directory (``server.root``)."""
    return make_http_server(tmp_path / "www")


@pytest.fixture
def refused_url() -> str:
    """An http:// address on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/missing.bin"
