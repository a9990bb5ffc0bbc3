"""Regression tests of the s11 code review (per-atom virials, SNAP flags, model files)."""

import re

import numpy as np
import pytest
from ase.calculators.lj import LennardJones as AseLJ

from conftest import skewed_two_element_cell
from hybridpot import InvalidParameterError
from hybridpot.baselines import EMT, ZBL, ASEBaseline, LennardJones
from hybridpot.descriptors import PowerSpectrum

SPECIES = ["Cu", "Ni"]


def _cell(seed=0):
    return skewed_two_element_cell(seed=seed) * (2, 1, 1)


@pytest.mark.parametrize("make", [
    EMT, lambda: ZBL(r_inner=1.2, r_cut=2.6),
    lambda: LennardJones(epsilon=0.02, sigma=2.2, r_cut=4.5),
    lambda: ASEBaseline(AseLJ(sigma=2.2, epsilon=0.02, rc=4.5)),
], ids=["EMT", "ZBL", "LennardJones", "ASEBaseline"])
def test_baseline_virials_flag_accepts_numpy_bools_and_names_false(make):
    """numpy booleans (e.g. from a mask or a config array) mean what the Python ones do; the
    error of a bad value says that False / None turn the virials off (was: "must be True,
    'half' or 'centroid'. Got np.False_ instead.", although False is the default)."""
    base, at = make(), _cell()
    assert "virials" not in base.compute(at, virials=np.False_)
    assert "virials" not in base.compute(at, virials=None)
    W = base.compute(at, virials=np.True_)["virials"]
    np.testing.assert_array_equal(W, base.compute(at, virials=True)["virials"])
    np.testing.assert_array_equal(W, base.compute(at, virials="half")["virials"])
    name = type(base).__name__
    with pytest.raises(InvalidParameterError,
                       match=rf"'virials' argument of {name}.compute must be True, 'half' or "
                             r"'centroid'. Got 1 instead \(False or None: no per-atom "
                             r"virials\)"):
        base.compute(at, virials=1)


def test_descriptor_backward_atomic_virials_numpy_bools(rng):
    d = PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=2, l_max=1)
    at = _cell(1)
    w = rng.normal(size=(len(at), d.n_features))
    plain = d.backward(at, w, atomic_virials=np.False_)
    assert len(plain) == 2
    dE_dr, dE_deps, W = d.backward(at, w, atomic_virials=np.True_)
    np.testing.assert_allclose(W.sum(0), dE_deps, rtol=0, atol=1e-12 * np.abs(W).max())
    np.testing.assert_array_equal(dE_dr, plain[0])
    with pytest.raises(InvalidParameterError, match=r"'atomic_virials' argument of "
                                                    r"PowerSpectrum.backward must be True, "
                                                    r"'half' or 'centroid'. Got 'full' "
                                                    r"instead \(False or None"):
        d.backward(at, w, atomic_virials="full")


@pytest.mark.parametrize("which", ["HybridCalculator", "BaselineCalculator"])
def test_get_atomic_volumes_checks_its_argument(which):
    from hybridpot import HybridPotential
    from hybridpot.baselines import BaselineCalculator
    from hybridpot.regression import LinearRegressor

    d = PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=2, l_max=1)
    coef = np.zeros((2, 1 + d.n_features))
    calc = (HybridPotential.from_fitted(d, LinearRegressor.from_coef(coef),
                                        baseline=EMT()).calculator()
            if which == "HybridCalculator" else BaselineCalculator(EMT()))
    at = _cell(2)
    np.testing.assert_array_equal(calc.get_atomic_volumes(at), np.full(len(at), at.get_volume()))
    with pytest.raises(InvalidParameterError, match=rf"{which}.get_atomic_volumes has no "
                                                    r"structure.*Got atoms=None"):
        calc.get_atomic_volumes()
    with pytest.raises(InvalidParameterError, match=rf"'atoms' argument of {which}."
                                                    r"get_atomic_volumes must be an ase.Atoms or "
                                                    r"None. Got str instead"):
        calc.get_atomic_volumes("Cu")
    at.calc = calc
    at.get_stresses()   # ASE then asks the calculator for the volumes of its own structure
    np.testing.assert_array_equal(calc.get_atomic_volumes(), np.full(len(at), at.get_volume()))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tiny fit
