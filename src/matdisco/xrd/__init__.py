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

__all__ = [
    "CRYSTAL_SYSTEMS",
    "DetectorGeometry",
    "ImageLibrary",
    "PhaseRegion",
    "RegionMap",
    "default_phases",
    "default_region_map",
    "estimate_background",
    "integrate",
    "load_images",
    "make_library",
    "read_image",
    "read_pattern",
    "remove_background",
    "render_image",
    "PURITY_CLASSES",
    "PeakList",
    "PhaseMapResult",
    "XRDLibrary",
    "aflow_prototypes",
    "caglioti_fwhm",
    "composition_library",
    "crystal_system",
    "decorate",
    "default_two_theta",
    "degrade",
    "degraded_dataset",
    "ideal_dataset",
    "load_cif",
    "load_phases",
    "match_phases",
    "mixture_pattern",
    "peak_list",
    "phasemap",
    "plot_phases",
    "run_phasemap",
    "prototype_phases",
    "pseudo_voigt",
    "pure_pattern",
    "random_profile",
    "render_peaks",
    "save_phases",
    "simulate_pattern",
    "validate_grid",
    "validate_signals",
]
