"""SNAPBispectrum LAMMPS flags of session 11: inner switching (``switchinnerflag`` with
per-element ``sinner`` / ``dinner``) and ``bnormflag`` (``chemflag 1`` stays refused).

Values, Jacobian and adjoint against finite differences across the inner switching region,
the lane kernels against the scalar LAMMPS-literal ones, file round trips, and LIVE LAMMPS
(``compute sna/atom``; ``pair_style snap`` energy, forces and virial) on a rattled periodic
non-orthogonal cell with pairs inside ``sinner + dinner`` (skipped without LAMMPS).
"""

import numpy as np
import pytest
from ase import Atoms

from hybridpot import HybridPotential, InvalidParameterError, ModelFormatError
from hybridpot.descriptors import SNAPBispectrum, descriptor_from_dict
from hybridpot.descriptors import _snap_kernels as K
from hybridpot.descriptors._snap import read_snapparam
from hybridpot.io.lammps import import_lammps, read_snap, write_snap
from hybridpot.regression import LinearRegressor

from conftest import skewed_two_element_cell
from snap_reference_kernels import chem_backward, chem_reference

SPECIES = ["Cu", "Ni"]
# pair centre s_ij = 2.25 .. 2.3 Å, half-width 0.3 .. 0.35 Å: nearest neighbours (2.2-2.7 Å
# in the rattled cells) sit inside the switching region, some below s - d
INNER = dict(switchinnerflag=True, sinner=[2.3, 2.2], dinner=[0.35, 0.25])


def _cell(seed=3, rattle=0.15, reps=(1, 1, 1)):
    return skewed_two_element_cell(seed=seed, rattle=rattle) * reps


def _pair_distances(at, r_cut):
    from hybridpot.neighbors import neighbor_list
    return neighbor_list(at, r_cut).d


def _f_inner_numpy(r, s, d):
    """LAMMPS compute_sfac_inner written out (0 / half-sine / 1) and its derivative."""
    x = np.clip((r - s) / d, -1.0, 1.0)
    f = 0.5 * (1.0 - np.cos(np.pi / 2 + np.pi / 2 * x))
    df = np.where(np.abs(r - s) < d, 0.5 * np.sin(np.pi / 2 + np.pi / 2 * x) * np.pi / (2 * d),
                  0.0)
    return f, df


# -- the switching function ------------------------------------------------------------------------
def test_sfac_with_inner_switch_matches_closed_form_and_finite_differences():
    r = np.linspace(0.5, 5.5, 2001)
    rcut, rmin0, s, d = 5.0, 0.0, 2.2, 0.4
    sin_p, din_p = np.array([s]), np.array([d])
    got = np.array([K._sfac(x, rcut, rmin0, True, 0, sin_p, din_p) for x in r])
    outer = np.where(r > rcut, 0.0, 0.5 * (np.cos(np.pi * r / rcut) + 1.0))
    douter = np.where(r > rcut, 0.0, -0.5 * np.sin(np.pi * r / rcut) * np.pi / rcut)
    fi, dfi = _f_inner_numpy(r, s, d)
    np.testing.assert_allclose(got[:, 0], outer * fi, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got[:, 1], douter * fi + outer * dfi, rtol=1e-12, atol=1e-14)
    assert np.all(got[r <= s - d, 0] == 0.0) and np.all(got[r <= s - d, 1] == 0.0)
    # central differences inside the switching region, and continuity at both ends
    h = 1e-6
    for x in (s - d + 1e-3, s - 0.1, s, s + 0.2, s + d - 1e-3):
        fp = K._sfac(x + h, rcut, rmin0, True, 0, sin_p, din_p)[0]
        fm = K._sfac(x - h, rcut, rmin0, True, 0, sin_p, din_p)[0]
        assert K._sfac(x, rcut, rmin0, True, 0, sin_p, din_p)[1] == \
            pytest.approx((fp - fm) / (2 * h), rel=1e-7, abs=1e-9)
    for edge in (s - d, s + d):
        lo = K._sfac(edge - 1e-9, rcut, rmin0, True, 0, sin_p, din_p)
        hi = K._sfac(edge + 1e-9, rcut, rmin0, True, 0, sin_p, din_p)
        assert abs(lo[0] - hi[0]) < 1e-8 and abs(lo[1] - hi[1]) < 1e-6
    # no inner switch: the outer function only
    off = np.array([K._sfac(x, rcut, rmin0, True, 0, np.zeros(0), np.zeros(0)) for x in r])
    np.testing.assert_allclose(off[:, 0], outer, rtol=1e-13, atol=1e-15)


def test_pair_inside_inner_radius_does_not_count():
    """A dimer closer than s - d has the isolated-atom bispectrum; features move continuously
    from it across the switching region."""
    d = SNAPBispectrum(species=["Cu"], twojmax=4, rcutfac=2.4, bzeroflag=True,
                       switchinnerflag=True, sinner=2.0, dinner=0.3)

    def dimer(r):
        return Atoms("Cu2", positions=[[0, 0, 0], [0.3 * r, 0.4 * r, np.sqrt(0.75) * r]])

    iso = d.compute(Atoms("Cu"))
    assert np.abs(iso).max() < 1e-14   # bzeroflag: B - B_isolated
    for r in (1.0, 1.5, 1.7 - 1e-9):
        np.testing.assert_array_equal(d.compute(dimer(r)), np.repeat(iso, 2, axis=0))
    assert np.abs(d.compute(dimer(1.75))).max() > 0
    assert np.abs(d.compute(dimer(1.7 + 1e-7))).max() < 1e-9
    # without the inner switch the same dimer is far from the isolated atom
    plain = SNAPBispectrum(species=["Cu"], twojmax=4, rcutfac=2.4, bzeroflag=True)
    assert np.abs(plain.compute(dimer(1.5))).max() > 0.1


