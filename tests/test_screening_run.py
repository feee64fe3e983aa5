"""Streaming screening: output, resume after a kill, Dask vs in-process, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from matdisco import MatdiscoError
from matdisco.data import ELEMNET_ELEMENTS
from matdisco.models import NeuralRegressor
from matdisco.screening import CompositionSpace
from matdisco.screening.distill import save_screening_model
from matdisco.screening.models import load_model
from matdisco.screening.run import open_results, part_path, screen

torch.set_num_threads(1)

ELS = ["Fe", "Ni", "O", "Ti", "Na"]


def _space(chunk_size: int = 40) -> CompositionSpace:
    return CompositionSpace(elements=ELS, arities=3, max_atoms=7, chunk_size=chunk_size)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    sp = _space()
    X = sp.fractions(0, len(sp))
    y = X @ rng.normal(size=X.shape[1]).astype(np.float32)
    members = [NeuralRegressor(arch="mlp", arch_kwargs={"widths": [16, 8]}, epochs=2,
                               device="cpu", seed=s).fit(X, y) for s in (0, 1)]
    path = tmp_path_factory.mktemp("model") / "run"
    save_screening_model(path, members, ELEMNET_ELEMENTS, [16, 8])
    return path


def _read(out) -> pd.DataFrame:
    return open_results(out).to_table().to_pandas().sort_values("formula").reset_index(
        drop=True)


def test_screen_writes_every_composition_once(model_dir, tmp_path):
    sp = _space()
    res = screen(sp, model_dir, tmp_path / "out", batch_size=16)
    assert res.finished and res.compositions == len(sp) == res.rows_written
    df = _read(tmp_path / "out")
    assert len(df) == len(sp) and df["formula"].is_unique
    assert list(df.columns) == ["formula", "predicted", "spread", "chunk"]
    # values equal a direct prediction of the same formulas
    model = load_model(model_dir)
    from matdisco.data import encode_fractions

    mean, std = model.predict_fractions(encode_fractions(df["formula"]))
    np.testing.assert_allclose(df["predicted"], mean, atol=1e-5)
    np.testing.assert_allclose(df["spread"], std, atol=1e-5)
    assert (df["spread"] > 0).any()  # two members disagree
    # keep_below filters rows
    res2 = screen(sp, model_dir, tmp_path / "low", keep_below=float(np.median(mean)))
    low = _read(tmp_path / "low")
    assert 0 < len(low) < len(df) and (low["predicted"] <= np.median(mean)).all()
    assert res2.rows_written == len(low)


def test_resume_after_kill_loses_and_duplicates_nothing(model_dir, tmp_path):
    sp = _space(chunk_size=25)
    out = tmp_path / "out"

    class Kill(KeyboardInterrupt):
        pass

    def killer(cid, rows):
        if cid == 3:
            # a part file of an unrecorded chunk, as left by a kill after the rename
            part_path(out, 4).write_bytes(part_path(out, 3).read_bytes())
            raise Kill

    with pytest.raises(Kill):
        screen(sp, model_dir, out, on_chunk=killer)
    man = json.loads((out / "manifest.json").read_text())
    assert sorted(int(k) for k in man["completed"]) == [0, 1, 2, 3]
    partial = _read(out)
    assert len(partial) == 4 * 25  # only recorded chunks are visible
    res = screen(sp, model_dir, out)
    assert res.finished and res.chunks_this_run == sp.n_chunks - 4
    full = _read(out)
    ref = screen(sp, model_dir, tmp_path / "ref")
    assert ref.finished
    expected = _read(tmp_path / "ref")
    assert len(full) == len(sp) and full["formula"].is_unique
    pd.testing.assert_frame_equal(full, expected)
    # running again does nothing
    assert screen(sp, model_dir, out).chunks_this_run == 0


def test_dask_localcluster_matches_inprocess(model_dir, tmp_path):
    pytest.importorskip("distributed")
    sp = _space(chunk_size=30)
    screen(sp, model_dir, tmp_path / "local")
    res = screen(sp, model_dir, tmp_path / "dask", workers=2, processes=False)
    assert res.finished
    a, b = _read(tmp_path / "local"), _read(tmp_path / "dask")
    pd.testing.assert_frame_equal(a, b)  # row for row, bit for bit


def test_dask_scheduler_address_matches_inprocess(model_dir, tmp_path):
    distributed = pytest.importorskip("distributed")
    sp = _space(chunk_size=30)
    screen(sp, model_dir, tmp_path / "local")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  host="127.0.0.1", protocol="tcp",
                                  dashboard_address=None) as cluster:
        res = screen(sp, model_dir, tmp_path / "remote", scheduler=cluster.scheduler_address)
    assert res.finished
    pd.testing.assert_frame_equal(_read(tmp_path / "local"), _read(tmp_path / "remote"))


def test_unreachable_scheduler_is_a_clear_error(model_dir, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import matdisco.screening.run as run_mod

    monkeypatch.setattr(run_mod, "DASK_CONNECT_TIMEOUT", "1s")
    with pytest.raises(MatdiscoError, match="cannot reach Dask scheduler"):
        screen(_space(), model_dir, tmp_path / "o", scheduler="tcp://127.0.0.1:9")


def test_ensemble_of_runs(model_dir):
    one = load_model(model_dir)
    ens = load_model([model_dir, model_dir])
    fr = _space().fractions(0, 20)
    m1, s1 = one.predict_fractions(fr)
    m2, s2 = ens.predict_fractions(fr)
    np.testing.assert_allclose(m1, m2, atol=1e-6)
    np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_bad_inputs_write_nothing(model_dir, tmp_path):
    # model whose element list lacks an element of the space
    members = [NeuralRegressor(arch="mlp", arch_kwargs={"widths": [4]}, epochs=1,
                               device="cpu").fit(np.eye(3, dtype=np.float32), [0, 1, 2])]
    small = save_screening_model(tmp_path / "small", members, ["Fe", "Ni", "O"], [4])
    with pytest.raises(MatdiscoError, match="lacks"):
        screen(_space(), small, tmp_path / "o1")
    assert not (tmp_path / "o1").exists()
    with pytest.raises(MatdiscoError, match="not found"):
        screen(_space(), tmp_path / "nope", tmp_path / "o2")
    assert not (tmp_path / "o2").exists()
    # corrupt manifest
    out = tmp_path / "o3"
    out.mkdir()
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(MatdiscoError, match="corrupt"):
        screen(_space(), model_dir, out)
    (out / "manifest.json").write_text(json.dumps({"version": 1, "space": {},
                                                   "n_chunks": 2, "completed": {"7": 1}}))
    with pytest.raises(MatdiscoError, match="corrupt"):
        screen(_space(), model_dir, out)
    assert not (out / "data").exists()
    # same folder, different space
    screen(_space(), model_dir, tmp_path / "o4", max_chunks=1)
    with pytest.raises(MatdiscoError, match="different space"):
        screen(_space(chunk_size=7), model_dir, tmp_path / "o4")
    # a folder that holds something else is never written into
    other = tmp_path / "o5"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(MatdiscoError, match="not empty and holds no screening output"):
        screen(_space(), model_dir, other)
    assert sorted(x.name for x in other.iterdir()) == ["notes.txt"]
    (tmp_path / "o6").write_text("")
    with pytest.raises(MatdiscoError, match="is a file"):
        screen(_space(), model_dir, tmp_path / "o6")


def test_sparse_input_path_equals_dense(model_dir, tmp_path):
    sp = _space()
    model = load_model(model_dir)
    assert model.supports_sparse
    elems, amts = sp.indices(0, len(sp))
    m1, s1 = model.predict_sparse(*sp.sparse_inputs(elems, amts, model.elements))
    m2, s2 = model.predict_fractions(sp.fractions_from_indices(elems, amts, model.elements))
    np.testing.assert_allclose(m1, m2, atol=1e-5)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    screen(sp, model_dir, tmp_path / "dense", sparse=False)
    screen(sp, model_dir, tmp_path / "sparse")
    a, b = _read(tmp_path / "dense"), _read(tmp_path / "sparse")
    assert (a["formula"] == b["formula"]).all()
    np.testing.assert_allclose(a["predicted"], b["predicted"], atol=1e-5)


def test_out_of_range_settings_are_refused(model_dir, tmp_path):
    # max_chunks=-1 used to skip the last chunk (a Python slice), threads=-1 was a torch
    # traceback, threads=0 was ignored and keep_below=NaN wrote zero rows and then made
    # the output impossible to resume (NaN != NaN)
    for kwargs, match in (({"max_chunks": -1}, "max_chunks"), ({"threads": -1}, "threads"),
                          ({"threads": 0}, "threads"),
                          ({"keep_below": float("nan")}, "keep_below")):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        with pytest.raises(MatdiscoError, match=match):
            screen(_space(), model_dir, out, **kwargs)
        assert not out.exists()


def test_members_field_must_be_a_list(model_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["members"] = cfg["members"][0]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MatdiscoError, match="field 'members' must be a non-empty list"):
        load_model(bad)


def test_empty_space_is_refused_before_anything_is_written(model_dir, tmp_path):
    sp = CompositionSpace(elements=["Fe", "O"], arities=[3], max_atoms=7)
    assert len(sp) == 0
    with pytest.raises(MatdiscoError, match="composition space is empty"):
        screen(sp, model_dir, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_missing_or_damaged_part_files_are_recomputed_on_resume(model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sp = _space(chunk_size=25)
    out = tmp_path / "out"
    screen(sp, model_dir, out, max_chunks=4)
    part_path(out, 1).unlink()  # deleted
    p2 = part_path(out, 2)
    p2.write_bytes(p2.read_bytes()[: p2.stat().st_size // 2])  # truncated
    # a readable file with another row count than recorded
    pq.write_table(pq.read_table(part_path(out, 3)).slice(0, 3), part_path(out, 3))
    res = screen(sp, model_dir, out)
    assert res.finished and res.chunks_this_run == sp.n_chunks - 1  # only chunk 0 kept
    man = json.loads((out / "manifest.json").read_text())
    assert man["completed"] == {str(c): len(sp.chunk(c)) for c in range(sp.n_chunks)}
    assert pq.read_metadata(part_path(out, 2)).num_rows == 25
    screen(sp, model_dir, tmp_path / "ref")
    full, expected = _read(out), _read(tmp_path / "ref")
    assert len(full) == len(sp) and full["formula"].is_unique
    pd.testing.assert_frame_equal(full, expected)
    assert open_results(out).schema.field("formula").type == pa.string()


def test_open_results_names_a_missing_part_file(model_dir, tmp_path):
    out = tmp_path / "out"
    screen(_space(chunk_size=25), model_dir, out, max_chunks=2)
    part_path(out, 1).unlink()
    with pytest.raises(MatdiscoError, match="part-000001.parquet"):
        open_results(out)


def test_output_without_completed_chunks_is_an_empty_dataset(model_dir, tmp_path):
    import pyarrow as pa

    out = tmp_path / "out"
    res = screen(_space(), model_dir, out, max_chunks=0)
    assert res.completed == 0 and not res.finished
    t = open_results(out).to_table()
    assert t.num_rows == 0
    assert t.schema.names == ["formula", "predicted", "spread", "chunk"]
    assert t.schema.types == [pa.string(), pa.float32(), pa.float32(), pa.int32()]
    # the explicit schema equals the part files' own
    screen(_space(), model_dir, out, max_chunks=1)
    import pyarrow.parquet as pq

    assert pq.read_schema(part_path(out, 0)).remove_metadata().equals(t.schema)


def _retrain_in_place(run, seed):
    """Overwrite the weight files of ``run`` with other weights of the same shapes."""
    import shutil

    sp = _space()
    X = sp.fractions(0, len(sp))
    y = X @ np.random.default_rng(seed).normal(size=X.shape[1]).astype(np.float32)
    members = [NeuralRegressor(arch="mlp", arch_kwargs={"widths": [16, 8]}, epochs=1,
                               device="cpu", seed=seed + s).fit(X, y) for s in (0, 1)]
    other = save_screening_model(run.parent / f"other{seed}", members, ELEMNET_ELEMENTS,
                                 [16, 8])
    for f in other.glob("*.safetensors"):
        shutil.copyfile(f, run / f.name)


def test_model_retrained_in_place_is_refused_on_resume(model_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(model_dir, run)
    sp = _space(chunk_size=25)
    out = tmp_path / "out"
    screen(sp, run, out, max_chunks=1)
    weights = sorted(run.glob("*.safetensors"))
    before = {f.name: (f.stat().st_size, f.read_bytes()) for f in weights}
    _retrain_in_place(run, seed=5)
    after = {f.name: (f.stat().st_size, f.read_bytes()) for f in weights}
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    assert all(after[k][1] != before[k][1] for k in before)
    with pytest.raises(MatdiscoError, match="different model"):
        screen(sp, run, out)
    man = json.loads((out / "manifest.json").read_text())
    assert sorted(man["completed"]) == ["0"]
    assert set(man["model"]["sha256"]) == {str(f.resolve()) for f in weights}


def test_manifest_without_sha256_still_resumes(model_dir, tmp_path):
    sp = _space(chunk_size=25)
    out = tmp_path / "out"
    screen(sp, model_dir, out, max_chunks=1)
    man = json.loads((out / "manifest.json").read_text())
    man["model"].pop("sha256", None)  # as written before digests were recorded
    (out / "manifest.json").write_text(json.dumps(man))
    res = screen(sp, model_dir, out)
    assert res.finished and res.chunks_this_run == sp.n_chunks - 1
