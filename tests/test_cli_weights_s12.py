"""[fit] weights.energy = "auto" (session 12): 15 x (mean atoms per structure)^2, resolved by
`hybridpot fit` on its training part, printed and stored in the model; typed errors for bad
weights."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from hybridpot import ConfigError, HybridPotential
from hybridpot.cli import main
from hybridpot.config import (AUTO_ENERGY_WEIGHT, DEFAULT_CONFIG, auto_energy_weight,
                              load_config, resolve_weights)


def _labelled(atoms, energy=True, seed=0):
    atoms = atoms.copy()
    atoms.rattle(0.05, seed=seed)
    atoms.calc = EMT()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, forces=f, stress=s,
                                       **({"energy": e} if energy else {}))
    return atoms


def _cells(sizes=((1, 1, 1), (2, 1, 1)), n_each=3):
    out = []
    for k in range(n_each):
        for rep in sizes:
            out.append(_labelled(bulk("Cu", "fcc", a=3.61, cubic=True).repeat(rep),
                                 seed=len(out)))
    return out


def test_auto_energy_weight_closed_form():
    cells = _cells()                                   # 4- and 8-atom cells: n_mean 6
    w, n_mean = auto_energy_weight(cells)
    assert AUTO_ENERGY_WEIGHT == 15.0
    assert n_mean == 6.0 and w == 15.0 * 36.0
    # structures without an energy label carry no energy row: not counted
    forces_only = _labelled(bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 1, 1)),
                            energy=False)
    assert auto_energy_weight(cells + [forces_only]) == (540.0, 6.0)
    # none with an energy: the mean over all (the weight then multiplies no row)
    assert auto_energy_weight([forces_only]) == (15.0 * 144.0, 12.0)
    with pytest.raises(ConfigError, match=r"'auto' needs at least one training structure"):
        auto_energy_weight([])


def test_resolve_weights_replaces_only_auto():
    cells = _cells()
    w, note = resolve_weights({"energy": "auto", "forces": 1.0, "stress": 100.0}, cells)
    assert w == {"energy": 540.0, "forces": 1.0, "stress": 100.0}
    assert note == ("fit.weights.energy = 'auto': 15 x (6.00 atoms per training structure)^2 "
                    "= 540")
    explicit = {"energy": 1000.0, "forces": 1.0, "stress": 100.0}
    assert resolve_weights(explicit, cells) == (explicit, None)
    assert resolve_weights(None, cells) == (None, None)


def test_default_is_auto_for_linear_regressors_only(tmp_path):
    assert DEFAULT_CONFIG["fit"]["weights"] == {"energy": "auto", "forces": 1.0,
                                                "stress": 100.0}
    assert load_config()["fit"]["weights"]["energy"] == "auto"
    p = tmp_path / "gp.toml"
    p.write_text('[regressor]\ntype = "SparseGPRegressor"\n')
    assert load_config(p)["fit"]["weights"] == {"energy": 1.0, "forces": 1.0, "stress": 0.1}
    p.write_text('[regressor]\ntype = "LinearRegressor"\n[fit]\n'
                 'weights = {energy = "auto", forces = 2.0}\n')
    assert load_config(p)["fit"]["weights"] == {"energy": "auto", "forces": 2.0}


@pytest.mark.parametrize("fit, regressor, message", [
    ('weights = {energy = "auto"}', "SparseGPRegressor",
     r"fit\.weights\.energy = 'auto' is for the linear regressors \(LinearRegressor, "
     r"BayesianLinearRegressor, ARDLinearRegressor\).*\[regressor\] type 'SparseGPRegressor' "
     r"needs a number >= 0 \(e\.g\. 1\.0\)\. Got 'auto'\."),
    ('weights = {stress = "auto"}', None,
     r"fit\.weights\.stress must be a finite number >= 0\. Got 'auto'\."),
    ('weights = {energy = "automatic"}', None,
     r"fit\.weights\.energy must be a finite number >= 0 or \"auto\"\. Got 'automatic'\."),
    ("weights = {energy = -1.0}", None,
     r"fit\.weights\.energy must be a finite number >= 0 or \"auto\"\. Got -1\.0\."),
    ("weights = {forces = inf}", None,
     r"fit\.weights\.forces must be a finite number >= 0\. Got inf\."),
    ("weights = {forces = nan}", None,
     r"fit\.weights\.forces must be a finite number >= 0\. Got nan\."),
    ("weights = {energy = true}", None,
     r"fit\.weights\.energy must be a finite number >= 0 or \"auto\"\. Got True\."),
    ("weights = {force = 1.0}", None,
     r"unknown key fit\.weights\.force; allowed keys: energy, forces, stress\."),
])
def test_bad_weights_are_config_errors_naming_the_key(tmp_path, fit, regressor, message):
    p = tmp_path / "bad.toml"
    reg = f'[regressor]\ntype = "{regressor}"\n' if regressor else ""
    p.write_text(f"{reg}[fit]\n{fit}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(p)
    # the command line: one line, exit code 2
    assert main(["fit", "-q", "-c", str(p)]) == 2


def test_cli_fit_uses_the_resolved_weight(tmp_path, capsys):
    cells = _cells()
    data = tmp_path / "cu.extxyz"
    write(data, cells)
    base = (f'[data]\ntrain = "{data}"\ntest_fraction = 0.0\n'
            '[descriptor]\nr_cut = 4.0\nn_max = 2\nl_max = 2\n[baseline]\ntype = "none"\n'
            '[output]\nreport = ""\n')
    auto = tmp_path / "auto.toml"
    auto.write_text(base + f'model = "{tmp_path / "auto.hpot"}"\n')
    assert main(["fit", "-q", "-c", str(auto)]) == 0
    out = capsys.readouterr().out
    assert "fit.weights.energy = 'auto': 15 x (6.00 atoms per training structure)^2 = 540\n" \
        in out
    m_auto = HybridPotential.load(tmp_path / "auto.hpot")
    assert m_auto.weights == {"energy": 540.0, "forces": 1.0, "stress": 100.0}
    # the same fit as the explicit number (and no 'auto' line then)
    num = tmp_path / "num.toml"
    num.write_text(base + f'model = "{tmp_path / "num.hpot"}"\n'
                   '[fit]\nweights = {energy = 540.0, forces = 1.0, stress = 100.0}\n')
    assert main(["fit", "-q", "-c", str(num)]) == 0
    assert "'auto'" not in capsys.readouterr().out
    m_num = HybridPotential.load(tmp_path / "num.hpot")
    np.testing.assert_array_equal(m_auto.regressor_.coef_, m_num.regressor_.coef_)
    # and not the fit with 0.2.0's 1000: the energy weight changes the coefficients
    old = tmp_path / "old.toml"
    old.write_text(base + f'model = "{tmp_path / "old.hpot"}"\n'
                   '[fit]\nweights = {energy = 1000.0, forces = 1.0, stress = 100.0}\n')
    assert main(["fit", "-q", "-c", str(old)]) == 0
    m_old = HybridPotential.load(tmp_path / "old.hpot")
    assert not np.allclose(m_auto.regressor_.coef_, m_old.regressor_.coef_, rtol=1e-6)


def test_auto_uses_the_training_part_only(tmp_path, capsys):
    """With a held-out part, n_mean is over the structures the model is fitted on."""
    cells = _cells(sizes=((1, 1, 1),), n_each=4) + _cells(sizes=((2, 2, 1),), n_each=1)
    data = tmp_path / "cu.extxyz"
    write(data, cells)                                 # 4 x 4 atoms, 1 x 16 atoms
    test = tmp_path / "t.extxyz"
    write(test, _cells(sizes=((3, 3, 3),), n_each=1))  # 108 atoms: not counted
    p = tmp_path / "c.toml"
    p.write_text(f'[data]\ntrain = "{data}"\ntest = "{test}"\n'
                 '[descriptor]\nr_cut = 4.0\nn_max = 2\nl_max = 2\n[baseline]\ntype = "none"\n'
                 f'[output]\nreport = ""\nmodel = "{tmp_path / "m.hpot"}"\n')
    assert main(["fit", "-q", "-c", str(p)]) == 0
    assert "15 x (6.40 atoms per training structure)^2 = 614.4\n" in capsys.readouterr().out
    assert HybridPotential.load(tmp_path / "m.hpot").weights["energy"] == \
        pytest.approx(15.0 * 6.4 ** 2, rel=1e-15)


class _Captured(Exception):
    pass


@pytest.mark.parametrize("learn, fit, want", [
    # default sampler (rattle) on a 2x2x2 supercell of the fcc Cu prototype: 15 x n^2
    ("[learn]\nsupercell = [2, 2, 2]\n", "", lambda n: {"energy": 15.0 * n ** 2, "forces": 1.0,
                                                          "stress": 100.0}),
    ("[learn]\nsampler = \"disorder\"\nn_atoms = [2, 4]\n",
     '[fit]\nweights = {energy = "auto", forces = 2.0}\n',
     lambda n: {"energy": 15.0 * 3.0 ** 2, "forces": 2.0}),            # mean of 2, 3, 4 atoms
    ("", "[fit]\nweights = {energy = 50.0, forces = 1.0}\n",
     lambda n: {"energy": 50.0, "forces": 1.0}),
])
def test_learn_command_resolves_auto_on_the_candidates(tmp_path, monkeypatch, learn, fit,
                                                       want):
    """'hybridpot learn' resolves energy = "auto" on the structures its run will label (the
    sampler's candidates and the initial set), once for every refit; before, "auto" made it
    fail and a stopgap gave 0.2.0's 1000; a number is used as given."""
    import hybridpot.learn as learn_pkg
    from hybridpot.config import load_config
    from hybridpot.learn.cli import _prototype

    seen = {}

    def fake_learner(model, *args, **kwargs):
        seen["weights"] = model.weights
        raise _Captured

    monkeypatch.setattr(learn_pkg, "ActiveLearner", fake_learner)
    p = tmp_path / "l.toml"
    p.write_text(learn + fit)
    with pytest.raises(_Captured):
        main(["learn", "-q", "-c", str(p), "--run-dir", str(tmp_path / "run")])
    sec = load_config(p).get("learn", {})
    n = len(_prototype(sec)) * 8
    assert seen["weights"] == pytest.approx(want(n), rel=1e-15)
