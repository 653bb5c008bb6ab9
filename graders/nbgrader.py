"""nbgrader: the course's notebooks, generated from the katas, graded like `kata grade`.

- `kata nbgrader build [weekN ...] --course-dir DIR` writes an nbgrader course:
  `nbgrader_config.py` and `source/weekN/weekN.ipynb`, one notebook per week. Per kata: its
  teaching text (the stub's docstring), its code cells (graders.notebook: the stub with the
  reference between `### BEGIN SOLUTION` / `### END SOLUTION`), then one read-only
  autograder cell per test item, worth that test's points; hidden tests' cells hold their
  call between `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS`.
- `kata submit weekN --course-dir DIR --student ID [--impl PATH]` turns a student's `.py`
  katas into that notebook, in `DIR/submitted/ID/weekN/` (as `nbgrader collect` leaves it).
- `kata nbgrader autograde weekN --course-dir DIR [--student ID]` grades submitted notebooks
  with the sandboxed record/replay grader (`graders.grade`) instead of running them, and
  writes each test cell's score into nbgrader's gradebook, plus an autograded notebook, so
  `nbgrader export` and `nbgrader generate_feedback` work as after `nbgrader autograde`.

Plain `nbgrader autograde` works too: each test cell calls `graders.notebook.check`, which
runs the kata's tests on the code in the kernel. But the student's code runs in that same
kernel and can patch anything there (`check` itself included), so only
`kata nbgrader autograde` is as strong as `kata grade`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from . import catalog, impl, notebook, runner

NOTEBOOK_LIMIT_MB = 32
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CONFIG = '''\
# Written by `kata nbgrader build`; edit freely (the build does not overwrite this file).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "llm-katas"
# The first test cell of each kata runs all of that kata's tests (graders.notebook.check).
c.Execute.timeout = 1800
'''


# --- building -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GradedTest:
    nodeid: str  # "week2/test_attention.py::test_x[param]"
    kata: str
    points: float
    hidden: bool
    gpu: bool = False  # marked `gpu`: runs only where CUDA is


def collect_tests(week: str) -> list[GradedTest]:
    """Every graded test item of the week (hidden ones included), in file order."""
    files = catalog.test_files([k for k in catalog.all_katas() if k.week == week], hidden=True)

    results = runner.run(files, impl="reference", hidden=True, collect_only=True)
    if results.exit_code != pytest.ExitCode.OK:
        raise notebook.BuildError(f"{week}: collecting its tests failed (pytest exit status {int(results.exit_code)}): "
                                  f"run `pytest katas/{week} --impl reference --collect-only`")
    return [GradedTest(item.nodeid.split("katas/", 1)[-1], item.kata, item.points, item.hidden, item.gpu)
            for item in results.collected if item.points]


def cell_id(*parts: str) -> str:
    """A stable nbgrader grade id / nbformat cell id: [A-Za-z0-9_-], at most 64 characters."""
    text = re.sub(r"[^A-Za-z0-9_-]+", "_", "-".join(parts)).strip("_")
    if len(text) <= 64:
        return text
    return text[:55] + "-" + hashlib.sha1("-".join(parts).encode()).hexdigest()[:8]


def cell_id_of_test(nodeid: str) -> str:
    path, name = nodeid.split("::", 1)
    week, test_file = path.split("/")
    kata = test_file.removeprefix("test_").removesuffix(".py").removesuffix("_hidden")
    return cell_id(week, kata, name[:40], hashlib.sha1(nodeid.encode()).hexdigest()[:6])


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _cell(cell_type: str, source: str, id_: str, kata: dict, nbgrader: dict | None = None) -> dict:
    cell = {"cell_type": cell_type, "id": id_, "metadata": {"kata": kata}, "source": _lines(source)}
    if nbgrader is not None:
        cell["metadata"]["nbgrader"] = {"grade": False, "grade_id": id_, "locked": False, "schema_version": 3,
                                        "solution": False, "task": False, **nbgrader}
        if nbgrader.get("locked"):
            cell["metadata"].update(deletable=False, editable=False)
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


INTRO = """\
# {week}

