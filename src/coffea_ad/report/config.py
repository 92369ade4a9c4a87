"""The run configuration at the top of a report page, from run.json.

A reader of a report should see, before any number, what produced it: the command, the
processor settings (threshold, luminosity, cuts), the model and its contract, the executor
options, the input datasets with their origin, and the package versions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coffea_ad.origin import dataset_origin

__all__ = ["configuration_lines", "run_lumi_fb"]

_ORIGIN_TEXT = {"generated": "generated (Pythia 8 + coffea-ad detector response)",
                "cms_simulation": "CMS simulation", "cms_data": "CMS data"}


def run_lumi_fb(info: Mapping[str, Any]) -> float | None:
    """The luminosity (fb⁻¹) the run's histograms are normalised to, or ``None`` when they
    hold generator weights (run.json from before the configuration block: ``None`` too)."""
    settings = ((info.get("configuration") or {}).get("processor") or {}).get("settings") or {}
    value = settings.get("lumi_fb")
    return None if value is None else float(value)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|")


def configuration_lines(info: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the "Run configuration" section (empty without run.json)."""
    if not info:
        return []
    conf = info.get("configuration") or {}
    lines = ["## Run configuration", ""]
    if conf.get("command"):
        lines += ["```", " ".join(str(a) for a in conf["command"]), "```", ""]
    proc = conf.get("processor") or {}
    lines += [f"- processor: `{proc.get('class') or info.get('processor', '?')}`"]
    lumi = run_lumi_fb(info)
    lines.append(f"- yields: events at {lumi:g} fb⁻¹ (σ × L / Σw per dataset)" if lumi is not None
                 else "- yields: unnormalised (sums of generator weights; run with "
                      "`--set lumi_fb=...` for events at a luminosity)")
    lines.append(f"- entries processed: {info.get('entries_processed', '?')} of "
                 f"{info.get('entries', '?')} (complete: {info.get('complete', '?')})")
    model = conf.get("model") or {}
    if model:
        contract = model.get("contract") or {}
        lines.append(f"- model `{Path(str(model.get('path', '?'))).name}` (sha256 "
                     f"`{str(model.get('sha256', '?'))[:16]}…`): {contract.get('kind', '?')}, "
                     f"score output `{contract.get('score', '?')}`, inputs "
                     + "; ".join(f"{k}: {', '.join(v)}"
                                 for k, v in (contract.get("inputs") or {}).items()))
    else:
        lines += [f"- model `{Path(p).name}`: sha256 `{h}`"
                  for p, h in (info.get("models") or {}).items()]
    lines.append("")
    settings = proc.get("settings") or {}
    if settings:
        lines += ["| processor setting | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in sorted(settings.items())]
        lines.append("")
    fileset = info.get("fileset") or {}
    if fileset:
        lines += ["| dataset | origin | files | σ (pb) | Σw |", "|---|---|---|---|---|"]
        for name, entry in fileset.items():
            meta = (entry or {}).get("metadata") or {}
            xsec = meta.get("xsec")
            sumw = meta.get("sumw")
            lines.append(f"| {_cell(meta.get('label') or name)} | "
                         f"{_ORIGIN_TEXT[dataset_origin(meta)]} | "
                         f"{len((entry or {}).get('files') or {})} | "
                         f"{'n/a' if xsec is None else f'{float(xsec):.4g}'} | "
                         f"{'n/a' if sumw is None else f'{float(sumw):.6g}'} |")
        lines.append("")
    executor = conf.get("executor") or info.get("executor") or {}
    if executor:
        lines.append("- executor: " + ", ".join(f"{k}={_cell(v)}" for k, v in executor.items()
                                                if v is not None))
    versions = info.get("versions") or {}
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append("")
    return lines
