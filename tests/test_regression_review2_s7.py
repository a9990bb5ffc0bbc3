"""Review 2 (session 7) of the regressors through HybridPotential."""

import warnings

import numpy as np
import pytest
from ase.build import bulk
from sklearn.exceptions import ConvergenceWarning

from hybridpot import HybridPotential, UnknownSpeciesError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import EnsembleRegressor, NeuralNetworkRegressor

from conftest import emt_label


def _cells(n, seed, al=True):
    """``n`` EMT-labelled rattled Cu8 (and, if ``al``, every other one Cu6Al2) cells."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
        if al and i % 2:
            a.symbols[[1, 5]] = "Al"
        a.positions += 0.05 * rng.standard_normal(a.positions.shape)
        out.append(emt_label(a, stress=False))
    return out


def _desc():
    return PowerSpectrum(species=["Cu", "Al"], r_cut=4.0, n_max=2, l_max=1)


@pytest.mark.parametrize("make", [
    lambda: NeuralNetworkRegressor(hidden_layer_sizes=(3,), max_iter=3, random_state=0),
    lambda: EnsembleRegressor(estimator=NeuralNetworkRegressor(hidden_layer_sizes=(3,),
                                                               max_iter=3), n_models=2,
                              random_state=0)])
def test_untrained_element_is_named(make, tmp_path):
    # a network trained on Cu only cannot predict Al; the message named 'species indices [1]'
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = HybridPotential(descriptor=_desc(), regressor=make()).fit(_cells(2, 0, al=False))
    mixed = _cells(2, 1)[1]
    msg = (r"The structure contains Al \(species index 1\), which had no atom in the training "
           r"data of this NeuralNetworkRegressor: that network was never trained, so only "
           r"\['Cu'\] can be predicted; fit on structures that contain Al\.")
    # the model refuses first (session 8: HybridPotential.trained_species_); the regressor's
    # own message is what a direct call gets
    model_msg = (r"The structure Al2Cu6 contains the element 'Al' \(first at atom 1\), which no "
                 r"training structure of this HybridPotential contained")
    X, z = _desc().compute(mixed), (mixed.numbers == 13).astype(np.int64)
    with pytest.raises(UnknownSpeciesError, match=model_msg):
        m.predict([mixed])
    with pytest.raises(UnknownSpeciesError, match=msg):
        m.regressor_.atomic_energy(X, z)
    m.save(tmp_path / "nn.hpot")
    loaded = HybridPotential.load(tmp_path / "nn.hpot")
    with pytest.raises(UnknownSpeciesError, match=model_msg):
        loaded.predict([mixed])
    with pytest.raises(UnknownSpeciesError, match=msg):
        loaded.regressor_.atomic_energy(X, z)
    np.testing.assert_allclose(loaded.predict(_cells(1, 2, al=False)),
                               m.predict(_cells(1, 2, al=False)), rtol=0, atol=1e-12)


def test_bayesian_linear_non_convergence_says_why():
    # one training structure: its single energy row is fitted exactly, the energy noise hits
    # its floor and the evidence iteration never settles; the warning said "increase max_iter"
    from hybridpot.regression import BayesianLinearRegressor

    one = _cells(1, 3)
    with pytest.warns(ConvergenceWarning,
                      match=r"the noise level of 'energy' \(1 row\) fell to its floor .* more "
                            r"iterations will not help\. Add labelled structures, or use "
                            r"noise_levels='shared'"):
        HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor(
            max_iter=50)).fit(one)
    # the advice works: one shared noise level converges on the same data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor(
            noise_levels="shared")).fit(one)
    assert m.regressor_.noise_["energy"] > 1e-6