Each kata below has its explanation, then its code cells, then its tests.

- Fill in the code cells: replace each `raise NotImplementedError()` with your code. Keep
  the first line of every code cell (`# kata {week}/...: name`): the graders find your code
  by it. Your helpers and imports go in a kata's cells (its first cell, or next to the
  function that uses them); cells you add yourself are not graded.
- Run the notebook from the top. The read-only test cells are the kata's tests, one per
  test and worth its points; the first one of a kata runs all of its tests (a few seconds),
  the others show their result.
- The same katas live in `katas/{week}/` as `.py` files; `kata submit {week}` turns those
  into this notebook.
"""


def week_notebook(week: str, tests: list[GradedTest] | None = None, gpu: bool = False) -> dict:
    """The nbgrader source notebook of a week (solutions and hidden tests included).

    Tests that need a CUDA GPU get cells only with `gpu`: a notebook cell's points cannot
    depend on the grading machine, and on one without CUDA such a test never runs (`kata
    grade` leaves it out of the total there; a cell would hand out its points or withhold
    them from a correct solution)."""
    katas = [k for k in catalog.all_katas() if k.week == week]
    if not katas:
        raise notebook.BuildError(f"no kata in {week}")
    tests = collect_tests(week) if tests is None else tests
    tests = [t for t in tests if gpu or not t.gpu]
    cells = [_cell("markdown", INTRO.format(week=week), cell_id(week, "intro"), {"intro": week}, {"locked": True})]
    for kata in katas:
        about = f"## {kata.id}" + (f" — {kata.title}" if kata.title else "") + "\n\n" + notebook.module_docstring(kata.id)
        cells.append(_cell("markdown", about, cell_id(week, kata.name, "about"), {"about": kata.id}, {"locked": True}))
        for c in notebook.solution_cells(kata.id):
            meta = {"cell": f"{c.kata}:{c.key}"}
            id_ = cell_id(week, kata.name, c.key)
            cells.append(_cell("code", c.source, id_, meta, {"solution": True} if c.solution else None))
        mine = [t for t in tests if t.kata == kata.id]
        total = sum(t.points for t in mine)
        cells.append(_cell("markdown", f"### Tests of {kata.id} ({catalog.counted(total, 'point')})\n\nThe first cell runs all of "
                           "the kata's tests in a subprocess; each cell then shows one test's result.",
                           cell_id(week, kata.name, "tests"), {"about": kata.id}, {"locked": True}))
        for t in mine:
            call = f"import graders.notebook as _kata\n_kata.check({t.nodeid!r})"
            head = f"# {'hidden test' if t.hidden else 'test'} {t.nodeid} ({catalog.counted(t.points, 'point')})\n"
            source = head + (f"### BEGIN HIDDEN TESTS\n{call}\n### END HIDDEN TESTS" if t.hidden else call)
            cells.append(_cell("code", source, cell_id_of_test(t.nodeid), {"test": t.nodeid, "hidden": t.hidden},
                               {"grade": True, "locked": True, "points": t.points}))
    return {"cells": cells, "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def weeks() -> list[str]:
    return sorted({k.week for k in catalog.all_katas()}, key=lambda w: int(w.removeprefix("week")))


def build(course_dir: str | Path, selected: list[str] | None = None, gpu: bool = False) -> list[Path]:
    course = Path(course_dir)
    course.mkdir(parents=True, exist_ok=True)
    written = []
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG)
        written.append(config)
    for week in selected or weeks():
        path = course / "source" / week / f"{week}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(week_notebook(week, gpu=gpu), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


# --- the course directory -----------------------------------------------------------------


@dataclass
class Course:
    root: Path
    course_id: str = "llm-katas"
    db_url: str = ""
    dirs: dict[str, str] = field(default_factory=lambda: {
        "source": "source", "release": "release", "submitted": "submitted", "autograded": "autograded"})

    @classmethod
    def open(cls, root: str | Path) -> Course:
        """Read nbgrader's settings for this course directory (defaults without nbgrader)."""
        root = Path(root).resolve()
        course = cls(root, db_url=f"sqlite:///{root / 'gradebook.db'}")
        try:
            from nbgrader.coursedir import CourseDirectory
            from traitlets.config import Config
            from traitlets.config.loader import PyFileConfigLoader
        except ImportError:
            return course
        config = (PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
                  if (root / "nbgrader_config.py").is_file() else Config())
        coursedir = CourseDirectory(config=config)
        coursedir.root = str(root)
        course.course_id = coursedir.course_id or "default_course"
        course.db_url = coursedir.db_url
        course.dirs = {"source": coursedir.source_directory, "release": coursedir.release_directory,
                       "submitted": coursedir.submitted_directory, "autograded": coursedir.autograded_directory}
        return course

    def path(self, step: str, week: str, student: str | None = None) -> Path:
        parts = [self.dirs[step]] + ([student] if student else []) + [week]
        return self.root.joinpath(*parts) / f"{week}.ipynb"

    def students(self, week: str) -> list[str]:
        base = self.root / self.dirs["submitted"]
        return sorted(p.name for p in base.iterdir() if (p / week).is_dir()) if base.is_dir() else []


