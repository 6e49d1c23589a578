"""``focalinfer bench all``: every stage against its baseline and against this machine's limit.

This module orchestrates; the pieces live in their own modules: ``settings`` (what is measured),
``machine`` (machine facts, GEMM rates), ``timing`` (the interleaved harness), ``prepare`` (cached
checkpoints, exports, CPU graphs), ``inference`` (one model's measurement), ``targets`` and
``report`` (JSON, docs sections, plot, terminal summary).
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from focalinfer.bench.inference import bench_model
from focalinfer.bench.machine import _load_average, gemm_rates, machine_info
from focalinfer.bench.prepare import _code_fingerprint, _read_json, default_workdir, prepare_model
from focalinfer.bench.report import write_docs, write_plot
from focalinfer.bench.settings import (BACKENDS, NAIVE_BACKENDS, SCHEMA, STAGES, TARGET_MODEL, BenchSettings, Log,
                                       _stderr)
from focalinfer.bench.targets import evaluate_goal, evaluate_targets
from focalinfer.errors import FocalinferError, UsageError

def bench_preprocess_stage(settings: BenchSettings) -> dict:
    from focalinfer.bench.preprocess import bench_preprocess

    return bench_preprocess(count=settings.preprocess_count, model=TARGET_MODEL, rounds=settings.preprocess_rounds)


def bench_eval_stage(settings: BenchSettings) -> dict:
    """The eval helper's benchmark (scoring TXT outputs vs the seed-style np.loadtxt loop)."""
    try:
        from focalinfer.bench.eval import bench_eval
    except ImportError as e:
        return {"skipped": f"eval benchmark not available ({e})"}
    return bench_eval(count=settings.eval_count, baseline_count=settings.eval_baseline_count,
                      repeats=settings.eval_repeats)


# --- the whole run -----------------------------------------------------------------------

def eager_seconds_per_image(name: str) -> float | None:
    """One batch-1 eager forward of a randomly initialised ``name`` (after a warm-up): the yardstick
    for the up-front estimate. None when the model cannot be built."""
    import torch

    from focalinfer.registry import get_model_spec

    spec = get_model_spec(name)
    try:
        model = spec.build()
    except NotImplementedError:
        return None
    x = torch.zeros(1, 3, spec.input_size, spec.input_size)
    # Random init can leave denormal activations that run 50x slower than real weights do.
    torch.set_flush_denormal(True)
    try:
        with torch.inference_mode():
            model(x)
            start = time.perf_counter()
            model(x)
            return time.perf_counter() - start
    finally:
        torch.set_flush_denormal(False)


def estimate_seconds(settings: BenchSettings, eager_s_per_image: dict[str, float | None],
                     cached_models: int = 0) -> float:
    """A rough estimate from each model's batch-1 eager time: eager at larger batches is taken
    1.5x slower per image, each runtime backend 2x faster, exports ~30 s per graph, the
    ``--backend auto`` choice (when not cached) ~3 calls of each candidate per batch size."""
    total = 10.0  # GEMM rate, set-up
    runtimes = [b for b in settings.installed_backends() if b != "eager"]
    if "inference" in settings.stages:
        for name in settings.models:
            per_image = eager_s_per_image.get(name)
            if per_image is None:
                continue
            for size in settings.batch_sizes:
                calls = {"eager": size * per_image * (1.5 if size > 1 else 1.0), "runtime": size * per_image / 2}
                per_round = len(runtimes) * max(settings.budget_s, settings.min_iters * calls["runtime"])
                warmup = len(runtimes) * calls["runtime"]
                if "eager" in settings.backends:
                    per_round += max(settings.budget_s, settings.min_iters * calls["eager"])
                    warmup += calls["eager"]
                total += settings.rounds * per_round + warmup + 6 * calls["runtime"]
            if settings.profile:
                total += 4 * 17 * per_image / 2
        naive = bool(set(NAIVE_BACKENDS) & set(settings.backends))
        total += 30.0 * (1 + naive) * (len(settings.models) - cached_models)
    if "preprocess" in settings.stages:
        total += 0.05 * settings.preprocess_count * settings.preprocess_rounds
    if "eval" in settings.stages:
        total += 0.0006 * settings.eval_count * settings.eval_repeats + settings.eval_baseline_count / 5000
    return total


