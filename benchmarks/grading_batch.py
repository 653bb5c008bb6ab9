"""How fast does `kata grade --batch` grade a class? Seconds per submission, and --jobs scaling.

    python benchmarks/grading_batch.py                      # 8 submissions of week 2, jobs 1 and 2
    python benchmarks/grading_batch.py --week week3 --submissions 4 --jobs 1 2 4

The batch is made from this course: a third of the submissions are the reference (full
marks), a third the stubs (nothing), a third half-done (the reference's week-N modules with
every other function replaced by its stub). Each run is the real command, in a subprocess,
with hidden tests, so the figure includes the sandbox, recording and replay.
"""

import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def half_done(reference: Path, stub: Path) -> str:
    """The reference module with every other top-level function body taken from the stub."""
    ref_source, stub_source = reference.read_text(), stub.read_text()
    stub_functions = {node.name: node for node in ast.parse(stub_source).body if isinstance(node, ast.FunctionDef)}
    lines = ref_source.splitlines(keepends=True)
    functions = [node for node in ast.parse(ref_source).body
                 if isinstance(node, ast.FunctionDef) and node.name in stub_functions]
    for node in reversed(functions[::2]):
        stub_node = stub_functions[node.name]
        replacement = stub_source.splitlines(keepends=True)[stub_node.lineno - 1: stub_node.end_lineno]
        lines[node.lineno - 1: node.end_lineno] = replacement
    return "".join(lines)


def make_batch(directory: Path, week: str, count: int) -> None:
    for i in range(count):
        kind = ("reference", "stubs", "half")[i % 3]
        target = directory / f"student{i:02d}-{kind}" / week
        target.mkdir(parents=True)
        for module in sorted((ROOT / "reference" / week).glob("*.py")):
            stub = ROOT / "katas" / week / module.name
            source = {"reference": module.read_text(), "stubs": stub.read_text(),
                      "half": half_done(module, stub)}[kind]
            (target / module.name).write_text(source)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--week", default="week2")
    parser.add_argument("--submissions", type=int, default=8)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        batch = Path(tmp) / "batch"
        make_batch(batch, args.week, args.submissions)
        print(f"{args.submissions} submissions of {args.week}, hidden tests included")
        print(f"{'jobs':>4} {'seconds':>8} {'s / submission':>15}")
        for jobs in args.jobs:
            gradebook = Path(tmp) / f"gradebook-{jobs}.csv"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "graders.cli", "grade", "--batch", str(batch), "--only", args.week,
                            "--hidden", "--jobs", str(jobs), "--csv", str(gradebook)],
                           cwd=ROOT, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            print(f"{jobs:>4} {seconds:>8.1f} {seconds / args.submissions:>15.1f}")
        print("gradebook (last run):")
        print(gradebook.read_text(), end="")


if __name__ == "__main__":
    main()