# --- reading notebooks --------------------------------------------------------------------


class NotebookError(Exception):
    """A submitted notebook cannot be graded (the message says why, for the student)."""


def read_notebook(path: Path, max_bytes: int = NOTEBOOK_LIMIT_MB * 2**20) -> dict:
    """Parse a notebook, refusing what is not one before reading it (size, type)."""
    if path.is_symlink() or not path.is_file():
        raise NotebookError(f"{path.name} is missing or not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise NotebookError(f"{path.name} is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:g} MB limit: "
                            "clear its outputs (Kernel > Restart Kernel and Clear Outputs) and submit again")
    try:
        nb = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise NotebookError(f"{path.name} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                            "was it edited outside Jupyter?") from None
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path.name} is not a Jupyter notebook (nbformat 4 with a list of cells)")
    for cell in nb["cells"]:
        if isinstance(cell, dict):
            cell.pop("outputs", None)  # never needed: grading runs the code again
    return nb


def _source(cell: dict) -> str:
    try:
        return notebook.cell_source(cell)
    except ValueError as exc:
        raise NotebookError(str(exc)) from None


def _grade_id(cell: dict) -> str | None:
    meta = cell.get("metadata")
    info = meta.get("nbgrader") if isinstance(meta, dict) else None
    grade_id = info.get("grade_id") if isinstance(info, dict) else None
    return grade_id if isinstance(grade_id, str) else None


@dataclass
class Template:
    """What the trusted source notebook says a submission must contain."""

    week: str
    order: dict[str, list[str]]  # kata id -> cell keys, in notebook order
    kata_cells: dict[tuple[str, str], str | None]  # (kata, key) -> nbgrader grade id (None: a plain cell)
    tests: dict[str, str]  # test cell grade id -> nodeid
    cells: dict[str, dict]  # grade id -> source cell, for every nbgrader cell of the source

    @classmethod
    def load(cls, course: Course, week: str) -> Template:
        """The week's source notebook in the course directory."""
        return cls.from_notebook(json.loads(course.path("source", week).read_text(encoding="utf-8")), week)

    @classmethod
    def from_notebook(cls, nb: dict, week: str) -> Template:
        t = cls(week, {}, {}, {}, {})
        for cell in nb["cells"]:
            grade_id = _grade_id(cell)
            if grade_id:
                t.cells[grade_id] = cell
            kata = cell.get("metadata", {}).get("kata", {})
            if "test" in kata:
                t.tests[grade_id] = kata["test"]
            found = notebook.parse_marker(_source(cell)) if cell["cell_type"] == "code" else None
            if found:
                t.order.setdefault(found[0], []).append(found[1])
                t.kata_cells[found] = grade_id
        return t

    def points(self, grade_id: str) -> float:
        return float(self.cells[grade_id]["metadata"]["nbgrader"]["points"])

    @property
    def max_score(self) -> float:
        return sum(self.points(g) for g in self.tests)


