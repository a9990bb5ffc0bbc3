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
    # radial-only (2-body G2) mode, a few wide and narrow functions
    "ACSF-radial": lambda species: D.ACSF(species=species, r_cut=4.0, angular=None,
                                          radial_etas=[0.5, 4.0],
                                          radial_shifts=[0.0, 1.5, 3.0]),
    # inner switch on (window 2.0-2.6 Å: many pairs of the contract cell inside it)
    "PowerSpectrum-inner": lambda species: D.PowerSpectrum(species=species, r_cut=4.0, n_max=3,
                                                           l_max=2, r_inner=2.3, d_inner=0.3),
    "ACSF-bp-inner": lambda species: D.ACSF(species=species, r_cut=4.0, angular="bp",
                                            bp_etas=[0.1], bp_zetas=[1, 4], r_inner=2.3,
                                            d_inner=0.3),
    "SNAPBispectrum": lambda species: D.SNAPBispectrum(species=species, twojmax=4,
                                                       rcutfac=4.0),
    # two members with different cutoffs (the pair sub-lists) and a block scale
    "DescriptorStack": lambda species: D.DescriptorStack(
        [D.ACSF(species=species, r_cut=4.0, angular="bp", bp_etas=[0.1], bp_zetas=[1, 4]),
         D.PowerSpectrum(species=species, r_cut=3.2, n_max=3, l_max=2)], scales=[1.0, 2.5]),
}
