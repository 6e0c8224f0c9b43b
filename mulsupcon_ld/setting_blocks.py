"""Typed settings blocks built from the nested settings dict, checked once, and recorded back.

:func:`build` turns a mapping (a block of ``settings.table_settings`` after presets and ``--set``
overrides) into a frozen dataclass: every key must be a field, every required field present, and
every value of its annotated type (``int``, ``float``, ``bool``, ``str``, ``Literal``, ``X | None``,
``tuple[int, ...]``, a nested block, or a union of blocks told apart by their ``name``). Anything else
is a :class:`UserError` naming the dotted key. A block's ``__post_init__`` may raise ``ValueError``
for a value out of range; that becomes a UserError too.

:func:`recorded` is the inverse, the plain dict that ``metrics.json`` records and the hashes are
taken of: a block's fields in declared order. The blocks that were plain dicts before they were typed
(the optimiser, the scheduler: :class:`AsGiven`; ``loss.options``: ``GIVEN_IN``) are recorded with
the keys they were given, in their order, as those dicts were: ``loss.options`` with only some of its
fields, a scheduler without its optional keys, a ``--set 'finetune.scheduler={...}'`` in any key
order. The same run keeps its record and hash. Numbers are kept as given (an ``int`` where a
``float`` is annotated stays an ``int``) for the same reason.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Literal, Mapping, Union, get_args, get_origin, get_type_hints

from .errors import UserError

#: field metadata: ``{"recorded": False}`` leaves a field out of :func:`recorded` (and :func:`build`);
#: ``{"given_in": NAME}`` records a nested dataclass that is not :class:`AsGiven` (LDOptions) with the
#: keys held by the sibling field NAME
RECORDED, GIVEN_IN = "recorded", "given_in"


@dataclass(frozen=True)
class AsGiven:
    """A block recorded as it was given: ``given``, the keys it was built from, in order (None: every
    field, in declared order)."""

    given: tuple[str, ...] | None = field(default=None, kw_only=True, repr=False, compare=False,
                                          metadata={RECORDED: False})


def _recorded_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in fields(cls) if f.metadata.get(RECORDED, True)]


def _required(f: dataclasses.Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def build(cls: type, value: Any, path: str, **extra: Any) -> Any:
    """The ``cls`` instance of the mapping ``value`` (the block at dotted ``path``), type-checked;
    ``extra``: fields that are not in the mapping (e.g. the run's DatasetSpec)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise UserError(f"{path} must be an object of {', '.join(f.name for f in _recorded_fields(cls))}, "
                        f"got {value!r}")
    known = {f.name: f for f in _recorded_fields(cls)}
    missing = [n for n, f in known.items() if _required(f) and n not in value]
    if missing:
        hint = getattr(cls, "WHOLE_HINT", "")
        raise UserError(f"{path} needs {', '.join(missing)}" + (f"; {hint.replace('{path}', path)}" if hint else ""))
    unknown = [k for k in value if k not in known]
    if unknown:
        raise UserError(f"unknown setting {_join(path, unknown[0])}; {path or 'the settings'} has "
                        f"{', '.join(known)}")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = dict(extra)
    for name, v in value.items():
        kwargs[name] = _convert(hints[name], v, _join(path, name))
        given_in = known[name].metadata.get(GIVEN_IN)
        if given_in and isinstance(v, Mapping):
            kwargs[given_in] = tuple(v)
    keys = tuple(value)
    if issubclass(cls, AsGiven) and keys != tuple(known):
        kwargs["given"] = keys
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from exc


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _describe(hint: Any) -> str:
    if _is_union(hint):
        return " or ".join(_describe(h) for h in get_args(hint))
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if is_dataclass(hint):
        return f"an object of {hint.__name__}'s fields"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))


def _convert(hint: Any, v: Any, path: str) -> Any:
    if _is_union(hint):
        return _convert_union(get_args(hint), v, path)
    if get_origin(hint) is Literal:
        if v in get_args(hint) and not isinstance(v, bool):
            return v
    elif get_origin(hint) is tuple:
        item = get_args(hint)[0]
        if isinstance(v, (list, tuple)):
            return tuple(_convert(item, x, f"{path}[{i}]") for i, x in enumerate(v))
    elif is_dataclass(hint):
        return build(hint, v, path)
    elif _accepts(hint, v):
        return v
    raise UserError(f"{path} must be {_describe(hint)}, got {v!r}")


def _accepts(hint: Any, v: Any) -> bool:
    if hint is bool:
        return isinstance(v, bool)
    if hint is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if hint is float:  # an int is a number too, and is kept as given (see the module docstring)
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if hint is type(None):
        return v is None
    if hint is str:
        return isinstance(v, str)
    raise TypeError(f"setting_blocks cannot check {hint!r}")  # a field type this module does not know


def _convert_union(options: tuple, v: Any, path: str) -> Any:
    if v is None and type(None) in options:
        return None
    blocks = [h for h in options if is_dataclass(h)]
    if any(isinstance(v, b) for b in blocks):
        return v
    if blocks and isinstance(v, Mapping):
        return build(_pick_block(blocks, v, path), v, path)
    for h in options:
        if not is_dataclass(h) and not _is_union(h):
            try:
                return _convert(h, v, path)
            except UserError:
                continue
    raise UserError(f"{path} must be {' or '.join(_describe(h) for h in options)}, got {v!r}")


def _pick_block(blocks: list[type], v: Mapping, path: str) -> type:
    """The block of a union that ``v`` names (``name``: a ``Literal`` field), else the only one."""
    if len(blocks) == 1:
        return blocks[0]
    by_name = {n: b for b in blocks for n in get_args(get_type_hints(b).get("name", Any))}
    if v.get("name") not in by_name:
        raise UserError(f"{path}.name must be one of {', '.join(map(repr, by_name))}, got {v.get('name')!r}")
    return by_name[v["name"]]


def recorded(obj: Any, given: tuple[str, ...] | None = None) -> Any:
    """Blocks to plain dicts (the keys they were given first, in that order; then any other field
    that differs from its default), tuples to lists; unrecorded fields left out."""
    if is_dataclass(obj):
        flds = _recorded_fields(type(obj))
        given = obj.given if isinstance(obj, AsGiven) else given
        keys = [f.name for f in flds] if given is None else list(given) + [
            f.name for f in flds if f.name not in given and (_required(f) or getattr(obj, f.name) != _default(f))]
        out = {}
        for f in (next(f for f in flds if f.name == k) for k in keys):
            inner = f.metadata.get(GIVEN_IN)
            out[f.name] = recorded(getattr(obj, f.name), getattr(obj, inner) if inner else None)
        return out
    if isinstance(obj, Mapping):
        return {k: recorded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [recorded(v) for v in obj]
    return obj