def kata_modules(nb: dict, template: Template) -> dict[str, str]:
    """{kata id: module source} from a submitted notebook, after checking that it still has
    every cell of the assignment exactly once, with its id (NotebookError listing all problems)."""
    problems: list[str] = []
    by_id: dict[str, int] = {}
    by_marker: dict[tuple[str, str], int] = {}
    bodies: dict[str, dict[str, str]] = {}
    kata_ids = {gid: cell for cell, gid in template.kata_cells.items() if gid}
    for n, cell in enumerate(nb["cells"], 1):
        if not isinstance(cell, dict):
            problems.append(f"cell {n} is not a JSON object")
            continue
        grade_id = _grade_id(cell)
        if grade_id is not None:
            if grade_id in by_id:
                problems.append(f"cell {n} is a copy of cell {by_id[grade_id]} (nbgrader id {grade_id!r}): delete one")
                continue
            if grade_id not in template.cells:
                problems.append(f"cell {n} has the nbgrader id {grade_id!r}, which this assignment does not have "
                                "(a changed cell id?)")
                continue
            by_id[grade_id] = n
        if cell.get("cell_type") != "code":
            continue
        source = _source(cell)
        found = notebook.parse_marker(source)
        if found is None:
            if grade_id in kata_ids:
                problems.append(f"cell {n} lost its first line `{notebook.marker(*kata_ids[grade_id])}`: put it back")
            continue
        line = notebook.marker(*found)
        if found not in template.kata_cells:
            problems.append(f"cell {n} starts with `{line}`, which is not a cell of {template.week} (a changed first line?)")
        elif found in by_marker:
            problems.append(f"cell {n} is a copy of cell {by_marker[found]} (`{line}`): delete one")
        elif template.kata_cells[found] is not None and grade_id != template.kata_cells[found]:
            problems.append(f"cell {n} (`{line}`) has the nbgrader id {grade_id!r}, not "
                            f"{template.kata_cells[found]!r} (a changed cell id?)")
        else:
            by_marker[found] = n
            bodies.setdefault(found[0], {})[found[1]] = notebook.cell_body(source)
    for cell in template.kata_cells:
        if cell not in by_marker and not any(p for p in problems if notebook.marker(*cell) in p):
            problems.append(f"the cell `{notebook.marker(*cell)}` is missing (deleted?)")
    missing_tests = sorted(gid for gid in template.tests if gid not in by_id)
    if missing_tests:
        problems.append(f"{len(missing_tests)} test cell(s) are missing (deleted?), e.g. {missing_tests[0]!r}")
    if problems:
        raise NotebookError("; ".join(problems))
    return {kata: notebook.assemble(b, template.order[kata]) for kata, b in bodies.items()}


# --- submitting .py katas as the notebook -------------------------------------------------


