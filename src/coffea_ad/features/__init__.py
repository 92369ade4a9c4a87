"""Model inputs computed columnar-ly from NanoAOD/PFNano jagged arrays (awkward + numba).

One concept per module: :mod:`.constituents` (jet → PF candidate links), :mod:`.substructure`
(p_T^D, axes, girth, LHA), :mod:`.ecf` (energy correlation functions, EFP1), :mod:`.event`
(m_jj, m_T, Δφ, VBS variables), :mod:`.particles` (padded particle lists), :mod:`.graphs`
(ΔR / kNN constituent graphs) and :mod:`.table` (feature registry, per-jet table). Every
function accepts eager/virtual NanoEvents and dask-awkward arrays alike.
"""

from __future__ import annotations

from coffea_ad.features.constituents import CONSTITUENT_FIELDS, jet_constituents
from coffea_ad.features.ecf import BETAS, efp1, energy_correlators
from coffea_ad.features.event import (
    VBS_CUTS,
    dijet_mass,
    event_variables,
    transverse_mass,
    vbs_selection,
    vbs_selection_names,
    vbs_variables,
)
from coffea_ad.features.graphs import GRAPH_NODE_FEATURES, constituent_graph, normalized_adjacency
from coffea_ad.features.particles import (
    PARTICLE_FEATURES,
    ParticleBlocks,
    particle_blocks_from_events,
    particle_list,
    particle_list_from_events,
    pdg_class,
)
from coffea_ad.features.substructure import (
    axes,
    girth,
    jet_shapes,
    lha,
    ptd,
    valid_constituents,
)
from coffea_ad.features.table import (
    BRANCH_EQUIVALENTS,
    JET_FEATURES,
    JetFeature,
    jet_features,
    jet_table,
)

__all__ = [
    "BETAS",
    "BRANCH_EQUIVALENTS",
    "CONSTITUENT_FIELDS",
    "GRAPH_NODE_FEATURES",
    "JET_FEATURES",
    "PARTICLE_FEATURES",
    "VBS_CUTS",
    "JetFeature",
    "ParticleBlocks",
    "axes",
    "constituent_graph",
    "dijet_mass",
    "efp1",
    "energy_correlators",
    "event_variables",
    "girth",
    "jet_constituents",
    "jet_features",
    "jet_shapes",
    "jet_table",
    "lha",
    "normalized_adjacency",
    "particle_blocks_from_events",
    "particle_list",
    "particle_list_from_events",
    "pdg_class",
    "ptd",
    "transverse_mass",
    "valid_constituents",
    "vbs_selection",
    "vbs_selection_names",
    "vbs_variables",
]
