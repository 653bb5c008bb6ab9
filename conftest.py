"""Root conftest: every test in the course runs under the llm-katas pytest plugin."""

pytest_plugins = ["graders.plugin"]
