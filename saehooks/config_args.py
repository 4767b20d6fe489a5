"""Command-line options generated from config dataclasses, with help text from field docstrings."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import types
import typing
from typing import Any, Literal

# The parsed options keep, under this name, the command-line flag that sets each config field.
FLAGS_DEST = "config_flags"


def field_docs(cls: type) -> dict[str, str]:
    """Map each field of a dataclass to the string literal written right after it."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]  # the parsed source is one class
    docs: dict[str, str] = {}
    for statement, following in zip(body, body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def _parse_optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _parse_optional_int_tuple(text: str) -> tuple[int, ...] | None:
    """Parse ``"64,256,1024"`` into ``(64, 256, 1024)``, and ``"none"`` into None."""
    if text.lower() == "none":
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers such as 64,256,1024"
        ) from error


def _argument_kwargs(hint: Any, default: Any) -> dict[str, Any] | None:
    """argparse keyword arguments for a field type, or None for types the CLI does not set."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return {"choices": list(args), "type": type(args[0])}
    if origin in (typing.Union, types.UnionType) and set(args) == {float, type(None)}:
        return {"type": _parse_optional_float, "metavar": "FLOAT|none"}
    if origin in (typing.Union, types.UnionType) and set(args) == {int, type(None)}:
        return {"type": lambda text: None if text.lower() == "none" else int(text)}
    if origin in (typing.Union, types.UnionType) and set(args) == {tuple[int, ...], type(None)}:
        return {"type": _parse_optional_int_tuple, "metavar": "INT,INT,...|none"}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {"type": hint}
    return None


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: tuple[str, ...] = (),
    renames: dict[str, str] | None = None,
) -> None:
    """Add ``--field-name`` for each field of ``cls``; the value lands in ``args.<field>``."""
    renames = renames or {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser.add_argument_group(cls.__name__)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = field.default
        kwargs = _argument_kwargs(hints[field.name], default)
        if kwargs is None:
            continue
        flag = "--" + renames.get(field.name, field.name).replace("_", "-")
        help_text = docs.get(field.name, "")
        if default is not dataclasses.MISSING:
            help_text += f" (default: {default})"
        group.add_argument(flag, dest=field.name, default=default, help=help_text, **kwargs)
        record_flags(parser, {field.name: flag})


def record_flags(parser: argparse.ArgumentParser, flags: dict[str, str]) -> None:
    """Record which flag sets each field, so that ``name_flags`` can rewrite error messages.

    The map lands in the parsed options as ``args.config_flags``.
    """
    known = dict(parser.get_default(FLAGS_DEST) or {})
    known.update(flags)
    parser.set_defaults(**{FLAGS_DEST: known})


def name_flags(message: str, flags: dict[str, str]) -> str:
    """Replace the config field names in ``message`` by the flags that set them.

    A name with an underscore is replaced wherever it occurs as a whole word. A name without one
    (``lr``, ``k``, ``model``) is replaced only where it reads ``name=value``, because such words
    also occur in plain prose. ``total_tokens=0 must be positive`` becomes ``--tokens=0 must be
    positive``.
    """
    for name in sorted(flags, key=len, reverse=True):
        ending = r"\b" if "_" in name else r"(?==)"
        pattern = rf"(?<![\w-]){re.escape(name)}{ending}"
        message = re.sub(pattern, flags[name], message)
    return message


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """Build ``cls`` from the parsed options that name its fields, plus ``overrides``."""
    names = {field.name for field in dataclasses.fields(cls)}
    values = {name: value for name, value in vars(args).items() if name in names}
    values.update(overrides)
    return cls(**values)
