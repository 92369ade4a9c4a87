"""Find the top-level ``processors/`` and ``training/`` folders of a source checkout.

The ready analyses and the training recipes live at the top of the repository, where a reader
looks for them, but are imported as ``coffea_ad.processors`` / ``coffea_ad.training``:

- in a built wheel (and a wheel built from the sdist) the build backend copies their modules
  into ``coffea_ad/processors`` and ``coffea_ad/training`` (``sources`` in pyproject.toml), so
  nothing here is needed;
- in a source checkout (editable install, whose .pth file puts ``src/`` on ``sys.path``, or
  ``PYTHONPATH=src``) the package ``__init__`` appends the top-level folder to its
  ``__path__`` with :func:`extend_from_checkout`, so edits there take effect at once.

Symlinks were the previous way and failed: the sdist kept one of the two paths of each file,
so wheels built from it had no processors, and checkouts without symlink support broke.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["extend_from_checkout"]


def extend_from_checkout(package_path: list[str], init_file: str, folder: str) -> None:
    """Append ``<repository>/<folder>`` to ``package_path`` when running from a source checkout.

    A checkout is recognised by the layout ``<root>/src/coffea_ad/<pkg>/__init__.py`` next to
    ``<root>/pyproject.toml``; an installed wheel (``site-packages/coffea_ad/...``) never
    matches, so it only ever sees the modules the wheel ships.
    """
    src = Path(init_file).resolve().parent.parent.parent
    root = src.parent
    top = root / folder
    if (src.name == "src" and (root / "pyproject.toml").is_file() and top.is_dir()
            and str(top) not in package_path):
        package_path.append(str(top))
