"""Review s9 (computational chemist): molecules and clusters without a cell, ACSF, BP networks.

Tiny EMT-labelled data: Cu clusters of 2-13 atoms and H/C/N/O molecules of the ASE g2 set,
no cell, ``pbc=False``.
"""

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.cluster import Icosahedron
from sklearn.exceptions import ConvergenceWarning

from hybridpot import HybridPotential
from hybridpot.descriptors import ACSF
from hybridpot.regression import NeuralNetworkRegressor

from conftest import emt_label


def cu_clusters(n, seed):
    """``n`` EMT-labelled Cu clusters (dimers, trimers, rattled icosahedron fragments)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        m = int(rng.integers(2, 14))
        if m <= 3:
            pos = [[0, 0, 0], [2.3 + 0.4 * rng.random(), 0, 0], [1.2, 2.0, 0.3 * rng.random()]]
            a = Atoms(f"Cu{m}", positions=pos[:m])
        else:
            a = Icosahedron("Cu", 2)[:m]
            a.positions *= 1 + 0.05 * rng.normal()
            a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        a.center()
        out.append(emt_label(a, stress=False))
    return out


def dimer(r, symbols="Cu2"):
    return Atoms(symbols, positions=[[0, 0, 0], [r, 0, 0]])


# ---------------------------------------------------------------------------------------------
# NeuralNetworkRegressor input standardisation (finding NN1)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ani_nn_cluster_model():
    train = cu_clusters(16, seed=0)
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(16,), n_models=3, random_state=0,
                                 max_iter=300)
    model = HybridPotential(descriptor=ACSF(species=["Cu"], r_cut=5.0), regressor=reg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train)
    return model


def test_nn_does_not_amplify_features_that_barely_vary_in_training(ani_nn_cluster_model):
    """ANI radial/angular shells inside the shortest training distance (2.2 Å) have standard
    deviations of 1e-7 in training; standardised to unit variance they turned the dimer scan
    into force spikes (56 eV/Å between points 0.005 Å apart near 1.93 Å).  Now their scale is
    at least 1 % of the element's largest feature spread and the forces stay smooth."""
    model = ani_nn_cluster_model
    reg = model.regressor_
    X = np.concatenate([model.descriptor.compute(a) for a in cu_clusters(16, seed=0)])
    sd = X.std(axis=0)
    assert sd.min() < 1e-6 * sd.max()   # the data do have such features
    assert np.all(reg.x_scale_[0] >= 0.01 * sd.max() * (1 - 1e-9))
    calc = model.calculator()
    rs = np.arange(1.6, 2.6, 0.005)
    f = []
    for r in rs:
        a = dimer(r)
        a.calc = calc
        f.append(a.get_forces()[1, 0])
    jumps = np.abs(np.diff(f))
    # before: 170 eV/Å between neighbouring points at 1.845 Å, |F| up to 170 eV/Å
    assert jumps.max() < 10.0, (jumps.max(), rs[jumps.argmax()])
    assert np.abs(f).max() < 50.0


# ---------------------------------------------------------------------------------------------
# molecules
# ---------------------------------------------------------------------------------------------
def emt_molecules(names, n_per, seed, rattle=0.05):
    """EMT-labelled, rattled g2 molecules (no cell, pbc False)."""
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        for k in range(n_per):
            a = molecule(name)
            a.rattle(rattle * (1 + k % 3) / 2, seed=int(rng.integers(1 << 30)))
            out.append(emt_label(a, stress=False))
    return out


def test_cli_md_of_a_molecule_runs_without_a_cell(tmp_path, capsys):
    """`hybridpot md` with a molecule file (no cell): the default supercell [3, 3, 3] raised
    ASE's ValueError 'Cannot repeat along undefined lattice vector' (traceback); the supercell
    now repeats along periodic directions only."""
    from ase.io import read, write

    from hybridpot.cli import main

    write(tmp_path / "train.extxyz", emt_molecules(("H2O", "NH3"), 4, seed=0))
    nh3 = molecule("NH3")
    write(tmp_path / "nh3.xyz", nh3)
    slab = Atoms("H2O", positions=nh3.positions[:3] + [0, 0, 5], cell=[6, 6, 10],
                 pbc=(True, True, False))
    write(tmp_path / "slab.extxyz", slab)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[data]\ntrain = "{tmp_path / "train.extxyz"}"\n'
        '[descriptor]\ntype = "ACSF"\nr_cut = 4.0\nangular = "none"\n'
        '[baseline]\ntype = "none"\n'
        f'[output]\nmodel = "{tmp_path / "m.hpot"}"\nreport = ""\n'
        f'[md]\nstructure = "{tmp_path / "nh3.xyz"}"\nensemble = "nve"\nsteps = 5\n'
        f'timestep_fs = 0.25\ntrajectory = "{tmp_path / "md.traj"}"\n')
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    assert main(["md", "-c", str(cfg), "--quiet"]) == 0
    last = read(tmp_path / "md.traj", -1)
    assert len(last) == 4 and not last.pbc.any()
    # a slab is repeated in plane only
    cfg.write_text(cfg.read_text().replace("nh3.xyz", "slab.extxyz"))
    assert main(["md", "-c", str(cfg), "--quiet"]) == 0
    last = read(tmp_path / "md.traj", -1)
    assert len(last) == 27
    np.testing.assert_allclose(last.cell.lengths(), [18, 18, 10])
    # NPT of a structure without 3-D periodicity: one-line error, exit 2 (was a
    # PropertyNotImplementedError traceback from NPTBerendsen's first step)
    cfg.write_text(cfg.read_text().replace('"nve"', '"npt"'))
    capsys.readouterr()
    assert main(["md", "-c", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "md.ensemble = 'npt' needs a structure periodic in 3-D" in err
    assert "pbc=[True, True, False]" in err and "Traceback" not in err
