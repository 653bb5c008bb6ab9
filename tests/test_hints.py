"""Every hint id a kata test file names is a mistake of its kata's toml.

A check names the must-catch mistake it catches (`check.close(..., hint="missing_scale")`),
and its failure message ends with that mistake's text from `katas/weekN/<kata>.toml`
(`[mistakes]`, loaded by `graders.catalog`). An id that is not there (a typo, an id copied
from another kata, a mistake renamed in the toml) still fails the test, but the student
reads `Hint (missing_scle)` and no text. The checks cannot refuse such an id while grading
without failing the student for the author's slip, so this lint reads the test files.

Where hint ids are written (`hint_uses` below finds them there):

- the `hint=` argument of any call: the checks, `check.raises`, and the file's own helpers;
- the first argument of `hinted(...)` (`graders.testing`);
- a parameter of one of the file's functions named `hint` or `..._hint`: its default, what
  each call in the file gives it (by position or keyword, also through
  `hinted(id, helper, ...)`), and its column of a `@pytest.mark.parametrize` table.

An id there is a string literal, or reaches the site through a conditional (`"a" if x else
"b"`), `or`/`and`, a lookup in a dict literal (`{"fork": "refcount_fork"}[op]`), a name
bound in the same function, or a call (`oracle(fn, ...)`, a lambda, a helper of the file)
whose `return` gives the id: literally, as one of its parameters (what the call passes), or
as the loop variable over a dict's keys (`for mistake, wrong in variants.items()`), whose
ids are that dict's string keys.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass

import pytest

from graders import catalog, impl

KATA_TEST_FILES = sorted(impl.PROJECT_ROOT.glob("katas/week*/test_*.py"))
MAX_DEPTH = 16  # calls followed from one site (helpers calling helpers)


@dataclass(frozen=True)
class HintUse:
    line: int
    id: str


_Env = dict  # a called function's parameter -> (the argument expression, the caller's _Env)


def _is_hint_parameter(name: str) -> bool:
    return name == "hint" or name.endswith("_hint")


class _HintFlow:
    """Which string literals of a test file can end up as a hint id."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.parent: dict[ast.AST, ast.AST] = {}
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(node.name, node)

    # --- scopes -----------------------------------------------------------------------------

    def _scopes(self, node: ast.AST, name: str) -> list[ast.AST]:
        """The functions around `node`, innermost first, then the module; up to the first one
        with a parameter `name` (its value is what the callers give: see `uses`)."""
        found = []
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                if name in {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}:
                    return [*found, node]
                found.append(node)
        return [*found, self.tree]

    @staticmethod
    def _own_nodes(scope: ast.AST):
        """The nodes of a function (or the module) outside the functions and lambdas nested in it."""
        todo = list(ast.iter_child_nodes(scope)) if not isinstance(scope, ast.Lambda) else [scope.body]
        while todo:
            node = todo.pop()
            yield node
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                todo.extend(ast.iter_child_nodes(node))

    def _assigned(self, name: str, at: ast.AST) -> list[ast.expr]:
        """What `name` is bound to by plain assignments, in the innermost scope that binds it."""
        for scope in self._scopes(at, name):
            values = []
            for node in self._own_nodes(scope):
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                    values.append(node.value)
                elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and isinstance(node.target, ast.Name) \
                        and node.target.id == name and node.value is not None:
                    values.append(node.value)
            if values:
                return values
        return []

    def _loops_over(self, name: str, at: ast.AST) -> list[ast.expr]:
        """Dicts whose keys `name` walks (`for name in d`, `for name, v in d.items()`)."""
        for scope in self._scopes(at, name):
            found = []
            for node in self._own_nodes(scope):
                if isinstance(node, (ast.For, ast.comprehension)):
                    target, iterable = node.target, node.iter
                    if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute) \
                            and iterable.func.attr in ("items", "keys") and not iterable.args:
                        key = target.elts[0] if isinstance(target, ast.Tuple) and iterable.func.attr == "items" \
                            else target
                        iterable = iterable.func.value
                    else:
                        key = target
                    if isinstance(key, ast.Name) and key.id == name:
                        found.append(iterable)
            if found:
                return found
        return []

    def _returns(self, function: ast.AST) -> list[ast.expr]:
        if isinstance(function, ast.Lambda):
            return [function.body]
        return [n.value for n in self._own_nodes(function) if isinstance(n, ast.Return) and n.value is not None]

    def _bind(self, function: ast.AST, args: list[ast.expr], keywords: list[ast.keyword], env: _Env) -> _Env:
        """The called function's parameters -> the arguments of the call (or the defaults)."""
        a = function.args
        positional = [*a.posonlyargs, *a.args]
        bound: _Env = {}
        for parameter, default in zip(positional[len(positional) - len(a.defaults):], a.defaults):
            bound[parameter.arg] = (default, {})
        for parameter, default in zip(a.kwonlyargs, a.kw_defaults):
            if default is not None:
                bound[parameter.arg] = (default, {})
        for parameter, arg in zip(positional, args):
            if not isinstance(arg, ast.Starred):
                bound[parameter.arg] = (arg, env)
        for keyword in keywords:
            if keyword.arg is not None:
                bound[keyword.arg] = (keyword.value, env)
        return bound

    def _callee(self, call: ast.Call) -> tuple[ast.AST, list[ast.expr]] | None:
        """The function a call runs, with its positional arguments: `f(...)`, `oracle(f, ...)`,
        `oracle(lambda: ...)` or `hinted(id, f, ...)` with f a function of the file (the call's
        keywords are f's in each case)."""
        func, args = call.func, list(call.args)
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name == "oracle" and args:
            func, args = args[0], args[1:]
        elif name == "hinted" and len(args) >= 2:
            func, args = args[1], args[2:]
        if isinstance(func, ast.Lambda):
            return func, args
        if isinstance(func, ast.Name) and func.id in self.functions:
            return self.functions[func.id], args
        return None

    # --- what an expression can be ----------------------------------------------------------

    def ids(self, expr: ast.AST | None, env: _Env, depth: int = 0) -> set[HintUse]:
        """The hint ids `expr` may evaluate to."""
        if expr is None or depth > MAX_DEPTH:
            return set()
        if isinstance(expr, ast.Constant):
            return {HintUse(expr.lineno, expr.value)} if isinstance(expr.value, str) else set()
        if isinstance(expr, ast.IfExp):
            return self.ids(expr.body, env, depth + 1) | self.ids(expr.orelse, env, depth + 1)
        if isinstance(expr, ast.BoolOp):
            return set().union(*(self.ids(v, env, depth + 1) for v in expr.values))
        if isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Dict):
            return set().union(*(self.ids(v, env, depth + 1) for v in expr.value.values))
        if isinstance(expr, ast.Name):
            if expr.id in env:
                argument, caller = env[expr.id]
                return self.ids(argument, caller, depth + 1)
            found = set().union(*(self.ids(v, env, depth + 1) for v in self._assigned(expr.id, expr)))
            for iterable in self._loops_over(expr.id, expr):
                found |= self.keys(iterable, env, depth + 1)
            return found
        if isinstance(expr, ast.Call):
            if isinstance(expr.func, ast.Name) and expr.func.id == "mistake_shown" and len(expr.args) >= 2:
                # graders.testing.mistake_shown(out, variants) returns one of the variants' keys
                return self.keys(expr.args[1], env, depth + 1)
            return self._through_call(expr, env, depth, self.ids)
        return set()

    def _through_call(self, call: ast.Call, env: _Env, depth: int, follow) -> set[HintUse]:
        """What `follow` (ids or keys) finds in the returns of the local function `call` calls,
        its parameters bound to the call's arguments."""
        callee = self._callee(call)
        if callee is None:
            return set()
        function, args = callee
        bound = self._bind(function, args, call.keywords, env)
        return set().union(*(follow(r, bound, depth + 1) for r in self._returns(function)))

    def keys(self, expr: ast.AST | None, env: _Env, depth: int = 0) -> set[HintUse]:
        """The string keys of the dict `expr` may evaluate to."""
        if expr is None or depth > MAX_DEPTH:
            return set()
        if isinstance(expr, ast.Dict):
            return {HintUse(k.lineno, k.value) for k in expr.keys
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if isinstance(expr, ast.Name):
            if expr.id in env:
                argument, caller = env[expr.id]
                return self.keys(argument, caller, depth + 1)
            found = set().union(*(self.keys(v, env, depth + 1) for v in self._assigned(expr.id, expr)))
            for scope in self._scopes(expr, expr.id)[:1]:  # d["id"] = ...: a key added to it
                for node in self._own_nodes(scope):
                    if isinstance(node, ast.Assign):
                        for target in node.targets:
                            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) \
                                    and target.value.id == expr.id and isinstance(target.slice, ast.Constant) \
                                    and isinstance(target.slice.value, str):
                                found.add(HintUse(target.slice.lineno, target.slice.value))
            return found
        if isinstance(expr, ast.Call):
            return self._through_call(expr, env, depth, self.keys)
        return set()

    # --- where ids are given ----------------------------------------------------------------

    def uses(self) -> set[HintUse]:
        found: set[HintUse] = set()
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "hint":
                    found |= self.ids(keyword.value, {})
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name == "hinted" and node.args:
                found |= self.ids(node.args[0], {})
            callee = self._callee(node)
            if callee is not None and not isinstance(callee[0], ast.Lambda):
                function, args = callee  # oracle(f, ...) and hinted(id, f, ...) hand f their keywords too
                for parameter, (argument, _) in self._bind(function, args, node.keywords, {}).items():
                    if _is_hint_parameter(parameter):
                        found |= self.ids(argument, {})
        for function in self.functions.values():
            found |= self._parameter_defaults_and_tables(function)
        return found

    def _parameter_defaults_and_tables(self, function) -> set[HintUse]:
        found: set[HintUse] = set()
        a = function.args
        positional = [*a.posonlyargs, *a.args]
        for parameter, default in [*zip(positional[len(positional) - len(a.defaults):], a.defaults),
                                   *zip(a.kwonlyargs, a.kw_defaults)]:
            if default is not None and _is_hint_parameter(parameter.arg):
                found |= self.ids(default, {})
        for decorator in function.decorator_list:
            if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "parametrize" and len(decorator.args) >= 2):
                continue
            names, table = decorator.args[0], decorator.args[1]
            if isinstance(names, ast.Constant) and isinstance(names.value, str):
                names = [n.strip() for n in names.value.split(",")]
            elif isinstance(names, (ast.List, ast.Tuple)):
                names = [n.value for n in names.elts if isinstance(n, ast.Constant)]
            else:
                continue
            columns = [i for i, n in enumerate(names) if _is_hint_parameter(n)]
            if not columns or not isinstance(table, (ast.List, ast.Tuple)):
                continue
            for row in table.elts:
                if isinstance(row, ast.Call) and getattr(row.func, "attr", None) == "param":
                    row = ast.Tuple(elts=row.args)
                values = row.elts if len(names) > 1 and isinstance(row, (ast.Tuple, ast.List)) else [row]
                for column in columns:
                    if column < len(values):
                        found |= self.ids(values[column], {})
        return found