def submit(week: str, course_dir: str | Path, student: str,
           implementation: impl.Implementation | None = None) -> tuple[Path, list[str]]:
    """Write DIR/submitted/STUDENT/WEEK/WEEK.ipynb from the student's `.py` katas; returns
    the path and notes (katas missing or kept whole in their header cell)."""
    course = Course.open(course_dir)
    implementation = implementation or impl.resolve("katas")
    template_path = course.path("release", week)
    if not template_path.is_file():
        template_path = course.path("source", week)
    if not template_path.is_file():
        raise FileNotFoundError(f"no {week} notebook in {course.root}: run `kata nbgrader build {week}` "
                                f"and `nbgrader generate_assignment {week}` there first")
    nb = json.loads(template_path.read_text(encoding="utf-8"))
    notes: list[str] = []
    bodies: dict[str, dict[str, str]] = {}
    for kata in [k for k in catalog.all_katas() if k.week == week]:
        items = notebook.api_items((catalog.KATAS_DIR / f"{kata.id}.py").read_text(encoding="utf-8"))
        path = implementation.path_of(kata.module)
        if not path.is_file():
            notes.append(f"{kata.id}: no {kata.week}/{kata.name}.py in {implementation.root}; its cells are the stub's")
            path = catalog.KATAS_DIR / f"{kata.id}.py"
        source = path.read_text(encoding="utf-8")
        split = notebook.split_module(source, items)
        if split is None:
            notes.append(f"{kata.id}: a syntax error, or functions in another order than the stub's: "
                         "the whole file goes in its first cell")
            split = {notebook.HEADER: source.rstrip("\n")}
        bodies[kata.id] = split
    for cell in nb["cells"]:
        found = notebook.parse_marker(_source(cell)) if cell["cell_type"] == "code" else None
        if found and found[0] in bodies:
            cell["source"] = _lines(notebook.marker(*found) + "\n" + bodies[found[0]].get(found[1], ""))
        if cell["cell_type"] == "code":
            cell.update(outputs=[], execution_count=None)
    out = course.path("submitted", week, student)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out.parent / "timestamp.txt").write_text(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    return out, notes


# --- grading submitted notebooks securely -------------------------------------------------


@dataclass
class Outcome:
    student: str
    scores: dict[str, float] = field(default_factory=dict)  # test cell grade id -> points earned
    report: object = None  # the graders.reports.Report
    notebook: dict | None = None  # the submission as read (outputs dropped)
    modules: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def score(self) -> float:
        return sum(self.scores.values())


def other_templates(course: Course, week: str) -> dict[str, Template]:
    """The source notebooks of the course's other weeks (unreadable ones left out)."""
    templates = {}
    for other in weeks():
        if other != week and course.path("source", other).is_file():
            try:
                templates[other] = Template.load(course, other)
            except (ValueError, KeyError):
                continue
    return templates


def other_weeks_modules(course: Course, student: str, templates: dict[str, Template], max_bytes: int) -> dict[str, str]:
    """The student's katas from their other submitted weeks (`templates`: see other_templates),
    which a kata may import (week 7's QLoRA uses the student's week-5 NF4): what `kata grade`
    sees in a repository holding both. A notebook that cannot be read adds nothing (its own
    grading reports why)."""
    modules: dict[str, str] = {}
    for other, template in templates.items():
        submitted = course.path("submitted", other, student)
        if not submitted.is_file():
            continue
        try:
            modules.update(kata_modules(read_notebook(submitted, max_bytes), template))
        except NotebookError:
            continue
    return modules


def grade_notebook(path: Path, template: Template, student: str, max_bytes: int, course_root: Path | None = None,
                   other_modules: dict[str, str] | None = None) -> Outcome:
    """Grade one submitted notebook with `kata grade`'s sandbox (only its week's tests; the
    student's other weeks, `other_modules`, are there to be imported); never raises for
    the student's faults."""
    from . import grade

    outcome = Outcome(student)
    try:
        with runner.exclusive:  # parsing, beside other threads' replays
            outcome.notebook = read_notebook(path, max_bytes)
            outcome.modules = kata_modules(outcome.notebook, template)
    except NotebookError as exc:
        outcome.error = str(exc)
        return outcome
    work = Path(tempfile.mkdtemp(prefix="kata-nbgrader-"))
    try:
        for kata_id, source in {**(other_modules or {}), **outcome.modules}.items():
            target = work / f"{kata_id}.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source, encoding="utf-8")
        report = grade.grade(work, course_root, hidden=True, only=template.week)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    outcome.report = report
    results = {t["name"]: t for t in report.tests}
    for grade_id, nodeid in template.tests.items():
        t = results.get(nodeid)
        # A skipped test (a GPU test on a machine without CUDA) earns nothing, as in `kata grade`
        # (which also drops it from the total; a notebook cell cannot): grade GPU notebooks on a GPU.
        outcome.scores[grade_id] = t["score"] if t else 0.0
    return outcome


def _autograded_notebook(template: Template, outcome: Outcome) -> dict:
    """The submission as nbgrader's autograde would leave it: read-only cells restored from
    the source (hidden tests included), each test cell showing its result. Edits
    `outcome.notebook` in place."""
    nb = outcome.notebook
    results = {t["name"]: t for t in outcome.report.tests}
    for cell in nb["cells"]:
        grade_id = _grade_id(cell)
        if cell.get("cell_type") == "code":
            cell.update(outputs=[], execution_count=None)
        if grade_id not in template.cells:
            continue
        source_cell = template.cells[grade_id]
        cell["metadata"]["nbgrader"] = dict(source_cell["metadata"]["nbgrader"])
        if source_cell["metadata"]["nbgrader"].get("locked"):
            cell["source"] = source_cell["source"]
        nodeid = template.tests.get(grade_id)
        if nodeid:
            t = results.get(nodeid)
            if outcome.scores[grade_id] >= template.points(grade_id):
                cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["passed\n"]}]
            else:
                message = t["output"] if t else "this test did not run"
                if t and t["status"] == "skipped":
                    message = f"not run on the grading machine: {message}"
                cell["outputs"] = [{"output_type": "error", "ename": "KataTestFailure",
                                    "evalue": message.splitlines()[0] if message else "",
                                    "traceback": message.splitlines()}]
    return nb


