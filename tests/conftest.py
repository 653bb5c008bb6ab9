"""Fixtures the project's own tests share."""

import os

import pytest
from hypothesis import settings

from graders import checking, impl


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """For tests that run `kata` commands in this process: `kata list`'s record and the hint
    counter go to a temporary directory, never the course's .kata/, and what a kata session
    in this process changes for the rest of it ($KATA_IMPL, the hypothesis profile) is put
    back afterwards."""
    state = tmp_path / "state"
    monkeypatch.setattr(checking, "STATE_DIR", state)
    original = os.environ.get(impl.ENV_VAR)
    monkeypatch.setenv(impl.ENV_VAR, "recorded")  # monkeypatch restores what was there, or its absence
    if original is None:
        monkeypatch.delenv(impl.ENV_VAR)
    else:
        monkeypatch.setenv(impl.ENV_VAR, original)
    profile = settings._current_profile
    yield state
    settings.load_profile(profile)
