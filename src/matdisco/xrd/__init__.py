"""1D X-ray powder-diffraction simulation, synthetic libraries and phase mapping.

Notebook-friendly API::

    from matdisco import xrd
    grid = xrd.default_two_theta()                 # 2000 points, 10–80° 2θ
    pattern = xrd.simulate_pattern(structure, two_theta=grid)
    phases = xrd.prototype_phases()                # the 288 AFLOW prototypes, decorated
    lib = xrd.composition_library(phases[:4], n_samples=60)
    result = xrd.phasemap(lib.patterns, n_phases=4, method="nmf")
    images = xrd.make_library(n_samples=177, shape=512)  # 2D Sn-Ti-Zn-O image library
    clean = xrd.remove_background(images.images, "cs")  # I - CS (PADNet: xrd.padnet)
    assignment, corr = xrd.match_phases(result.basis, lib.true_phases)
    xrd.train_padnet("lib.npz", "runs/padnet", preprocess="cs")  # run directory
    table = xrd.classify_images("runs/padnet", ["lib.npz"])
"""

from matdisco.xrd.background import estimate_background, remove_background
from matdisco.xrd.detector import DetectorGeometry, render_image
from matdisco.xrd.library import (
    ImageLibrary,
    PhaseRegion,
    RegionMap,
    default_phases,
    default_region_map,
    make_library,
)
from matdisco.xrd.phasemap import (
    PhaseMapResult,
    match_phases,
    phasemap,
    plot_phases,
    run_phasemap,
)
from matdisco.xrd.readers import integrate, load_images, read_image, read_pattern
from matdisco.xrd.simulate import (
    CRYSTAL_SYSTEMS,
    PeakList,
    aflow_prototypes,
    caglioti_fwhm,
    crystal_system,
    decorate,
    default_two_theta,
    load_cif,
    load_phases,
    peak_list,
    prototype_phases,
    pseudo_voigt,
    render_peaks,
    save_phases,
    simulate_pattern,
    validate_grid,
    validate_signals,
)
from matdisco.xrd.synth import (
    PURITY_CLASSES,
    XRDLibrary,
    composition_library,
    degrade,
    degraded_dataset,
    ideal_dataset,
    mixture_pattern,
    pure_pattern,
    random_profile,
)
from matdisco.xrd.workflow import classify_images, train_padnet

__all__ = [
    "CRYSTAL_SYSTEMS",
    "PURITY_CLASSES",
    "aflow_prototypes",
    "caglioti_fwhm",
    "classify_images",
    "composition_library",
    "crystal_system",
    "decorate",
    "default_phases",
    "default_region_map",
    "default_two_theta",
    "degrade",
    "degraded_dataset",
    "DetectorGeometry",
    "estimate_background",
    "ideal_dataset",
    "ImageLibrary",
    "integrate",
    "load_cif",
    "load_images",
    "load_phases",
    "make_library",
    "match_phases",
    "mixture_pattern",
    "peak_list",
    "PeakList",
    "phasemap",
    "PhaseMapResult",
    "PhaseRegion",
    "plot_phases",
    "prototype_phases",
    "pseudo_voigt",
    "pure_pattern",
    "random_profile",
    "read_image",
    "read_pattern",
    "RegionMap",
    "remove_background",
    "render_image",
    "render_peaks",
    "run_phasemap",
    "save_phases",
    "simulate_pattern",
    "train_padnet",
    "validate_grid",
    "validate_signals",
    "XRDLibrary",
]
