"""Operator tests run torch single-threaded (see ``single_torch_thread`` in tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _single_torch_thread(single_torch_thread):
    yield
