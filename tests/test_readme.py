"""The README's install and test commands are exactly what CI runs."""

import re

from graders.impl import PROJECT_ROOT


def readme_block(heading: str) -> list[str]:
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_ci_runs_the_readme_install_and_test_commands():
    ci = [line.strip() for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()]
    for command in readme_block("Install") + readme_block("The project's tests"):
        assert any(line == command or line.startswith(command + " ||") for line in ci), \
            f"README command not run by .ci/run: {command}"
