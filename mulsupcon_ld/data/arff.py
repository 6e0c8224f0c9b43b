"""Reader for Mulan's multi-label format: a Weka ARFF file plus an XML file naming the labels.

Mulan does not require the labels to be the last attributes, nor the XML to list them in ARFF
order, so labels are found *by name*. The data section is parsed in bulk (pandas for dense rows,
``numpy.fromstring`` over blocks of sparse rows) because Bookmarks, Delicious and Mediamill have
tens of thousands of rows and a per-value Python loop would take minutes.
"""

from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

_SPARSE_BLOCK = 20000  # rows per vectorised block of a sparse data section


@dataclass(frozen=True)
class Attribute:
    """One ``@attribute`` line."""

    name: str
    type: str  # "numeric" | "nominal" | "string" | "date" | "relational"
    values: tuple[str, ...] | None = None  # nominal values, in declaration order

    @property
    def numeric_values(self) -> bool:
        """Nominal whose values are all numbers (Mulan's ``{0,1}``): parse as numbers."""
        if self.values is None:
            return self.type == "numeric"
        try:
            [float(v) for v in self.values]
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class ArffHeader:
    relation: str
    attributes: tuple[Attribute, ...]
    data_line: int  # 1-based number of the ``@data`` line


# ---------------------------------------------------------------------------------------------
# header


def _read_token(s: str, pos: int) -> tuple[str, int]:
    """Read one name starting at ``s[pos]``: quoted (with backslash escapes) or bare."""
    if pos < len(s) and s[pos] in "'\"":
        quote, out, i = s[pos], [], pos + 1
        while i < len(s):
            c = s[i]
            if c == "\\" and i + 1 < len(s):
                out.append(s[i + 1])
                i += 2
                continue
            if c == quote:
                return "".join(out), i + 1
            out.append(c)
            i += 1
        raise ValueError("unterminated quote")
    m = re.compile(r"[^\s{]+").match(s, pos)
    if not m:
        raise ValueError("missing name")
    return m.group(0), m.end()


def _split_nominal(body: str) -> tuple[str, ...]:
    values, pos = [], 0
    body = body.strip()
    while pos < len(body):
        while pos < len(body) and body[pos] in " \t,":
            pos += 1
        if pos >= len(body):
            break
        if body[pos] in "'\"":
            v, pos = _read_token(body, pos)
        else:
            end = body.find(",", pos)
            end = len(body) if end < 0 else end
            v, pos = body[pos:end].strip(), end
        values.append(v)
    return tuple(values)


def _parse_attribute(line: str) -> Attribute:
    rest = line[len("@attribute"):].lstrip()
    name, pos = _read_token(rest, 0)
    spec = rest[pos:].strip()
    if spec.startswith("{"):
        end = spec.rfind("}")
        if end < 0:
            raise ValueError("nominal type without closing '}'")
        return Attribute(name, "nominal", _split_nominal(spec[1:end]))
    kind = spec.split(None, 1)[0].lower() if spec else ""
    if kind in ("numeric", "real", "integer"):
        return Attribute(name, "numeric")
    if kind in ("string", "date", "relational"):
        return Attribute(name, kind)
    raise ValueError(f"unknown attribute type {spec!r}")


def _read_header(fh: io.TextIOBase, path: Path) -> ArffHeader:
    relation, attrs, lineno = "", [], 0
    while True:
        line = fh.readline()
        if not line:
            raise UserError(f"{path}: no @data line; is this an ARFF file?")
        lineno += 1
        s = line.strip()
        if not s or s.startswith("%"):
            continue
        low = s.lower()
        try:
            if low.startswith("@relation"):
                relation = _read_token(s[len("@relation"):].lstrip(), 0)[0] if len(s) > 9 else ""
            elif low.startswith("@attribute"):
                attrs.append(_parse_attribute(s))
            elif low.startswith("@data"):
                return ArffHeader(relation, tuple(attrs), lineno)
            else:
                raise ValueError("expected @relation, @attribute or @data")
        except ValueError as exc:
            raise UserError(f"{path}, line {lineno}: cannot parse {s[:80]!r}: {exc}") from None


def read_arff_header(path: str | os.PathLike) -> ArffHeader:
    """Relation name and attributes of an ARFF file (reads only the header)."""
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        return _read_header(fh, path)


# ---------------------------------------------------------------------------------------------
# XML


def read_mulan_xml(path: str | os.PathLike) -> list[str]:
    """Label names from a Mulan XML file, in document order (nested labels included)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise UserError(f"cannot read Mulan label file {path}: {exc}") from None
    names = [el.get("name") for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "label"]
    if not names or any(n is None for n in names):
        raise UserError(f"{path}: no <label name=…> elements found")
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate label names")
    return names  # type: ignore[return-value]


def _norm(name: str) -> str:
    """Loose form of a name: escapes removed, non-ASCII as '?', as Mulan's files disagree on both."""
    name = re.sub(r"\\(.)", r"\1", name)
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in name)


