"""Which label a plot carries, chosen from where its events come from.

A CMS collaboration label belongs on CMS events only. Samples made by ``coffea-ad generate``
are Pythia 8 with this project's own detector response: their plots say so, and never
"CMS Simulation". Real CMS files (NanoAOD, PFNano, TreeMaker) get the CMS label with the
qualifier the user chooses (default "Private Work", the usual one for plots that have not
been through CMS review), "Simulation" for CMS Monte Carlo, the integrated luminosity when
the histograms are normalised to one, and the centre-of-mass energy.

How a dataset's origin is known: :func:`coffea_ad.origin.dataset_origin`, from its fileset
metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coffea_ad._optional import require
from coffea_ad.origin import Origin, dataset_origin

__all__ = [
    "GENERATED_TEXT",
    "PALETTE",
    "DatasetStyle",
    "Origin",
    "PlotLabel",
    "dataset_origin",
    "dataset_styles",
    "label_for_fileset",
]

#: What a plot of generated samples says in place of an experiment label.
GENERATED_TEXT = "Pythia 8 + coffea-ad detector response"

#: pp centre-of-mass energy (TeV) when neither the fileset nor the caller gives one (Run 3).
DEFAULT_COM_TEV = 13.6


@dataclass(frozen=True)
class PlotLabel:
    """The text above a plot's axes.

    Attributes:
        origin: where the events come from (decides CMS label or not).
        cms_text: qualifier after "CMS" (or "CMS Simulation") for CMS files.
        lumi_fb: integrated luminosity (fb⁻¹) the yields are normalised to, or ``None``
            (unnormalised: no luminosity is written).
        com_tev: pp centre-of-mass energy (TeV).
    """

    origin: Origin = "generated"
    cms_text: str = "Private Work"
    lumi_fb: float | None = None
    com_tev: float = DEFAULT_COM_TEV

    @property
    def is_cms(self) -> bool:
        return self.origin != "generated"

    def left_text(self) -> str:
        """The left-hand label as plain text (also what the report page prints)."""
        if self.origin == "generated":
            return f"Simulation ({GENERATED_TEXT})"
        sim = " Simulation" if self.origin == "cms_simulation" else ""
        return f"CMS{sim} {self.cms_text}".rstrip()

    def right_text(self, *, tex: bool = False) -> str:
        """Luminosity (when normalised) and energy, e.g. ``"138 fb⁻¹ (13 TeV)"``; ``tex``:
        the superscript in mathtext (the CMS font has no superscript-minus glyph)."""
        com = f"({self.com_tev:g} TeV)"
        inverse_fb = "fb$^{-1}$" if tex else "fb\u207b\u00b9"
        return com if self.lumi_fb is None else f"{self.lumi_fb:g} {inverse_fb} {com}"

    def draw(self, ax: Any, *, right_ax: Any = None, fontsize: float = 20) -> None:
        """Write the label above ``ax`` (left part) and ``right_ax`` (right part; default
        ``ax``), so that multi-panel figures spread it over their panels instead of squeezing
        it into the first one."""
        right = right_ax if right_ax is not None else ax
        rtext = right.text(1.0, 1.01, self.right_text(tex=True), transform=right.transAxes,
                           ha="right", va="bottom", fontsize=fontsize * 0.85)
        if self.origin != "generated":
            hep = require("mplhep", purpose="CMS-style plots")
            # rlabel="" keeps mplhep from writing energy and luminosity into this panel
            hep.cms.label(self.cms_text, data=self.origin == "cms_data", ax=ax, loc=0,
                          rlabel="", fontsize=fontsize)
            return
        head = ax.text(0.0, 1.01, "Simulation", transform=ax.transAxes, ha="left",
                       va="bottom", fontsize=fontsize, fontweight="bold")
        tail = ax.annotate(f" {GENERATED_TEXT}", xy=(1.0, 0.0), xycoords=head, ha="left",
                           va="bottom", fontsize=fontsize * 0.75, fontstyle="italic")
        # on a narrow single panel the description runs into the energy: it then goes on a
        # line of its own above "Simulation"
        renderer = ax.figure.canvas.get_renderer()
        if tail.get_window_extent(renderer).x1 > rtext.get_window_extent(renderer).x0 - 5:
            tail.remove()
            ax.annotate(GENERATED_TEXT, xy=(0.0, 1.0), xycoords=head, ha="left",
                        va="bottom", fontsize=fontsize * 0.75, fontstyle="italic")


def label_for_fileset(
    fileset: Mapping[str, Any] | None,
    *,
    cms_text: str = "Private Work",
    lumi_fb: float | None = None,
    com_tev: float | None = None,
) -> PlotLabel:
    """The label of plots made from ``fileset``'s datasets.

    Any generated dataset makes the plot a generated-sample plot (a CMS label over a mix
    would claim the generated part for CMS); data only when every dataset is data. The
    energy is ``com_tev`` when given, else the generator's ``ecm`` setting, else 13.6 TeV.

    Args:
        fileset: ``{dataset: {"files": ..., "metadata": {...}}}`` (as in run.json), or None.
        cms_text: qualifier after "CMS" for CMS files.
        lumi_fb: luminosity the yields are normalised to (``None``: not normalised).
        com_tev: centre-of-mass energy (TeV).
    """
    metas = [((entry or {}).get("metadata") or {}) if isinstance(entry, Mapping) else {}
             for entry in (fileset or {}).values()]
    origins = [dataset_origin(m) for m in metas]
    if not origins or "generated" in origins:
        origin: Origin = "generated"
    elif all(o == "cms_data" for o in origins):
        origin = "cms_data"
    else:
        origin = "cms_simulation"
    if com_tev is None:
        ecms = {float((m.get("settings") or {}).get("ecm", 0.0)) for m in metas}
        ecms.discard(0.0)
        com_tev = ecms.pop() / 1000.0 if len(ecms) == 1 else DEFAULT_COM_TEV
    return PlotLabel(origin=origin, cms_text=cms_text, lumi_fb=lumi_fb, com_tev=com_tev)


#: Petroff's 10-colour palette, the one CMS recommends (distinct also for colour-blind readers).
PALETTE = ("#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6", "#a96b59", "#e76300",
           "#b9ac70", "#717581", "#92dadd")


@dataclass(frozen=True)
class DatasetStyle:
    """How one dataset appears in legends: its display name and its colour."""

    label: str
    color: str


def dataset_styles(
    datasets: list[str] | tuple[str, ...],
    fileset: Mapping[str, Any] | None = None,
) -> dict[str, DatasetStyle]:
    """Display name (fileset metadata ``label``, else the dataset key) and colour per dataset.

    Colours follow the order of ``datasets`` (pass every dataset of a run, in one order, so
    that a dataset keeps its colour on every plot of the run, whichever subset a plot shows);
    beyond the palette they repeat.
    """
    out = {}
    for i, name in enumerate(datasets):
        entry = (fileset or {}).get(name)
        meta = ((entry or {}).get("metadata") or {}) if isinstance(entry, Mapping) else {}
        out[name] = DatasetStyle(label=str(meta.get("label") or name),
                                 color=PALETTE[i % len(PALETTE)])
    return out