def hint_uses(source: str) -> list[HintUse]:
    """The hint ids a test file names, with their lines (see the module docstring)."""
    return sorted(_HintFlow(ast.parse(source)).uses(), key=lambda u: (u.line, u.id))


def unknown_hints(source: str, mistakes) -> list[HintUse]:
    """The hint ids of `source` that are not among `mistakes` (the kata's toml ids)."""
    return [use for use in hint_uses(source) if use.id not in mistakes]


# --- every kata test file -----------------------------------------------------------------------


@pytest.mark.parametrize("path", KATA_TEST_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_hint_id_is_a_mistake_of_the_kata(path):
    kata = catalog.load(catalog.kata_id_for_test_file(path))
    unknown = unknown_hints(path.read_text(encoding="utf-8"), kata.mistakes)
    where = f"katas/{path.parent.name}/{path.name}"
    assert not unknown, "\n".join(
        [f"{where}:{use.line}: hint id {use.id!r} is not a mistake of {kata.id} "
         f"(katas/{kata.id}.toml [mistakes])" for use in unknown]
        + [f"  the mistakes there: {', '.join(sorted(kata.mistakes)) or '(none)'}"])


def test_the_kata_tests_name_hints_the_lint_can_read():
    """The lint follows what the course writes: if no hint id were found at all, it would be
    looking in the wrong places, and every file would pass."""
    found = {f"{p.parent.name}/{p.name}": hint_uses(p.read_text(encoding="utf-8")) for p in KATA_TEST_FILES}
    assert sum(len(uses) for uses in found.values()) > 300
    ids = {use.id for uses in found.values() for use in uses}
    # ids reached only through helpers, tables, dict lookups and diagnosing oracles
    assert {"lse_wrong", "decoupled_weight_decay", "refcount_fork", "conv1d_transpose", "position_off_by_one",
            "cache_causal_mask", "cached_mismatch", "top_p_too_few", "parse_malformed"} <= ids


# --- the lint itself -----------------------------------------------------------------------------

SOURCE = textwrap.dedent('''
    import pytest
    from graders import check, oracle, student
    from graders.testing import hinted

    kata = student("week2.attention")

    def compare(x, hint, lse_hint="lse_typo"):
        check.close(kata.softmax(x), x, hint=hint)

    def diagnose(out, variants, default=None):
        for mistake, wrong in variants.items():
            if out is wrong:
                return mistake
        return default

    def which_mistake(out):
        variants = {"variant_typo": out}
        variants["added_typo"] = out
        return diagnose(out, variants, default="default_typo")

    @pytest.mark.parametrize("x, hint", [(1, "table_typo"), (2, "wrong_axis")])
    def test_a(x, hint):
        out = kata.softmax(x)
        check.close(out, x, hint="literal_typo")
        check.close(out, x, hint="wrong_axis" if x else "branch_typo")
        check.equal(out, x, hint={"a": "lookup_typo"}[x])
        check.close(out, x, hint=oracle(which_mistake, out))
        hinted("hinted_typo", kata.softmax, x)
        compare(x, "positional_typo")
        name = "bound_typo"
        check.that(out, "", hint=name)
        check.close(out, x, hint=hint)
''')


def test_the_lint_names_each_unknown_id_with_its_line():
    found = unknown_hints(SOURCE, {"wrong_axis", "missing_scale"})
    assert {(use.id, use.line) for use in found} == {
        ("lse_typo", 8), ("variant_typo", 18), ("added_typo", 19), ("default_typo", 20),
        ("table_typo", 22), ("literal_typo", 25), ("branch_typo", 26), ("lookup_typo", 27),
        ("hinted_typo", 29), ("positional_typo", 30), ("bound_typo", 31),
    }


def test_a_file_with_only_known_ids_passes():
    source = SOURCE
    for typo in ("lse", "variant", "added", "default", "table", "literal", "branch", "lookup", "hinted",
                 "positional", "bound"):
        source = source.replace(f'"{typo}_typo"', '"missing_scale"')
    assert unknown_hints(source, {"wrong_axis", "missing_scale"}) == []
    assert unknown_hints(source, {"wrong_axis"}) != []
