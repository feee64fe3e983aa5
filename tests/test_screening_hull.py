"""Hull analysis on a tiny hand-made system, summaries, holdout counts, plots, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from matdisco import MatdiscoError
from matdisco.data import ELEMNET_ELEMENTS
from matdisco.screening.hull import (
    ReferenceHulls,
    hull_distances,
    load_references,
    plot_phase_diagram,
    spurious_stable,
    summarize,
)

REFS = pd.DataFrame({
    "formula": ["TiO2", "Ti2O3", "TiO", "Ti4O8", "Fe2O3", "FeTiO3", "Fe3O4", "Ti", "FeO"],
    "target": [-3.2, -3.0, -2.0, -2.5, -1.7, -2.9, -1.6, 0.0, -1.0],
})


@pytest.fixture()
def hulls():
    return ReferenceHulls(load_references(REFS))


def test_references_keep_lowest_per_composition():
    refs = load_references(REFS)
    assert len(refs) == len(REFS) - 1  # Ti4O8 is TiO2, the lower one is kept
    assert refs.set_index("formula").loc["TiO2", "target"] == -3.2


def test_vectorized_hull_energy_matches_pymatgen(hulls):
    pd_ = hulls.phase_diagram(["Fe", "O", "Ti"])
    fr = np.random.default_rng(0).dirichlet([1, 1, 1], size=100)
    mine = hulls.hull_energy(("Fe", "O", "Ti"), fr)
    ref = [pd_.get_hull_energy_per_atom(Composition(dict(zip(["Fe", "O", "Ti"], f,
                                                             strict=True)))) for f in fr]
    np.testing.assert_allclose(mine, ref, atol=1e-9)
    # by hand on the binary: TiO sits between Ti (0) and Ti2O3 (-3.0 at x_O = 0.6)
    assert hulls.hull_energy(("O", "Ti"), np.array([[0.5, 0.5]]))[0] == pytest.approx(-2.5)


def test_distances_threshold_and_summary(hulls):
    cand = pd.DataFrame({"formula": ["Ti1O2", "Fe1Ti1O3", "Fe1O1", "Ti3O1", "Fe1Ti1",
                                     "Fe1", "Fe1O2"],
                         "predicted": [-3.5, -2.95, -2.0, -1.0, -0.1, -5.0, -2.5]})
    out = hull_distances(cand, hulls, threshold=0.2)
    # Fe1O1: hull at x_O=0.5 is on the line Fe (0) - Fe2O3 (-1.7 at x_O = 0.6); Fe3O4 and
    # FeO lie above it
    got = dict(zip(out["formula"], out["distance"], strict=True))
    # FeTiO3 is only 0.05 below; elements are skipped
    assert set(got) == {"Fe1O1", "Ti1O2", "Fe1O2"}
    assert got["Fe1O1"] == pytest.approx(-2.0 + 1.7 * (0.5 / 0.6))
    assert got["Ti1O2"] == pytest.approx(-0.3)
    assert out.set_index("formula").loc["Ti1O2", "known"]
    assert out.set_index("formula").loc["Fe1O1", "known"]  # FeO is a reference
    assert not out.set_index("formula").loc["Fe1O2", "known"]
    assert got["Fe1O2"] == pytest.approx(-2.5 + 1.7 * (1 / 3) / 0.4)
    assert dict(zip(out["formula"], out["reduced_formula"], strict=True)) == {
        "Fe1O1": "FeO", "Ti1O2": "TiO2", "Fe1O2": "FeO2"}
    per, totals = summarize(out)
    assert totals["binary"] == 3 and totals["ternary"] == 0
    assert set(per["system"]) == {"Fe-O", "O-Ti"}
    assert per.set_index("system").loc["O-Ti", "examples"] == "TiO2 (-0.300)"
    # without the prefilter the answer is the same
    out2 = hull_distances(cand, hulls, threshold=0.2, prefilter=False)
    assert set(out2["formula"]) == set(out["formula"])


class _ToyModel:
    """Ti-O: 0.3 eV/atom above the known hull except at the known stable compounds,
    optionally with one spurious deep minimum at Ti3O."""

    elements = ELEMNET_ELEMENTS

    def __init__(self, dip: bool) -> None:
        self.dip = dip

    def predict_fractions(self, fr):
        x = fr[:, ELEMNET_ELEMENTS.index("O")]
        hull_x, hull_e = [0, 0.6, 2 / 3, 1], [0, -3.0, -3.2, 0]
        e = np.interp(x, hull_x, hull_e) + 0.3
        for hx, he in zip(hull_x[1:3], hull_e[1:3], strict=True):
            e = np.where(np.abs(x - hx) < 1e-4, he, e)
        if self.dip:
            e = np.where(np.abs(x - 0.25) < 1e-4, -3.0, e)  # no known compound nearby
        return e.astype(np.float32), np.zeros_like(e, dtype=np.float32)


def test_spurious_stable_counts(hulls):
    good = spurious_stable(_ToyModel(dip=False), hulls, "Ti-O", max_atoms=12)
    bad = spurious_stable(_ToyModel(dip=True), hulls, "Ti-O", max_atoms=12)
    assert sorted(good["known_stable"]) == ["Ti2O3", "TiO2"]
    assert sorted(good["predicted_stable"]) == ["Ti2O3", "TiO2"]
    assert good["n_spurious"] == 0
    assert bad["n_spurious"] == 1 and bad["spurious"] == ["Ti3O"]
    # a margin keeps the deep spurious minimum and the known compounds that are well below
    m = spurious_stable(_ToyModel(dip=True), hulls, "Ti-O", max_atoms=12, margin=0.05)
    assert m["spurious"] == ["Ti3O"] and "TiO2" in m["predicted_stable"]
    m = spurious_stable(_ToyModel(dip=True), hulls, "Ti-O", max_atoms=12, margin=5.0)
    assert m["n_predicted_stable"] == 0


def test_plots(hulls):
    fig = plot_phase_diagram("Ti-O", hulls, {"toy": _ToyModel(True)}, max_atoms=8)
    assert len(fig.axes[0].lines) >= 2
    fig = plot_phase_diagram("Fe-O-Ti", hulls, {"toy": _ToyModel(False)}, max_atoms=6)
    assert fig.axes[0].collections
    with pytest.raises(MatdiscoError):
        plot_phase_diagram("Fe-Ni-O-Ti", hulls, {})


def test_bad_reference_file(tmp_path):
    p = tmp_path / "refs.csv"
    p.write_text("formula,energy\nFeO,-1\n")
    with pytest.raises(MatdiscoError, match="missing column"):
        load_references(p)
    p.write_text("formula,target\nFeO,abc\n")
    with pytest.raises(MatdiscoError, match="row 1: target is 'abc'"):
        load_references(p)
    with pytest.raises(MatdiscoError, match="not found"):
        load_references(tmp_path / "nope.csv")


def test_reference_with_unknown_element_is_refused():
    refs = pd.DataFrame({"formula": ["TiO2", "FeQ2"], "target": [-3.0, -1.0]})
    with pytest.raises(MatdiscoError, match="row 2: formula 'FeQ2'.*'Q'"):
        load_references(refs)


def test_zero_amounts_go_through_the_full_parser():
    # 'Fe2O0' used to take the fast path and give a Fe-O entry with 0 % oxygen
    refs = load_references(pd.DataFrame({"formula": ["Fe2O0", "Ti1O0Fe1", "FeO0Ti"],
                                         "target": [-0.5, -1.0, -0.9]}))
    by = refs.set_index("formula")
    assert by.loc["Fe2O0", "system"] == "Fe" and by.loc["Fe2O0", "elements"] == ("Fe",)
    assert by.loc["Fe2O0", "key"] == "Fe1.000000"
    # the fast-path formula now equals the full parser's FeO0Ti (one composition, lowest kept)
    assert "FeO0Ti" not in by.index
    assert by.loc["Ti1O0Fe1", "system"] == "Fe-Ti"
    assert by.loc["Ti1O0Fe1", "fractions"] == {"Fe": 0.5, "Ti": 0.5}
    assert not any("O" in els for els in refs["elements"])


def _toy_screen(tmp_path, name="out", **kwargs):
    from matdisco.screening import CompositionSpace
    from matdisco.screening.run import screen

    sp = CompositionSpace(elements=["Ti", "O"], arities=2, max_atoms=8, chunk_size=5)
    screen(sp, _ToyModel(dip=True), tmp_path / name, threads=1, **kwargs)
    return tmp_path / name, sp


def test_analyse_screen_warns_about_incomplete_outputs(tmp_path):
    import warnings

    from matdisco.screening.hull import analyse_screen, screen_warnings
    from matdisco.screening.run import read_manifest

    out, sp = _toy_screen(tmp_path, max_chunks=1)
    with pytest.warns(UserWarning, match=rf"unfinished \(1/{sp.n_chunks} chunks\)"):
        analyse_screen(out, load_references(REFS), threshold=0.2)
    low, _ = _toy_screen(tmp_path, "low", keep_below=-1.0)
    with pytest.warns(UserWarning, match="kept only rows predicted <= -1"):
        analyse_screen(low, load_references(REFS), threshold=0.2)
    assert len(screen_warnings(read_manifest(low), 0.2)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # finished, and keep_below -1 <= -threshold: nothing missing
        stable, _, _ = analyse_screen(low, load_references(REFS), threshold=1.0)
    assert screen_warnings(read_manifest(low), 1.0) == []
    assert list(stable["reduced_formula"]) == ["Ti3O"]  # the toy's spurious dip


def test_analyse_screen_refuses_non_finite_threshold_and_damaged_parts(tmp_path):
    from matdisco.screening.hull import analyse_screen
    from matdisco.screening.run import part_path

    out, _ = _toy_screen(tmp_path)
    for t in (float("inf"), -float("inf")):
        with pytest.raises(MatdiscoError, match="finite"):
            analyse_screen(out, load_references(REFS), threshold=t)
    p = part_path(out, 1)
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(MatdiscoError, match="unreadable part file"):
        analyse_screen(out, load_references(REFS), threshold=0.2)


def test_analyse_screen_of_an_output_without_chunks(tmp_path):
    from matdisco.screening.hull import analyse_screen

    out, _ = _toy_screen(tmp_path, max_chunks=0)
    with pytest.warns(UserWarning, match="unfinished"):
        stable, per, totals = analyse_screen(out, load_references(REFS), threshold=0.2)
    assert len(stable) == 0 and len(per) == 0 and sum(totals.values()) == 0
    assert "distance" in stable.columns


def test_system_grid_with_an_element_the_model_lacks():
    from matdisco.screening.hull import system_grid

    with pytest.raises(MatdiscoError, match=r"Ti-Zr: the model's element list .*lacks \['Zr'\]"):
        system_grid("Ti-Zr", 6, ["Ti", "O"])


def test_spurious_stable_refuses_bad_settings(hulls):
    model = _ToyModel(dip=False)
    with pytest.raises(MatdiscoError, match="at least two elements"):
        spurious_stable(model, hulls, "Ti", max_atoms=6)
    for tol in (-0.01, float("nan"), float("inf")):
        with pytest.raises(MatdiscoError, match="tol must be a finite fraction"):
            spurious_stable(model, hulls, "Ti-O", max_atoms=6, tol=tol)
    with pytest.raises(MatdiscoError, match="margin"):
        spurious_stable(model, hulls, "Ti-O", max_atoms=6, margin=float("nan"))


def test_hull_report_writes_the_summary_files(tmp_path):
    """`screen hull` from Python: three files, the summary records completeness."""
    import json

    from matdisco import screening

    out, sp = _toy_screen(tmp_path)
    stable, per, summary = screening.hull_report(out, load_references(REFS), tmp_path / "h",
                                                 threshold=1.0, top=2)
    assert list(stable["reduced_formula"]) == ["Ti3O"] and summary["complete"] is True
    assert summary["n_candidates"] == 1 == len(pd.read_parquet(tmp_path / "h" /
                                                               "candidates.parquet"))
    assert json.loads((tmp_path / "h" / "summary.json").read_text()) == summary
    assert len(pd.read_csv(tmp_path / "h" / "summary.csv")) == summary["n_systems"] == len(per)
    part, _ = _toy_screen(tmp_path, "part", max_chunks=1)
    _, _, s2 = screening.hull_report(part, load_references(REFS), tmp_path / "h2")
    assert s2["complete"] is False and "unfinished" in s2["warnings"][0]
    assert s2["chunks_completed"] == 1 and s2["n_chunks"] == sp.n_chunks
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MatdiscoError, match="is a file"):
        screening.hull_report(out, load_references(REFS), tmp_path / "afile")
    with pytest.raises(AttributeError):
        screening.no_such_function  # noqa: B018