def autograde(course_dir: str | Path, week: str, students: list[str] | None = None, jobs: int = 1,
              max_mb: float = NOTEBOOK_LIMIT_MB, report=print) -> dict[str, Outcome]:
    """Grade every submitted notebook of the week (or `students`) and write the gradebook;
    a broken notebook gets its error and never stops the others."""
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.utils import parse_utc
    from sqlalchemy.exc import SAWarning

    course = Course.open(course_dir)
    template = Template.load(course, week)
    others = other_templates(course, week)
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            gb.find_notebook(week, week)
        except MissingEntry:
            raise SystemExit(f"kata nbgrader autograde: {week} is not in the gradebook; run "
                             f"`nbgrader generate_assignment {week}` in {course.root} first") from None
    max_bytes = int(max_mb * 2**20)
    students = students or course.students(week)
    outcomes: dict[str, Outcome] = {}
    # Reported once the pool is done, as `kata grade --batch` does: a replay running in another
    # thread captures this process's stdout at the file-descriptor level, so a line printed
    # meanwhile would be lost.
    lines: dict[str, str] = {}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {}
        for s in students:
            with runner.exclusive:  # parsing, beside the replays of students already submitted
                others_of_s = other_weeks_modules(course, s, others, max_bytes)
            futures[pool.submit(grade_notebook, course.path("submitted", week, s), template, s, max_bytes,
                                other_modules=others_of_s)] = s
        for future in as_completed(futures):
            student = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # a fault of ours: still never stops the batch
                outcome = Outcome(student, error=f"internal error while grading: {type(exc).__name__}: {exc}")
            outcomes[student] = outcome
            if outcome.error:
                lines[student] = f"{student}: NOT GRADED: {outcome.error}"
                continue
            submitted = course.path("submitted", week, student)
            stamp = submitted.parent / "timestamp.txt"
            stamp_text = stamp.read_text().strip() if stamp.is_file() else ""
            timestamp = parse_utc(stamp_text) if stamp_text else None
            with Gradebook(course.db_url, course.course_id) as gb, warnings.catch_warnings():
                # nbgrader's own autoflush warnings when it creates a submission: not ours to fix
                warnings.simplefilter("ignore", SAWarning)
                gb.update_or_create_student(student)
                gb.update_or_create_submission(week, student, **({"timestamp": timestamp} if timestamp else {}))
                for grade_id, score in outcome.scores.items():
                    grade = gb.find_grade(grade_id, week, week, student)
                    grade.auto_score = score
                    grade.needs_manual_grade = False
                gb.db.commit()
            graded = course.path("autograded", week, student)
            graded.parent.mkdir(parents=True, exist_ok=True)
            graded.write_text(json.dumps(_autograded_notebook(template, outcome), indent=1,
                                         ensure_ascii=False) + "\n", encoding="utf-8")
            if stamp.is_file():
                shutil.copy(stamp, graded.parent / "timestamp.txt")
            lines[student] = f"{student}: {outcome.score:g} / {template.max_score:g}"
    for student in sorted(lines):
        report(lines[student])
    return outcomes


