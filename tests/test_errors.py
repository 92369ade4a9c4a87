"""Every exception coffea-ad raises is a CoffeaADError (each also the builtin it replaced, so
callers catching ValueError, KeyError, ... still do): checked over the sources with ``ast``."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "src" / "coffea_ad", ROOT / "processors", ROOT / "training"]
BUILTIN_ERRORS = {name for name in dir(builtins)
                  if isinstance(getattr(builtins, name), type)
                  and issubclass(getattr(builtins, name), BaseException)}

#: (file, builtin) raised on purpose, and why
ALLOWED = {
    # a module __getattr__ must raise AttributeError: hasattr() and the import system test
    # for exactly that
    ("src/coffea_ad/inference/__init__.py", "AttributeError"),
    # the abstract hooks a processor subclass must implement: a programming error in the
    # subclass, the conventional NotImplementedError, never shown to a user of a built-in one
    ("src/coffea_ad/analysis.py", "NotImplementedError"),
    # internal invariants of the row <-> layout bookkeeping: a failure is a bug in coffea-ad
    ("src/coffea_ad/inference/_layout.py", "AssertionError"),
}


def _builtin_raises(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BUILTIN_ERRORS:
                out.append((node.lineno, exc.id))
    return out


def test_no_bare_builtin_exception_is_raised_outside_the_allow_list():
    found = []
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += [f"{rel}:{line}: raise {name}" for line, name in _builtin_raises(path)
                      if (rel, name) not in ALLOWED]
    assert not found, "raise a coffea_ad.errors class instead:\n" + "\n".join(found)


def test_the_walk_finds_a_bare_raise(tmp_path):
    """The check itself: it sees a builtin raised by name, called or not, and nothing else."""
    src = tmp_path / "m.py"
    src.write_text("def f(x):\n    if x:\n        raise ValueError('x')\n    raise KeyError\n"
                   "def g():\n    raise click.BadParameter('y')\n")
    assert sorted(_builtin_raises(src)) == [(3, "ValueError"), (4, "KeyError")]


@pytest.mark.parametrize(("name", "builtin"), [
    ("InvalidArgumentError", ValueError), ("StatisticsInputError", ValueError),
    ("MissingFileError", FileNotFoundError), ("WrongTypeError", TypeError),
    ("ComputationError", RuntimeError), ("UnsupportedError", NotImplementedError),
    ("MissingMetadataError", KeyError), ("MissingDependencyError", ImportError),
    ("OutputWriteError", OSError),
])
def test_each_error_is_a_coffea_ad_error_and_the_builtin_it_replaced(name, builtin):
    from coffea_ad import errors

    cls = getattr(errors, name)
    assert issubclass(cls, errors.CoffeaADError)
    with pytest.raises(builtin, match="what, where, expected"):
        raise cls("what, where, expected")


def test_a_caller_catching_the_builtin_still_catches_the_library_error():
    from coffea_ad.errors import StatisticsInputError
    from coffea_ad.stats import roc_curve

    with pytest.raises(ValueError, match="one weight per score") as info:
        roc_curve([0.1, 0.2], [0.3], weights_bkg=[1.0])
    assert isinstance(info.value, StatisticsInputError)
