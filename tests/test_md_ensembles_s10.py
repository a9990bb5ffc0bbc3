"""`hybridpot md` ensembles beyond NVE / Langevin / Berendsen: Bussi, Nose-Hoover chain NVT
and the isotropic MTK barostat (NPT), with the conserved quantities of the deterministic ones
as a physics check of the model's forces and stress."""

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from hybridpot import ConfigError, HybridPotential
from hybridpot.baselines import LennardJones
from hybridpot.cli import MD_ENSEMBLES, _md_dynamics, main
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot._compat import thermalize


def _labelled(n=8, seed=3):
    r = np.random.default_rng(seed)
    out = []
    for k in range(n):
        at = bulk("Cu", "fcc", a=3.61 * (1 + r.uniform(-0.03, 0.03)), cubic=True) * (2, 2, 2)
        at.rattle(stdev=0.06, seed=k)
        at.calc = EMT()
        res = {"energy": at.get_potential_energy(), "forces": at.get_forces(),
               "stress": at.get_stress()}
        at.calc = SinglePointCalculator(at, **res)
        at.info["config_type"] = "rattle"
        out.append(at)
    return out


@pytest.fixture(scope="module")
def model():
    m = HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4, l_max=3),
                        BayesianLinearRegressor(),
                        LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.5))
    return m.fit(_labelled())


def _start(model, T=300.0, seed=0):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.rattle(stdev=0.02, seed=seed)
    atoms.calc = model.calculator()
    thermalize(atoms, T, np.random.default_rng(seed))
    return atoms


