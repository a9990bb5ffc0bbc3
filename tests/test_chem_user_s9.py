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

from conftest import emt_label, skewed_two_element_cell
# the descriptor contract (symmetries, FD Jacobian / strain / adjoint on a rattled periodic
# non-orthogonal two-element cell, smooth cutoff, supercell, slab / cluster, serialisation),
# re-run here on ACSF(angular="g5") through the ``desc`` fixture below
from test_descriptor_contract import (cell_atoms,  # noqa: F401 (fixture)
                                      test_backward_equals_jacobian_and_finite_differences,
                                      test_clone_and_serialisation,
                                      test_jacobian_matches_finite_differences,
                                      test_partial_periodicity_and_isolated_cluster,
                                      test_rotation_translation_permutation_invariance,
                                      test_shape_dtype_and_input_untouched,
                                      test_smooth_at_cutoff,
                                      test_strain_derivative_matches_finite_strain,
                                      test_supercell_same_per_atom_values)


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


# ---------------------------------------------------------------------------------------------
# ACSF angular="g5" (Behler's wide angular function; finding ACSF1)
# ---------------------------------------------------------------------------------------------
G5 = dict(species=["Cu", "Ni"], r_cut=4.2, radial_etas=[2.0], radial_shifts=[0.0, 2.5],
          angular="g5", angular_cutoff=3.9, bp_etas=[0.01, 0.3], bp_zetas=[1.0, 2.5, 8.0],
          bp_lambdas=[1, -1])


@pytest.fixture(params=["custom", "default", "g5-tanh", "ani-polynomial", "radial-tanh"])
def desc(request):
    """The ``desc`` fixture of the imported contract tests: G5, and the tanh / polynomial
    cutoff functions (finding ACSF3)."""
    if request.param == "custom":
        return ACSF(**G5)
    if request.param == "g5-tanh":
        return ACSF(**G5, cutoff_function="tanh")
    if request.param == "ani-polynomial":
        return ACSF(species=["Cu", "Ni"], r_cut=4.0, angular_cutoff=3.2,
                    cutoff_function="polynomial")
    if request.param == "radial-tanh":
        return ACSF(species=["Cu", "Ni"], r_cut=4.0, angular=None, cutoff_function="tanh")
    return ACSF(species=["Cu", "Ni"], r_cut=4.0, angular="g5")


def _fc(r, rc):
    return np.where(r < rc, 0.5 * (np.cos(np.pi * r / rc) + 1.0), 0.0)


def g5_reference(atoms, params):
    """Plain loops over the ASE neighbour list in the documented feature order."""
    from ase.neighborlist import neighbor_list

    sp, rc, rca = params["species"], params["r_cut"], params["angular_cutoff"]
    S = len(sp)
    rgrid = [(e, r) for e in params["radial_etas"] for r in params["radial_shifts"]]
    agrid = [(e, z, lam) for e in params["bp_etas"] for z in params["bp_zetas"]
             for lam in params["bp_lambdas"]]
    pairs = [(b, c) for b in range(S) for c in range(b, S)]
    G, A = len(rgrid), len(agrid)
    X = np.zeros((len(atoms), S * G + len(pairs) * A))
    ii, jj, DD = neighbor_list("ijD", atoms, rc)
    z = [sp.index(x) for x in atoms.get_chemical_symbols()]
    for i in range(len(atoms)):
        nb = [(z[j], D) for j, D in zip(jj[ii == i], DD[ii == i])]
        for b, D in nb:
            r = np.linalg.norm(D)
            for g, (eta, rs) in enumerate(rgrid):
                X[i, b * G + g] += np.exp(-eta * (r - rs) ** 2) * _fc(r, rc)
        for a1, (b, Dj) in enumerate(nb):
            for a2, (c, Dk) in enumerate(nb):
                rj, rk = np.linalg.norm(Dj), np.linalg.norm(Dk)
                if a1 == a2 or rj >= rca or rk >= rca:
                    continue
                cos = Dj @ Dk / (rj * rk)
                col = S * G + pairs.index((min(b, c), max(b, c))) * A
                for m, (eta, zeta, lam) in enumerate(agrid):
                    X[i, col + m] += (2 ** (1 - zeta) * max(1 + lam * cos, 0.0) ** zeta
                                      * np.exp(-eta * (rj ** 2 + rk ** 2))
                                      * _fc(rj, rca) * _fc(rk, rca))
    return X