# -- derivatives -----------------------------------------------------------------------------------
def _fd_check(desc, atoms, rng, h=1e-5):
    X, dX = desc.compute(atoms, gradients=True)
    dense = dX.dense()
    for k in range(len(atoms)):
        for a in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            fd = (desc.compute(p) - desc.compute(m)) / (2 * h)
            scale = max(np.abs(fd).max(), 1.0)
            np.testing.assert_allclose(dense[:, :, k, a], fd, atol=2e-6 * scale, rtol=1e-5)
    # strain
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            fd = (desc.compute(_strained(atoms, e)) - desc.compute(_strained(atoms, -e))) / (2 * h)
            scale = max(np.abs(fd).max(), 1.0)
            np.testing.assert_allclose(dX.strain[:, a, b], fd, atol=2e-6 * scale, rtol=1e-5)
    # adjoint against the Jacobian and against finite differences of w . X
    w = rng.normal(size=X.shape)
    dE_dr, dE_deps = desc.backward(atoms, w)
    ref_r, ref_eps = dX.vjp(w)
    np.testing.assert_allclose(dE_dr, ref_r, rtol=1e-9, atol=1e-10 * np.abs(ref_r).max())
    np.testing.assert_allclose(dE_deps, ref_eps, rtol=1e-9, atol=1e-10 * np.abs(ref_eps).max())
    for k in range(len(atoms)):
        for a in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            fd = (np.sum(w * desc.compute(p)) - np.sum(w * desc.compute(m))) / (2 * h)
            assert dE_dr[k, a] == pytest.approx(fd, rel=1e-5, abs=1e-6 * np.abs(dE_dr).max())
    return X


def _strained(atoms, eps):
    at = atoms.copy()
    F = np.eye(3) + eps
    at.set_cell(atoms.cell.array @ F.T, scale_atoms=False)
    at.positions = atoms.positions @ F.T
    return at


@pytest.mark.parametrize("kw", [
    dict(),
    dict(quadraticflag=True, bzeroflag=True, rmin0=0.2),
    dict(radelem=[0.5, 0.43], wj=[1.0, 0.7], switchflag=False),
], ids=["inner", "inner-quadratic-rmin0", "inner-radelem-noswitch"])
def test_inner_switch_jacobian_strain_adjoint_finite_differences(kw, rng):
    desc = SNAPBispectrum(species=SPECIES, twojmax=3, rcutfac=3.0, **INNER, **kw)
    at = _cell(seed=5, rattle=0.15)
    d = _pair_distances(at, desc.r_cut)
    # pairs on both sides of and inside the switching region
    assert np.sum((d > 1.95) & (d < 2.6)) >= 4 and np.sum(d > 2.65) > 0
    X = _fd_check(desc, at, rng)
    plain = SNAPBispectrum(species=SPECIES, twojmax=3, rcutfac=3.0, **kw).compute(at)
    assert np.abs(X - plain).max() > 1e-3   # the inner switch changes the features


def test_lane_kernels_equal_scalar_kernels_with_inner_switch(rng):
    """Production lane kernels (values, adjoint, Jacobian) against the scalar LAMMPS-literal
    kernels, with pairs inside, below and above the inner switching region."""
    from hybridpot._validation import species_indices
    from hybridpot.neighbors import neighbor_list

    at = _cell(seed=4, rattle=0.15, reps=(3, 3, 2))
    del at[3]
    at.pbc = (True, True, False)
    at.center(vacuum=3.0, axis=2)
    d = SNAPBispectrum(species=SPECIES, twojmax=6, rcutfac=3.4, radelem=[0.5, 0.42],
                       wj=[1.0, 0.8], bzeroflag=True, **INNER)
    d._validate()
    nl = neighbor_list(at, d.r_cut)
    args = d._pair_arrays(nl, species_indices(at, d._species))
    assert args[-2].shape == (nl.n_pairs,)
    s_p, d_p = args[-2], args[-1]
    assert np.any(nl.d < s_p - d_p) and np.any(np.abs(nl.d - s_p) < d_p)
    assert not np.any(args[3] & (nl.d <= s_p - d_p))   # switched-off pairs are skipped
    t = d._tables
    cv = (d._rfac0, d._rmin0, d._switch, d._wself, d._bzero_arr, d._J, t["idxu_block"],
          t["rootpq"], t["cglist"], t["idxcg_block"], t["idxz"], t["idxz_block"], t["idxb"])
    B, dB = K._bispectrum_grad(*args, *cv)
    np.testing.assert_allclose(K._bispectrum_lanes(*args, *cv), B, rtol=1e-12,
                               atol=1e-12 * np.abs(B).max())
    Bg2, dB2 = K._bispectrum_grad_lanes(*args, *cv)
    np.testing.assert_allclose(Bg2, B, rtol=1e-12, atol=1e-12 * np.abs(B).max())
    np.testing.assert_allclose(dB2, dB, rtol=1e-11, atol=1e-12 * np.abs(dB).max())
    beta = rng.normal(size=B.shape)
    cb = (d._rfac0, d._rmin0, d._switch, d._wself, d._J, t["idxu_block"], t["rootpq"],
          t["cglist"], t["idxcg_block"], t["idxz"], t["z_jjb"], t["z_fac"], beta)
    g = K._backward(*args, *cb)
    np.testing.assert_allclose(K._backward_lanes(*args, *cb), g, rtol=1e-11,
                               atol=1e-12 * np.abs(g).max())
    # adjoint = Jacobian contracted with beta of the centre atom
    np.testing.assert_allclose(g, np.einsum("pak,pk->pa", dB, beta[nl.i]), rtol=1e-9,
                               atol=1e-10 * np.abs(g).max())


