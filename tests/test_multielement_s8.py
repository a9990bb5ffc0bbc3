"""Session-8 review of hybridpot on multi-element (2-3 species) systems: regression tests."""

import numpy as np
import pytest
from ase.build import bulk

from hybridpot import HybridPotential, UnknownSpeciesError
from hybridpot.descriptors import Bispectrum, PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor

from conftest import emt_label, skewed_two_element_cell


def alloy(n, seed, elems=("Cu", "Ni"), fracs=(0.0, 1.0, 0.25, 0.5), a=3.58, stress=True):
    """``n`` EMT-labelled, strained, rattled fcc 8-atom cells with a fraction ``fracs[k]`` of
    ``elems[1]`` (0: pure ``elems[0]``, 1: pure ``elems[1]``)."""
    r = np.random.default_rng(seed)
    out = []
    for k in range(n):
        at = bulk(elems[0], "fcc", a=a * (1 + r.uniform(-0.02, 0.02)), cubic=True) * (2, 1, 1)
        at.set_cell(at.cell.array @ (np.eye(3) + r.uniform(-0.03, 0.03, (3, 3))),
                    scale_atoms=True)
        x = fracs[k % len(fracs)]
        n_b = int(round(x * len(at)))
        syms = [elems[1]] * n_b + [elems[0]] * (len(at) - n_b)
        at.set_chemical_symbols([syms[i] for i in r.permutation(len(at))])
        at.rattle(0.06, seed=int(r.integers(1 << 30)))
        out.append(emt_label(at, stress=stress))
    return out


# -- descriptors: species channels against an independent slow evaluation ------------------
def _complex_density(atoms, species, r_cut, n_max, l_max, weights):
    """``c[i, q, l, mu]`` from ASE's neighbour list, exact radial functions and scipy's
    complex harmonics (channel ``q = c n_max + k``; one channel with ``weights``)."""
    from ase.neighborlist import neighbor_list
    from scipy.special import sph_harm_y

    from hybridpot.descriptors._so3 import radial_basis_exact

    i, j, D = neighbor_list("ijD", atoms, r_cut)
    r = np.linalg.norm(D, axis=1)
    R = radial_basis_exact(r, r_cut, n_max, l_max)               # (n_pairs, L, K)
    theta, phi = np.arccos(D[:, 2] / r), np.arctan2(D[:, 1], D[:, 0])
    kind = np.array([species.index(s) for s in atoms.get_chemical_symbols()])[j]
    n_ch = 1 if weights is not None else len(species)
    ch = np.zeros(len(i), dtype=int) if weights is not None else kind
    w = np.asarray(weights)[kind] if weights is not None else np.ones(len(i))
    c = np.zeros((len(atoms), n_ch, n_max, l_max + 1, 2 * l_max + 1), complex)
    for l in range(l_max + 1):
        for mu in range(-l, l + 1):
            Y = sph_harm_y(l, mu, theta, phi)
            np.add.at(c[:, :, :, l, mu + l], (i, ch), (w * Y)[:, None] * R[:, l, :])
    return c.reshape(len(atoms), n_ch * n_max, l_max + 1, 2 * l_max + 1)


def _slow_power_spectrum(atoms, species, r_cut, n_max, l_max, weights=None):
    c = _complex_density(atoms, species, r_cut, n_max, l_max, weights)
    Q = c.shape[1]
    cols = [np.real(np.sum(np.conj(c[:, q1, l]) * c[:, q2, l], axis=1))
            for q1 in range(Q) for q2 in range(q1, Q) for l in range(l_max + 1)]
    return np.array(cols).T


