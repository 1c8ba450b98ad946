"""Every test runs in its own temporary working folder, so no test writes into the project
(reports/, data/, models/) and no test depends on what a developer has there."""

import pytest


@pytest.fixture(autouse=True)
def _run_in_a_temporary_folder(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