# -- parameters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    (dict(switchinnerflag=True), "'sinner' parameter of SNAPBispectrum must be given"),
    (dict(switchinnerflag=True, sinner=2.0), "'dinner' parameter of SNAPBispectrum must be "
                                             "given"),
    (dict(sinner=2.0), "'sinner' parameter of SNAPBispectrum only appl"),
    (dict(sinner=2.0, dinner=0.2), "'sinner' and 'dinner' parameters of SNAPBispectrum only"),
    (dict(switchinnerflag=True, sinner=[2.0], dinner=0.2),
     "'sinner' parameter of SNAPBispectrum must be None or a sequence of 2"),
    (dict(switchinnerflag=True, sinner=[2.0, -1.0], dinner=0.2), "'sinner\\[1\\]'"),
    (dict(switchinnerflag=True, sinner=2.0, dinner=[0.2, 0.0]),
     "'dinner\\[1\\]' parameter of SNAPBispectrum must be a float in \\(0, inf\\)"),
    (dict(switchinnerflag=True, sinner=2.0, dinner=float("inf")), "'dinner'"),
    (dict(switchinnerflag="yes", sinner=2.0, dinner=0.2), "'switchinnerflag' parameter of "
                                                          "SNAPBispectrum must be a bool"),
])
def test_bad_inner_switch_parameters_rejected(kw, match):
    d = SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.0, **kw)
    with pytest.raises(InvalidParameterError, match=match):
        d.compute(skewed_two_element_cell())


def test_inner_switch_serialisation_and_model_file(tmp_path, rng):
    desc = SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.4, **INNER)
    at = _cell(seed=2)
    dd = desc.to_dict()
    assert dd["params"]["switchinnerflag"] is True
    assert dd["params"]["sinner"] == [2.3, 2.2] and dd["params"]["dinner"] == [0.35, 0.25]
    back = descriptor_from_dict(dd)
    np.testing.assert_array_equal(back.compute(at), desc.compute(at))
    reg = LinearRegressor.from_coef(rng.normal(size=(2, 1 + desc.n_features)))
    model = HybridPotential.from_fitted(desc, reg)
    model.save(tmp_path / "m.hpot")
    m2 = HybridPotential.load(tmp_path / "m.hpot")
    assert m2.descriptor.get_params()["sinner"] == [2.3, 2.2]
    np.testing.assert_array_equal(m2.predict_forces([at])[0], model.predict_forces([at])[0])


# -- LAMMPS files ----------------------------------------------------------------------------------
def test_read_snapparam_inner_switch(tmp_path):
    p = tmp_path / "a.snapparam"
    p.write_text("rcutfac 1.0\ntwojmax 4\nswitchinnerflag 1\nsinner 2.3 2.2 # Cu Ni\n"
                 "dinner 0.35 0.25\n")
    got = read_snapparam(p)
    assert got["switchinnerflag"] == 1
    assert got["sinner"] == [2.3, 2.2] and got["dinner"] == [0.35, 0.25]
    c = tmp_path / "a.snapcoeff"
    c.write_text("2 15\nNi 0.42 0.8\n" + "0.1\n" * 15 + "Cu 0.5 1.0\n" + "0.2\n" * 15)
    d = SNAPBispectrum.from_lammps(p, species=["Cu", "Ni"], snapcoeff=c)
    assert (d.switchinnerflag, d.sinner, d.dinner) == (True, [2.3, 2.2], [0.35, 0.25])
    model = read_snap(c, p, species=["Cu", "Ni"])
    assert model.descriptor.sinner == [2.3, 2.2] and model.descriptor.radelem == [0.5, 0.42]
    with pytest.raises(ModelFormatError, match="'sinner' has 2 value\\(s\\); it needs one per "
                                               "element of the pair_coeff element list"):
        SNAPBispectrum.from_lammps(p, species=["Cu"])
    with pytest.raises(ModelFormatError, match="'sinner' has 2 value"):
        read_snap(c, p, species=["Ni"])


@pytest.mark.parametrize("text, match", [
    ("switchinnerflag 1\nsinner 2.0\n", "switchinnerflag 1 needs both 'sinner' and 'dinner'"),
    ("switchinnerflag 1\n", "needs both .* the file has neither"),
    ("sinner 2.0\ndinner 0.2\n", "'sinner' and 'dinner' given without switchinnerflag 1"),
    ("switchinnerflag 1\nsinner 2.0 x\ndinner 0.2\n", "'sinner' needs one number per element"),
    ("switchinnerflag 1\nsinner\ndinner 0.2\n", "'sinner' needs one number per element"),
])
def test_snapparam_inner_switch_errors(tmp_path, text, match):
    p = tmp_path / "bad.snapparam"
    p.write_text("rcutfac 1.0\ntwojmax 4\n" + text)
    with pytest.raises(ModelFormatError, match=match):
        read_snapparam(p)