def _slow_bispectrum(atoms, species, r_cut, n_max, l_max, weights=None):
    from sympy.physics.quantum.cg import CG

    from hybridpot.descriptors._sympy_basis import coupling_triples

    c = _complex_density(atoms, species, r_cut, n_max, l_max, weights)
    Q = c.shape[1]
    cols = []
    for q in range(Q):
        for qp in range(Q):
            for l, l1, l2 in coupling_triples(l_max):
                if q == qp and l > l1:
                    continue
                b = np.zeros(len(atoms), complex)
                for m1 in range(-l1, l1 + 1):
                    for m2 in range(-l2, l2 + 1):
                        if abs(m1 + m2) <= l:
                            cg = float(CG(l1, m1, l2, m2, l, m1 + m2).doit())
                            b += (cg * np.conj(c[:, q, l, m1 + m2 + l]) * c[:, qp, l1, m1 + l1]
                                  * c[:, qp, l2, m2 + l2])
                cols.append(b.real)
    return np.array(cols).T


@pytest.mark.parametrize("species", [["Cu", "Ni"], ["Ni", "Cu"], ["Ni", "Al", "Cu"]])
@pytest.mark.parametrize("weighted", [False, True])
def test_so3_species_channels_match_a_slow_evaluation(species, weighted):
    at = skewed_two_element_cell(seed=1, rattle=0.1, symbols=("Cu", "Ni"))
    w = [1.0, -0.3, 2.0][:len(species)] if weighted else None
    ps = PowerSpectrum(species=species, r_cut=4.0, n_max=3, l_max=3, species_weights=w)
    ref = _slow_power_spectrum(at, species, 4.0, 3, 3, w)
    np.testing.assert_allclose(ps.compute(at), ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    bs = Bispectrum(species=species, r_cut=4.0, n_max=2, l_max=2, species_weights=w)
    ref = _slow_bispectrum(at, species, 4.0, 2, 2, w)
    np.testing.assert_allclose(bs.compute(at), ref, rtol=0, atol=1e-8 * np.abs(ref).max())


# -- M1: an element of the descriptor absent from training ---------------------------------
@pytest.mark.parametrize("make", [LinearRegressor, BayesianLinearRegressor])
@pytest.mark.parametrize("reference_energies", ["fit", {"Cu": 0.1, "Ni": 0.2, "Al": 0.3}])
def test_element_absent_from_training_is_refused(make, reference_energies, tmp_path):
    desc = PowerSpectrum(species=["Cu", "Ni", "Al"], r_cut=4.0, n_max=2, l_max=1)
    m = HybridPotential(descriptor=desc, regressor=make(),
                        reference_energies=reference_energies).fit(alloy(8, 0))
    assert m.trained_species_ == ("Cu", "Ni")
    alni = alloy(1, 5, elems=("Ni", "Al"), fracs=[0.5], a=3.7)
    msg = (r"The structure Al4Ni4 contains the element 'Al' \(first at atom \d\), which no "
           r"training structure of this HybridPotential contained: its reference energy and ML "
           r"correction were never fitted, so only \['Cu', 'Ni'\] can be predicted\. Fit on "
           r"structures that contain Al\.")
    calls = [lambda mod: mod.predict(alni), lambda mod: mod.predict_forces(alni),
             lambda mod: mod.evaluate(alni)]
    if make is BayesianLinearRegressor:
        calls.append(lambda mod: mod.predict(alni, return_std=True))
    for call in calls:
        with pytest.raises(UnknownSpeciesError, match=msg):
            call(m)
    at = alni[0].copy()
    at.calc = m.calculator()
    with pytest.raises(UnknownSpeciesError, match=msg):
        at.get_potential_energy()
    m.save(tmp_path / "m.hpot")
    loaded = HybridPotential.load(tmp_path / "m.hpot")
    assert loaded.trained_species_ == ("Cu", "Ni")
    with pytest.raises(UnknownSpeciesError, match=msg):
        loaded.predict(alni)
    # the trained elements still predict, identically after loading
    cuni = alloy(2, 7, fracs=[0.0, 0.5])
    np.testing.assert_allclose(loaded.predict(cuni), m.predict(cuni), rtol=0, atol=1e-12)


def test_element_only_in_weight_zero_structures_is_untrained():
    desc = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=2, l_max=1)
    train = alloy(3, 0, fracs=[0.0])
    ni = alloy(1, 1, fracs=[1.0])[0]
    ni.info["fit_weight"] = 0.0
    m = HybridPotential(descriptor=desc, regressor=LinearRegressor()).fit(train + [ni])
    assert m.trained_species_ == ("Cu",)
    with pytest.raises(UnknownSpeciesError, match="only \\['Cu'\\] can be predicted"):
        m.predict(alloy(1, 2, fracs=[0.5]))