def test_g5_matches_numpy_reference_on_a_cell_and_a_molecule():
    cell = skewed_two_element_cell(seed=3, rattle=0.12)
    mol = Atoms("Cu2Ni2", positions=[[0, 0, 0], [2.4, 0, 0], [-2.1, 0.6, 0.2], [0.3, 2.5, -0.4]])
    for atoms in (cell, mol):
        X = ACSF(**G5).compute(atoms)
        ref = g5_reference(atoms, G5)
        assert np.abs(ref[:, 4:]).max() > 1e-3   # angular terms exercised
        np.testing.assert_allclose(X, ref, rtol=1e-11, atol=1e-13)


def test_g5_counts_a_triple_whose_outer_atoms_are_beyond_the_cutoff():
    """Centre at 0, neighbours at 3 Å on opposite sides: R_jk = 6 Å > R_a = 3.5 Å, so G4
    is zero and G5 is the closed form 2 * 2^(1-zeta) (1 - lambda)^zeta exp(-18 eta) f_c(3)^2."""
    at = Atoms("Cu3", positions=[[0, 0, 0], [3.0, 0, 0], [-3.0, 0, 0]])
    kw = dict(species=["Cu"], r_cut=3.5, radial_etas=[1.0], radial_shifts=[0.0],
              angular_cutoff=3.5, bp_etas=[0.1], bp_zetas=[1.0, 2.0], bp_lambdas=[-1, 1])
    g4 = ACSF(angular="bp", **kw).compute(at)
    g5 = ACSF(angular="g5", **kw).compute(at)
    assert np.all(g4[0, 1:] == 0)
    fc = _fc(3.0, 3.5)
    want = [2 * 2 ** (1 - z) * (1 - lam) ** z * np.exp(-0.1 * 18) * fc ** 2
            for z in (1.0, 2.0) for lam in (-1, 1)]
    np.testing.assert_allclose(g5[0, 1:], want, rtol=1e-13)
    labels = ACSF(angular="g5", **kw).feature_labels()
    assert labels[1] == ("g5", ("Cu", "Cu"), 0.1, 1.0, -1)
    assert ACSF(species=["H", "C", "N", "O"], r_cut=5.0, angular="g5").n_features == \
        16 * 4 + 18 * 10


def test_rattle_strain_sampler_on_a_molecule_says_why():
    """The message said 'Got Atoms instead' for a molecule prototype (an Atoms!)."""
    from hybridpot import InvalidParameterError
    from hybridpot.sampling import RattleStrainSampler

    with pytest.raises(InvalidParameterError,
                       match=r"'prototype' parameter of RattleStrainSampler must be a 3-D "
                             r"periodic ase.Atoms \(a crystal: .*UncertaintyMDSampler\)\. "
                             r"Got an Atoms with pbc=\[False, False, False\] instead"):
        RattleStrainSampler(prototype=molecule("H2O")).sample(2, random_state=0)
    with pytest.raises(InvalidParameterError, match=r"Got str instead"):
        RattleStrainSampler(prototype="H2O").sample(2, random_state=0)