def test_stresses_after_forces_do_not_reevaluate_or_advance_the_sigma_interval(monkeypatch):
    """An MD observer asking for per-atom stresses after the step's forces: only the virials
    are computed (was: energy, forces and -- with uncertainty -- σ again, and every such call
    advanced the uncertainty_interval counter: σ every 1.5 steps instead of every 3)."""
    from conftest import emt_label
    from hybridpot import HybridPotential
    from hybridpot.regression import BayesianLinearRegressor

    train = [emt_label(skewed_two_element_cell(seed=10 + s) * (2, 2, 1)) for s in range(3)]
    model = HybridPotential(descriptor=PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=2,
                                                     l_max=1),
                            regressor=BayesianLinearRegressor(), baseline=EMT()).fit(train)
    calls = []
    orig = model._evaluate

    def counted(*args, **kw):
        calls.append(bool(kw.get("return_std")))
        return orig(*args, **kw)

    monkeypatch.setattr(model, "_evaluate", counted)
    at = _cell(3)
    at.calc = model.calculator(uncertainty=True, uncertainty_interval=3)
    rng = np.random.default_rng(0)
    fresh = []
    for step in range(6):
        at.positions += rng.normal(scale=0.01, size=at.positions.shape)
        f = at.get_forces()
        e_std = at.calc.results["energy_std"]
        fresh.append(at.calc.std_fresh)
        n = len(calls)
        S = at.get_stresses()
        assert calls[n:] == [False]   # one evaluation, without σ
        np.testing.assert_array_equal(at.get_forces(), f)
        assert at.calc.results["energy_std"] == e_std
        np.testing.assert_allclose(S.sum(0), at.get_stress(), rtol=0,
                                   atol=1e-12 * np.abs(S).sum())
    assert fresh == [True, False, False, True, False, False]
    # the same per-atom stresses as when asked for together with the rest
    ref = at.copy()
    ref.calc = model.calculator()
    np.testing.assert_allclose(ref.get_stresses(), S, rtol=1e-12, atol=1e-14)


def test_config_docstrings_name_every_per_element_key():
    """The per-element keys a config may give as element tables are all documented (sinner /
    dinner / r_inner / d_inner were added to PER_ELEMENT_KEYS, not to the docs)."""
    import hybridpot.config as config

    for doc in (config.__doc__, config.build_descriptor.__doc__):
        flat = " ".join(doc.split())
        for key in config.PER_ELEMENT_KEYS:
            assert f"``{key}``" in flat, key


def _lj():
    return LennardJones(epsilon=0.02, sigma=2.2, r_cut=4.5)


class _ForwardingLJ(LennardJones):
    """A user's wrapper forwarding every keyword (``**kwargs``) to the built-in compute."""

    def compute(self, atoms, **kwargs):
        return super().compute(atoms, **kwargs)


class _IgnoringLJ(LennardJones):
    """Takes ``virials`` (so that the call does not fail) but returns none."""

    def compute(self, atoms, *, forces=True, stress=True, virials=False):
        return super().compute(atoms, forces=forces, stress=stress)


def _model_with(baseline):
    from hybridpot import HybridPotential
    from hybridpot.regression import LinearRegressor

    d = PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=2, l_max=1)
    coef = np.random.default_rng(0).normal(scale=1e-3, size=(2, 1 + d.n_features))
    return HybridPotential.from_fitted(d, LinearRegressor.from_coef(coef), baseline=baseline)