def test_active_learning_from_one_element_labels_the_new_element_first(tmp_path):
    """With M1 the selectors could not score a Cu-Ni candidate of a Cu-only model (the loop
    stopped with UnknownSpeciesError): such candidates are now labelled first."""
    from hybridpot.learn import ActiveLearner
    from hybridpot.sampling import RandomDisorderSampler

    desc = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=2, l_max=1)
    model = HybridPotential(descriptor=desc,
                            regressor=BayesianLinearRegressor(noise_levels="shared"))
    al = ActiveLearner(model, oracle="EMT",
                       sampler=RandomDisorderSampler(species=["Cu", "Ni"], n_atoms=(4, 6),
                                                     volume_per_atom=(10.5, 12.5),
                                                     min_distance=2.1),
                       initial=alloy(3, 0, fracs=[0.0]), validation=alloy(2, 9, fracs=[0.5]),
                       n_candidates=6, batch_size=2, max_iterations=2, run_dir=tmp_path / "al",
                       random_state=0, progress=False).run()
    first = al.history_[0]
    assert first["selected_sigma_max"] is None and first["n_new"] == 2
    assert all("Ni" in a.get_chemical_symbols() for a in al.labelled_[:2])
    assert al.model_.trained_species_ == ("Cu", "Ni")
    assert all(np.isfinite(h["validation_force_mae"]) for h in al.history_)


def test_write_snap_leaves_out_an_untrained_element(tmp_path):
    from hybridpot import InvalidParameterError
    from hybridpot.descriptors import SNAPBispectrum
    from hybridpot.io.lammps import read_snap, write_snap

    desc = SNAPBispectrum(species=["Cu", "Al", "Ni"], twojmax=2, rcutfac=4.2,
                          radelem=[0.5, 0.55, 0.44], wj=[1.0, 0.8, 0.7])
    m = HybridPotential(descriptor=desc, regressor=LinearRegressor()).fit(alloy(6, 0))
    paths = write_snap(m, tmp_path / "m")
    assert "pair_coeff * * m.snapcoeff m.snapparam Cu Ni" in paths["mod"].read_text()
    back = read_snap(paths["snapcoeff"], paths["snapparam"], species=["Cu", "Ni"])
    cuni = alloy(2, 4, fracs=[0.5, 0.25])
    np.testing.assert_allclose(back.predict(cuni), m.predict(cuni), rtol=0, atol=1e-10)
    msg = (r"The 'species' argument of write_snap contains \['Al'\], which no training "
           r"structure of the model contained: LAMMPS would run them with an unfitted reference "
           r"energy and ML correction\. Leave them out \(trained elements: \['Cu', 'Ni'\]\)\.")
    with pytest.raises(InvalidParameterError, match=msg):
        write_snap(m, tmp_path / "all", species=["Cu", "Ni", "Al"])

# -- M2: per-element descriptor values in the command line ----------------------------------
@pytest.fixture(scope="module")
def ni_first(tmp_path_factory):
    """An extxyz of Cu-Ni cells whose first structure is pure Ni (so the order of first
    appearance is Ni, Cu)."""
    from ase.io import write

    d = tmp_path_factory.mktemp("s8cli")
    write(d / "cuni.xyz", alloy(4, 0, fracs=[1.0, 0.5, 0.0, 0.25], stress=False))
    return d


