"""``matdisco xrd``: 1D powder-pattern simulation, synthetic libraries and phase mapping."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict, cast

import numpy as np
import typer

from matdisco import MatdiscoError
from matdisco._io import check_output_file
from matdisco._io import save_npz as _save_npz
from matdisco.cli import handle_errors, one_input

app = typer.Typer(help="X-ray diffraction: simulate 1D patterns and 2D detector images, "
                  "build composition-spread libraries, map phases, remove 2D backgrounds "
                  "and classify phase regions with PADNet.", no_args_is_help=True)


class _PADNetParams(TypedDict):
    """Keyword arguments of ``PADNetClassifier`` set by ``matdisco xrd train``."""

    f: int
    trainable_filters: bool
    use_composition: bool
    attention: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    device: str


@app.command()
@handle_errors
def simulate(
    cif: list[Path] = typer.Argument(..., help="CIF files."),
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Output .npz (X, two_theta, names) or .csv."),
    n_points: int = typer.Option(2000, help="Grid length."),
    two_theta_min: float = typer.Option(10.0),
    two_theta_max: float = typer.Option(80.0),
    images: Path = typer.Option(None, help="Also render 2D detector images into this .npz "
                                "(images, two_theta, patterns, names, geometry)."),
    size: int = typer.Option(512, help="Detector image size (pixels) for --images."),
    background: str = typer.Option("smooth", help="Image background: none, smooth, "
                                   "irregular."),
    wavelength: float = typer.Option(1.0, help="Wavelength (Å) of the detector images."),
    spottiness: float = typer.Option(0.0, help="Ring texture 0 (smooth) .. 1 (spotty)."),
    texture: str = typer.Option(None, help="March–Dollase preferred orientation 'h,k,l:r', "
                                "e.g. '0,0,1:0.6' (r < 1: platelets on (001))."),
    seed: int = typer.Option(0),
) -> None:
    """Simulate the 1D powder patterns of CIF structures (and 2D detector images)."""
    import pandas as pd

    from matdisco._io import write_table
    from matdisco.xrd import default_two_theta, load_cif, simulate_pattern

    check_output_file(output, (".npz", ".csv", ".parquet"))
    if images is not None:
        check_output_file(images, (".npz",), "--images")
    po = _parse_texture(texture)
    grid = default_two_theta(n_points, two_theta_min, two_theta_max)
    X = np.stack([simulate_pattern(load_cif(p), two_theta=grid, preferred_orientation=po)
                  for p in cif])
    # render the images before writing anything: a bad image setting leaves no output
    image_arrays = (None if images is None else
                    _simulate_images(cif, size, background, wavelength, spottiness, seed, po))
    if output.suffix == ".npz":
        _save_npz(output, X=X, two_theta=grid, names=np.array([p.stem for p in cif]))
    else:
        df = pd.DataFrame(X, columns=[f"{t:.4f}" for t in grid])
        df.insert(0, "name", [p.stem for p in cif])
        write_table(output, df)
    if images is not None and image_arrays is not None:
        _save_npz(images, **image_arrays)
    typer.echo(f"simulated {len(cif)} patterns -> {output}"
               + (f", detector images -> {images}" if images is not None else ""))


def _parse_texture(text: str | None) -> tuple[tuple[int, int, int], float] | None:
    """``'h,k,l:r'`` → ``((h, k, l), r)`` (``None`` passes through)."""
    if text is None:
        return None
    try:
        hkl, r = text.split(":")
        h, k, l_ = (int(v) for v in hkl.split(","))
        return (h, k, l_), float(r)
    except ValueError:
        raise MatdiscoError(f"--texture must look like 'h,k,l:r' (e.g. '0,0,1:0.6'), got "
                            f"{text!r}") from None


def _simulate_images(cif: list[Path], size: int, background: str,
                     wavelength: float, spottiness: float, seed: int,
                     texture: tuple[tuple[int, int, int], float] | None = None
                     ) -> dict[str, np.ndarray]:
    """Arrays of the ``--images`` file (images, patterns, two_theta, names, geometry)."""
    import json

    from matdisco.xrd import load_cif
    from matdisco.xrd.detector import render_image, slac_like_geometry
    from matdisco.xrd.library import render_phase
    from matdisco.xrd.simulate import peak_list

    geom = slac_like_geometry(size, wavelength)
    lo, hi = geom.two_theta_range()
    grid = np.linspace(max(0.5, lo - 0.5), hi + 0.5, 2000)
    rng = np.random.default_rng(seed)
    pats, imgs = [], []
    for p in cif:
        pk = peak_list(load_cif(p), (max(0.5, grid[0] - 3), min(179.0, grid[-1] + 3)),
                       wavelength=wavelength, with_crystal_system=False,
                       preferred_orientation=texture)
        x = render_phase(pk, grid)
        pats.append(x / max(x.max(), 1e-12))
        imgs.append(render_image(x, grid, geom, background=background,
                                 spottiness=spottiness, rng=rng)[None])
    return {"images": np.stack(imgs), "patterns": np.stack(pats).astype(np.float32),
            "two_theta": grid, "names": np.array([p.stem for p in cif]),
            "geometry": np.array(json.dumps(geom.to_dict()))}


@app.command()
@handle_errors
def library(
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Output .npz (X, two_theta, compositions, "
                                "fractions, true_phases, ...)."),
    n_phases: int = typer.Option(4, help="Number of phases in the library."),
    n_samples: int = typer.Option(60, help="Number of compositions."),
    cif: list[Path] = typer.Option(None, help="Phase structures (default: random AFLOW "
                                   "prototypes)."),
    seed: int = typer.Option(0),
    background: float = typer.Option(0.1),
    noise: float = typer.Option(0.01),
    images: bool = typer.Option(False, "--images", help="Build a library of 2D detector "
                                "images (default: the Sn-Ti-Zn-O library, 8 regions; use "
                                "--n-samples 177 like the study)."),
    background_kind: str = typer.Option("irregular", help="With --images: irregular "
                                        "(SLAC-like), smooth (NIST-like) or none."),
    n_frames: int = typer.Option(1, help="With --images: 1 frame or 2 frames (NIST-like)."),
    size: int = typer.Option(512, help="With --images: image size in pixels."),
    region_map: Path = typer.Option(None, help="With --images: JSON region map "
                                    "{regions: [{name, phases, polygon}]} (phases must be "
                                    "default phase names)."),
) -> None:
    """Simulate a ternary composition-spread library (1D patterns, or 2D images)."""
    from matdisco.xrd import aflow_prototypes, composition_library, load_cif, prototype_phases

    check_output_file(output, (".npz",))
    if n_samples < 1:
        raise MatdiscoError(f"--n-samples must be ≥ 1, got {n_samples}")
    if images:
        _image_library(output, n_samples, background_kind, n_frames, size, region_map, seed)
        return
    if cif:
        structs = [(p.stem, load_cif(p)) for p in cif]
    else:
        protos = aflow_prototypes()
        if not 1 <= n_phases <= len(protos):
            raise MatdiscoError(f"--n-phases must be between 1 and {len(protos)} (the AFLOW "
                                f"prototypes available), got {n_phases}")
        rng = np.random.default_rng(seed)
        structs = [protos[i] for i in rng.choice(len(protos), n_phases, replace=False)]
    phases = prototype_phases(n_decorations=0, structures=structs, seed=seed)
    lib = composition_library(phases, n_samples, seed=seed, background=background,
                              noise=noise)
    _save_npz(output, **lib.to_npz_dict())
    typer.echo(f"library of {n_samples} patterns, {len(phases)} phases -> {output}")


@app.command()
@handle_errors
def ideal(
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Output .npz (X, y, two_theta, class_names), the ideal training set of "
             "`matdisco refine train`."),
    task: str = typer.Option("purity", help="Labels: purity (pure vs 2-3-phase mixture) or "
                             "crystal_system (7 classes)."),
    n: int = typer.Option(3000, help="Number of patterns."),
    cif: list[Path] = typer.Option(None, help="Phase structures (default: the 288 AFLOW "
                                   "prototypes shipped with pymatgen)."),
    decorations: int = typer.Option(1, help="Element-decorated variants per structure."),
    length: int = typer.Option(2000, help="Points of the 2θ grid (10-80°)."),
    noise: tuple[float, float] = typer.Option((0.01, 0.01), help="Noise level (relative to "
                                              "the maximum), drawn per pattern from LO HI."),
    seed: int = typer.Option(0),
) -> None:
    """Simulate an ideal, labelled pattern set (pure phases and mixtures, or crystal
    systems) from the AFLOW prototypes or CIF structures."""
    from matdisco.xrd import (
        CRYSTAL_SYSTEMS,
        PURITY_CLASSES,
        default_two_theta,
        ideal_dataset,
        load_cif,
        prototype_phases,
    )

    check_output_file(output, (".npz",))
    if task not in ("purity", "crystal_system"):
        raise MatdiscoError(f"--task must be purity or crystal_system, got {task!r}")
    if n < 1 or length < 10 or decorations < 0:
        raise MatdiscoError("--n must be ≥ 1, --length ≥ 10 and --decorations ≥ 0")
    structs = [(p.stem, load_cif(p)) for p in cif] if cif else None
    phases = prototype_phases(n_decorations=decorations, structures=structs, seed=seed)
    grid = default_two_theta(length)
    X, y = ideal_dataset(phases, n, grid, task=task, seed=seed,
                         noise=cast(tuple[float, float], tuple(noise)))
    names = PURITY_CLASSES if task == "purity" else CRYSTAL_SYSTEMS
    _save_npz(output, X=X, y=y, two_theta=grid, class_names=np.array(names))
    typer.echo(f"{n} ideal patterns ({task}, {len(phases)} phases) -> {output}")


@app.command()
@handle_errors
def phasemap(
    input: Path = typer.Option(..., help="Library .npz (X, optional two_theta, true_phases) "
                               "or .npy/.csv of patterns."),
    n_phases: int = typer.Option(..., help="Number of basis patterns K."),
    out: Path = typer.Option(..., help="Output directory."),
    method: str = typer.Option("nmf", help="nmf or gibbs (≤ max-phases per sample)."),
    max_phases: int = typer.Option(3, help="Phases per sample for gibbs."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, help="Replace the phase map that --out already "
                                   "holds."),
) -> None:
    """Decompose a library into K phases (NMF); match them to the true phases if present."""
    from matdisco.xrd.phasemap import run_phasemap

    if method == "gibbs" and max_phases < 1:
        raise MatdiscoError(f"--max-phases must be ≥ 1, got {max_phases}")
    metrics = run_phasemap(input, n_phases, out, method=method, max_phases=max_phases,
                           seed=seed, overwrite=overwrite)
    typer.echo(f"{n_phases} phases ({method}), relative error "
               f"{metrics['reconstruction_error']:.3f} -> {out} (phases.npz, weights.csv, "
               "phases.png)")
    if "note" in metrics:
        typer.echo(f"note: {metrics['note']}", err=True)


# ---------------------------------------------------------------- 2D detector images
def _image_library(output: Path, n_samples: int, background_kind: str, n_frames: int,
                   size: int, region_map: Path | None, seed: int) -> None:
    from matdisco._io import read_json
    from matdisco.xrd.library import RegionMap, make_library

    rm = RegionMap.from_dict(read_json(region_map)) if region_map else None
    lib = make_library(region_map=rm, n_samples=n_samples, background=background_kind,
                       n_frames=n_frames, shape=size, seed=seed)
    lib.save(output)
    counts = np.bincount(lib.labels, minlength=len(lib.region_names))
    typer.echo(f"image library: {len(lib)} samples, {lib.images.shape[1]} frame(s) of "
               f"{size}x{size}, {len(lib.region_names)} regions {counts.tolist()} -> {output}")


@app.command()
@handle_errors
def background(
    inputs: list[Path] = typer.Argument(..., help="Library .npz or image files "
                                        "(TIFF/EDF/CBF/...)."),
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Output: .npz (all images; from image files, also their 'paths') or a "
             "directory (one .tif per image, named after it)."),
    method: str = typer.Option("cs", help="mf (minimum filter) or cs (MF + mean)."),
    window: int = typer.Option(None, help="Window f in pixels (default 200 on 2048², "
                               "scaled with size)."),
) -> None:
    """Remove the 2D background of detector images (I − MF or I − CS)."""
    import time

    from matdisco.xrd.background import remove_background
    from matdisco.xrd.readers import IMAGE_SUFFIXES, load_images, write_image

    if output.suffix == ".npz":
        check_output_file(output, (".npz",))
    elif output.exists() and not output.is_dir():
        raise MatdiscoError(f"--output {output} is a file; give a .npz file or a directory")
    elif output.suffix.lower() in (*IMAGE_SUFFIXES, ".npy", ".csv", ".parquet", ".txt",
                                   ".json"):
        raise MatdiscoError(f"--output {output}: unsupported suffix {output.suffix!r}; give "
                            "a .npz file or a directory (one .tif per image)")
    x, comp, names, sources = load_images(inputs)
    stems = [Path(name).stem.replace("[", "_").replace("]", "") for name in names]
    if output.suffix != ".npz":  # one file per image: two inputs must not share a name
        first: dict[str, str] = {}
        for (src, _), stem in zip(sources, stems, strict=True):
            if stem in first:
                raise MatdiscoError(f"{first[stem]} and {src} would both be written as "
                                    f"{stem}_f*_{method}.tif in {output}; rename one, or "
                                    "write a .npz (it keeps every input path)")
            first[stem] = src
    t0 = time.perf_counter()
    out = remove_background(x, method, window)
    dt = time.perf_counter() - t0
    if output.suffix == ".npz":
        arrays = {"images": out}
        if comp is not None:
            arrays["compositions"] = comp
        if len(inputs) == 1 and inputs[0].suffix == ".npz":
            with np.load(inputs[0], allow_pickle=False) as z:
                arrays.update({k: z[k] for k in z.files if k not in arrays})
        else:  # image files: record which file each image came from, in input order
            arrays["paths"] = np.array([src for src, _ in sources])
        _save_npz(output, **arrays)
    else:
        output.mkdir(parents=True, exist_ok=True)
        for i, stem in enumerate(stems):
            for f in range(out.shape[1]):
                write_image(output / f"{stem}_f{f}_{method}.tif", out[i, f])
    typer.echo(f"removed {method} background of {len(x)} sample(s) in {dt:.2f} s -> {output}")


@app.command()
@handle_errors
def train(
    library: Path = typer.Argument(None, help="Image library .npz (from `library --images`; "
                                   "or --data)."),
    data_option: Path = typer.Option(None, "--data", help="The image library, as an option."),
    out: Path = typer.Option(..., help="Run directory."),
    preprocess: str = typer.Option("none", help="Training images: none (raw I), mf or cs."),
    trainable_filters: bool = typer.Option(False, help="Train the slope filters."),
    use_composition: bool = typer.Option(False, help="Add the composition branch."),
    f: int = typer.Option(5, help="Slope-filter size (pixels)."),
    attention: str = typer.Option("softmax", help="PAD layer: the study's spatial softmax, "
                                  "or none (robust to textured, spotty rings)."),
    epochs: int = typer.Option(60),
    batch_size: int = typer.Option(16),
    lr: float = typer.Option(2e-3),
    weight_decay: float = typer.Option(1e-4, help="L2 penalty."),
    patience: int = typer.Option(12, help="Early-stopping patience."),
    cv: int = typer.Option(0, help="Also report k-fold CV accuracy (k ≥ 2; 0 = skip)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    overwrite: bool = typer.Option(False, help="Replace the run that --out already holds."),
) -> None:
    """Train PADNet on a library of detector images and save it to a run directory."""
    from matdisco.xrd.workflow import train_padnet

    library = one_input(library, data_option, "image library")
    params = _PADNetParams(f=f, trainable_filters=trainable_filters,
                           use_composition=use_composition, attention=attention,
                           epochs=epochs, batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, patience=patience, device=device)
    metrics = train_padnet(library, out, preprocess=preprocess, cv=cv, seed=seed,
                           overwrite=overwrite, **params)
    msg = f"PADNet trained ({metrics['epochs_run']} epochs)"
    if cv:
        key = next(k for k in metrics["cv"] if k.startswith("train-"))
        msg += f", {cv}-fold CV accuracy {metrics['cv'][key]['mean']:.3f}"
    typer.echo(f"{msg} -> {out}")


@app.command()
@handle_errors
def classify(
    model: Path = typer.Argument(..., help="Run directory written by `train`."),
    inputs: list[Path] = typer.Argument(..., help="Library .npz or image files."),
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Predictions .csv or .parquet, one row per image in input order: path, "
             "index (position in that file), name, label, region, probability."),
) -> None:
    """Classify detector images into phase regions with a trained PADNet."""
    from matdisco._io import write_table
    from matdisco.xrd.workflow import classify_images

    check_output_file(output, (".csv", ".parquet"))
    df = classify_images(model, inputs)
    write_table(output, df)
    typer.echo(f"classified {len(df)} sample(s) -> {output}")
