"""Generated samples are read without cross-reference warnings, and CMS files keep coffea's
schema."""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_ad.schemas import GeneratedPFNanoAODSchema, schema_for


def _events(path, schema):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=schema,
                                       mode="virtual").events()


def test_generated_file_reads_without_warnings_and_links_constituents(small_fileset):
    path = next(iter(small_fileset["svj"]["files"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = _events(path, PFNanoAODSchema)
    missing = [w for w in caught if "cross-reference" in str(w.message)]
    assert len(missing) > 20  # what every run printed before, per chunk
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = _events(path, GeneratedPFNanoAODSchema)
        # the links the files do carry still resolve: FatJet -> its PF candidates
        pt_new = ak.flatten(ev.FatJet.constituents.pf.pt, axis=None)
    pt_plain = ak.flatten(plain.FatJet.constituents.pf.pt, axis=None)
    assert len(pt_new) > 1000
    np.testing.assert_array_equal(ak.to_numpy(pt_new), ak.to_numpy(pt_plain))


def test_schema_is_chosen_from_the_fileset_metadata(small_fileset, pfnano_file):
    assert schema_for(small_fileset) is GeneratedPFNanoAODSchema
    cms = {"data": {"files": {str(pfnano_file): "Events"}, "metadata": {}}}
    assert schema_for(cms) is PFNanoAODSchema
    # a mix keeps coffea's schema (its warnings are real for the CMS part)
    assert schema_for({**small_fileset, **cms}) is PFNanoAODSchema
    # another schema asked for is never replaced
    from coffea.nanoevents import NanoAODSchema

    assert schema_for(small_fileset, NanoAODSchema) is NanoAODSchema


def test_real_pfnano_file_keeps_every_cross_reference_it_has(pfnano_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = _events(pfnano_file, PFNanoAODSchema)
        b = _events(pfnano_file, GeneratedPFNanoAODSchema)

    def global_indices(ev):
        return {c: sorted(f for f in ev[c].fields if f.endswith("IdxG"))
                for c in ev.fields if ev[c].fields}

    ga, gb = global_indices(a), global_indices(b)
    assert ga == gb
    assert sum(len(v) for v in ga.values()) > 5  # the real file carries many