def _match_labels(attrs: tuple[Attribute, ...], labels: list[str], path: Path) -> list[int]:
    exact = {a.name: i for i, a in enumerate(attrs)}
    loose: dict[str, list[int]] = {}
    for i, a in enumerate(attrs):
        loose.setdefault(_norm(a.name), []).append(i)
    out, missing = [], []
    for name in labels:
        if name in exact:
            out.append(exact[name])
        elif len(loose.get(_norm(name), [])) == 1:
            out.append(loose[_norm(name)][0])
        else:
            missing.append(name)
    if missing:
        raise UserError(f"{path}: {len(missing)} label(s) named in the XML are not ARFF attributes "
                        f"(first: {missing[:5]}); are the ARFF and XML from the same dataset?")
    if len(set(out)) != len(out):
        raise UserError(f"{path}: two XML labels map to the same ARFF attribute")
    return out


# ---------------------------------------------------------------------------------------------
# data section


def _dense(fh: io.TextIOBase, attrs: tuple[Attribute, ...], path: Path) -> np.ndarray:
    import pandas as pd

    dtypes: dict[int, object] = {}
    for i, a in enumerate(attrs):
        if a.type in ("string", "date", "relational"):
            raise UserError(f"{path}: attribute {a.name!r} has type {a.type}, which multi-label "
                            f"features cannot use")
        dtypes[i] = np.float64 if a.numeric_values else str
    try:
        # no `names=`: pandas then refuses rows longer than the first instead of truncating them
        frame = pd.read_csv(fh, header=None, dtype=dtypes, comment="%", na_values=["?"],
                            keep_default_na=False, skipinitialspace=True, quotechar="'",
                            skip_blank_lines=True, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: malformed dense data section "
                        f"({' '.join(str(exc).split())})") from None
    if frame.shape[1] != len(attrs):
        raise UserError(f"{path}: rows have {frame.shape[1]} values, header declares "
                        f"{len(attrs)} attributes")
    out = np.empty(frame.shape, dtype=np.float64)
    for i, a in enumerate(attrs):
        col = frame[i]
        if a.numeric_values:
            out[:, i] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:  # non-numeric nominal: index of the value in the declaration
            lookup = {v: k for k, v in enumerate(a.values or ())}
            codes = col.map(lambda v: lookup.get(v, -1) if isinstance(v, str) else np.nan)
            if (codes == -1).any():
                raise UserError(f"{path}: attribute {a.name!r} has values outside its "
                                f"declared set {a.values}")
            out[:, i] = codes.to_numpy(dtype=np.float64)
    return out


def _sparse_tokens_slow(body: str, attrs: tuple[Attribute, ...], path: Path,
                        lineno: int) -> tuple[list[int], list[float]]:
    idx, vals = [], []
    for entry in body.split(","):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(None, 1)
        if len(parts) != 2:
            raise UserError(f"{path}, data row {lineno}: malformed sparse entry {entry!r}")
        i = int(parts[0])
        if not 0 <= i < len(attrs):
            raise UserError(f"{path}, data row {lineno}: attribute index {i} out of range")
        raw = parts[1].strip()
        if raw == "?":
            raise UserError(f"{path}, data row {lineno}: missing value '?' for "
                            f"{attrs[i].name!r}; this harness does not impute missing values")
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]
        a = attrs[i]
        if a.numeric_values:
            v = float(raw)
        else:
            if raw not in (a.values or ()):
                raise UserError(f"{path}, data row {lineno}: {raw!r} is not a value of {a.name!r}")
            v = float(a.values.index(raw))  # type: ignore[union-attr]
        idx.append(i)
        vals.append(v)
    return idx, vals