def _snap_config(d, per_element, data_extra=""):
    cfg = d / "snap.toml"
    cfg.write_text(f"""
[data]
train = "{d / 'cuni.xyz'}"
test_fraction = 0.0
{data_extra}
[descriptor]
type = "SNAPBispectrum"
twojmax = 2
rcutfac = 4.2
{per_element}
[regressor]
type = "LinearRegressor"
[baseline]
type = "none"
[output]
model = "{d / 'snap.hpot'}"
report = ""
""")
    return cfg


def _cli(capsys, argv):
    from hybridpot.cli import main

    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_cli_per_element_list_needs_a_fixed_element_order(ni_first, capsys):
    """Before: radelem = [0.5, 0.44] (meant Cu, Ni) went to (Ni, Cu), the order of first
    appearance in the file, silently (and LAMMPS type 1 of the export was Ni)."""
    cfg = _snap_config(ni_first, "radelem = [0.5, 0.44]\nwj = [1.0, 0.7]")
    code, err = _cli(capsys, ["fit", "-q", "-c", str(cfg)])
    assert code == 2, err
    assert ("descriptor.radelem is a list, but the element order of this model is that of "
            "first appearance in the data (['Ni', 'Cu']), not one the config fixes: give a "
            "table keyed by element, e.g. radelem = {Ni = ..., Cu = ...}, or fix the order "
            "with data.species (learn.species for 'hybridpot learn'). Got [0.5, 0.44].") in err
    cfg = _snap_config(ni_first, "radelem = {Cu = 0.5}")
    code, err = _cli(capsys, ["fit", "-q", "-c", str(cfg)])
    assert code == 2 and ("descriptor.radelem must give one value per element of the model "
                          "['Ni', 'Cu']; missing ['Ni']. Got {'Cu': 0.5}.") in err, err


@pytest.mark.parametrize("per_element, data_extra, species", [
    ("radelem = {Cu = 0.5, Ni = 0.44}\nwj = {Ni = 0.7, Cu = 1.0}", "", ("Ni", "Cu")),
    ("radelem = [0.5, 0.44]\nwj = [1.0, 0.7]", 'species = ["Cu", "Ni"]', ("Cu", "Ni")),
])
def test_cli_per_element_values_reach_their_elements(ni_first, capsys, per_element,
                                                     data_extra, species):
    cfg = _snap_config(ni_first, per_element, data_extra)
    code, err = _cli(capsys, ["fit", "-q", "-c", str(cfg)])
    assert code == 0, err
    m = HybridPotential.load(ni_first / "snap.hpot")
    assert m.species_ == species
    radius = dict(zip(m.species_, m.descriptor.radelem))
    weight = dict(zip(m.species_, m.descriptor.wj))
    assert radius == {"Cu": 0.5, "Ni": 0.44} and weight == {"Cu": 1.0, "Ni": 0.7}


def test_cli_data_species_is_checked(ni_first, capsys):
    cfg = _snap_config(ni_first, "", 'species = ["Cu", "Cu"]')
    code, err = _cli(capsys, ["fit", "-q", "-c", str(cfg)])
    assert code == 2 and ("data.species must be a list of distinct chemical symbols such as "
                          "['Cu', 'Ni']. Got ['Cu', 'Cu'].") in err, err
    cfg = _snap_config(ni_first, "", 'species = ["Cu"]')
    code, err = _cli(capsys, ["fit", "-q", "-c", str(cfg)])
    assert code == 2 and "it contains Ni, which the model does not know (model species: Cu)" \
        in err, err