def test_baseline_compute_with_kwargs_gives_per_atom_stresses():
    """A compute(atoms, **kwargs) wrapper was refused ('takes no 'virials' argument')
    although it forwards the keyword."""
    from hybridpot.baselines import BaselineCalculator

    at = _cell(4)
    ref = _model_with(_lj()).predict_atomic_virials([at])[0]
    np.testing.assert_allclose(_model_with(_ForwardingLJ(epsilon=0.02, sigma=2.2, r_cut=4.5))
                               .predict_atomic_virials([at])[0], ref, rtol=0, atol=1e-15)
    at.calc = BaselineCalculator(_ForwardingLJ(epsilon=0.02, sigma=2.2, r_cut=4.5))
    b = at.copy()
    b.calc = BaselineCalculator(_lj())
    np.testing.assert_allclose(at.get_stresses(), b.get_stresses(), rtol=0, atol=1e-15)


def test_baseline_taking_virials_but_returning_none_is_a_clear_error():
    """Was KeyError: 'virials' (HybridPotential) with a traceback from _evaluate."""
    from ase.calculators.calculator import PropertyNotImplementedError

    model = _model_with(_IgnoringLJ(epsilon=0.02, sigma=2.2, r_cut=4.5))
    at = _cell(4)
    with pytest.raises(PropertyNotImplementedError,
                       match=r"baseline _IgnoringLJ of this HybridPotential gives no per-atom "
                             r"virials \(its compute\(\.\.\., virials='half'\) returned no "
                             r"'virials' of shape \(n_atoms, 3, 3\) = \(8, 3, 3\); got none\)"):
        model.predict_atomic_virials([at])
    at.calc = model.calculator()
    with pytest.raises(PropertyNotImplementedError, match=r"of this HybridPotential gives no "
                                                          r"per-atom virials"):
        at.get_stresses()


def test_docstring_cross_references_to_hybridpot_resolve():
    """Every :func: / :class: / :meth: / :data: reference to a ``hybridpot.`` name in the
    package's docstrings names an existing object (SNAPBispectrum cited
    ``hybridpot.io.write_snap``, which is ``hybridpot.io.lammps.write_snap``)."""
    import importlib
    import pathlib
    import re

    import hybridpot

    root = pathlib.Path(hybridpot.__file__).parent
    pattern = re.compile(r":(?:func|class|meth|data|mod|attr):`~?(hybridpot(?:\.\w+)+)`")
    refs = {m.group(1): path.name for path in root.rglob("*.py")
            for m in pattern.finditer(path.read_text(encoding="utf-8"))}
    assert len(refs) > 30
    bad = []
    for ref, where in sorted(refs.items()):
        parts = ref.split(".")
        for k in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:k]))
            except ImportError:
                continue
            break
        try:
            for name in parts[k:]:
                obj = getattr(obj, name)
        except AttributeError:
            bad.append(f"{ref} ({where})")
    assert not bad, bad