def test_write_read_snap_round_trip_inner_switch(tmp_path, rng):
    desc = SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.4, radelem=[0.5, 0.45],
                          **INNER)
    reg = LinearRegressor.from_coef(rng.normal(size=(2, 1 + desc.n_features)))
    model = HybridPotential.from_fitted(desc, reg)
    paths = write_snap(model, tmp_path / "m", species=["Ni", "Cu", "Ni"])
    text = paths["snapparam"].read_text()
    # one value per pair_coeff element, in the order of the types' elements (Ni, Cu)
    assert "switchinnerflag 1\nsinner 2.2 2.3\ndinner 0.25 0.35\n" in text
    back = read_snap(paths["snapcoeff"], paths["snapparam"], species=["Ni", "Cu"])
    assert back.descriptor.sinner == [2.2, 2.3] and back.descriptor.dinner == [0.25, 0.35]
    at = _cell(seed=6)
    np.testing.assert_allclose(back.predict([at]), model.predict([at]), rtol=1e-12)
    np.testing.assert_allclose(back.predict_forces([at])[0], model.predict_forces([at])[0],
                               rtol=1e-10, atol=1e-12)


# -- live LAMMPS -----------------------------------------------------------------------------------
def _lammps_or_skip():
    try:
        return import_lammps()
    except ImportError as e:
        pytest.skip(f"LAMMPS not available: {e}")


def _lammps_cell():
    """Rattled periodic triclinic cell already in LAMMPS's lower-triangular form (ASE writes
    it unrotated), 32 atoms, nearest pairs inside the inner switching region."""
    at = _cell(seed=11, rattle=0.15, reps=(2, 2, 2))
    cell = at.cell.array
    assert np.allclose(cell, np.tril(cell)) and abs(cell[1, 0]) > 0.5
    return at


def _lammps_run(lammps, at, commands, tmp_path, computes=()):
    import ase.io
    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR

    data = tmp_path / "conf.data"
    ase.io.write(data, at, format="lammps-data", atom_style="atomic", specorder=SPECIES,
                 masses=False)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(["units metal", "atom_style atomic", "boundary p p p",
                           "atom_modify map array sort 0 0.0", f"read_data {data}",
                           "mass * 60.0", *commands,
                           "compute vir all pressure NULL virial", "thermo_style custom pe",
                           "run 0"])
        x = np.array(lmp.gather_atoms("x", 1, 3)).reshape(len(at), 3)
        # LAMMPS wraps atoms into the box but does not rotate the (lower-triangular) cell
        shift = np.linalg.solve(at.cell.array.T, (x - at.positions).T).T
        np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)
        out = {"pe": lmp.get_thermo("pe"),
               "f": np.array(lmp.gather_atoms("f", 1, 3)).reshape(len(at), 3),
               "p": np.array(lmp.numpy.extract_compute("vir", LMP_STYLE_GLOBAL,
                                                       LMP_TYPE_VECTOR)),
               "nktv2p": lmp.extract_global("nktv2p")}
        for name in computes:
            out[name] = np.array(lmp.numpy.extract_compute(name, LMP_STYLE_ATOM,
                                                           LMP_TYPE_ARRAY))
    finally:
        lmp.close()
    return out


def test_live_lammps_compute_sna_atom_inner_switch(tmp_path):
    lammps = _lammps_or_skip()
    at = _lammps_cell()
    desc = SNAPBispectrum(species=SPECIES, twojmax=6, rcutfac=4.7, rfac0=0.97, radelem=[0.5, 0.44],
                          wj=[1.0, 0.7], bzeroflag=True, **INNER)
    s = [2.3, 2.2]
    d_ = [0.35, 0.25]
    sd = _pair_distances(at, desc.r_cut)
    assert np.sum(np.abs(sd - 2.25) < 0.3) >= 10 and np.any(sd < 1.95)
    out = _lammps_run(lammps, at, [
        "pair_style zero 5.0", "pair_coeff * *",
        f"compute b all sna/atom 4.7 0.97 6 0.5 0.44 1.0 0.7 bzeroflag 1 switchinnerflag 1 "
        f"sinner {s[0]} {s[1]} dinner {d_[0]} {d_[1]}"], tmp_path, computes=("b",))
    X = desc.compute(at)
    assert out["b"].shape == X.shape
    np.testing.assert_allclose(X, out["b"], rtol=1e-10, atol=1e-11 * np.abs(X).max())
    plain = SNAPBispectrum(species=SPECIES, twojmax=6, rcutfac=4.7, rfac0=0.97,
                           radelem=[0.5, 0.44], wj=[1.0, 0.7], bzeroflag=True).compute(at)
    assert np.abs(plain - out["b"]).max() > 1e-2 * np.abs(X).max()