# --- CLI ----------------------------------------------------------------------------------


def add_commands(sub) -> None:
    p = sub.add_parser("nbgrader", help="the course as nbgrader notebooks: build them, grade submissions securely")
    nb_sub = p.add_subparsers(dest="nbgrader_command", required=True)
    b = nb_sub.add_parser("build", help="write nbgrader_config.py and source/weekN/weekN.ipynb from the katas")
    b.add_argument("weeks", nargs="*", help="weekN ... (default: every week)")
    b.add_argument("--course-dir", required=True, help="the nbgrader course directory")
    b.add_argument("--gpu-tests", action="store_true",
                   help="also give the tests that need a CUDA GPU their cells (grade on a GPU machine)")
    b.set_defaults(func=cmd_build)
    a = nb_sub.add_parser("autograde", help="grade submitted notebooks in kata grade's sandbox, into the gradebook")
    a.add_argument("week")
    a.add_argument("--course-dir", required=True)
    a.add_argument("--student", action="append", default=None, help="only this student (repeatable)")
    a.add_argument("--jobs", type=int, default=1, help="notebooks graded at once")
    a.add_argument("--max-notebook-mb", type=float, default=NOTEBOOK_LIMIT_MB,
                   help=f"refuse larger notebooks (default {NOTEBOOK_LIMIT_MB})")
    a.set_defaults(func=cmd_autograde)

    s = sub.add_parser("submit", help="submit your .py katas of a week as its nbgrader notebook")
    s.add_argument("week")
    s.add_argument("--course-dir", required=True)
    s.add_argument("--student", required=True)
    s.add_argument("--impl", default=None, help="where your katas are: katas (default) or a directory")
    s.set_defaults(func=cmd_submit)


def _check_week(week: str) -> str:
    if week not in weeks():
        raise SystemExit(f"kata: no week called {week!r}. Known: {', '.join(weeks())}")
    return week


def cmd_build(args, console) -> int:
    for week in args.weeks:
        _check_week(week)
    if not impl.NAMED_ROOTS["reference"].is_dir():
        raise SystemExit("kata nbgrader build: the source notebooks hold the reference solutions, and this copy "
                         "of the course has no reference/ (a student copy?): build them in the instructor's copy")
    for path in build(args.course_dir, args.weeks or None, gpu=args.gpu_tests):
        console.print(f"wrote {path}")
    console.print(f"next, in {args.course_dir}: nbgrader generate_assignment WEEK")
    return 0


def cmd_submit(args, console) -> int:
    path, notes = submit(_check_week(args.week), args.course_dir, args.student, impl.resolve(args.impl))
    for note in notes:
        console.print(f"note: {note}")
    console.print(f"wrote {path}")
    return 0


def cmd_autograde(args, console) -> int:
    outcomes = autograde(args.course_dir, _check_week(args.week), args.student, args.jobs, args.max_notebook_mb,
                         report=lambda line: console.print(line, markup=False, highlight=False))
    return 1 if any(o.error for o in outcomes.values()) else 0