def run_bench(settings: BenchSettings, *, workdir: str | Path | None = None, command: str = "focalinfer bench all",
              resume: bool = False, log: Log = _stderr) -> dict:
    """Run every selected stage and return the JSON-able result (see docs/benchmarks.md)."""
    import torch

    from focalinfer.machine import cpu_count

    _check_settings(settings)
    workdir = Path(workdir) if workdir else default_workdir()
    threads = settings.threads or cpu_count()
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = {
            "schema": SCHEMA,
            "quick": settings.quick,
            "command": command,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(threads),
            "settings": {**asdict(settings), "stages": list(settings.stages)},
        }
        yardstick = {n: eager_seconds_per_image(n) for n in settings.models} if "inference" in settings.stages else {}
        estimate = estimate_seconds(settings, yardstick, _cached_count(settings, workdir))
        log(f"bench: {'QUICK run (fewer models, batch sizes and iterations; figures are indicative)' if settings.quick else 'full run'}"
            f" of {', '.join(settings.models)} at batch sizes {','.join(map(str, settings.batch_sizes))}; "
            f"estimated {estimate / 60:.1f} min (more if graphs must be exported per batch size); "
            f"{threads} threads; work dir {workdir}")
        result["estimated_seconds"] = round(estimate, 1)
        log("bench: fp32 GEMM rate ...")
        result["gemm"] = gemm_rates(settings.gemm_n, repeats=3 if settings.quick else 5, threads=threads)
        log(f"  limit {result['gemm']['limit_gflops']:.0f} GFLOP/s ({result['gemm']['limit_source']})")
        if "preprocess" in settings.stages:
            log("bench: preprocess ...")
            result["preprocess"] = _guarded(lambda: bench_preprocess_stage(settings))
        if "eval" in settings.stages:
            log("bench: eval ...")
            result["eval"] = _guarded(lambda: bench_eval_stage(settings))
        if "inference" in settings.stages:
            result["models"] = _bench_models(settings, workdir, result["gemm"]["limit_gflops"], resume, log)
            result["targets"] = evaluate_targets(result["models"])
            result["goal"] = evaluate_goal(result["models"])
        result["machine"]["load_average_end"] = _load_average()
        result["seconds"] = round(time.perf_counter() - started, 1)
        return result
    finally:
        torch.set_num_threads(previous_threads)


def _check_settings(settings: BenchSettings) -> None:
    from focalinfer.registry import get_model_spec

    if not settings.models and "inference" in settings.stages:
        raise UsageError("no models to benchmark; pass --models NAME[,NAME]")
    for name in settings.models:
        get_model_spec(name)  # unknown names fail here, with the list of known ones
    if not settings.batch_sizes or any(b <= 0 for b in settings.batch_sizes):
        raise UsageError("batch sizes must be positive integers, e.g. --batch-sizes 1,4,8,16,32,64")
    unknown = set(settings.stages) - set(STAGES)
    if unknown:
        raise UsageError(f"unknown stage(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")


def _cached_count(settings: BenchSettings, workdir: Path) -> int:
    fingerprint = _code_fingerprint()
    return sum(1 for name in settings.models
               if (_read_json(workdir / name / "prepared.json") or {}).get("fingerprint") == fingerprint)


def _guarded(fn: Callable[[], dict]) -> dict:
    """A stage that fails is reported as skipped with its reason; the other stages still run."""
    try:
        return fn()
    except (FocalinferError, NotImplementedError, ImportError, RuntimeError) as e:
        return {"skipped": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}