@pytest.mark.parametrize("quadratic", [False, True], ids=["linear", "quadratic"])
def test_live_lammps_pair_snap_inner_switch_energy_forces_virial(tmp_path, rng, quadratic):
    """write_snap of a model with the inner switch and a ZBL baseline, run by LAMMPS
    ``pair_style hybrid/overlay zbl ... snap``: energy, forces and virial to round-off."""
    from hybridpot.baselines import ZBL

    lammps = _lammps_or_skip()
    at = _lammps_cell()
    desc = SNAPBispectrum(species=SPECIES, twojmax=4, rcutfac=4.7, radelem=[0.5, 0.44],
                          wj=[1.0, 0.7], **INNER)
    K_ = desc.n_features
    P = 1 + K_ + (K_ * (K_ + 1) // 2 if quadratic else 0)
    coef = rng.normal(size=(2, P)) * np.r_[1.0, np.full(P - 1, 0.05)]
    reg = LinearRegressor.from_coef(coef, quadratic=quadratic)
    model = HybridPotential.from_fitted(desc, reg, baseline=ZBL(r_inner=1.5, r_cut=2.2))
    paths = write_snap(model, tmp_path / "m", absolute_paths=True)
    out = _lammps_run(lammps, at, [f"include {paths['mod']}"], tmp_path)
    e = model.predict([at])[0]
    f = model.predict_forces([at])[0]
    stress = model.predict_stress([at])[0]           # ASE Voigt xx yy zz yz xz xy, eV/Å^3
    assert abs(out["pe"] - e) < 1e-8 * max(1.0, abs(e))
    np.testing.assert_allclose(out["f"], f, rtol=0, atol=1e-8 * np.abs(f).max())
    assert np.abs(f).max() > 0.1
    # LAMMPS pressure vector: pxx pyy pzz pxy pxz pyz (bar) = virial / V * nktv2p
    p = out["p"] / out["nktv2p"]
    lmp_stress = -np.array([p[0], p[1], p[2], p[5], p[4], p[3]])
    np.testing.assert_allclose(lmp_stress, stress, rtol=0, atol=1e-9 * np.abs(stress).max())


# -- bnormflag -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bzero", [False, True], ids=["plain", "bzero"])
def test_bnormflag_is_b_over_j_plus_one(bzero):
    """LAMMPS bnormflag: B_{j1 j2 j} / (j + 1); with bzeroflag the isolated-atom value
    subtracted is w_self^3 = 1 (LAMMPS's bzero[j] = www), i.e. (B - (j + 1)) / (j + 1)."""
    at = _cell(seed=8)
    kw = dict(species=SPECIES, twojmax=5, rcutfac=2.6, bzeroflag=bzero)
    d = SNAPBispectrum(bnormflag=True, **kw)
    plain = SNAPBispectrum(**kw).compute(at)
    d._validate()
    j = d._tables["idxb"][:, 2]
    np.testing.assert_allclose(d.compute(at), plain / (j + 1.0), rtol=1e-14, atol=1e-14)
    iso = d.compute(Atoms("Cu"))
    np.testing.assert_allclose(iso[0], np.zeros(len(j)) if bzero else np.ones(len(j)),
                               atol=1e-14)


@pytest.mark.parametrize("kw", [
    dict(bnormflag=True),
    dict(bnormflag=True, quadraticflag=True, bzeroflag=True, **INNER),
], ids=["bnorm", "bnorm-quadratic-inner"])
def test_bnormflag_jacobian_strain_adjoint_finite_differences(kw, rng):
    desc = SNAPBispectrum(species=SPECIES, twojmax=3, rcutfac=3.0, **kw)
    _fd_check(desc, _cell(seed=5, rattle=0.15), rng)


def test_bnormflag_files_round_trip(tmp_path, rng):
    p = tmp_path / "b.snapparam"
    p.write_text("rcutfac 2.4\ntwojmax 2\nbnormflag 1\nbzeroflag 0\n")
    assert read_snapparam(p)["bnormflag"] == 1
    d = SNAPBispectrum.from_lammps(p, species=["Cu"])
    assert d.bnormflag is True and d.to_dict()["params"]["bnormflag"] is True
    desc = SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.4, bnormflag=True)
    model = HybridPotential.from_fitted(
        desc, LinearRegressor.from_coef(rng.normal(size=(2, 1 + desc.n_features))))
    paths = write_snap(model, tmp_path / "m")
    assert "bnormflag 1\n" in paths["snapparam"].read_text()
    back = read_snap(paths["snapcoeff"], paths["snapparam"])
    assert back.descriptor.bnormflag is True
    at = _cell(seed=6)
    np.testing.assert_allclose(back.predict([at]), model.predict([at]), rtol=1e-12)
    # the default export does not write the keyword (files as before)
    desc0 = SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.4)
    m0 = HybridPotential.from_fitted(
        desc0, LinearRegressor.from_coef(rng.normal(size=(2, 1 + desc0.n_features))))
    assert "bnormflag" not in write_snap(m0, tmp_path / "m0")["snapparam"].read_text()


def test_live_lammps_compute_sna_atom_bnormflag(tmp_path):
    lammps = _lammps_or_skip()
    at = _lammps_cell()
    desc = SNAPBispectrum(species=SPECIES, twojmax=5, rcutfac=4.7, radelem=[0.5, 0.44],
                          wj=[1.0, 0.7], bzeroflag=True, quadraticflag=True, bnormflag=True,
                          **INNER)
    out = _lammps_run(lammps, at, [
        "pair_style zero 5.0", "pair_coeff * *",
        "compute b all sna/atom 4.7 0.99363 5 0.5 0.44 1.0 0.7 bzeroflag 1 quadraticflag 1 "
        "bnormflag 1 switchinnerflag 1 sinner 2.3 2.2 dinner 0.35 0.25"], tmp_path,
        computes=("b",))
    X = desc.compute(at)
    assert out["b"].shape == X.shape
    np.testing.assert_allclose(X, out["b"], rtol=1e-10, atol=1e-11 * np.abs(X).max())


