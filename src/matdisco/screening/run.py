"""Streaming, resumable screening of a composition space, in-process or on Dask.

Output layout::

    OUT/
      manifest.json              # space, model, completed chunks (written atomically)
      data/part-000000.parquet   # one file per chunk: formula, predicted, spread, chunk
      data/part-000001.parquet

Every chunk is computed and written to a temporary file, renamed into place, and only
then recorded in the manifest (atomically). A job killed at any moment therefore leaves
complete part files plus a manifest that lists a subset of them; starting it again
recomputes exactly the chunks not in the manifest (overwriting any stray part file of an
unrecorded chunk), so no row is lost and none duplicated. Memory is bounded by at most
three chunks in flight (see ``_run_pipeline``), whatever the size of the space.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco._io import atomic_path, read_json, write_json
from matdisco.screening.enumerate import CompositionSpace
from matdisco.screening.models import describe_model, load_model

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def _result_schema() -> Any:
    """Columns of every part file (and of an output without completed chunks)."""
    import pyarrow as pa

    return pa.schema([("formula", pa.string()), ("predicted", pa.float32()),
                      ("spread", pa.float32()), ("chunk", pa.int32())])


_MODEL_CACHE: dict[str, Any] = {}

#: How long to wait for a Dask scheduler given by address.
DASK_CONNECT_TIMEOUT = "20s"


def part_path(out: Path, chunk_id: int) -> Path:
    """Parquet file of one chunk."""
    return out / "data" / f"part-{chunk_id:06d}.parquet"


def prepare_chunk(space: CompositionSpace, model: Any, chunk_id: int,
                  sparse: bool = True) -> tuple[np.ndarray, np.ndarray, Any]:
    """Enumerate and encode one chunk: ``(elems, amounts, model_inputs)``.

    ``model_inputs`` is a ``(columns, fractions)`` pair for models with a sparse input
    path (when ``sparse``), else a dense fraction matrix over ``model.elements``.
    """
    ch = space.chunk(chunk_id)
    columns = tuple(model.elements)
    elems, amts = space.indices(ch.start, ch.stop)
    if sparse and getattr(model, "supports_sparse", False):
        return elems, amts, space.sparse_inputs(elems, amts, columns)
    return elems, amts, space.fractions_from_indices(elems, amts, columns)


def predict_inputs(model: Any, inputs: Any,
                   batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Model mean and spread (float32) over prepared inputs, ``batch_size`` rows a call."""
    sparse = isinstance(inputs, tuple)
    n = len(inputs[0]) if sparse else len(inputs)
    mean = np.empty(n, dtype=np.float32)
    std = np.empty(n, dtype=np.float32)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        if sparse:
            m, s = model.predict_sparse(inputs[0][lo:hi], inputs[1][lo:hi])
        else:
            m, s = model.predict_fractions(inputs[lo:hi])
        mean[lo:hi] = m
        std[lo:hi] = s
    return mean, std


def chunk_table(space: CompositionSpace, chunk_id: int, elems: np.ndarray,
                amts: np.ndarray, mean: np.ndarray, std: np.ndarray,
                keep_below: float | None = None) -> Any:
    """The output table of one chunk (rows predicted above ``keep_below`` dropped)."""
    import pyarrow as pa

    if keep_below is not None:
        sel = mean <= keep_below
        elems, amts, mean, std = elems[sel], amts[sel], mean[sel], std[sel]
    return pa.table({
        "formula": space.formulas_from_indices(elems, amts),
        "predicted": pa.array(mean),
        "spread": pa.array(std),
        "chunk": pa.array(np.full(len(mean), chunk_id, dtype=np.int32)),
    })


def predict_chunk(space: CompositionSpace, model: Any, chunk_id: int,
                  batch_size: int = 4096, keep_below: float | None = None,
                  sparse: bool = True) -> Any:
    """Enumerate, encode and predict one chunk; returns a pyarrow Table.

    Columns: ``formula`` (string), ``predicted`` (float32), ``spread`` (float32),
    ``chunk`` (int32). With ``keep_below``, only rows predicted at or below it are kept.
    With ``sparse`` (default) models that support it get (column, fraction) pairs instead
    of a dense fraction matrix.
    """
    elems, amts, inputs = prepare_chunk(space, model, chunk_id, sparse)
    mean, std = predict_inputs(model, inputs, batch_size)
    return chunk_table(space, chunk_id, elems, amts, mean, std, keep_below)


