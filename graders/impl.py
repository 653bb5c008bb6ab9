"""Where student code comes from: implementation roots and private module names.

An *implementation root* is any directory laid out like `katas/`: `week2/attention.py`,
`week3/gpt2.py`, ... The course ships two (`katas/`, the stubs, and `reference/`, the model
solutions); a submission is a third. Each root is imported as its own synthetic package
with a private name (`_kata_impl_<hash>`), so that

- two roots never mix in `sys.modules` (hidden tests load the reference beside the
  student's code, and mutation checks load dozens of roots in one process), and
- a kata's relative import (`from ..week2.attention import softmax`) resolves inside the
  same root it came from.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NAMED_ROOTS = {"katas": PROJECT_ROOT / "katas", "reference": PROJECT_ROOT / "reference"}
ENV_VAR = "KATA_IMPL"


class ImplementationError(Exception):
    """The implementation root or one of its modules cannot be used (missing, broken)."""


@dataclass(frozen=True)
class Implementation:
    """One implementation root, imported under a private package name."""

    label: str  # what the user asked for: "katas", "reference" or a path
    root: Path

    @property
    def package(self) -> str:
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:10]
        return f"_kata_impl_{digest}"

    def path_of(self, dotted: str) -> Path:
        """`week2.attention` -> `<root>/week2/attention.py`."""
        return self.root.joinpath(*dotted.split(".")).with_suffix(".py")

    def display_path(self, dotted: str) -> str:
        return "/".join(dotted.split(".")) + ".py"

    def import_module(self, dotted: str):
        """Import `weekN.kata` from this root; raises ImplementationError with a clear reason."""
        self._ensure_package()
        path = self.path_of(dotted)
        if not path.is_file():
            raise ImplementationError(
                f"MISSING MODULE: {self.display_path(dotted)} not found in {self.root}"
            )
        name = f"{self.package}.{dotted}"
        if name in sys.modules:
            return sys.modules[name]
        try:
            return importlib.import_module(name)
        except SyntaxError as exc:
            sys.modules.pop(name, None)
            where = f"line {exc.lineno}" if exc.lineno else "unknown line"
            raise ImplementationError(
                f"SYNTAX ERROR in {self.display_path(dotted)} ({where}): {exc.msg}"
            ) from None
        except ImportError as exc:
            sys.modules.pop(name, None)
            raise ImplementationError(
                f"IMPORT ERROR in {self.display_path(dotted)}: {exc}"
            ) from None
        except BaseException as exc:  # student code ran at import time and blew up
            sys.modules.pop(name, None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ImplementationError(
                f"IMPORT ERROR: {self.display_path(dotted)} raised "
                f"{type(exc).__name__} while being imported: {exc}"
            ) from None

    def owns_module(self, module_name: str | None) -> bool:
        return bool(module_name) and (
            module_name == self.package or module_name.startswith(self.package + ".")
        )

    def _ensure_package(self) -> None:
        if self.package in sys.modules:
            return
        if not self.root.is_dir():
            raise ImplementationError(f"MISSING ROOT: implementation directory {self.root} does not exist")
        spec = importlib.machinery.ModuleSpec(self.package, None, is_package=True)
        spec.submodule_search_locations = [str(self.root)]
        module = importlib.util.module_from_spec(spec)
        sys.modules[self.package] = module


def resolve(label: str | os.PathLike | None = None) -> Implementation:
    """`katas`, `reference`, or a path to a submission directory; default from $KATA_IMPL."""
    label = str(label or os.environ.get(ENV_VAR) or "katas")
    if label in NAMED_ROOTS:
        return Implementation(label, NAMED_ROOTS[label])
    return Implementation(label, Path(label).expanduser().resolve())


def reference() -> Implementation:
    return Implementation("reference", NAMED_ROOTS["reference"])
