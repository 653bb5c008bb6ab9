"""The course's katas and their data files (`katas/weekN/<kata>.toml`).

A kata id is `weekN/<kata>`. Its toml holds what the tests and the CLI share: a title,
progressive hints (`kata hint`), one hint per must-catch mistake (named by checks), and the
APIs forbidden while the student's code runs.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .impl import PROJECT_ROOT

KATAS_DIR = PROJECT_ROOT / "katas"
_TEST_FILE = re.compile(r"^test_(?P<kata>[a-z0-9_]+?)(?:_hidden)?\.py$")


@dataclass(frozen=True)
class Kata:
    id: str  # "week2/attention"
    title: str = ""
    hints: tuple[str, ...] = ()
    mistakes: dict[str, str] = field(default_factory=dict)
    forbidden: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Calls that may change objects the test hands them (`step`, `get_pair_counts`): "name",
    # "Class" (its constructor keeps what it is given), "Class.method", "Class.__call__".
    # Every other call gets copies, and one that changes its inputs fails the test.
    mutates: tuple[str, ...] = ()
    # The kata's tests fork processes that run student code (data-parallel ranks): its sandbox
    # allows fork even though it forbids APIs (forked processes keep the run-time guard).
    forks: bool = False

    @property
    def week(self) -> str:
        return self.id.split("/")[0]

    @property
    def name(self) -> str:
        return self.id.split("/")[1]

    @property
    def module(self) -> str:
        """Dotted module path inside an implementation root: `week2.attention`."""
        return self.id.replace("/", ".")

    def forbidden_for(self, function: str) -> tuple[str, ...]:
        everywhere = tuple(self.forbidden.get("*", ()))
        return everywhere if function == "*" else everywhere + tuple(self.forbidden.get(function, ()))

    def may_mutate(self, call: str) -> bool:
        return call in self.mutates

    def hint_for(self, mistake: str) -> str:
        try:
            return self.mistakes[mistake]
        except KeyError:
            raise KeyError(f"{self.id}: no mistake {mistake!r} in {self.id}.toml [mistakes]") from None


def kata_id_for_test_file(path: str | Path) -> str | None:
    """`katas/week2/test_attention_hidden.py` -> `week2/attention`."""
    path = Path(path)
    match = _TEST_FILE.match(path.name)
    if not match or not path.parent.name.startswith("week"):
        return None
    return f"{path.parent.name}/{match['kata']}"


@functools.cache
def load(kata_id: str, katas_dir: Path = KATAS_DIR) -> Kata:
    path = katas_dir / f"{kata_id}.toml"
    if not path.is_file():
        return Kata(kata_id)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return Kata(
        id=kata_id,
        title=data.get("title", ""),
        hints=tuple(data.get("hints", ())),
        mistakes=dict(data.get("mistakes", {})),
        forbidden={k: tuple(v) for k, v in data.get("forbidden", {}).items()},
        mutates=tuple(data.get("mutates", ())),
        forks=bool(data.get("forks", False)),
    )


def all_katas(katas_dir: Path = KATAS_DIR) -> list[Kata]:
    """Every kata that has a public test file, in course order."""
    ids = set()
    for test in katas_dir.glob("week*/test_*.py"):
        kata_id = kata_id_for_test_file(test)
        if kata_id:
            ids.add(kata_id)
    return [load(k, katas_dir) for k in sorted(ids, key=_course_order)]


def test_files(katas: list[Kata], hidden: bool, katas_dir: Path = KATAS_DIR) -> list[str]:
    """The katas' test files that exist, each kata's public file then its hidden one, as
    pytest arguments. `katas_dir` is any tree laid out like katas/ (a sandbox's copy)."""
    files = []
    for kata in katas:
        for name in (f"test_{kata.name}.py", *([f"test_{kata.name}_hidden.py"] if hidden else [])):
            path = katas_dir / kata.week / name
            if path.is_file():
                files.append(str(path))
    return files


def _course_order(kata_id: str) -> tuple[int, str]:
    week, name = kata_id.split("/")
    return int(week.removeprefix("week") or 0), name


def points_of(item) -> float | None:
    """A collected test's `@pytest.mark.points(n)`, or None for an ungraded test."""
    marker = item.get_closest_marker("points")
    if marker is None:
        return None
    value = marker.args[0] if marker.args else marker.kwargs.get("n")
    return float(value)


def counted(n: float, noun: str) -> str:
    """`n` things in English: counted(1, "point") is "1 point", counted(0.5, "point") is
    "0.5 points", counted(3, "kata") is "3 katas"."""
    return f"{n:g} {noun}" + ("" if n == 1 else "s")
