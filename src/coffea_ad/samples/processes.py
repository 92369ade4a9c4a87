"""Registry of the physics processes the generator knows, with documented, overridable settings.

Each :class:`ProcessSpec` maps a small set of physics parameters (masses, couplings, phase-space
cuts) to the Pythia 8 command strings that realise them. Every parameter has a default, a type
and a one-line description; :func:`resolve_settings` checks user overrides against them and
returns the full resolved dictionary that is recorded in the fileset metadata.

Settings shared by every process (:data:`COMMON_SETTINGS`):

- ``ecm`` (13600 GeV): pp centre-of-mass energy (LHC Run 3).
- ``mpi`` (False): multiparton interactions (underlying event). Off by default for *every*
  process, signal and background alike, so that the two are simulated the same way and an
  anomaly score cannot learn the difference in underlying event; turning it off also makes
  hard-QCD generation ~3.4x faster (340 vs 100 events/s at p̂T > 500 GeV). Set ``mpi=true``
  for realism studies.
- ``tau0_max`` (10 mm): particles with cτ above this are stable, as in CMS generator
  configurations (``ParticleDecays:limitTau0``), so K0S and Λ reach the detector.
- ``fatjet_min_pt`` (170 GeV) and ``jet_min_pt`` (15 GeV): the NanoAOD thresholds for
  ``FatJet`` (anti-kT R=0.8) and ``Jet`` (anti-kT R=0.4).
- ``pythia`` (empty): extra raw Pythia command strings, separated by ``;``, applied last, so
  that any Pythia setting can be overridden (e.g. ``"PartonLevel:ISR = off;TimeShower:alphaSvalue = 0.13"``).
- ``substructure`` ("numba"): which code computes ``msoftdrop`` and ``tau1..4``: this package's
  numba kernels, or fastjet-contrib through the python ``fastjet`` package ("fastjet"); the
  two agree to 1e-9 (tested), the numba one is ~10x faster (see
  :mod:`coffea_ad.samples.clustering`).
- ``detector.<field>``: any field of :class:`coffea_ad.samples.detector.DetectorConfig`.

References:
    T. Sjöstrand et al., "A comprehensive guide to the physics and usage of PYTHIA 8.3",
    SciPost Phys. Codebases 8 (2022), arXiv:2203.11601.
    T. Cohen, M. Lisanti, H. K. Lou, S. Mishra-Sharma, "LHC searches for dark sector showers",
    JHEP 11 (2017) 196, arXiv:1707.05326 (semivisible-jet parameters and α_dark "peak").
    CMS Collaboration, "Search for resonant production of strongly coupled dark matter in
    proton-proton collisions at 13 TeV", JHEP 06 (2022) 156, arXiv:2112.11125.
    G. Kasieczka et al., "The LHC Olympics 2020", Rep. Prog. Phys. 84 (2021) 124201,
    arXiv:2101.08320 (Z' → X Y benchmark masses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from coffea_ad.errors import InvalidArgumentError, UnknownNameError, WrongTypeError

__all__ = [
    "COMMON_SETTINGS",
    "PROCESSES",
    "ProcessSpec",
    "Setting",
    "pythia_commands",
    "resolve_settings",
    "svj_lambda",
]


@dataclass(frozen=True)
class Setting:
    """One overridable parameter: its default, accepted type and meaning."""

    default: Any
    doc: str
    kind: type | tuple[type, ...] = float


@dataclass(frozen=True)
class ProcessSpec:
    """A process: its parameters and how they become Pythia commands.

    Attributes:
        name: registry key (``"qcd"``, ``"svj"``, ...).
        description: one line shown in ``coffea-ad generate --help`` and the metadata.
        is_signal: whether the process is a BSM signal (recorded in the fileset metadata).
        settings: the process-specific parameters (the common ones are added to them).
        commands: settings (fully resolved) -> list of Pythia command strings.
        resonance_ids: |pdgId| of hard-process resonances a ``FatJet_isResonance`` jet is
            matched to (ΔR < 0.8).
        dark_ids: |pdgId| of hard-process dark quarks a ``FatJet_isDark`` jet is matched to.
        xsec_factor: settings -> factor applied to Pythia's sigmaGen (None: 1), for models
            generated in a narrow-width convention whose couplings set the rate only.
    """

    name: str
    description: str
    is_signal: bool
    settings: Mapping[str, Setting]
    commands: Callable[[Mapping[str, Any]], list[str]]
    resonance_ids: tuple[int, ...] = ()
    dark_ids: tuple[int, ...] = ()
    xsec_factor: Callable[[Mapping[str, Any]], float] | None = None
    all_settings: Mapping[str, Setting] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "all_settings", {**COMMON_SETTINGS, **self.settings})


COMMON_SETTINGS: dict[str, Setting] = {
    "ecm": Setting(13600.0, "pp centre-of-mass energy [GeV]"),
    "mpi": Setting(False, "multiparton interactions (underlying event)", bool),
    "isr": Setting(True, "initial-state radiation", bool),
    "fsr": Setting(True, "final-state radiation", bool),
    "tau0_max": Setting(10.0, "particles with c*tau above this [mm] are stable"),
    "fatjet_min_pt": Setting(170.0, "minimum pT of written FatJet (anti-kT R=0.8) [GeV]"),
    "jet_min_pt": Setting(15.0, "minimum pT of written Jet (anti-kT R=0.4) [GeV]"),
    "pythia": Setting("", "extra Pythia commands separated by ';', applied last", str),
    "substructure": Setting(
        "numba", "msoftdrop/tau_N code: 'numba' (default) or 'fastjet' (contrib, ~10x slower)", str
    ),
}

_QUIET = [
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Random:setSeed = on",
]


def _common(s: Mapping[str, Any]) -> list[str]:
    return [
        *_QUIET,
        f"Beams:eCM = {float(s['ecm'])}",
        f"PartonLevel:MPI = {'on' if s['mpi'] else 'off'}",
        f"PartonLevel:ISR = {'on' if s['isr'] else 'off'}",
        f"PartonLevel:FSR = {'on' if s['fsr'] else 'off'}",
        "ParticleDecays:limitTau0 = on",
        f"ParticleDecays:tau0Max = {float(s['tau0_max'])}",
    ]


def _phase_space(s: Mapping[str, Any]) -> list[str]:
    out = []
    if "pthat_min" in s:
        out.append(f"PhaseSpace:pTHatMin = {float(s['pthat_min'])}")
    if "pthat_max" in s:
        out.append(f"PhaseSpace:pTHatMax = {float(s['pthat_max'])}")
    if "mhat_min" in s:
        out.append(f"PhaseSpace:mHatMin = {float(s['mhat_min'])}")
    if "mhat_max" in s:
        out.append(f"PhaseSpace:mHatMax = {float(s['mhat_max'])}")
    return out


# ---------------------------------------------------------------------------------- QCD
def _qcd(s: Mapping[str, Any]) -> list[str]:
    cmds = ["HardQCD:all = on", *_phase_space(s)]
    power = float(s["flatten_pthat"])
    if power > 0:
        # Pythia weights each event by (pTHat/ref)^-power so that the sample is ~flat in pTHat;
        # genWeight then carries the inverse bias and xsec * genWeight / sumw stays correct.
        cmds += [
            "PhaseSpace:bias2Selection = on",
            f"PhaseSpace:bias2SelectionPow = {power}",
            f"PhaseSpace:bias2SelectionRef = {max(float(s['pthat_min']), 1.0)}",
        ]
    return cmds


_QCD = ProcessSpec(
    name="qcd",
    description="QCD multijet (HardQCD:all) above a p̂T threshold, optionally p̂T-flattened",
    is_signal=False,
    settings={
        # 500 GeV puts the dijet mass of the bulk near 1-1.5 TeV and makes the leading AK8 jets
        # lie well above the 170 GeV FatJet threshold (a ~TeV dijet / SVJ m_T topology).
        "pthat_min": Setting(500.0, "PhaseSpace:pTHatMin [GeV]; default suits a ~TeV dijet"),
        "pthat_max": Setting(-1.0, "PhaseSpace:pTHatMax [GeV] (-1: no upper limit)"),
        "flatten_pthat": Setting(
            0.0, "power p of the p̂T-flattening bias (p̂T/p̂T_min)^p (0: off, 4.5 typical)"
        ),
    },
    commands=_qcd,
)

_DIJET = ProcessSpec(
    name="dijet",
    description="QCD dijets in an m̂ window above a p̂T threshold (LHC Olympics R&D-like background)",
    is_signal=False,
    settings={
        # The LHC Olympics R&D analysis keeps m_jj in 3.3-3.7 TeV (signal region) and its
        # sidebands with a leading-jet pT > 1.2 TeV trigger. Generating only the m̂ window that
        # feeds that range puts ~20 % of the events in the signal region instead of ~0.1 % for
        # p̂T > 500 GeV, with equal weights (no bias), so the sample looks like data.
        # p̂T > 1.1 TeV keeps ~all events that pass pT_J1 > 1.2 TeV (FSR/ISR rarely push the
        # leading jet 100 GeV above p̂T) while dropping the forward ones that never pass it.
        "pthat_min": Setting(1100.0, "PhaseSpace:pTHatMin [GeV]"),
        "mhat_min": Setting(2800.0, "PhaseSpace:mHatMin [GeV]"),
        "mhat_max": Setting(4500.0, "PhaseSpace:mHatMax [GeV]"),
    },
    commands=lambda s: ["HardQCD:all = on", *_phase_space(s)],
)


# ---------------------------------------------------------------------------------- SVJ
def svj_lambda(alpha_dark: float | str, mdark: float, *, n_colours: int = 3, n_flavours: int = 2) -> float:
    """Dark confinement scale Λ_dark [GeV] for a dark coupling α_dark.

    One-loop running, α(μ) = 2π / (b0 ln(μ/Λ)) with b0 = 11/3 N_c - 2/3 N_f, referenced to
    μ = 1 TeV (the CMS SVJ production convention). ``"peak"`` takes Λ_peak = 3.2 m_dark^0.8
    (the α for which the dark-hadron multiplicity peaks, arXiv:1707.05326 Fig. 1);
    ``"low"``/``"high"`` use α_peak × 0.5 / × 1.5 (CMS, arXiv:2112.11125).

    Args:
        alpha_dark: a number, or ``"peak"``, ``"low"``, ``"high"``.
        mdark: dark meson mass [GeV].

    Returns:
        Λ_dark in GeV.
    """
    b0 = 11.0 / 3.0 * n_colours - 2.0 / 3.0 * n_flavours
    lam_peak = 3.2 * mdark**0.8
    if isinstance(alpha_dark, str):
        scale = {"peak": 1.0, "low": 0.5, "high": 1.5}.get(alpha_dark)
        if scale is None:
            raise UnknownNameError("alpha_dark keyword", alpha_dark, ["peak", "low", "high"])
        if scale == 1.0:
            return lam_peak
        alpha = scale * 2.0 * math.pi / (b0 * math.log(1000.0 / lam_peak))
    else:
        alpha = float(alpha_dark)
    return 1000.0 * math.exp(-2.0 * math.pi / (b0 * alpha))


# the narrow Z' of generation (CMS convention): width [GeV], BR to each quark flavour, dark BR
_SVJ_GEN_WIDTH, _SVJ_GEN_BR_Q, _SVJ_GEN_BR_DARK = 0.01, 0.003, 0.982


def _svj(s: Mapping[str, Any]) -> list[str]:
    mz, rinv, mdark = float(s["mzprime"]), float(s["rinv"]), float(s["mdark"])
    lam = svj_lambda(s["alpha_dark"], mdark)
    cmds = [
        "HiddenValley:ffbar2Zv = on",
        f"4900023:m0 = {mz}",
        f"4900023:mMin = {mz - 1.0}",
        f"4900023:mMax = {mz + 1.0}",
        f"4900023:mWidth = {_SVJ_GEN_WIDTH}",
        # Z' couples to SM quarks (the production channel needs a q qbar partial width) but
        # decays only to dark quarks: the CMS s-channel model (leptophobic, BR(qq) tiny)
        f"4900023:oneChannel = 1 {_SVJ_GEN_BR_DARK} 102 4900101 -4900101",
        *(f"4900023:addChannel = 1 {_SVJ_GEN_BR_Q} 102 {q} -{q}" for q in range(1, 7)),
        "4900023:onMode = off",
        "4900023:onIfAny = 4900101",
        "HiddenValley:Ngauge = 3",
        "HiddenValley:nFlav = 2",
        "HiddenValley:fragment = on",
        "HiddenValley:FSR = on",
        "HiddenValley:alphaOrder = 1",
        f"HiddenValley:Lambda = {lam}",
        f"HiddenValley:pTminFSR = {1.1 * lam}",
        "HiddenValley:spinFv = 0",
        "HiddenValley:probVector = 0.75",
        f"4900101:m0 = {mdark / 2.0}",
        "51:m0 = 0.0",
        "51:isResonance = false",
        "53:m0 = 0.0",
        "53:isResonance = false",
        *_phase_space(s),
    ]
    # Every dark meson decays invisibly (to a pair of stable dark-matter particles 51/53) with
    # probability r_inv and to a SM quark pair otherwise, so r_inv is exactly the invisible
    # fraction of dark hadrons.
    for meson, dm in (("4900111", 51), ("4900211", 51), ("4900113", 53), ("4900213", 53)):
        cmds += [f"{meson}:m0 = {mdark}", f"{meson}:oneChannel = 1 {rinv} 0 {dm} -{dm}"]
        visible = 1.0 - rinv
        if meson.endswith("11"):  # pseudoscalars: mass-proportional couplings -> heaviest quark
            cmds.append(f"{meson}:addChannel = 1 {visible} 91 3 -3")
        else:  # vectors: democratic over the five light flavours
            cmds += [f"{meson}:addChannel = 1 {visible / 5.0} 91 {q} -{q}" for q in range(1, 6)]
    return cmds


def _svj_xsec_factor(s: Mapping[str, Any]) -> float:
    """Rescale sigmaGen from the narrow generation Z' to the couplings ``gq``, ``gdark``.

    In the narrow-width approximation σ(pp → Z' → dark quarks) ∝ Γ(Z' → q qbar) × BR(Z' →
    dark), independent of the total width. Generation uses Γ_qq = 0.003 × 0.01 GeV per flavour
    and an open dark fraction 0.982 (the CMS configuration); the physical values for a vector
    Z' are Γ_qq = N_c g_q² M / (12π) per flavour (top with its β(1 + 2m_t²/M²) factor) and
    Γ_dark = N_c,dark N_f,dark g_dark² M / (12π), as in the CMS s-channel model
    (arXiv:2112.11125).
    """
    m, gq, gd = float(s["mzprime"]), float(s["gq"]), float(s["gdark"])
    per_flavour = 3.0 * gq**2 * m / (12.0 * math.pi)
    r = (2.0 * 172.5 / m) ** 2
    top = per_flavour * math.sqrt(1.0 - r) * (1.0 + r / 2.0) if r < 1.0 else 0.0
    dark = 3.0 * 2.0 * gd**2 * m / (12.0 * math.pi)
    br_dark = dark / (5.0 * per_flavour + top + dark)
    return (per_flavour * br_dark) / (_SVJ_GEN_BR_Q * _SVJ_GEN_WIDTH * _SVJ_GEN_BR_DARK)


_SVJ = ProcessSpec(
    name="svj",
    description="semivisible jets: s-channel Z' -> dark quarks (Pythia Hidden Valley)",
    is_signal=True,
    settings={
        "mzprime": Setting(3000.0, "Z' mass [GeV]"),
        "rinv": Setting(0.3, "r_inv: fraction of dark mesons decaying to invisible particles"),
        "mdark": Setting(20.0, "dark meson mass [GeV] (dark quark mass is mdark/2)"),
        "alpha_dark": Setting(
            "peak", "dark coupling α_dark: a number or 'peak'/'low'/'high' (see svj_lambda)",
            (str, float),
        ),
        # s-channel 2 -> 1: p̂T is not defined at the hard process, the phase-space cut is on m̂
        "mhat_min": Setting(0.0, "PhaseSpace:mHatMin [GeV]"),
        "mhat_max": Setting(-1.0, "PhaseSpace:mHatMax [GeV] (-1: no upper limit)"),
        "gq": Setting(0.25, "Z' coupling to SM quarks (sets the cross-section only)"),
        "gdark": Setting(1.0, "Z' coupling to dark quarks (sets the cross-section only)"),
    },
    commands=_svj,
    dark_ids=(4900101,),
    xsec_factor=_svj_xsec_factor,
)


# ------------------------------------------------------------------------- Z' -> X Y (LHCO)
_X_ID, _Y_ID = 35, 36  # re-used Higgs-sector slots: neutral scalars with no other role here


def _narrow_zv(mz: float, channel: str) -> list[str]:
    """A narrow Hidden-Valley Z_v (4900023) made in q qbar -> Z_v and decaying only to ``channel``.

    Pythia's own Z' (32) sums its open width over the channels it knows, so a user channel such
    as X Y would give it no cross-section; the Z_v's decays are table-driven (meMode 102), which
    accepts any channel. Its tiny q qbar partial widths exist for production only.
    """
    return [
        "HiddenValley:ffbar2Zv = on",
        "HiddenValley:fragment = off",
        "HiddenValley:FSR = off",
        f"4900023:m0 = {mz}",
        f"4900023:mMin = {mz - 1.0}",
        f"4900023:mMax = {mz + 1.0}",
        f"4900023:mWidth = {_SVJ_GEN_WIDTH}",
        f"4900023:oneChannel = 1 {_SVJ_GEN_BR_DARK} 102 {channel}",
        *(f"4900023:addChannel = 1 {_SVJ_GEN_BR_Q} 102 {q} -{q}" for q in range(1, 7)),
        "4900023:onMode = off",
        f"4900023:onIfMatch = {channel}",
    ]


def _zprime_xy(prongs: int) -> Callable[[Mapping[str, Any]], list[str]]:
    def commands(s: Mapping[str, Any]) -> list[str]:
        mz, mx, my = float(s["mzprime"]), float(s["mx"]), float(s["my"])
        cmds = [
            *_narrow_zv(mz, f"{_X_ID} {_Y_ID}"),
            f"{_X_ID}:m0 = {mx}",
            f"{_X_ID}:mWidth = 1.0",
            f"{_X_ID}:mMin = {mx - 20.0}",
            f"{_X_ID}:mMax = {mx + 20.0}",
            f"{_Y_ID}:m0 = {my}",
            f"{_Y_ID}:mWidth = 1.0",
            f"{_Y_ID}:mMin = {my - 20.0}",
            f"{_Y_ID}:mMax = {my + 20.0}",
        ]
        for pid in (_X_ID, _Y_ID):
            if prongs == 2:  # X, Y -> q qbar, light flavours democratically
                cmds.append(f"{pid}:oneChannel = 1 0.25 100 1 -1")
                cmds += [f"{pid}:addChannel = 1 0.25 100 {q} -{q}" for q in (2, 3, 4)]
            else:  # X, Y -> u d s: three hard prongs joined by a colour junction
                # (isotropic phase space; meMode 100 keeps the tabulated BR). A baryon-number-
                # violating, RPV-like stand-in: Pythia cannot colour a q qbar g singlet decay.
                cmds.append(f"{pid}:oneChannel = 1 1.0 100 2 1 3")
        return cmds + _phase_space(s)

    return commands


def _zv_xsec_factor(s: Mapping[str, Any]) -> float:
    """Rescale sigmaGen of the narrow Z_v to a vector Z' with quark coupling ``gq`` and
    BR(Z' -> X Y) = 1 (narrow-width approximation, see :func:`_svj_xsec_factor`)."""
    per_flavour = 3.0 * float(s["gq"]) ** 2 * float(s["mzprime"]) / (12.0 * math.pi)
    return per_flavour / (_SVJ_GEN_BR_Q * _SVJ_GEN_WIDTH * _SVJ_GEN_BR_DARK)


_XY_SETTINGS = {
    "mzprime": Setting(3500.0, "Z' mass [GeV] (LHC Olympics: 3.5 TeV)"),
    "mx": Setting(500.0, "X mass [GeV]"),
    "my": Setting(100.0, "Y mass [GeV]"),
    "gq": Setting(0.25, "Z' coupling to SM quarks (sets the cross-section only)"),
}
_ZPXY = ProcessSpec(
    name="zprime_xy",
    description="dijet resonance Z' -> X Y, X,Y -> q qbar (LHC Olympics 2-prong)",
    is_signal=True,
    settings=_XY_SETTINGS,
    commands=_zprime_xy(2),
    resonance_ids=(_X_ID, _Y_ID),
    xsec_factor=_zv_xsec_factor,
)
_ZPXY3 = ProcessSpec(
    name="zprime_xy_3prong",
    description="dijet resonance Z' -> X Y, X,Y -> u d s (3-prong variant)",
    is_signal=True,
    settings=_XY_SETTINGS,
    commands=_zprime_xy(3),
    resonance_ids=(_X_ID, _Y_ID),
    xsec_factor=_zv_xsec_factor,
)


# ------------------------------------------------------------------------- SM backgrounds
def _w_decays(mode: str) -> list[str]:
    if mode == "all":
        return []
    if mode == "leptonic":
        return ["24:onMode = off", "24:onIfAny = 11 13 15"]
    if mode == "hadronic":
        return ["24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
    raise UnknownNameError("W decay mode", mode, ["all", "leptonic", "hadronic"])


def _z_decays(mode: str) -> list[str]:
    if mode == "all":
        return []
    if mode == "leptonic":
        return ["23:onMode = off", "23:onIfAny = 11 13 15"]
    if mode == "hadronic":
        return ["23:onMode = off", "23:onIfAny = 1 2 3 4 5"]
    if mode == "invisible":
        return ["23:onMode = off", "23:onIfAny = 12 14 16"]
    raise UnknownNameError("Z decay mode", mode, ["all", "leptonic", "hadronic", "invisible"])


_DECAY_DOC = "'all', 'leptonic' (e, mu, tau) or 'hadronic'"

_TTBAR = ProcessSpec(
    name="ttbar",
    description="top-quark pairs (gg, qqbar -> t tbar), all decays",
    is_signal=False,
    settings={
        "pthat_min": Setting(0.0, "PhaseSpace:pTHatMin [GeV] (e.g. 300 for boosted tops)"),
        "w_decay": Setting("all", f"W decays: {_DECAY_DOC}", str),
    },
    commands=lambda s: ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_w_decays(s["w_decay"]),
                        *_phase_space(s)],
    resonance_ids=(6, 24),
)
_WJETS = ProcessSpec(
    name="wjets",
    description="W + jet (qqbar -> W g, q g -> W q), all W decays",
    is_signal=False,
    settings={
        "pthat_min": Setting(100.0, "PhaseSpace:pTHatMin [GeV]"),
        "w_decay": Setting("all", f"W decays: {_DECAY_DOC}", str),
    },
    commands=lambda s: ["WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
                        *_w_decays(s["w_decay"]), *_phase_space(s)],
    resonance_ids=(24,),
)
_ZJETS = ProcessSpec(
    name="zjets",
    description="Z + jet (qqbar -> Z g, q g -> Z q, pure Z), all Z decays",
    is_signal=False,
    settings={
        "pthat_min": Setting(100.0, "PhaseSpace:pTHatMin [GeV]"),
        "z_decay": Setting("all", f"Z decays: {_DECAY_DOC} or 'invisible'", str),
    },
    commands=lambda s: ["WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                        "WeakZ0:gmZmode = 2", *_z_decays(s["z_decay"]), *_phase_space(s)],
    resonance_ids=(23,),
)
_WZ = ProcessSpec(
    name="wz",
    description="W Z diboson (f fbar' -> Z W), all decays",
    is_signal=False,
    settings={
        "w_decay": Setting("all", f"W decays: {_DECAY_DOC}", str),
        "z_decay": Setting("all", f"Z decays: {_DECAY_DOC} or 'invisible'", str),
    },
    commands=lambda s: ["WeakDoubleBoson:ffbar2ZW = on", "WeakZ0:gmZmode = 2",
                        *_w_decays(s["w_decay"]), *_z_decays(s["z_decay"])],
    resonance_ids=(23, 24),
)


# ------------------------------------------------------------------------- H++ via WW fusion
def _hpp(s: Mapping[str, Any]) -> list[str]:
    return [
        "LeftRightSymmmetry:ff2HLff = on",  # W W fusion, q q -> H_L^{++/--} q q (VBF topology)
        f"LeftRightSymmmetry:vL = {float(s['vl'])}",
        f"9900041:m0 = {float(s['mhpp'])}",
        "9900041:onMode = off",
        "9900041:onIfMatch = 24 24",  # H±± -> W± W±: same-sign W pair
        *_w_decays(s["w_decay"]),
    ]


_HPP = ProcessSpec(
    name="hpp",
    description="doubly charged Higgs H_L±± via W W fusion, H±± -> W±W± (same-sign WW + 2 jets)",
    is_signal=True,
    settings={
        "mhpp": Setting(500.0, "H_L±± mass [GeV]"),
        "vl": Setting(5.0, "left-triplet vev v_L [GeV] (sets the H±±W∓W∓ coupling)"),
        "w_decay": Setting("leptonic", f"W decays: {_DECAY_DOC}", str),
    },
    commands=_hpp,
    resonance_ids=(9900041, 24),
)

PROCESSES: Mapping[str, ProcessSpec] = {
    p.name: p for p in (_QCD, _DIJET, _TTBAR, _WJETS, _ZJETS, _WZ, _SVJ, _ZPXY, _ZPXY3, _HPP)
}
"""Process name -> :class:`ProcessSpec`."""


def _detector_fields() -> dict[str, Any]:
    from coffea_ad.samples.detector import DetectorConfig

    return {f"detector.{f.name}": f.default for f in fields(DetectorConfig)}


def get_process(name: str) -> ProcessSpec:
    """The :class:`ProcessSpec` called ``name``; :class:`UnknownNameError` lists the valid ones."""
    try:
        return PROCESSES[name]
    except KeyError:
        raise UnknownNameError("process", name, PROCESSES) from None


def resolve_settings(process: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``process`` updated with ``settings``, type-checked.

    Args:
        process: a key of :data:`PROCESSES`.
        settings: overrides; keys are the process's parameters, the common ones
            (:data:`COMMON_SETTINGS`) or ``detector.<field>``.

    Returns:
        The full resolved settings (every parameter, sorted by name).

    Raises:
        UnknownNameError: unknown process or parameter (the message lists the valid ones).
        TypeError: a value of the wrong type.
    """
    spec = get_process(process)
    detector = _detector_fields()
    out: dict[str, Any] = {k: v.default for k, v in spec.all_settings.items()}
    out.update(detector)
    for key, value in (settings or {}).items():
        if key in spec.all_settings:
            kind = spec.all_settings[key].kind
        elif key in detector:
            kind = type(detector[key])
        else:
            raise UnknownNameError(f"setting of process {process!r}", key, out)
        out[key] = _coerce(key, value, kind)
    if out["substructure"] not in ("numba", "fastjet"):
        raise UnknownNameError("substructure backend", str(out["substructure"]), ["numba", "fastjet"])
    if process == "svj":
        svj_lambda(out["alpha_dark"], float(out["mdark"]))  # validates 'peak'/'low'/'high'
        if not 0.0 <= float(out["rinv"]) <= 1.0:
            raise InvalidArgumentError(f"rinv must be in [0, 1], got {out['rinv']}")
    return dict(sorted(out.items()))


def _coerce(key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool in kinds:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
            return value.lower() in ("true", "on")
    if float in kinds and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if int in kinds and isinstance(value, int) and not isinstance(value, bool):
        return value
    if str in kinds and isinstance(value, str):
        if float in kinds:  # e.g. alpha_dark: "0.3" from a CLI is a number
            try:
                return float(value)
            except ValueError:
                pass
        return value
    names = " or ".join(k.__name__ for k in kinds)
    raise WrongTypeError(f"setting {key!r} expects {names}, got {value!r} ({type(value).__name__})")


def pythia_commands(process: str, resolved: Mapping[str, Any], *, seed: int) -> list[str]:
    """Pythia command strings for a resolved process configuration and a random seed.

    Args:
        process: a key of :data:`PROCESSES`.
        resolved: the output of :func:`resolve_settings`.
        seed: Pythia's ``Random:seed`` (1 ... 900 000 000).

    Returns:
        The commands, in the order they are read (user ``pythia`` extras last).
    """
    spec = get_process(process)
    cmds = [*_common(resolved), f"Random:seed = {int(seed)}", *spec.commands(resolved)]
    extra = str(resolved.get("pythia", "") or "")
    cmds += [c.strip() for c in extra.split(";") if c.strip()]
    return cmds
