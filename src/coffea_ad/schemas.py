"""NanoEvents schema for the PFNano-format files ``coffea-ad generate`` writes.

coffea's :class:`~coffea.nanoevents.PFNanoAODSchema` builds a global index for every
cross-reference a full CMS NanoAOD has (``Jet_muonIdx1 => Muon``, ``Tau_jetIdx => Jet``, ...)
and warns once per missing one, per file and chunk: on generated samples, which carry only the
collections the generator makes (GenPart, PFCands, Jet, FatJet and their PF-candidate links),
that was ~40 RuntimeWarnings per chunk, all about collections that do not exist. This schema
looks only for the cross-references whose index branch the file has; a reference whose index
is there but whose target collection is missing still warns, as it is a broken file.

:func:`schema_for` picks it for a fileset whose datasets are all generated (by their fileset
metadata, :func:`coffea_ad.origin.dataset_origin`); CMS files keep coffea's schema and
its warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coffea.nanoevents import PFNanoAODSchema

from coffea_ad.origin import is_generated_fileset

__all__ = ["GeneratedPFNanoAODSchema", "schema_for"]


class GeneratedPFNanoAODSchema(PFNanoAODSchema):
    """:class:`PFNanoAODSchema` that builds only the cross-references present in the file."""

    def _build_collections(self, field_names: Any, input_contents: Any) -> Any:
        present = set(field_names)
        self.cross_references = {index: target for index, target in self.cross_references.items()
                                 if index in present}
        return super()._build_collections(field_names, input_contents)


def schema_for(fileset: Mapping[str, Any] | None, default: Any = PFNanoAODSchema) -> Any:
    """:class:`GeneratedPFNanoAODSchema` for an all-generated fileset when ``default`` is
    coffea's PFNano schema, else ``default``."""
    if default is PFNanoAODSchema and is_generated_fileset(fileset):
        return GeneratedPFNanoAODSchema
    return default