def test_live_lammps_pair_snap_bnormflag_energy_forces_virial(tmp_path, rng):
    lammps = _lammps_or_skip()
    at = _lammps_cell()
    desc = SNAPBispectrum(species=SPECIES, twojmax=4, rcutfac=4.7, radelem=[0.5, 0.44],
                          wj=[1.0, 0.7], bzeroflag=True, bnormflag=True)
    P = 1 + desc.n_features
    coef = rng.normal(size=(2, P)) * np.r_[1.0, np.full(P - 1, 0.2)]
    model = HybridPotential.from_fitted(desc, LinearRegressor.from_coef(coef))
    paths = write_snap(model, tmp_path / "m", absolute_paths=True)
    out = _lammps_run(lammps, at, [f"include {paths['mod']}"], tmp_path)
    e = model.predict([at])[0]
    f = model.predict_forces([at])[0]
    stress = model.predict_stress([at])[0]
    assert abs(out["pe"] - e) < 1e-8 * max(1.0, abs(e))
    np.testing.assert_allclose(out["f"], f, rtol=0, atol=1e-8 * np.abs(f).max())
    p = out["p"] / out["nktv2p"]
    lmp_stress = -np.array([p[0], p[1], p[2], p[5], p[4], p[3]])
    np.testing.assert_allclose(lmp_stress, stress, rtol=0, atol=1e-9 * np.abs(stress).max())


# -- chemflag (explicit multi-element) -------------------------------------------------------------
def test_chemflag_single_element_equals_plain_and_layout():
    """One element: the chemflag bispectrum is the plain one (N^3 = 1 block); two elements:
    N^3 K columns, and a pure-Cu cell has only the (Cu, Cu, Cu) block non-zero besides the
    isolated-atom shift."""
    at = _cell(seed=7)
    at.symbols = "Cu4"
    kw = dict(twojmax=4, rcutfac=2.6, bzeroflag=True, **{k: v[:1] if isinstance(v, list) else v
                                                           for k, v in INNER.items()})
    one = SNAPBispectrum(species=["Cu"], chemflag=True, **kw)
    np.testing.assert_allclose(one.compute(at), SNAPBispectrum(species=["Cu"], **kw).compute(at),
                               rtol=1e-12, atol=1e-12)
    kw2 = dict(kw, sinner=INNER["sinner"], dinner=INNER["dinner"])
    two = SNAPBispectrum(species=SPECIES, chemflag=True, **kw2)
    K = SNAPBispectrum(species=SPECIES, **kw2).n_features
    assert two.n_features == 8 * K and two.n_bispectrum == 8 * K
    X = two.compute(at)
    np.testing.assert_allclose(X[:, :K], one.compute(at), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(X[:, K:], 0.0)


@pytest.mark.parametrize("kw", [
    dict(chemflag=True),
    dict(chemflag=True, bnormflag=True, bzeroflag=True, wselfallflag=True, quadraticflag=True,
         **INNER),
    dict(chemflag=True, radelem=[0.5, 0.43], wj=[1.0, 0.7], rmin0=0.2, bzeroflag=True),
], ids=["chem", "chem-bnorm-wselfall-quadratic-inner", "chem-radelem-rmin0"])
def test_chemflag_jacobian_strain_adjoint_finite_differences(kw, rng):
    desc = SNAPBispectrum(species=SPECIES, twojmax=3, rcutfac=3.0, **kw)
    _fd_check(desc, _cell(seed=5, rattle=0.15), rng)


def test_chemflag_files_round_trip(tmp_path, rng):
    desc = SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.4, chemflag=True,
                          bnormflag=True)
    model = HybridPotential.from_fitted(
        desc, LinearRegressor.from_coef(rng.normal(size=(2, 1 + desc.n_features))))
    paths = write_snap(model, tmp_path / "m", species=["Cu", "Ni", "Cu"])
    assert "chemflag 1\n" in paths["snapparam"].read_text()
    back = read_snap(paths["snapcoeff"], paths["snapparam"])
    assert back.descriptor.chemflag is True
    at = _cell(seed=6)
    np.testing.assert_allclose(back.predict([at]), model.predict([at]), rtol=1e-12)
    # LAMMPS numbers the element blocks in pair_coeff order: another order is refused
    with pytest.raises(InvalidParameterError, match="chemflag SNAPBispectrum's columns follow "
                                                    "its species \\['Cu', 'Ni'\\]"):
        write_snap(model, tmp_path / "x", species=["Ni", "Cu"])


@pytest.mark.parametrize("kw, lmp", [
    (dict(), "bzeroflag 0"),
    (dict(bnormflag=True, bzeroflag=True, wselfallflag=True), "bnormflag 1 bzeroflag 1 "
                                                                "wselfallflag 1"),
    (dict(bnormflag=True, bzeroflag=True, quadraticflag=True, **INNER),
     "bnormflag 1 bzeroflag 1 quadraticflag 1 switchinnerflag 1 sinner 2.3 2.2 "
     "dinner 0.35 0.25"),
], ids=["chem", "chem-bnorm-wselfall", "chem-bnorm-quadratic-inner"])
def test_live_lammps_compute_sna_atom_chemflag(tmp_path, kw, lmp):
    lammps = _lammps_or_skip()
    at = _lammps_cell()
    desc = SNAPBispectrum(species=SPECIES, twojmax=3, rcutfac=4.7, radelem=[0.5, 0.44],
                          wj=[1.0, 0.7], chemflag=True, **kw)
    out = _lammps_run(lammps, at, [
        "pair_style zero 5.0", "pair_coeff * *",
        f"compute b all sna/atom 4.7 0.99363 3 0.5 0.44 1.0 0.7 chem 2 0 1 {lmp}"], tmp_path,
        computes=("b",))
    X = desc.compute(at)
    assert out["b"].shape == X.shape
    np.testing.assert_allclose(X, out["b"], rtol=1e-10, atol=1e-11 * np.abs(X).max())


