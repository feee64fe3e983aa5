"""Knowledge distillation: synthetic composition analogues labelled by a teacher run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from matdisco import MatdiscoError
from matdisco.data.composition import ELEMNET_ELEMENTS, encode_fractions
from matdisco.property import load_run, train_property
from matdisco.property.distill import (
    _neighbours,
    fraction_formulas,
    substitute_compositions,
)

FAST = dict(batch_size=16, patience=None, device="cpu")


def test_substitutions_keep_stoichiometry_and_avoid_known_and_holdout() -> None:
    els = list(ELEMNET_ELEMENTS)
    train = encode_fractions(["Fe2O3", "NaCl", "TiO2", "MgAl2O4", "LiCoO2"], els)
    syn = substitute_compositions(train, els, 200, seed=1, exclude_systems=["Ti-O", "Zr-O"])
    assert 30 < len(syn) <= 200  # five parents: their neighbourhood runs out
    keys = {tuple(np.round(r, 6)) for r in train}
    assert len({tuple(np.round(r, 6)) for r in syn}) == len(syn)       # distinct
    assert not keys & {tuple(np.round(r, 6)) for r in syn}             # none already known
    nb = _neighbours(tuple(els))
    ti, zr, o = els.index("Ti"), els.index("Zr"), els.index("O")
    parents = [np.flatnonzero(r) for r in train]
    for row in syn:
        np.testing.assert_allclose(row.sum(), 1.0, rtol=1e-6)
        present = set(np.flatnonzero(row))
        assert not present <= {ti, o} and not present <= {zr, o}       # holdouts excluded
        # some parent with the same stoichiometry whose elements map onto these neighbours
        assert any(sorted(row[row > 0]) == pytest.approx(sorted(p_row[p_row > 0]))
                   and all(j in p or any(j in nb[i] for i in p) for j in present)
                   for p, p_row in zip(parents, train, strict=True))
    again = encode_fractions(fraction_formulas(syn, els), els)
    np.testing.assert_allclose(again, syn, atol=1e-6)
    with pytest.raises(MatdiscoError, match="unknown element"):
        substitute_compositions(train, els, 5, exclude_systems=["Xx-O"])


def test_distilled_student_follows_the_teacher(tiny_df: pd.DataFrame, tmp_path) -> None:
    test = tiny_df.iloc[:10]
    teacher = train_property(tiny_df, model="mlp", out=tmp_path / "teacher", test=test,
                             epochs=20, report=False, **FAST)
    student = train_property(tiny_df.iloc[:20], model="mlp", out=tmp_path / "student",
                             test=test, teacher=teacher, n_synthetic=300, epochs=20,
                             report=False, holdout=["Li-O"], **FAST)
    plain = train_property(tiny_df.iloc[:20], model="mlp", out=tmp_path / "plain", test=test,
                           epochs=20, report=False, holdout=["Li-O"], **FAST)
    cfg = json.loads((student / "config.json").read_text())
    syn = pd.read_csv(student / "synthetic.csv")
    assert cfg["distillation"]["n_synthetic"] == len(syn) > 150
    t_pred = load_run(teacher).predict(list(syn["formula"]))[0]
    np.testing.assert_allclose(syn["teacher_prediction"], t_pred, rtol=1e-4, atol=1e-5)
    # on compositions none of them trained on, the student is far closer to the teacher
    others = list(tiny_df["formula"].iloc[20:])
    t_o = load_run(teacher).predict(others)[0]
    gap_student = np.abs(load_run(student).predict(others)[0] - t_o).mean()
    gap_plain = np.abs(load_run(plain).predict(others)[0] - t_o).mean()
    assert gap_student < 0.7 * gap_plain
    with pytest.raises(MatdiscoError, match="cross-validated"):
        train_property(tiny_df, model="mlp", out=tmp_path / "bad", cv=3, teacher=teacher,
                       n_synthetic=10, epochs=1, **FAST)
    with pytest.raises(MatdiscoError, match="both a teacher"):
        train_property(tiny_df, model="mlp", out=tmp_path / "bad2", n_synthetic=10,
                       epochs=1, **FAST)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad2").exists()


def _screening_teacher(path):
    from matdisco.models import NeuralRegressor
    from matdisco.screening import CompositionSpace
    from matdisco.screening.distill import save_screening_model

    sp = CompositionSpace(elements=["Ti", "O", "Fe"], arities=3, max_atoms=6)
    X = sp.fractions(0, len(sp))
    m = NeuralRegressor(arch="mlp", arch_kwargs={"widths": [8]}, epochs=1, device="cpu").fit(
        X, X[:, ELEMNET_ELEMENTS.index("O")])
    return save_screening_model(path, [m], ELEMNET_ELEMENTS, [8]), sp


def test_screening_distill_refuses_bad_settings_before_writing(tmp_path) -> None:
    from matdisco.screening.distill import distill

    teacher, sp = _screening_teacher(tmp_path / "t")
    for kwargs, msg in (({"epochs": 0}, "epochs must be a positive integer"),
                        ({"epochs": 1.5}, "epochs must be a positive integer"),
                        ({"n_synthetic": -1}, "n_synthetic must be an integer >= 0")):
        with pytest.raises(MatdiscoError, match=msg):
            distill(teacher, tmp_path / "s", space=sp, widths=(8,), **{"epochs": 1, **kwargs})
        assert not (tmp_path / "s").exists()
        assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no staged folder either


def test_screening_distill_records_the_teacher_as_an_absolute_path(tmp_path,
                                                                    monkeypatch) -> None:
    from matdisco.screening.distill import distill

    teacher, sp = _screening_teacher(tmp_path / "t")
    monkeypatch.chdir(tmp_path)
    for spec in ("t", ["t"]):
        distill(spec, "s", space=sp, n_synthetic=60, widths=(8,), epochs=1, overwrite=True)
        cfg = json.loads((tmp_path / "s" / "config.json").read_text())
        assert cfg["distilled_from"] == str(teacher.resolve())


def test_screening_distill_from_a_list_of_model_objects(tmp_path) -> None:
    # a list of loaded models is a valid teacher (an ensemble); recording its name used to
    # fail after training (Path(model)), leaving a staged folder behind
    from matdisco.screening import CompositionSpace
    from matdisco.screening.distill import distill

    class Toy:
        elements = ELEMNET_ELEMENTS

        def predict_fractions(self, fr):
            e = fr[:, ELEMNET_ELEMENTS.index("O")].astype(np.float32)
            return e, np.zeros_like(e)

    sp = CompositionSpace(elements=["Ti", "O", "Fe"], arities=3, max_atoms=6)
    distill([Toy(), Toy()], tmp_path / "s", space=sp, n_synthetic=60, widths=(8,), epochs=1)
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["distilled_from"] == ["Toy", "Toy"]
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