def _sparse(fh: io.TextIOBase, attrs: tuple[Attribute, ...], path: Path, first: str):
    """Parse ``{i v, j w, …}`` rows into (row, attribute, value) triplets, block by block."""
    rows_all, idx_all, val_all = [], [], []
    n = 0
    block: list[str] = []

    def flush() -> None:
        nonlocal n
        bodies = []
        for k, line in enumerate(block):
            if not (line.startswith("{") and line.endswith("}")):
                raise UserError(f"{path}, data row {n + k + 1}: expected a sparse row "
                                f"'{{index value, …}}', got {line[:60]!r} (mixed dense/sparse "
                                f"rows and instance weights are not supported)")
            bodies.append(line[1:-1])
        counts = np.fromiter((b.count(",") + 1 if b.strip() else 0 for b in bodies),
                             dtype=np.int64, count=len(bodies))
        text = " ".join(b.replace(",", " ") for b in bodies)
        try:
            flat = np.fromstring(text, sep=" ") if text.strip() else np.empty(0)
        except ValueError:
            flat = None
        if flat is not None and flat.size == 2 * counts.sum():
            idx = flat[0::2].astype(np.int64)
            vals = flat[1::2]
            if (idx != flat[0::2]).any() or idx.min(initial=0) < 0 or idx.max(initial=0) >= len(attrs):
                raise UserError(f"{path}: sparse attribute index out of range in rows "
                                f"{n + 1}..{n + len(block)}")
            nominal = np.array([not a.numeric_values for a in attrs])
            if nominal[idx].any():  # values are positions in the nominal list: decode slowly
                flat = None
        if flat is None or flat.size != 2 * counts.sum():
            idx_l, val_l, cnt = [], [], []
            for k, b in enumerate(bodies):
                i_, v_ = _sparse_tokens_slow(b, attrs, path, n + k + 1)
                idx_l.extend(i_)
                val_l.extend(v_)
                cnt.append(len(i_))
            idx = np.asarray(idx_l, dtype=np.int64)
            vals = np.asarray(val_l, dtype=np.float64)
            counts = np.asarray(cnt, dtype=np.int64)
        rows_all.append(np.repeat(np.arange(n, n + len(block), dtype=np.int64), counts))
        idx_all.append(idx)
        val_all.append(vals)
        n += len(block)
        block.clear()

    def lines():
        yield first
        for line in fh:
            yield line

    for line in lines():
        s = line.strip()
        if not s or s.startswith("%"):
            continue
        block.append(s)
        if len(block) >= _SPARSE_BLOCK:
            flush()
    if block:
        flush()
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.empty(0, dt))
    return n, cat(rows_all, np.int64), cat(idx_all, np.int64), cat(val_all, np.float64)


# ---------------------------------------------------------------------------------------------
# public entry point


def read_mulan(arff_path: str | os.PathLike, xml_path: str | os.PathLike
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a Mulan dataset (dense or sparse ARFF + XML).

    Returns ``(features, labels, label_names)``: ``features`` float32 ``[N, D]`` holding the
    non-label attributes in ARFF order, ``labels`` uint8 ``[N, C]`` 0/1 **in the XML's label
    order** (``label_names`` is that order), matched to ARFF attributes by name. Absent sparse
    entries are 0. Missing values (``?``), NaN/inf, and label values other than 0/1 raise
    :class:`UserError`: nothing is imputed or dropped.
    """
    arff_path, xml_path = Path(arff_path), Path(xml_path)
    if not arff_path.is_file():
        raise UserError(f"ARFF file not found: {arff_path}")
    names = read_mulan_xml(xml_path)
    with open(arff_path, encoding="utf-8", errors="replace") as fh:
        header = _read_header(fh, arff_path)
        attrs = header.attributes
        label_attr = _match_labels(attrs, names, arff_path)
        is_label = np.zeros(len(attrs), dtype=bool)
        is_label[label_attr] = True
        feat_attr = np.flatnonzero(~is_label)
        # peek at the first data row to decide dense vs sparse
        first = ""
        while True:
            pos = fh.tell()
            line = fh.readline()
            if not line:
                break
            if line.strip() and not line.strip().startswith("%"):
                first = line
                break
        if first.strip().startswith("{"):
            n, rows, idx, vals = _sparse(fh, attrs, arff_path, first)
            if np.isnan(vals).any():
                raise UserError(f"{arff_path}: NaN values in the data section")
            col_of = np.full(len(attrs), -1, dtype=np.int64)
            col_of[feat_attr] = np.arange(len(feat_attr))
            lab_of = np.full(len(attrs), -1, dtype=np.int64)
            lab_of[label_attr] = np.arange(len(label_attr))
            x = np.zeros((n, len(feat_attr)), dtype=np.float32)
            y = np.zeros((n, len(names)), dtype=np.uint8)
            f = col_of[idx] >= 0
            lv = vals[~f]
            if not ((lv == 0) | (lv == 1)).all():
                raise UserError(f"{arff_path}: label attributes hold values other than 0/1")
            # values cast to the target dtype first: np.put/fancy assignment with a dtype conversion
            # is far slower on millions of entries (docs/performance.md, "ARFF values cast before assignment")
            x[rows[f], col_of[idx[f]]] = vals[f].astype(np.float32)
            y[rows[~f], lab_of[idx[~f]]] = lv.astype(np.uint8)
            if np.isinf(vals[f]).any():
                raise UserError(f"{arff_path}: infinite feature values")
        else:
            fh.seek(pos)
            table = _dense(fh, attrs, arff_path)
            bad = np.isnan(table)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise UserError(f"{arff_path}: {int(bad.sum())} missing ('?'), NaN or absent "
                                f"value(s) (short rows), "
                                f"first in data row {r + 1}, attribute {attrs[c].name!r}; this "
                                f"harness does not impute missing values")
            if np.isinf(table).any():
                raise UserError(f"{arff_path}: infinite values in the data section")
            x = table[:, feat_attr].astype(np.float32)
            y = table[:, label_attr]
            if not ((y == 0) | (y == 1)).all():
                raise UserError(f"{arff_path}: label attributes hold values other than 0/1")
            y = y.astype(np.uint8)
    return x, y, names