def _bench_models(settings: BenchSettings, workdir: Path, limit: float, resume: bool, log: Log) -> dict:
    from focalinfer.util import ensure_writable_dir, write_json_atomic

    ensure_writable_dir(workdir, "benchmark work directory")
    partial_path = workdir / "partial-results.json"
    partial = _read_json(partial_path) if resume else None
    done = partial["models"] if partial and partial.get("key") == settings.key() else {}
    models = {}
    for name in settings.models:
        if name in done:
            log(f"bench: {name}: reusing the figures of the interrupted run (--resume)")
            models[name] = done[name]
            continue
        log(f"bench: {name} ...")
        try:
            prepared = prepare_model(name, workdir, settings.batch_sizes, log, settings.threads or None,
                                     settings.backends)
            models[name] = bench_model(prepared, settings, limit, log)
        except (FocalinferError, NotImplementedError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log(f"  {name}: skipped ({reason})")
            models[name] = {"skipped": reason}
        done[name] = models[name]
        write_json_atomic(partial_path, {"key": settings.key(), "models": done})
    return models



DEFAULT_JSON = "docs/benchmarks.json"
DEFAULT_DOCS = "docs/benchmarks.md"
DEFAULT_PLOT = "docs/benchmarks.png"
PLOT_INSTALL_HINT = "pip install 'focalinfer[plot]'"


def parse_list(text: str | None, kind=str) -> list | None:
    """'1,4, 8' → [1, 4, 8]; None or '' → None."""
    if not text:
        return None
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"cannot read {text!r} as a comma-separated list, e.g. 1,4,8,16") from None


def bench_all(*, quick: bool = False, models: list[str] | None = None, batch_sizes: list[int] | None = None,
              json_out: str | None = None, docs: str | None = None, plot: str | None = None,
              workdir: str | None = None, threads: int = 0, skip: list[str] | None = None,
              backends: list[str] | None = None, resume: bool = False, command: str = "focalinfer bench all", log: Log = _stderr) -> dict:
    """What ``focalinfer bench all`` does: measure, then write JSON, docs sections and plot.

    A full run writes docs/benchmarks.{json,md,png} unless told otherwise; a quick run writes only
    what it is given, so it never replaces a full run's figures by accident.
    """
    stages = tuple(s for s in STAGES if s not in set(skip or ()))
    unknown = set(skip or ()) - set(STAGES)
    if unknown:
        raise UsageError(f"--skip {','.join(sorted(unknown))}: choose from {', '.join(STAGES)}")
    unknown = set(backends or ()) - set(BACKENDS)
    if unknown or (backends is not None and "ort" not in backends):
        raise UsageError(f"--backends {','.join(backends)}: choose from {', '.join(BACKENDS)}, including ort")
    make = BenchSettings.quick_run if quick else BenchSettings.full
    extra = {"backends": tuple(b for b in BACKENDS if b in backends)} if backends else {}
    settings = make(models=models or (_quick_models() if quick else None), batch_sizes=batch_sizes,
                    threads=threads, stages=stages, **extra)
    if not quick:
        json_out, docs, plot = json_out or DEFAULT_JSON, docs or DEFAULT_DOCS, plot or DEFAULT_PLOT
    result = run_bench(settings, workdir=workdir, command=command, resume=resume, log=log)
    outputs = {}
    if json_out:
        from focalinfer.util import ensure_writable_dir, write_json_atomic

        ensure_writable_dir(Path(json_out).parent, "JSON output directory")
        write_json_atomic(json_out, result)
        outputs["json"] = json_out
    if docs:
        outputs["docs"] = str(write_docs(result, docs))
    if plot and result.get("models"):
        written = write_plot(result, plot)
        if written:
            outputs["plot"] = str(written)
        else:
            log(f"bench: plot skipped: matplotlib is not installed ({PLOT_INSTALL_HINT})")
    result["outputs"] = outputs
    return result


def _quick_models() -> list[str]:
    """The target model when it can be built, else the first lead model that can."""
    from focalinfer.registry import get_model_spec, model_names

    for name in [TARGET_MODEL] + [n for n in model_names(lead_only=True) if n != TARGET_MODEL]:
        try:
            get_model_spec(name).build()
        except NotImplementedError:
            continue
        return [name]
    return [TARGET_MODEL]
