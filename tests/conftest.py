"""Every test runs in its own temporary working folder, so no test writes into the project
(reports/, data/, models/) and no test depends on what a developer has there."""

import os

import pytest

# Under pytest-xdist each worker is a process of its own: XGBoost's and BLAS's thread pools would
# each take every core, and on a 2-core machine two workers' spinning threads ran a training test
# 2.6x slower than one thread each. Set before anything imports xgboost (its OpenMP reads it once).
if "PYTEST_XDIST_WORKER" in os.environ:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


@pytest.fixture(autouse=True)
def _run_in_a_temporary_folder(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
