"""Root conftest: every test in the course runs under the llm-katas pytest plugin.

(`pytester` serves the project's own tests of that plugin, in tests/.)
"""

pytest_plugins = ["graders.plugin", "pytester"]