@pytest.mark.parametrize("where", ["descriptor", "state"])
def test_newer_file_with_the_same_version_string_says_so(tmp_path, where):
    """Hyperparameters are added between releases (r_inner / d_inner after 0.2.0): a 0.2.0
    reader refused such a file with "written by hybridpot 0.2.0 ... this hybridpot 0.2.0 does
    not know ... upgrade hybridpot", which reads as a contradiction."""
    import json
    import zipfile

    from hybridpot import HybridPotential, ModelFormatError, __version__
    from hybridpot.regression import LinearRegressor

    d = PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=2, l_max=1)
    model = HybridPotential.from_fitted(
        d, LinearRegressor.from_coef(np.zeros((2, 1 + d.n_features))))
    model.save(tmp_path / "m.hpot")
    with zipfile.ZipFile(tmp_path / "m.hpot") as z:
        files = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(files["model.json"])
    assert doc["hybridpot_version"] == __version__
    if where == "descriptor":
        doc["descriptor"]["params"]["new_knob"] = 1
        match = r"does not know: descriptor PowerSpectrum: \['new_knob'\]"
    else:
        doc["regressor"]["state"]["new_scale_"] = 2.0
        match = r"does not read: LinearRegressor state \['new_scale_'\]"
    files["model.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(tmp_path / "newer.hpot", "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    same = (r".*upgrade hybridpot.* It records the same version, "
            rf"{re.escape(__version__)}, as this installation: it was written by a later "
            r"development state")
    with pytest.raises(ModelFormatError, match=match + same):
        HybridPotential.load(tmp_path / "newer.hpot")
    # a file of another version keeps the plain message
    doc["hybridpot_version"] = "0.1.0"
    files["model.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(tmp_path / "older.hpot", "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    with pytest.raises(ModelFormatError) as info:
        HybridPotential.load(tmp_path / "older.hpot")
    assert "same version" not in str(info.value)


def test_snap_inner_switch_allows_close_collisions_like_zbl():
    """SNAPBispectrum switchinnerflag (LAMMPS's feature for cascades) kept the 0.1 Å overlap
    floor after 03fa57f gave ZBL and the SO(3) / ACSF inner switches 0.001 Å: a SNAP + ZBL
    model refused a 0.05 Å collision.  The pair is switched out, so the model is ZBL plus the
    isolated-atom energies, with exactly ZBL's forces."""
    from ase import Atoms

    from hybridpot import HybridPotential, InvalidStructureError
    from hybridpot.descriptors import SNAPBispectrum
    from hybridpot.regression import LinearRegressor

    kw = dict(species=["Cu"], twojmax=4, rcutfac=2.4, bzeroflag=False)
    d = SNAPBispectrum(switchinnerflag=True, sinner=1.0, dinner=0.3, **kw)
    assert d.min_distance == pytest.approx(1e-3)
    assert SNAPBispectrum(**kw).min_distance == pytest.approx(0.1)
    coef = np.random.default_rng(0).normal(size=(1, 1 + d.n_features))
    zbl = ZBL(r_inner=0.5, r_cut=1.5)
    model = HybridPotential.from_fitted(d, LinearRegressor.from_coef(coef), baseline=zbl)
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [0.03, 0.0, 0.04]])
    iso = float(model.predict([Atoms("Cu")])[0])
    np.testing.assert_allclose(d.compute(dimer), np.repeat(d.compute(Atoms("Cu")), 2, axis=0),
                               rtol=0, atol=0)
    ref = zbl.compute(dimer)
    assert model.predict([dimer])[0] == pytest.approx(ref["energy"] + 2 * iso, rel=1e-12)
    np.testing.assert_array_equal(model.predict_forces([dimer])[0], ref["forces"])
    assert np.abs(ref["forces"]).max() > 1e3   # a real close collision (eV/Å)
    plain = HybridPotential.from_fitted(SNAPBispectrum(**kw), LinearRegressor.from_coef(coef),
                                        baseline=zbl)
    with pytest.raises(InvalidStructureError, match=r"0\.1"):
        plain.predict([dimer])


def test_descriptor_stack_of_inner_switched_members_allows_close_collisions():
    """DescriptorStack.min_distance started its max from 0.1 Å, so a stack whose members all
    have their inner switch on (0.001 Å each, 03fa57f / 17f236a) still refused a 0.05 Å pair;
    one member without the switch keeps the 0.1 Å floor."""
    from ase import Atoms

    from hybridpot import InvalidStructureError
    from hybridpot.descriptors import ACSF, DescriptorStack, SNAPBispectrum

    kw = dict(r_inner=1.0, d_inner=0.3)
    ps = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=1, **kw)
    ac = ACSF(species=["Cu"], r_cut=5.0, angular=None, **kw)
    snap = SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=2.0, switchinnerflag=True,
                          sinner=1.0, dinner=0.3)
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [0.03, 0.0, 0.04]])
    single = Atoms("Cu")
    st = DescriptorStack(descriptors=[ps, ac, snap])
    assert st.min_distance == pytest.approx(1e-3)
    # the close pair is switched out of every member: isolated-atom features
    np.testing.assert_array_equal(st.compute(dimer), np.repeat(st.compute(single), 2, axis=0))
    mixed = DescriptorStack(descriptors=[ps, ACSF(species=["Cu"], r_cut=5.0, angular=None)])
    assert mixed.min_distance == pytest.approx(0.1)
    with pytest.raises(InvalidStructureError, match=r"DescriptorStack has atoms 0 and 1 only "
                                                    r"0\.05 Å apart \(minimum allowed 0\.1 Å\)"):
        mixed.compute(dimer)