@pytest.mark.filterwarnings("ignore:The energy of .* is an arbitrary extrapolation:UserWarning")
def test_g5_network_model_forces_and_stress_match_finite_differences():
    """A whole hybrid model on G5 features (network + ZBL): forces and stress of the
    calculator vs central differences, on a rattled periodic skewed Cu/Ni cell and a molecule
    cluster without a cell."""
    from ase.calculators.calculator import PropertyNotImplementedError
    from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

    from hybridpot.baselines import ZBL

    train = [emt_label(skewed_two_element_cell(seed=s, rattle=0.1), stress=True)
             for s in range(4)]
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(6,), activation="silu", n_models=2,
                                 random_state=1, max_iter=30)
    model = HybridPotential(descriptor=ACSF(species=["Cu", "Ni"], r_cut=4.0, angular="g5",
                                            angular_cutoff=3.5),
                            regressor=reg, baseline=ZBL(r_inner=1.0, r_cut=2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train)
    cell = skewed_two_element_cell(seed=9, rattle=0.15)
    cluster = Atoms("Cu3Ni2", positions=[[0, 0, 0], [2.4, 0.1, 0], [1.1, 2.2, 0.3],
                                         [-1.3, 1.0, 1.9], [0.9, -0.4, 2.5]])
    for atoms in (cell, cluster):
        atoms.calc = model.calculator()
        f = atoms.get_forces()
        fd = calculate_numerical_forces(atoms, eps=1e-5)
        assert np.abs(fd).max() > 0.1
        np.testing.assert_allclose(f, fd, atol=1e-6 * max(1.0, np.abs(fd).max()))
    s = cell.get_stress()
    fd_s = calculate_numerical_stress(cell, eps=1e-6)
    assert np.abs(fd_s).max() > 1e-3
    np.testing.assert_allclose(s, fd_s, atol=1e-7)
    with pytest.raises(PropertyNotImplementedError, match="periodic in 3-D"):
        cluster.get_stress()



# ---------------------------------------------------------------------------------------------
# ACSF cutoff functions (finding ACSF3)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, f, df", [
    ("cosine", lambda x: 0.5 * (np.cos(np.pi * x) + 1),
     lambda x: -0.5 * np.pi * np.sin(np.pi * x)),
    ("tanh", lambda x: np.tanh(1 - x) ** 3,
     lambda x: -3 * np.tanh(1 - x) ** 2 / np.cosh(1 - x) ** 2),
    ("polynomial", lambda x: 1 - 10 * x ** 3 + 15 * x ** 4 - 6 * x ** 5,
     lambda x: -30 * x ** 2 + 60 * x ** 3 - 30 * x ** 4),
])
def test_cutoff_functions_closed_form_on_a_dimer(kind, f, df):
    rc, R, eta = 4.0, 2.7, 0.3
    desc = ACSF(species=["H"], r_cut=rc, radial_etas=[eta], radial_shifts=[1.0], angular=None,
                cutoff_function=kind)
    X, dX = desc.compute(dimer(R, "H2"), gradients=True)
    x = R / rc
    e = np.exp(-eta * (R - 1.0) ** 2)
    np.testing.assert_allclose(X[:, 0], e * f(x), rtol=1e-13)
    want = e * (df(x) / rc - 2 * eta * (R - 1.0) * f(x))   # d/dR along the bond
    p = np.flatnonzero(dX.pair_i == 0)[0]
    np.testing.assert_allclose(dX.d_drij[p, 0, 0], want, rtol=1e-12)


def test_tanh_and_polynomial_cutoffs_have_no_force_kink_at_the_cutoff():
    """Second derivative of a G2 feature just inside R_c: O(1) for the cosine cutoff (the
    force kink), ~0 for tanh^3 and the polynomial."""
    rc, h = 4.0, 1e-4
    curv = {}
    for kind in ("cosine", "tanh", "polynomial"):
        desc = ACSF(species=["H"], r_cut=rc, radial_etas=[0.1], radial_shifts=[0.0],
                    angular=None, cutoff_function=kind)
        g = [desc.compute(dimer(rc - 2 * h + k * h, "H2"), gradients=True)[1].d_drij[0, 0, 0]
             for k in (0, 1)]
        curv[kind] = abs(g[1] - g[0]) / h
    assert curv["cosine"] > 0.03   # 0.5 (pi / rc)^2 exp(-0.1 rc^2) = 0.062
    assert curv["tanh"] < 1e-3 and curv["polynomial"] < 1e-3


def test_cutoff_function_errors_and_old_model_files():
    from hybridpot import InvalidParameterError
    from hybridpot.descriptors import descriptor_from_dict

    with pytest.raises(InvalidParameterError,
                       match=r"'cutoff_function' parameter of ACSF must be one of "
                             r"\{'cosine', 'tanh', 'polynomial'\}. Got 'cos' instead"):
        ACSF(species=["H"], r_cut=4.0, cutoff_function="cos").n_features
    # a description without the parameter (a model saved before it existed) is the cosine
    d = ACSF(species=["H", "O"], r_cut=4.0).to_dict()
    del d["params"]["cutoff_function"]
    old = descriptor_from_dict(d)
    w = molecule("H2O")
    np.testing.assert_array_equal(old.compute(w), ACSF(species=["H", "O"], r_cut=4.0).compute(w))