def write_part(out: Path, chunk_id: int, table: Any) -> int:
    """Write one chunk's table atomically; returns its row count."""
    import pyarrow.parquet as pq

    path = part_path(out, chunk_id)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="snappy")
    return table.num_rows


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@functools.cache
def _tune_malloc() -> None:
    """Undo Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` in a worker (glibc only).

    That setting also freezes glibc's mmap threshold at 128 KiB, so every batch's
    activation buffers (a few MB) are mmapped, page-faulted and unmapped again: inference
    ran ~2.8x slower in Dask workers than in-process. Raising both thresholds keeps
    those buffers on the heap.
    """
    with contextlib.suppress(Exception):
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 64 * 1024 * 1024)  # M_MMAP_THRESHOLD


@functools.lru_cache(maxsize=1)
def _space_from_json(space_json: str) -> CompositionSpace:
    """A worker's space, built once: its combination tables take a while."""
    return CompositionSpace.from_dict(json.loads(space_json))


def _worker_chunk(space_dict: dict[str, Any], model_spec: Any, out: str, chunk_id: int,
                  batch_size: int, keep_below: float | None, threads: int | None,
                  fast: bool, jit: bool, sparse: bool = True) -> tuple[int, int]:
    """Dask task: compute and write one chunk (model loaded once per worker process)."""
    _tune_malloc()
    _set_threads(threads)
    key = repr((model_spec, fast, jit)) if not hasattr(model_spec, "predict_fractions") \
        else str(id(model_spec))
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = load_model(model_spec, fast=fast, jit=jit)
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = model
    space = _space_from_json(json.dumps(space_dict, sort_keys=True))
    table = predict_chunk(space, model, chunk_id, batch_size, keep_below, sparse)
    return chunk_id, write_part(Path(out), chunk_id, table)


@dataclass
class ScreenResult:
    """Outcome of :func:`screen`."""

    out: Path
    n_chunks: int
    completed: int
    rows_written: int
    compositions: int
    seconds: float
    chunks_this_run: int
    compositions_this_run: int = 0
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def finished(self) -> bool:
        """All chunks done."""
        return self.completed == self.n_chunks

    def dataset(self) -> Any:
        """The output as a ``pyarrow.dataset.Dataset``."""
        return open_results(self.out)