def _conserved_drift(dyn, n_steps):
    c = [dyn.get_conserved_energy()]
    for _ in range(n_steps // 5):
        dyn.run(5)
        c.append(dyn.get_conserved_energy())
    return np.ptp(c) / len(dyn.atoms)


def test_nose_hoover_conserves_its_extended_energy(model):
    """The Nose-Hoover chain's extended energy is conserved to the integrator's accuracy with
    the model's forces (the same bound that NVE meets), while the potential + kinetic energy
    alone is not (the thermostat exchanges energy)."""
    atoms = _start(model, T=600.0)
    md = {"taut_fs": 20.0}
    dyn = _md_dynamics(atoms, md, "nose_hoover", 1.0 * units.fs, 300.0,
                       np.random.default_rng(0))
    assert type(dyn).__name__ == "NoseHooverChainNVT"
    e0 = atoms.get_total_energy()
    spread = _conserved_drift(dyn, 100)
    exchanged = abs(atoms.get_total_energy() - e0) / len(atoms)
    assert spread < 2e-4                      # eV/atom over 100 fs
    assert exchanged > 20 * spread            # the thermostat did work (600 K -> 300 K)


def test_mtk_npt_conserves_its_extended_energy_and_uses_the_stress(model):
    """The isotropic MTK barostat's conserved quantity includes P V and the barostat's kinetic
    energy: it stays constant only if the model's stress is the strain derivative of its
    energy.  Peer: EMT (the labels' own potential) on the same trajectory settings, whose
    spread is the integrator's (a 50 fs barostat at 5 GPa gives 1.4e-3 eV/atom for EMT and
    the model alike; 200 fs about 9e-5).  A higher pressure gives a smaller cell."""
    from ase.calculators.emt import EMT

    res = {}
    for who in ("model", "emt"):
        for p_gpa in (0.0, 5.0):
            atoms = _start(model)
            if who == "emt":
                atoms.calc = EMT()
            md = {"taut_fs": 50.0, "taup_fs": 200.0, "pressure_GPa": p_gpa}
            dyn = _md_dynamics(atoms, md, "npt_mtk", 1.0 * units.fs, 300.0, None)
            assert type(dyn).__name__ == "IsotropicMTKNPT"
            res[who, p_gpa] = (_conserved_drift(dyn, 100), atoms.get_volume())
            # the cell stays cubic (isotropic barostat)
            lengths = atoms.cell.lengths()
            np.testing.assert_allclose(lengths, lengths[0], rtol=1e-10)
    for p_gpa in (0.0, 5.0):
        assert res["model", p_gpa][0] < max(3 * res["emt", p_gpa][0], 2e-5)
        assert res["model", p_gpa][0] < 3e-4
    assert res["model", 5.0][1] < 0.995 * res["model", 0.0][1]


def test_bussi_is_reproducible_with_its_seed(model):
    finals = []
    for seed in (1, 1, 2):
        atoms = _start(model)
        dyn = _md_dynamics(atoms, {"taut_fs": 10.0}, "bussi", 1.0 * units.fs, 300.0,
                           np.random.default_rng(seed))
        dyn.run(10)
        finals.append(atoms.get_velocities().copy())
    np.testing.assert_array_equal(finals[0], finals[1])
    assert not np.allclose(finals[0], finals[2])


@pytest.fixture(scope="module")
def fitted_cli(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("md_ens")
    data = tmp / "cu.extxyz"
    write(data, _labelled())
    base = f"""
[data]
train = "{data}"
test_fraction = 0.2

[descriptor]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 4
l_max = 3

[output]
model = "{tmp / 'cu.hpot'}"
report = ""
"""
    cfg = tmp / "fit.toml"
    cfg.write_text(base)
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    return tmp, base


def _md_config(tmp, base, ens, extra=""):
    cfg = tmp / f"md_{ens}.toml"
    cfg.write_text(base + f"""
[md]
lattice_constant = 3.61
supercell = [2, 2, 2]
steps = 12
ensemble = "{ens}"
trajectory = "{tmp / (ens + '.traj')}"
{extra}
""")
    return cfg


@pytest.mark.parametrize("ens", ["bussi", "nose_hoover", "npt_mtk"])
def test_cli_runs_each_new_ensemble(fitted_cli, ens, capsys):
    tmp, base = fitted_cli
    extra = "pressure_GPa = 2.0\ntaup_fs = 100.0\n" if ens == "npt_mtk" else ""
    capsys.readouterr()
    assert main(["md", "-c", str(_md_config(tmp, base, ens, extra)), "--quiet"]) == 0
    assert f"md ({ens}): 12 steps" in capsys.readouterr().out
    frames = read(tmp / f"{ens}.traj", ":")
    assert len(frames) == 2   # steps 0 and 10
    if ens == "npt_mtk":
        assert frames[-1].get_volume() != pytest.approx(frames[0].get_volume(), rel=1e-12)
    else:
        np.testing.assert_array_equal(frames[-1].cell[:], frames[0].cell[:])


def test_cli_ensemble_errors(fitted_cli, capsys, monkeypatch):
    tmp, base = fitted_cli
    capsys.readouterr()
    assert main(["md", "-c", str(_md_config(tmp, base, "nvt")), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "md.ensemble must be one of 'nve', 'langevin', 'bussi', 'nose_hoover', 'npt', " \
           "'npt_mtk'. Got 'nvt'." in err
    # an ASE without the class: the installed version and the way out are named
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "ase.md.nose_hoover_chain":
            raise ImportError("no module")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ConfigError, match=r"md.ensemble = 'nose_hoover' needs "
                       r"ase.md.nose_hoover_chain.NoseHooverChainNVT, which the installed ASE "
                       r"[0-9.]+ does not have; upgrade ASE"):
        _md_dynamics(bulk("Cu", cubic=True), {}, "nose_hoover", 1.0, 300.0, None)


def test_npt_mtk_refuses_a_slab(model):
    slab = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    slab.pbc = (True, True, False)
    with pytest.raises(ConfigError, match=r"md.ensemble = 'npt_mtk' needs a structure "
                       r"periodic in 3-D .* pbc=\[True, True, False\]"):
        _md_dynamics(slab, {}, "npt_mtk", 1.0, 300.0, None)


def test_every_documented_ensemble_is_known():
    """The config example in hybridpot.config's docstring lists every md.ensemble."""
    import hybridpot.config as config

    doc = config.__doc__
    start = doc.index("    ensemble = ")
    block = doc[start:doc.index("temperature_K", start)]
    for name in MD_ENSEMBLES:
        assert name in block
