"""Time LCE models on a machine that has Python, numpy and LCE's interpreter.

This file is copied as-is to the device and run there with ``python
runner.py --spec JSON``; it must stay self-contained (standard library, numpy
and LCE's compiled interpreter module, nothing from bnnconvert). It loads the
interpreter extension directly from the installed ``larq_compute_engine``
package without running that package's ``__init__``, which would import
TensorFlow (about 3 s, and TensorFlow is rarely on a board).

The spec is a JSON object::

    {"models": ["/path/a.tflite", ...],
     "configs": [{"threads": 1, "indirect_bgemm": false, "xnnpack": false}, ...],
     "warmup": 3, "runs": null, "min_runs": 10, "max_runs": 200,
     "max_seconds": 20.0, "median_tolerance": 0.02, "seed": 0}

Every (model, config) pair is a job. After ``warmup`` untimed runs per job,
rounds run every job once, rotating the start so that no job always goes
first, until ``runs`` rounds (when given) or until the median of every job is
stable: at least ``min_runs`` rounds and the distribution-free 95 % interval
of each median within ``median_tolerance`` of it (or ``max_runs`` /
``max_seconds`` reached). A timed run is one ``predict`` call: input copy in,
inference, output copy out.

Output: one line per event on stdout, ``BNNBENCH <json>``, flushed at once so
that a host reading over ssh keeps every finished round if the link drops.
Events: ``start`` (versions, machine), ``loaded`` (per job: init time,
shapes), ``warmup`` (per job: first and warm-up times), ``round`` (one
latency per job, in microseconds), ``done`` (why it stopped), ``error``.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import math
import os
import platform
import sys
import time

PREFIX = "BNNBENCH "


def emit(event: str, **fields: object) -> None:
    """Print one machine-readable event line and flush it."""
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def load_interpreter_module():
    """Import LCE's ``interpreter_wrapper_lite`` extension without TensorFlow."""
    spec = importlib.util.find_spec("larq_compute_engine")
    if spec is None or spec.origin is None:
        raise RuntimeError("larq_compute_engine is not installed for " + sys.executable)
    folder = os.path.join(os.path.dirname(spec.origin), "tflite", "python")
    found = sorted(glob.glob(os.path.join(folder, "interpreter_wrapper_lite*")))
    if not found:
        raise RuntimeError("no interpreter_wrapper_lite extension in " + folder)
    ext = importlib.util.spec_from_file_location("interpreter_wrapper_lite", found[0])
    module = importlib.util.module_from_spec(ext)
    ext.loader.exec_module(module)
    return module


def package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def random_inputs(interpreter, rng, np) -> list:
    """One random sample per input, in the input's dtype and shape."""
    inputs = []
    for dtype, shape in zip(interpreter.input_types, interpreter.input_shapes, strict=True):
        dtype = np.dtype(dtype)
        if dtype == np.bool_:
            value = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        else:
            value = rng.standard_normal(shape).astype(dtype)
        inputs.append(value)
    return inputs


def median_is_stable(samples: list[float], tolerance: float) -> bool:
    """Whether the 95 % order-statistic interval of the median is within tolerance.

    For n samples the ranks n/2 -/+ 1.96*sqrt(n)/2 bound the median with about
    95 % confidence whatever the distribution.
    """
    n = len(samples)
    ordered = sorted(samples)
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half))
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    if median <= 0:
        return False
    return (ordered[hi] - ordered[lo]) / 2 <= tolerance * median


def run(spec: dict) -> None:
    import numpy as np

    lite = load_interpreter_module()
    emit(
        "start",
        python=platform.python_version(),
        numpy=np.__version__,
        lce=package_version("larq-compute-engine"),
        machine=platform.machine(),
        system=platform.platform(),
        cpu_count=os.cpu_count(),
        pid=os.getpid(),
    )
    rng = np.random.default_rng(spec.get("seed", 0))
    models = []
    for path in spec["models"]:
        with open(path, "rb") as f:
            models.append(f.read())
    jobs = []
    for m, flatbuffer in enumerate(models):
        for c, config in enumerate(spec["configs"]):
            start = time.perf_counter()
            interpreter = lite.LiteInterpreter(
                flatbuffer,
                int(config["threads"]),
                False,
                bool(config["indirect_bgemm"]),
                bool(config["xnnpack"]),
            )
            init_us = (time.perf_counter() - start) * 1e6
            inputs = random_inputs(interpreter, rng, np)
            jobs.append((interpreter, inputs))
            emit(
                "loaded",
                job=len(jobs) - 1,
                model=m,
                config=c,
                init_us=init_us,
                input_shapes=[list(s) for s in interpreter.input_shapes],
                input_types=[np.dtype(t).name for t in interpreter.input_types],
            )

    def timed(job) -> float:
        interpreter, inputs = job
        start = time.perf_counter_ns()
        interpreter.predict(inputs)
        return (time.perf_counter_ns() - start) / 1e3

    for j, job in enumerate(jobs):
        first = timed(job)
        warm = [timed(job) for _ in range(max(0, int(spec.get("warmup", 3)) - 1))]
        emit("warmup", job=j, first_us=first, warmup_us=warm)

    fixed = spec.get("runs")
    min_runs = int(spec.get("min_runs", 10))
    max_runs = int(spec.get("max_runs", 200))
    max_seconds = float(spec.get("max_seconds", 20.0))
    tolerance = float(spec.get("median_tolerance", 0.02))
    samples: list[list[float]] = [[] for _ in jobs]
    began = time.perf_counter()
    rounds = 0
    reason = "runs"
    while True:
        if fixed is not None and rounds >= int(fixed):
            break
        if fixed is None:
            if rounds >= min_runs and all(median_is_stable(s, tolerance) for s in samples):
                reason = "stable"
                break
            if rounds >= max_runs:
                reason = "max_runs"
                break
            if rounds >= min_runs and time.perf_counter() - began > max_seconds:
                reason = "max_seconds"
                break
        order = [(rounds + k) % len(jobs) for k in range(len(jobs))]
        latencies = [0.0] * len(jobs)
        for j in order:
            latencies[j] = timed(jobs[j])
            samples[j].append(latencies[j])
        emit("round", round=rounds, us=latencies, order=order)
        rounds += 1
    emit("done", rounds=rounds, reason=reason, seconds=time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the job spec as a JSON object")
    args = parser.parse_args(argv)
    try:
        run(json.loads(args.spec))
    except Exception as e:  # reported to the host as one event, then a failing exit
        emit("error", message=f"{type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
