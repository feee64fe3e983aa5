"""Tests of the 1D XRD simulation layer and phase mapping."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from matdisco import MatdiscoError, xrd


@pytest.fixture(scope="module")
def al() -> Structure:
    return Structure(Lattice.cubic(4.05), ["Al"] * 4,
                     [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_simulate_pattern_fcc_peaks(al: Structure) -> None:
    grid = xrd.default_two_theta()
    p = xrd.simulate_pattern(al, two_theta=grid)
    assert p.shape == (2000,) and p.max() == pytest.approx(1.0) and p.min() >= 0
    # Al (111) at 2θ ≈ 38.5° with Cu Kα is the strongest reflection
    assert abs(grid[np.argmax(p)] - 38.5) < 0.3


def test_strain_shifts_peaks_down(al: Structure) -> None:
    pk = xrd.peak_list(al)
    assert pk.crystal_system == "cubic"
    grid = xrd.default_two_theta()
    a = xrd.render_peaks(pk, grid)
    b = xrd.render_peaks(pk, grid, strain=0.01)  # larger lattice -> lower angles
    assert grid[np.argmax(b)] < grid[np.argmax(a)]
    assert xrd.caglioti_fwhm(np.array([30.0, 70.0]))[1] > xrd.caglioti_fwhm(np.array([30.0]))[0]


def test_march_dollase_preferred_orientation(al: Structure, tmp_path) -> None:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from typer.testing import CliRunner

    from matdisco.cli.xrd import app
    from matdisco.xrd.simulate import march_dollase

    pat = XRDCalculator().get_pattern(al)
    # (200) family along the texture axis (100): 2 of 6 members parallel, 4 perpendicular
    r = 0.5
    f = march_dollase(al, pat.hkls[:2], (1, 0, 0), r)
    assert f[1] == pytest.approx((2 * r ** -3 + 4 * r ** 1.5) / 6)
    assert np.allclose(march_dollase(al, pat.hkls, (1, 1, 1), 1.0), 1.0)  # random powder
    base = xrd.peak_list(al)
    plates = xrd.peak_list(al, preferred_orientation=((1, 0, 0), r))
    assert np.allclose(plates.two_theta, base.two_theta) and plates.intensity.max() == 100
    # platelets on {100}: (200) grows relative to (111)
    assert plates.intensity[1] / plates.intensity[0] > 2 * base.intensity[1] / base.intensity[0]
    with pytest.raises(MatdiscoError, match="positive"):
        march_dollase(al, pat.hkls, (1, 0, 0), 0.0)
    with pytest.raises(MatdiscoError, match="direction"):
        march_dollase(al, pat.hkls, (0, 0, 0), 0.5)
    al.to(filename=str(tmp_path / "al.cif"))
    out = {}
    for tex in (None, "1,0,0:0.5"):
        o = tmp_path / f"p{tex is not None}.npz"
        args = ["simulate", str(tmp_path / "al.cif"), "--output", str(o)]
        r_ = CliRunner().invoke(app, args + (["--texture", tex] if tex else []))
        assert r_.exit_code == 0, r_.output
        with np.load(o) as z:
            out[tex] = z["X"][0]
    assert not np.allclose(out[None], out["1,0,0:0.5"])
    r_ = CliRunner().invoke(app, ["simulate", str(tmp_path / "al.cif"), "--output",
                                  str(tmp_path / "x.npz"), "--texture", "001"])
    assert r_.exit_code != 0 and "h,k,l:r" in r_.output


def test_validate_signals_errors() -> None:
    with pytest.raises(MatdiscoError, match="row 2 .*NaN"):
        xrd.validate_signals(np.array([[1.0, 2.0], [np.nan, 1.0]]))
    with pytest.raises(MatdiscoError, match="negative"):
        xrd.validate_signals(np.array([[1.0, -2.0]]))
    with pytest.raises(MatdiscoError, match="length 3"):
        xrd.validate_signals(np.ones((2, 3)), length=2000)
    g = xrd.default_two_theta(100)
    with pytest.raises(MatdiscoError, match="grid"):
        xrd.validate_signals(np.ones((1, 100)), two_theta=g + 1, expected_two_theta=g)
    with pytest.raises(MatdiscoError):
        xrd.validate_grid(np.array([10.0, 9.0]))


def test_aflow_prototypes_and_decorate() -> None:
    protos = xrd.aflow_prototypes()
    assert len(protos) == 288
    label, s = protos[0]
    d = xrd.decorate(s, np.random.default_rng(0))
    assert len(d) == len(s)
    assert d.lattice.volume > 0


def _toy_phases() -> list[xrd.PeakList]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(5):
        tt = np.sort(rng.uniform(15, 75, 8))
        out.append(xrd.PeakList(tt, rng.uniform(10, 100, 8), f"p{i}",
                                xrd.CRYSTAL_SYSTEMS[i % 7]))
    return out


def test_ideal_and_degraded_datasets() -> None:
    ph = _toy_phases()
    grid = xrd.default_two_theta(400)
    X, y = xrd.ideal_dataset(ph, 20, grid, task="purity", seed=0)
    assert X.shape == (20, 400) and set(y) == {0, 1} and np.allclose(X.max(1), 1)
    Xc, yc = xrd.ideal_dataset(ph, 10, grid, task="crystal_system")
    assert yc.max() < 7
    Xd, yd, C = xrd.degraded_dataset(ph, 6, grid, seed=1)
    assert Xd.shape == C.shape and (Xd >= 0).all()
    assert not np.allclose(Xd, C)


def test_phasemap_recovers_phases() -> None:
    ph = _toy_phases()[:3]
    grid = xrd.default_two_theta(500)
    lib = xrd.composition_library(ph, 40, grid, seed=0, background=0.0, noise=0.002,
                                  max_strain=0.0)
    for method in ("nmf", "gibbs"):
        res = xrd.phasemap(lib.patterns, 3, method=method)
        assert res.basis.shape == (3, 500)
        assign, corr = xrd.match_phases(res.basis, lib.true_phases)
        assert sorted(assign) == [0, 1, 2]
        assert np.min(corr) > 0.8
    with pytest.raises(MatdiscoError, match="n_phases"):
        xrd.phasemap(lib.patterns, 0)
    with pytest.raises(MatdiscoError, match="negative"):
        xrd.phasemap(lib.patterns - 1.0, 2)


def test_cli_phasemap(tmp_path) -> None:
    from typer.testing import CliRunner

    from matdisco.cli.xrd import app

    ph = _toy_phases()[:3]
    grid = xrd.default_two_theta(300)
    lib = xrd.composition_library(ph, 30, grid, seed=1, background=0.0, noise=0.002)
    np.savez(tmp_path / "lib.npz", **lib.to_npz_dict())
    r = CliRunner().invoke(app, ["phasemap", "--input", str(tmp_path / "lib.npz"),
                                 "--n-phases", "3", "--out", str(tmp_path / "pm")])
    assert r.exit_code == 0, r.output
    import json

    m = json.loads((tmp_path / "pm" / "metrics.json").read_text())
    assert sorted(m["assignment"]) == [0, 1, 2]
    with np.load(tmp_path / "pm" / "phases.npz") as z:
        assert z["X"].shape == (3, 300)
        assert z["true"].shape == (3, 300)
    assert (tmp_path / "pm" / "phases.png").stat().st_size > 0

    # more phases than the library has: the extra one matches nothing, so no 'true' array
    # (it used to hold a copy of true phase 0, which refine evaluate compared against)
    r = CliRunner().invoke(app, ["phasemap", "--input", str(tmp_path / "lib.npz"),
                                 "--n-phases", "4", "--out", str(tmp_path / "pm4")])
    assert r.exit_code == 0, r.output
    assert "match no true phase" in r.output
    m = json.loads((tmp_path / "pm4" / "metrics.json").read_text())
    assert m["assignment"].count(-1) == 1 and m["correlation"].count(None) == 1
    with np.load(tmp_path / "pm4" / "phases.npz") as z:
        assert "true" not in z.files and z["X"].shape == (4, 300)
    assert (tmp_path / "pm4" / "phases.png").exists()
    np.save(tmp_path / "bad.npy", np.full((4, 10), np.nan))
    r = CliRunner().invoke(app, ["phasemap", "--input", str(tmp_path / "bad.npy"),
                                 "--n-phases", "2", "--out", str(tmp_path / "pm2")])
    assert r.exit_code == 2 and "NaN" in r.output


def test_run_phasemap_api(tmp_path) -> None:
    """The phasemap run directory from Python, as the CLI writes it."""
    import json

    from matdisco import MatdiscoError

    lib = xrd.composition_library(_toy_phases()[:3], 20, xrd.default_two_theta(200), seed=2,
                                  background=0.0, noise=0.002)
    np.savez(tmp_path / "lib.npz", **lib.to_npz_dict())
    m = xrd.run_phasemap(tmp_path / "lib.npz", 3, tmp_path / "pm", seed=1)
    assert sorted(m["assignment"]) == [0, 1, 2] and 0 < m["reconstruction_error"] < 1
    assert json.loads((tmp_path / "pm" / "metrics.json").read_text()) == m
    assert {p.name for p in (tmp_path / "pm").iterdir()} >= {
        "phases.npz", "weights.csv", "config.json", "metrics.json", "phases.png"}
    before = (tmp_path / "pm" / "phases.npz").read_bytes()
    with pytest.raises(MatdiscoError, match="overwrite"):
        xrd.run_phasemap(tmp_path / "lib.npz", 2, tmp_path / "pm")
    assert (tmp_path / "pm" / "phases.npz").read_bytes() == before
    m2 = xrd.run_phasemap(tmp_path / "lib.npz", 2, tmp_path / "pm", overwrite=True)
    assert m2["n_phases"] == 2 and m2["reconstruction_error"] > m["reconstruction_error"]
    with np.load(tmp_path / "pm" / "phases.npz") as z:
        assert z["X"].shape == (2, 200)
    with pytest.raises(MatdiscoError, match="max_phases"):
        xrd.run_phasemap(tmp_path / "lib.npz", 2, tmp_path / "g", method="gibbs",
                         max_phases=0)
    assert not (tmp_path / "g").exists()


def test_cli_phasemap_weights_keep_sample_names(tmp_path) -> None:
    """weights.csv starts with the input's names (a table's text columns, a .npz's
    ``names``) in input order; it used to hold only phase0.., and a table with a name
    column was refused. A column named like a weight column is a clear error."""
    import pandas as pd
    from typer.testing import CliRunner

    from matdisco.cli.xrd import app

    lib = xrd.composition_library(_toy_phases()[:3], 12, xrd.default_two_theta(200), seed=1,
                                  background=0.0, noise=0.002)
    names = [f"W{i:02d}" for i in range(12)][::-1]
    df = pd.DataFrame(lib.patterns, columns=[f"{t:.4f}" for t in lib.two_theta])
    df.insert(0, "name", names)  # the layout of `xrd simulate -o p.csv`
    df.to_csv(tmp_path / "p.csv", index=False)
    np.savez(tmp_path / "p.npz", X=lib.patterns, names=np.array(names))
    for inp in ("p.csv", "p.npz"):
        out = tmp_path / f"pm_{inp[2:]}"
        r = CliRunner().invoke(app, ["phasemap", "--input", str(tmp_path / inp),
                                     "--n-phases", "2", "--out", str(out)])
        assert r.exit_code == 0, r.output
        w = pd.read_csv(out / "weights.csv")
        assert list(w.columns) == ["name", "phase0", "phase1"] and w["name"].tolist() == names
    df.rename(columns={"name": "phase1"}).to_csv(tmp_path / "clash.csv", index=False)
    r = CliRunner().invoke(app, ["phasemap", "--input", str(tmp_path / "clash.csv"),
                                 "--n-phases", "2", "--out", str(tmp_path / "pm_clash")])
    assert r.exit_code == 2 and "already has column(s) ['phase1']" in r.output, r.output
    assert not (tmp_path / "pm_clash").exists()


def test_cli_ideal_feeds_refine_train(al: Structure, tmp_path) -> None:
    """`xrd ideal` writes a labelled ideal set that `refine train` reads, class names
    included; the background refiner runs from the CLI."""
    import json

    from typer.testing import CliRunner

    from matdisco.cli.refine import app as refine_app
    from matdisco.cli.xrd import app

    al.to(filename=str(tmp_path / "al.cif"))
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl.to(filename=str(tmp_path / "nacl.cif"))
    cifs = ["--cif", str(tmp_path / "al.cif"), "--cif", str(tmp_path / "nacl.cif")]
    r = CliRunner().invoke(app, ["ideal", "--out", str(tmp_path / "ideal.npz"), "--n", "40",
                                 "--length", "400", "--decorations", "1", *cifs])
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "ideal.npz") as z:
        assert z["X"].shape == (40, 400) and set(z["y"]) == {0, 1}
        assert list(z["class_names"]) == ["pure", "mixture"]
        assert z["two_theta"].shape == (400,)
        grid = z["two_theta"]
    r = CliRunner().invoke(app, ["ideal", "--out", str(tmp_path / "x.npz"), "--task", "bogus"])
    assert r.exit_code == 2 and "--task" in r.output and not (tmp_path / "x.npz").exists()
    # imperfect: the ideal patterns on a background
    with np.load(tmp_path / "ideal.npz") as z:
        imp = z["X"][:8] + 0.2
    np.savez(tmp_path / "imp.npz", X=imp.astype(np.float32), two_theta=grid)
    r = CliRunner().invoke(refine_app, [
        "train", "--ideal", str(tmp_path / "ideal.npz"), "--imperfect",
        str(tmp_path / "imp.npz"), "--out", str(tmp_path / "ref"), "--clf-epochs", "1",
        "--epochs", "1", "--refiner-output", "background", "--psi", "highpass",
        "--psi-window", "21", "--target-class", "0"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "ref" / "config.json").read_text())
    assert (cfg["output"], cfg["psi"], cfg["psi_window"]) == ("background", "highpass", 21)
    met = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert set(met["refined"]["class_fraction"]) == {"pure", "mixture"}
    refined = np.load(tmp_path / "ref" / "refined.npz")["X"]
    assert (refined <= imp + 1e-6).all() and (refined >= 0).all()


def test_cli_simulate_library_ideal_phasemap_bad_settings(al: Structure, tmp_path) -> None:
    """Bad outputs and out-of-range settings give one-line errors and write nothing; a
    phase map never silently replaces a run held by --out."""
    import json

    from typer.testing import CliRunner

    from matdisco.cli.xrd import app

    runner = CliRunner()
    al.to(filename=str(tmp_path / "al.cif"))
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl.to(filename=str(tmp_path / "nacl.cif"))
    cif = str(tmp_path / "al.cif")
    (tmp_path / "dir").mkdir()

    def fails(args: list[str], text: str) -> None:
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and text in r.output, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)

    out = tmp_path / "s.npz"
    fails(["simulate", cif, "-o", str(tmp_path / "dir")], "is a directory")
    fails(["simulate", cif, "-o", str(tmp_path / "s.xyz")], "'.xyz'")
    # a bad image setting used to leave the 1D output behind
    fails(["simulate", cif, "-o", str(out), "--n-points", "100", "--images",
           str(tmp_path / "im.npz"), "--size", "4"], "≥ 8 pixels")
    assert not out.exists() and not (tmp_path / "im.npz").exists()
    lib = str(tmp_path / "lib.npz")
    fails(["library", "-o", lib, "--n-samples", "0"], "--n-samples")
    fails(["library", "-o", lib, "--n-samples", "-3"], "--n-samples")
    fails(["library", "-o", lib, "--n-samples", "5", "--n-phases", "1000"], "--n-phases")
    fails(["library", "-o", lib, "--n-samples", "5", "--n-phases", "2", "--noise", "-1"],
          "noise")
    fails(["library", "-o", lib, "--n-samples", "5", "--n-phases", "2", "--background",
           "-1"], "background")
    fails(["ideal", "-o", str(tmp_path / "dir"), "--n", "4"], "is a directory")
    assert not (tmp_path / "lib.npz").exists()
    # two phases: mixtures of 2 only (it used to crash drawing 3 of 2)
    r = runner.invoke(app, ["ideal", "-o", str(tmp_path / "i.npz"), "--n", "6", "--length",
                            "100", "--decorations", "0", "--cif", cif, "--cif",
                            str(tmp_path / "nacl.cif")])
    assert r.exit_code == 0, r.output
    # phasemap into a directory holding another run is refused unless --overwrite
    ph = _toy_phases()[:2]
    grid = xrd.default_two_theta(100)
    np.savez(tmp_path / "lib.npz", **xrd.composition_library(ph, 10, grid, seed=1).to_npz_dict())
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model": "padnet"}')
    pm = ["phasemap", "--input", str(tmp_path / "lib.npz"), "--n-phases", "2", "--out"]
    fails([*pm, str(other)], "already holds")
    assert json.loads((other / "config.json").read_text()) == {"model": "padnet"}
    assert not (other / "phases.npz").exists()
    r = runner.invoke(app, [*pm, str(other), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert json.loads((other / "config.json").read_text())["n_phases"] == 2
    fails([*pm, str(tmp_path / "pm"), "--method", "gibbs", "--max-phases", "0"],
          "--max-phases")
    assert not (tmp_path / "pm").exists()
