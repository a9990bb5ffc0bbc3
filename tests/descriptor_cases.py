"""The descriptors the contract suite (tests/test_descriptor_contract.py) runs on.

Each factory takes a list of species and returns a small, fast configuration of the descriptor.
Add every new descriptor here.
"""

import hybridpot.descriptors as D

DESCRIPTOR_CASES = {
    "PowerSpectrum": lambda species: D.PowerSpectrum(species=species, r_cut=4.0, n_max=4,
                                                     l_max=3),
    "Bispectrum": lambda species: D.Bispectrum(species=species, r_cut=4.0, n_max=3, l_max=2),
    "ACSF": lambda species: D.ACSF(species=species, r_cut=4.0),
    "SNAPBispectrum": lambda species: D.SNAPBispectrum(species=species, twojmax=4,
                                                       rcutfac=4.0),
}