# -- M3: variance-reduction selection on a model with a posterior committee -----------------
def test_variance_reduction_names_the_posterior_committee():
    """Before: 'needs a linear model with a posterior covariance (BayesianLinearRegressor) ...;
    BayesianLinearRegressor has none' for a BayesianLinearRegressor model."""
    from hybridpot import InvalidParameterError
    from hybridpot.uq import LinearPosterior
    from hybridpot.uq.selection import DOptimalSelector, VarianceReductionSelector

    desc = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=2, l_max=1)
    train = alloy(6, 0)
    m = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor()).fit(train)
    pool = alloy(4, 3, fracs=[0.0, 0.5, 1.0, 0.25])
    picks = VarianceReductionSelector().select(m, pool, 2)   # the fitted posterior: fine
    assert len(set(picks.tolist())) == 2
    LinearPosterior(n_steps=30, random_state=0).fit(m, train).apply(m, force=True)
    msg = (r"VarianceReductionSelector needs a linear model with a posterior covariance "
           r"\(BayesianLinearRegressor\) or a SparseGPRegressor \(weight posterior\); this "
           r"model's σ comes from its posterior committee \(uncertainty_, set by "
           r"LinearPosterior.apply\), which cannot be conditioned on new labels; select with "
           r"the model as fitted, before apply\. Use MaxVarianceSelector or DOptimalSelector "
           r"instead\.")
    with pytest.raises(InvalidParameterError, match=msg):
        VarianceReductionSelector().select(m, pool, 2)
    assert len(DOptimalSelector().select(m, pool, 2)) == 2


# -- LAMMPS: a two-element SNAP model on a triclinic cell, with a two-Z ZBL, stress too -------
def test_live_lammps_two_elements_triclinic_zbl_with_stress(tmp_path):
    """Energies, forces and the stress of pair_style hybrid/overlay zbl + snap (radii and
    weights != 1, LAMMPS types in the reverse of the model order) equal hybridpot's."""
    import ase.io
    from ase.data import atomic_masses, atomic_numbers
    from ase.geometry import cellpar_to_cell

    from hybridpot.baselines import ZBL
    from hybridpot.descriptors import SNAPBispectrum
    from hybridpot.io.lammps import import_lammps, write_snap

    try:
        lammps = import_lammps()
    except ImportError as e:
        pytest.skip(f"LAMMPS not available: {e}")
    from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

    desc = SNAPBispectrum(species=["Cu", "Ni"], twojmax=2, rcutfac=4.2, radelem=[0.5, 0.44],
                          wj=[1.0, 0.7], bzeroflag=True)
    m = HybridPotential(descriptor=desc, regressor=LinearRegressor(alpha=1e-8),
                        baseline=ZBL(r_inner=1.5, r_cut=2.4)).fit(alloy(6, 0))
    types = ["Ni", "Cu"]
    paths = write_snap(m, tmp_path / "cuni", species=types, absolute_paths=True)
    at = alloy(1, 9, fracs=[0.375])[0] * (2, 1, 1)
    at.set_cell(cellpar_to_cell(at.cell.cellpar()), scale_atoms=True)  # LAMMPS's triclinic form
    at.rattle(0.15, seed=3)
    assert abs(at.cell.array[1, 0]) > 0.05   # really non-orthogonal
    data = tmp_path / "conf.data"
    ase.io.write(data, at, format="lammps-data", atom_style="atomic", specorder=types,
                 masses=False)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(
            ["units metal", "atom_style atomic", "boundary p p p",
             "atom_modify map array sort 0 0.0", f"read_data {data}"]
            + [f"mass {k + 1} {atomic_masses[atomic_numbers[s]]}" for k, s in enumerate(types)]
            + [f"include {paths['mod']}", "compute pv all pressure NULL virial", "run 0"])
        e = lmp.get_thermo("pe")
        f = np.array(lmp.gather_atoms("f", 1, 3)).reshape(len(at), 3)
        p = np.array(lmp.numpy.extract_compute("pv", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR))[:6]
    finally:
        lmp.close()
    stress = -p[[0, 1, 2, 5, 4, 3]] / 1.6021765e6    # bar -> eV/Å³ (LAMMPS's nktv2p), ASE sign
    at.calc = m.calculator()
    assert abs(e - at.get_potential_energy()) < 1e-9
    np.testing.assert_allclose(f, at.get_forces(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(stress, at.get_stress(), rtol=0, atol=1e-9)
