"""Every rule a kata's stub states has a test that fails when it is broken.

`tests/docstring_rules/<kata>.toml` maps each behaviour a stub's docstrings state (a tie
rule, an inclusive bound, an edge case, what must raise, the dtype that comes back) to
the tests that check it:

    [[rule]]
    text = "an empty shingle set gives every entry 2**64 - 1"
    function = "minhash_signature"                                   # of the kata's stub
    tests = ["katas/week4/test_dedup.py::test_signature_of_the_empty_set"]

This lint keeps the maps honest: every kata has one, every rule names a function the stub
defines and at least one test, and every test it names exists (node ids without their
parametrization). Whether each test really fails when its rule is broken is what the
mutants in `tests/mutants/` check.
"""

from __future__ import annotations

import ast
import functools
import tomllib
from pathlib import Path

import pytest

from graders import catalog, impl

RULES = impl.PROJECT_ROOT / "tests" / "docstring_rules"
KATAS = catalog.all_katas(impl.PROJECT_ROOT / "katas")

@functools.cache
def _names(path: Path, separator: str = "::") -> frozenset[str]:
    """The functions, classes and constants of a Python file: `name`, and `Class::name` for
    methods (`Class.name`, and the bare `name`, with separator ".")."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}{separator}{item.name}")
                    if separator == ".":
                        names.add(item.name)
    return frozenset(names)


@pytest.mark.parametrize("kata", KATAS, ids=lambda k: k.id)
def test_every_kata_maps_its_stubs_rules_to_tests(kata):
    path = RULES / f"{kata.name}.toml"
    assert path.exists(), f"{kata.id} has no docstring-rule map: write tests/docstring_rules/{kata.name}.toml"
    rules = tomllib.loads(path.read_text(encoding="utf-8")).get("rule", [])
    assert rules, f"{path.name} maps no rule"
    stub_names = _names(impl.PROJECT_ROOT / "katas" / kata.week / f"{kata.name}.py", separator=".")
    own_files = {str(Path(f).relative_to(impl.PROJECT_ROOT)) for f in catalog.test_files([kata], True)}
    problems = []
    for rule in rules:
        text = rule.get("text", "")
        if not text or not rule.get("tests"):
            problems.append(f"rule {text!r}: needs a text and at least one test")
        if rule.get("function", "") not in stub_names:
            problems.append(f"rule {text!r}: the stub defines no {rule.get('function')!r}")
        for nodeid in rule.get("tests", []):
            file, _, name = nodeid.partition("::")
            if file not in own_files:
                problems.append(f"rule {text!r}: {file} is not one of {kata.id}'s test files")
            elif name.split("[")[0] not in _names(impl.PROJECT_ROOT / file):
                problems.append(f"rule {text!r}: no test {nodeid}")
    assert not problems, "\n".join(problems)
