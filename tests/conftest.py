"""Compile less and compile once, for the whole test run (the suite is mostly XLA compiles).

- One persistent XLA cache for the run: both xdist workers and every subprocess a test starts
  (the command-line, kill and two-device tests) compile the same chunks; the first compile of a
  program is shared and every repeat is a load.
- XLA's optimisation passes off (``jax_disable_most_optimizations``): tests check what a
  program computes, not how fast, and unoptimised programs compile in about half the time (a
  test chunk 40 s -> 22 s on a slow day). Values agree with the optimised programs within float
  tolerance, which is all any test asks. The learning test turns them back on
  (``optimized`` below): it runs 8-14k env steps, where execution speed matters."""

import os
import tempfile

import jax
import pytest


def _cache_dir() -> str:
    # xdist gives every worker of one run the same id; a plain run gets a directory of its own.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        return tempfile.mkdtemp(prefix="qvpo-mjx-xla-")
    path = os.path.join(tempfile.gettempdir(), f"qvpo-mjx-xla-{run}")
    os.makedirs(path, exist_ok=True)
    return path


CACHE_DIR = _cache_dir()
os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
jax.config.update("jax_disable_most_optimizations", True)
# Subprocesses read these at their first compile (JAX reads JAX_* variables as config defaults).
os.environ["JAX_COMPILATION_CACHE_DIR"] = CACHE_DIR
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1.0"
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@pytest.fixture
def optimized():
    """XLA's optimisations on for one test (a learning run: execution, not compile, dominates)."""
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", True)