def _chem_model(rng, quadratic):
    desc = SNAPBispectrum(species=SPECIES, twojmax=3, rcutfac=4.7, radelem=[0.5, 0.44],
                          wj=[1.0, 0.7], chemflag=True, bnormflag=True, bzeroflag=True,
                          **INNER)
    K_ = desc.n_features
    P = 1 + K_ + (K_ * (K_ + 1) // 2 if quadratic else 0)
    coef = rng.normal(size=(2, P)) * np.r_[1.0, np.full(P - 1, 0.05)]
    return HybridPotential.from_fitted(desc, LinearRegressor.from_coef(coef,
                                                                       quadratic=quadratic))


def test_live_lammps_pair_snap_chemflag_energy_and_its_gradient(tmp_path, rng):
    """pair_style snap with chemflag 1 (linear and quadratic, bnorm, bzero, inner switch):
    LAMMPS's energy equals ours to round-off, and our forces are the central differences of
    LAMMPS's own energy."""
    lammps = _lammps_or_skip()
    at = _lammps_cell()
    for quadratic in (False, True):
        model = _chem_model(rng, quadratic)
        paths = write_snap(model, tmp_path / f"m{int(quadratic)}", absolute_paths=True)
        mod = [f"include {paths['mod']}"]
        out = _lammps_run(lammps, at, mod, tmp_path)
        e = model.predict([at])[0]
        f = model.predict_forces([at])[0]
        assert abs(out["pe"] - e) < 1e-9 * max(1.0, abs(e))
        h = 1e-5
        for k, a in ((0, 0), (5, 1), (17, 2)):
            ep = []
            for sgn in (1, -1):
                moved = at.copy()
                moved.positions[k, a] += sgn * h
                ep.append(_lammps_run(lammps, moved, mod, tmp_path)["pe"])
            assert f[k, a] == pytest.approx(-(ep[0] - ep[1]) / (2 * h), rel=1e-6,
                                            abs=1e-6 * np.abs(f).max())


def test_chem_lammps_coefficients_keep_energies_and_forces(rng):
    """Averaging the coefficients of identical chemflag columns (what write_snap exports)
    changes no energy or force; it is a projection; the identical columns are identical."""
    from hybridpot.descriptors._snap import chem_lammps_coefficients

    at = _cell(seed=12, rattle=0.15, reps=(2, 1, 1))
    for quadratic in (False, True):
        model = _chem_model(rng, quadratic)
        c = model.regressor_.coef_
        c2 = chem_lammps_coefficients(model.descriptor, c, quadratic)
        assert np.abs(c2 - c).max() > 1e-3
        np.testing.assert_allclose(chem_lammps_coefficients(model.descriptor, c2, quadratic),
                                   c2, rtol=1e-13, atol=1e-15)
        m2 = HybridPotential.from_fitted(model.descriptor,
                                         LinearRegressor.from_coef(c2, quadratic=quadratic))
        e = model.predict([at])[0]
        assert m2.predict([at])[0] == pytest.approx(e, rel=1e-11, abs=1e-11)
        np.testing.assert_allclose(m2.predict_forces([at])[0], model.predict_forces([at])[0],
                                   rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("quadratic", [False, True], ids=["linear", "quadratic"])
def test_live_lammps_pair_snap_chemflag_forces_virial(tmp_path, rng, quadratic):
    """LAMMPS's chemflag force assumes equal coefficients on identical columns; write_snap
    exports them averaged, so LAMMPS's forces and virial equal ours to round-off for any
    coefficients (with the raw random coefficients they differ by O(1) eV/Å: LAMMPS's forces
    are then not the gradient of its energy)."""
    lammps = _lammps_or_skip()
    at = _lammps_cell()
    model = _chem_model(rng, quadratic)
    paths = write_snap(model, tmp_path / "m", absolute_paths=True)
    out = _lammps_run(lammps, at, [f"include {paths['mod']}"], tmp_path)
    e = model.predict([at])[0]
    f = model.predict_forces([at])[0]
    stress = model.predict_stress([at])[0]
    assert abs(out["pe"] - e) < 1e-9 * max(1.0, abs(e))
    np.testing.assert_allclose(out["f"], f, rtol=0, atol=1e-8 * np.abs(f).max())
    assert np.abs(f).max() > 0.1
    p = out["p"] / out["nktv2p"]
    lmp_stress = -np.array([p[0], p[1], p[2], p[5], p[4], p[3]])
    np.testing.assert_allclose(lmp_stress, stress, rtol=0, atol=1e-9 * np.abs(stress).max())


def test_chemflag_parameters_prior_and_config():
    from hybridpot.config import _per_element_values
    from hybridpot.regression import feature_degrees

    with pytest.raises(InvalidParameterError, match="'chemflag' parameter of SNAPBispectrum "
                                                    "must be a bool"):
        SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.0, chemflag=2).compute(
            skewed_two_element_cell())
    d = SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.0, chemflag=True)
    n, l = feature_degrees(d)
    plain_l = feature_degrees(SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=2.0))[1]
    assert n.shape == l.shape == (d.n_features, 3)
    np.testing.assert_array_equal(l, np.tile(plain_l, (8, 1)))
    # config files: sinner / dinner tables keyed by element, like radelem / wj
    body = _per_element_values({"sinner": {"Ni": 2.2, "Cu": 2.3}, "dinner": {"Cu": 0.35,
                                                                             "Ni": 0.25}},
                               "descriptor", ["Cu", "Ni"], False)
    assert body["sinner"] == [2.3, 2.2] and body["dinner"] == [0.35, 0.25]