def read_manifest(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``OUT/manifest.json`` (clear error when corrupt)."""
    path = Path(out) / MANIFEST
    m = read_json(path)
    ok = (isinstance(m, dict) and m.get("version") == MANIFEST_VERSION
          and isinstance(m.get("space"), dict) and isinstance(m.get("completed"), dict)
          and isinstance(m.get("n_chunks"), int))
    if ok:
        try:
            done = {int(k): int(v) for k, v in m["completed"].items()}
        except (TypeError, ValueError):
            ok = False
        else:
            ok = all(0 <= k < m["n_chunks"] and v >= 0 for k, v in done.items())
    if not ok:
        raise MatdiscoError(
            f"{path}: corrupt screening manifest (expected version {MANIFEST_VERSION} with "
            "space, n_chunks and completed chunk ids); delete the output folder to restart"
        )
    return m


def open_results(out: str | os.PathLike[str],
                 manifest: dict[str, Any] | None = None) -> Any:
    """The completed chunks of a screening output as a ``pyarrow.dataset.Dataset``.

    Raises :class:`MatdiscoError` when a recorded part file is missing (a damaged file
    surfaces when the dataset is scanned). Running :func:`screen` again on the folder
    recomputes missing or damaged chunks. An output without completed chunks is an empty
    dataset with the usual columns. ``manifest``: the output's manifest when the caller
    has already read it (:func:`read_manifest`).
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    schema = _result_schema()
    out = Path(out)
    m = read_manifest(out) if manifest is None else manifest
    files = [part_path(out, int(k)) for k in sorted(m["completed"], key=int)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise MatdiscoError(
            f"{out}: {len(missing)} recorded chunk(s) have no part file (first: "
            f"{missing[0]}); run the same `screen run` again to recompute them"
        )
    try:
        return ds.dataset([str(f) for f in files], format="parquet", schema=schema)
    except (pa.ArrowException, OSError) as exc:
        raise MatdiscoError(
            f"{out}: unreadable part file ({exc}); run the same `screen run` again to "
            "recompute damaged chunks"
        ) from exc


def _damaged_chunks(out: Path, completed: dict[int, int]) -> list[int]:
    """Recorded chunks whose part file is missing, unreadable or has another row count."""
    import pyarrow.parquet as pq

    bad = []
    for cid, rows in completed.items():
        path = part_path(out, cid)
        try:
            ok = pq.read_metadata(path).num_rows == rows
        except Exception:  # missing, truncated or not Parquet
            ok = False
        if not ok:
            bad.append(cid)
    return bad


def screen(space: CompositionSpace, model: Any, out: str | os.PathLike[str], *,
           batch_size: int = 4096, keep_below: float | None = None,
           threads: int | None = None, scheduler: str | None = None,
           workers: int | None = None, processes: bool = True,
           fast: bool = True, jit: bool = False, sparse: bool = True,
           max_chunks: int | None = None, progress: bool = False,
           on_chunk: Callable[[int, int], None] | None = None) -> ScreenResult:
    """Predict every composition of ``space`` and append the results to ``out``.

    Parameters
    ----------
    space : CompositionSpace
        The space (its ``chunk_size`` sets the unit of work and of resumption).
    model : path, list of paths or model object
        Run directory, several run directories (an ensemble) or a loaded model.
    out : path
        Output folder; an existing one is resumed (its manifest must describe the same
        space and model). A non-empty folder without a manifest is refused.
    batch_size : int
        Rows per model call inside a chunk.
    keep_below : float, optional
        Keep only rows predicted at or below this value (e.g. ``-0.2`` eV/atom: nothing
        above can lie 0.2 eV/atom below a hull whose energies are <= 0).
    threads : int, optional
        ``torch.set_num_threads`` for the in-process backend and for each Dask worker.
        In-process default: all cores but one (the pipeline's two helper threads use the
        last one); Dask default: 1 per worker.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:port``).
    workers : int, optional
        Start a ``LocalCluster`` on loopback with this many single-threaded workers.
    processes : bool
        LocalCluster workers as separate processes (default) or as threads of this
        process (still talking TCP over loopback; quick to start, used by tests).
    fast, jit : bool
        Fast inference path (see :func:`matdisco.screening.models.load_model`).
    sparse : bool
        Feed (column, fraction) pairs to models that support it (first layer as a
        gather) instead of dense fraction matrices.
    max_chunks : int, optional
        Stop after this many chunks in this call (the rest stay resumable).
    progress : bool
        Show a progress bar.
    on_chunk : callable, optional
        ``on_chunk(chunk_id, rows)`` after each chunk is recorded (tests use it to
        simulate a kill).

    Returns
    -------
    ScreenResult
    """
    t0 = time.perf_counter()
    out = Path(out)
    if batch_size < 1:
        raise MatdiscoError(f"batch_size must be positive, got {batch_size}")
    if scheduler is not None and workers is not None:
        raise MatdiscoError("give either scheduler= or workers=, not both")
    if workers is not None and workers < 1:
        raise MatdiscoError(f"workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise MatdiscoError(f"threads must be >= 1, got {threads}")
    if max_chunks is not None and max_chunks < 0:
        raise MatdiscoError(f"max_chunks must be >= 0, got {max_chunks}")
    if keep_below is not None and math.isnan(keep_below):
        raise MatdiscoError("keep_below must be a number, got NaN")
    if threads is None and scheduler is None and workers is None:
        threads = max(1, len(os.sched_getaffinity(0)) - 1) \
            if hasattr(os, "sched_getaffinity") else max(1, (os.cpu_count() or 2) - 1)
    if len(space) == 0:
        raise MatdiscoError("the composition space is empty (check arities against "
                            "must_contain and the element filters); nothing to screen")
    _set_threads(threads)
    loaded = load_model(model, fast=fast, jit=jit)
    space.column_map(loaded.elements)  # the model must know every element of the space
    identity: dict[str, Any] = {"space": space.to_dict(),
                                "model": describe_model(loaded, model),
                                "keep_below": keep_below}
    mpath = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise MatdiscoError(f"screening output {out} is a file; choose a folder")
    if not mpath.exists() and out.is_dir() and any(out.iterdir()):
        raise MatdiscoError(f"{out} is not empty and holds no screening output ({MANIFEST} "
                            "missing); choose a new or empty output folder")
    if mpath.exists():
        manifest = read_manifest(out)
        old_model = manifest.get("model")
        if isinstance(old_model, dict) and "sha256" not in old_model:
            # a manifest written before weight digests were recorded: compare the rest
            identity["model"] = {k: v for k, v in identity["model"].items() if k != "sha256"}
        for key in ("space", "model", "keep_below"):
            if manifest.get(key) != identity[key]:
                raise MatdiscoError(
                    f"{mpath}: the existing screening output was made with a different "
                    f"{key}; use another output folder"
                )
    else:
        manifest = {"version": MANIFEST_VERSION, **identity, "n_chunks": space.n_chunks,
                    "n_compositions": len(space), "completed": {}}
        write_json(mpath, manifest)
    completed = {int(k): int(v) for k, v in manifest["completed"].items()}
    damaged = _damaged_chunks(out, completed)
    if damaged:  # recorded, but the part file is gone or broken: compute them again
        for cid in damaged:
            del completed[cid]
        manifest["completed"] = {str(k): v for k, v in sorted(completed.items())}
        write_json(mpath, manifest)
    pending = [i for i in range(space.n_chunks) if i not in completed]
    if max_chunks is not None:
        pending = pending[:max_chunks]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=space.n_chunks, initial=len(completed), unit="chunk", desc="screen")

    def record(cid: int, rows: int) -> None:
        completed[cid] = rows
        manifest["completed"] = {str(k): v for k, v in sorted(completed.items())}
        write_json(mpath, manifest)
        if bar is not None:
            bar.update(1)
        if on_chunk is not None:
            on_chunk(cid, rows)

    done_now = 0
    before = set(completed)
    try:
        if scheduler is None and workers is None:
            done_now = _run_pipeline(space, loaded, out, pending, batch_size, keep_below,
                                     sparse, record)
        else:
            done_now = _run_dask(space, model, loaded, out, pending, batch_size, keep_below,
                                 threads, fast, jit, sparse, scheduler, workers, processes,
                                 record)
    finally:
        if bar is not None:
            bar.close()
    return ScreenResult(out=out, n_chunks=space.n_chunks, completed=len(completed),
                        rows_written=sum(completed.values()),
                        compositions=sum(len(space.chunk(c)) for c in completed),
                        seconds=time.perf_counter() - t0, chunks_this_run=done_now,
                        compositions_this_run=sum(len(space.chunk(c)) for c in completed
                                                  if c not in before),
                        manifest=manifest)


def _write_chunk(out: Path, space: CompositionSpace, chunk_id: int, elems: np.ndarray,
                 amts: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 keep_below: float | None) -> int:
    return write_part(out, chunk_id, chunk_table(space, chunk_id, elems, amts, mean, std,
                                                 keep_below))


def _run_pipeline(space: CompositionSpace, model: Any, out: Path, pending: Sequence[int],
                  batch_size: int, keep_below: float | None, sparse: bool,
                  record: Callable[[int, int], None]) -> int:
    """In-process backend: a three-stage pipeline over chunks.

    One helper thread enumerates and encodes chunk ``c + 1`` while this thread runs the
    model on chunk ``c`` (a tight loop over batches, as fast as inference alone) and a
    second helper builds the formulas of chunk ``c - 1`` and writes its Parquet file.
    NumPy, Arrow and Parquet release the GIL, so the helpers use the other core. A chunk
    is recorded, in order, only once its file is in place; at most three chunks are in
    memory.
    """
    done = 0
    if not pending:
        return done
    with ThreadPoolExecutor(max_workers=1) as prep, ThreadPoolExecutor(max_workers=1) as wr:
        nxt = prep.submit(prepare_chunk, space, model, pending[0], sparse)
        writing: tuple[int, Future[int]] | None = None
        for i, cid in enumerate(pending):
            elems, amts, inputs = nxt.result()
            if i + 1 < len(pending):
                nxt = prep.submit(prepare_chunk, space, model, pending[i + 1], sparse)
            mean, std = predict_inputs(model, inputs, batch_size)
            del inputs
            if writing is not None:
                record(writing[0], writing[1].result())
                done += 1
            writing = (cid, wr.submit(_write_chunk, out, space, cid, elems, amts, mean, std,
                                      keep_below))
            del elems, amts, mean, std
        assert writing is not None  # pending is not empty
        record(writing[0], writing[1].result())
        done += 1
    return done


def _run_dask(space: CompositionSpace, spec: Any, loaded: Any, out: Path,
              pending: Sequence[int], batch_size: int, keep_below: float | None,
              threads: int | None, fast: bool, jit: bool, sparse: bool,
              scheduler: str | None,
              workers: int | None, processes: bool,
              record: Callable[[int, int], None]) -> int:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if workers is not None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                               host="127.0.0.1", protocol="tcp", dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT)
        except OSError as exc:
            raise MatdiscoError(f"cannot reach Dask scheduler {scheduler!r} ({exc})") from exc
    model_arg = spec if not hasattr(spec, "predict_fractions") else loaded
    if not hasattr(spec, "predict_fractions"):
        model_arg = [str(Path(p).resolve()) for p in spec] \
            if isinstance(spec, (list, tuple)) else str(Path(spec).resolve())
    done = 0
    futures = []
    try:
        sd = space.to_dict()
        futures = [client.submit(_worker_chunk, sd, model_arg, str(out.resolve()), cid,
                                 batch_size, keep_below, threads or 1, fast, jit, sparse,
                                 key=f"screen-chunk-{cid}-{os.getpid()}-{time.time_ns()}",
                                 pure=False)
                   for cid in pending]
        for fut in as_completed(futures):
            cid, rows = fut.result()
            record(cid, rows)
            done += 1
    finally:
        for f in futures:
            with contextlib.suppress(Exception):
                f.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
    return done
