"""A grade report as text, JSON, Markdown or JUnit XML, safe to show whatever students wrote.

Test output carries strings a submission controls (its exception messages, its prints). A
report must show them as data and never let them act as report syntax: close a Markdown
code fence and print a fake grade table, end a JUnit element, move the cursor of a
terminal. So every student-controlled string goes through `plain` (control characters
shown as escapes, lone surrogates replaced) and then the format's own quoting: a code fence
longer than any run of backticks inside it (Markdown), XML escaping (JUnit), JSON escaping.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

@dataclass
class Report:
    """One submission's grade: per test (close to Gradescope's results.json), per kata, per week."""

    submission: str
    tests: list[dict] = field(default_factory=list)
    katas: dict[str, dict] = field(default_factory=dict)
    protections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(t["score"] for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t["max_score"] for t in self.tests)

    def weeks(self) -> dict[str, dict]:
        weeks: dict[str, dict] = {}
        for kata_id, t in self.katas.items():
            w = weeks.setdefault(kata_id.split("/")[0], {"score": 0.0, "max_score": 0.0})
            w["score"] += t["score"]
            w["max_score"] += t["max_score"]
        return weeks

    def as_json(self) -> dict:
        return {"score": self.score, "max_score": self.max_score, "submission": self.submission,
                "tests": self.tests, "katas": self.katas, "weeks": self.weeks(),
                "sandbox": {"protections": self.protections,
                            "note": "throughput tests are timed by the grader: CPU time of separate sandboxed runs"},
                "notes": self.notes}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def plain(text: str, limit: int | None = None) -> str:
    """`text` as inert characters: control and bidirectional-override characters become
    `\\xNN` escapes (tabs and newlines stay), invalid code points become U+FFFD."""
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    if limit is not None and len(text) > limit:
        text = text[:limit] + "\n[... cut]"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                        text)


def fenced(text: str) -> list[str]:
    """A Markdown code block that `text` cannot end: the fence is longer than any run of
    backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", text, fence]


def to_markdown(report: Report) -> str:
    lines = [f"## Grade: {report.score:g} / {report.max_score:g}", "", "| kata | points | tests passed |",
             "| --- | ---: | ---: |"]
    for kata_id, t in report.katas.items():
        lines.append(f"| {kata_id} | {t['score']:g} / {t['max_score']:g} | {t['passed']}/{t['passed'] + t['failed']} |")
    failures = [t for t in report.tests if t["status"] not in ("passed", "skipped")]
    if failures:
        lines += ["", "<details><summary>Failures</summary>", ""]
        for t in failures[:50]:
            lines += [f"**{escape(plain(t['name']))}**", "", *fenced(plain(t["output"], 1500)), ""]
        lines.append("</details>")
    if report.notes:
        lines += ["", "Notes:", "", *fenced("\n".join(plain(n, 500) for n in report.notes))]
    lines += ["", f"Sandbox: {', '.join(report.protections)}."]
    return "\n".join(lines) + "\n"


def to_junit(report: Report) -> str:
    cases = []
    for t in report.tests:
        body = ""
        output = plain(t["output"])
        if t["status"] in ("failed", "error"):
            body = f"<failure message={quoteattr(output[:200])}>{escape(output)}</failure>"
        elif t["status"] == "skipped":
            body = "<skipped/>"
        cases.append(f'  <testcase classname={quoteattr(t["kata"] or "")} name={quoteattr(plain(t["name"]))}>'
                     f"{body}</testcase>")
    failures = sum(t["status"] in ("failed", "error") for t in report.tests)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="kata grade" tests="{len(report.tests)}" '
            f'failures="{failures}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def to_text(report: Report) -> str:
    lines = [f"{kata_id:<28} {t['score']:>6g} / {t['max_score']:<6g}" for kata_id, t in report.katas.items()]
    lines.append(f"{'total':<28} {report.score:>6g} / {report.max_score:<6g}")
    failures = [t for t in report.tests if t["status"] not in ("passed", "skipped")]
    for t in failures[:50]:
        first = plain(t["output"], 300).strip().splitlines()[:1] or [""]
        lines.append(f"FAILED {plain(t['name'])}: {first[0]}")
    lines.append(f"sandbox: {', '.join(report.protections)}")
    lines += [f"note: {plain(n, 500)}" for n in report.notes]
    return "\n".join(lines) + "\n"


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=1) + "\n"  # json escapes every control character


FORMATS = {"text": ".txt", "json": ".json", "markdown": ".md", "junit": ".xml"}


def render(report: Report, fmt: str) -> str:
    return {"json": to_json, "markdown": to_markdown, "junit": to_junit}.get(fmt, to_text)(report)