def test_from_lammps_chemflag(tmp_path):
    p = tmp_path / "c.snapparam"
    p.write_text("rcutfac 2.4\ntwojmax 2\nchemflag 1\nbnormflag 1\nwselfallflag 1\n")
    d = SNAPBispectrum.from_lammps(p, species=SPECIES)
    assert d.chemflag and d.bnormflag and d.wselfallflag and d.n_features == 40


def test_chemflag_adjoint_through_y_equals_jacobian_contraction(rng):
    """The production chemflag adjoint (Y = dE/dU per element, exact sums over the permuted
    element triples) against the per-pair Jacobian contracted with beta, three elements."""
    from hybridpot._validation import species_indices
    from hybridpot.neighbors import neighbor_list

    at = _cell(seed=4, rattle=0.15, reps=(2, 2, 1))
    at.symbols[::3] = "Al"
    d = SNAPBispectrum(species=["Cu", "Ni", "Al"], twojmax=4, rcutfac=2.6, chemflag=True,
                       bzeroflag=True, wj=[1.0, 0.8, 0.6], **{k: v + [2.25] if isinstance(v, list)
                                                              else v for k, v in INNER.items()})
    d._validate()
    nl = neighbor_list(at, d.r_cut)
    sidx = species_indices(at, d._species)
    beta = rng.normal(size=(len(at), d.n_features))
    ref = chem_reference(d, nl, sidx, 2, beta)[2]
    got = d._backward(nl, sidx, beta)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-11 * np.abs(ref).max())
    B, dB, _ = chem_reference(d, nl, sidx, 1, np.zeros((0, 0)))
    np.testing.assert_allclose(ref, np.einsum("pak,pk->pa", dB, beta[nl.i]), rtol=1e-10,
                               atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("kw", [
    dict(twojmax=5, bzeroflag=True),
    dict(twojmax=4, wselfallflag=True, bzeroflag=True, bnormflag=True, wj=[1.0, 0.8, 0.6],
         radelem=[0.5, 0.45, 0.55], switchinnerflag=True, sinner=[2.3, 2.2, 2.25],
         dinner=[0.35, 0.25, 0.3]),
])
def test_chemflag_lane_kernels_equal_scalar_kernels(kw, rng):
    """The production chemflag lane kernels (values, Jacobian, adjoint) against the scalar
    one-atom-at-a-time kernels, three elements, more atoms than LANES (two blocks, a
    ragged last one), a slab (atoms with fewer neighbours) and one atom with no neighbour."""
    from hybridpot._validation import species_indices
    from hybridpot.neighbors import neighbor_list

    at = _cell(seed=4, rattle=0.15, reps=(5, 3, 2))
    del at[[3, 7]]
    at.pbc = (True, True, False)
    at.center(vacuum=3.0, axis=2)
    at.symbols[::5] = "Al"
    at += Atoms("Ni", positions=[at.positions[:, :].mean(axis=0) + [0.0, 0.0, 30.0]])
    at.cell[2, 2] += 60.0
    n_lanes = K._lane_count(len(at), K.LANES, 4)
    assert len(at) > K.LANES and len(at) % n_lanes != 0
    d = SNAPBispectrum(species=["Cu", "Ni", "Al"], rcutfac=3.4, chemflag=True, **kw)
    d._validate()
    nl = neighbor_list(at, d.r_cut)
    sidx = species_indices(at, d._species)
    counts = np.diff(nl.offsets)
    assert counts[-1] == 0 and counts.max() > counts[counts > 0].min()
    t = d._tables
    args = d._chem_args(nl, sidx)
    cv = (d._bzero_arr, d._J, t["idxu_block"], t["rootpq"], t["cglist"], t["idxcg_block"],
          t["idxz"], t["idxz_block"], t["idxb"])
    B, dB, _ = chem_reference(d, nl, sidx, 1, np.zeros((0, 0)))
    assert B.shape == (len(at), d.n_bispectrum) and np.abs(B).max() > 1.0
    np.testing.assert_allclose(K._chem_bispectrum_lanes(*args, *cv), B, rtol=1e-12,
                               atol=1e-12 * np.abs(B).max())
    B2, dB2 = K._chem_bispectrum_grad_lanes(*args, *cv)
    np.testing.assert_allclose(B2, B, rtol=1e-12, atol=1e-12 * np.abs(B).max())
    np.testing.assert_allclose(dB2, dB, rtol=1e-11, atol=1e-12 * np.abs(dB).max())
    beta = rng.normal(size=B.shape)
    beta[5] = 0.0   # an atom whose energy does not depend on anything
    cb = (d._J, t["idxu_block"], t["rootpq"], t["cglist"], t["idxcg_block"], t["idxz"],
          t["idxb_block"], beta)
    g = chem_backward(*args, *cb)
    np.testing.assert_allclose(K._chem_backward_lanes(*args, *cb), g, rtol=1e-11,
                               atol=1e-12 * np.abs(g).max())
    # the descriptor's public paths run the lane kernels
    X, dX = d._compute(nl, sidx, True)
    scale = d._bnorm_scale if d.bnormflag else 1.0
    np.testing.assert_allclose(X, B * scale, rtol=1e-12, atol=1e-12 * np.abs(B).max())
    np.testing.assert_allclose(d._backward(nl, sidx, beta / scale), g, rtol=1e-11,
                               atol=1e-12 * np.abs(g).max())
