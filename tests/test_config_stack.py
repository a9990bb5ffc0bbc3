"""``[descriptor] type = "DescriptorStack"`` with ``[[descriptor.members]]`` tables (TOML/CLI)."""

import numpy as np
import pytest

from hybridpot import ConfigError, HybridPotential
from hybridpot.cli import main
from hybridpot.config import build_descriptor, load_config
from hybridpot.descriptors import ACSF, DescriptorStack, PowerSpectrum

from test_cli import _config, emt_file  # noqa: F401 (fixture)

STACK = """
[descriptor]
type = "DescriptorStack"
scales = [1.0, 0.5]

[[descriptor.members]]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 3
l_max = 2

[[descriptor.members]]
type = "ACSF"
r_cut = 5.5
angular = "none"
radial_etas = [2.0]
radial_shifts = [2.0, 3.0, 4.0, 5.0]
"""


def _stack_config(tmp_path, emt_file, descriptor=STACK, extra=""):  # noqa: F811
    """The test_cli config with its [descriptor] section replaced by ``descriptor``."""
    text = _config(tmp_path, emt_file, extra).read_text()
    start = text.index("[descriptor]")
    end = text.index("[baseline]")
    p = tmp_path / "stack.toml"
    p.write_text(text[:start] + descriptor.strip() + "\n\n" + text[end:])
    return p


def test_stack_built_from_toml(tmp_path, emt_file):  # noqa: F811
    cfg = load_config(_stack_config(tmp_path, emt_file))
    desc = build_descriptor(cfg, ["Cu"])
    assert isinstance(desc, DescriptorStack)
    ps, acsf = desc.descriptors
    assert isinstance(ps, PowerSpectrum) and (ps.r_cut, ps.n_max, ps.l_max) == (4.5, 3, 2)
    assert isinstance(acsf, ACSF) and acsf.angular is None
    assert list(ps.species) == list(acsf.species) == ["Cu"]
    assert desc.scales == [1.0, 0.5]
    assert acsf.n_features == 4   # radial only: one species x 4 shifts
    assert desc.n_features == ps.n_features + 4
    assert desc.r_cut == 5.5


def test_stack_fits_through_the_cli_and_round_trips(tmp_path, emt_file, capsys):  # noqa: F811
    cfg = _stack_config(tmp_path, emt_file)
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "on DescriptorStack" in out and "test: energy MAE" in out
    model = HybridPotential.load(tmp_path / "cu.hpot")
    desc = model.descriptor
    assert isinstance(desc, DescriptorStack)
    assert [type(m).__name__ for m in desc.descriptors] == ["PowerSpectrum", "ACSF"]
    assert desc.descriptors[1].angular is None and desc.scales == [1.0, 0.5]
    from ase.io import read

    atoms = read(emt_file, ":")[:2]
    fitted = build_descriptor(load_config(cfg), ["Cu"])
    np.testing.assert_array_equal(desc.compute(atoms[0]), fitted.compute(atoms[0]))
    assert main(["evaluate", "-c", str(cfg), "--data", str(emt_file), "--json"]) == 0
    assert "force_mae" in capsys.readouterr().out
    # the reloaded model predicts what the CLI-fitted one wrote out
    E = model.predict(atoms)
    assert E.shape == (2,) and np.all(np.isfinite(E))
    np.testing.assert_allclose(E, [a.get_potential_energy() for a in atoms], atol=0.05 * 32)


def test_scales_optional(tmp_path, emt_file):  # noqa: F811
    text = STACK.replace("scales = [1.0, 0.5]\n", "")
    desc = build_descriptor(load_config(_stack_config(tmp_path, emt_file, text)), ["Cu", "Ni"])
    assert desc.scales is None
    assert list(desc.species) == ["Cu", "Ni"]


MEMBER_PS = '[[descriptor.members]]\ntype = "PowerSpectrum"\nr_cut = 4.0\nn_max = 2\nl_max = 1\n'


@pytest.mark.parametrize("descriptor, message", [
    ('[descriptor]\ntype = "DescriptorStack"\n',
     r"descriptor.members must be a non-empty array of tables \(\[\[descriptor.members\]\], "
     r"each with a 'type'\). Got None"),
    ('[descriptor]\ntype = "DescriptorStack"\nmembers = [1, 2]\n',
     r"descriptor.members must be a non-empty array of tables .* Got \[1, 2\]"),
    ('[descriptor]\ntype = "DescriptorStack"\nr_cut = 5.0\n' + MEMBER_PS,
     r"unknown key descriptor.r_cut for type 'DescriptorStack'; allowed keys: members, "
     r"scales"),
    ('[descriptor]\ntype = "DescriptorStack"\n[[descriptor.members]]\ntype = "SOAP"\n',
     r"descriptor.members\[0\].type must be one of \[.*'PowerSpectrum'.*\]. Got 'SOAP'"),
    ('[descriptor]\ntype = "DescriptorStack"\n' + MEMBER_PS
     + '[[descriptor.members]]\ntype = "DescriptorStack"\n',
     r"descriptor.members\[1\].type must be one of .* Got 'DescriptorStack'"),
    ('[descriptor]\ntype = "DescriptorStack"\n' + MEMBER_PS
     + '[[descriptor.members]]\nr_cut = 4.0\n',
     r"descriptor.members\[1\].type must be one of .* Got None"),
    ('[descriptor]\ntype = "DescriptorStack"\n' + MEMBER_PS.replace("l_max", "lmax"),
     r"descriptor.members\[0\] \(type 'PowerSpectrum'\): .*lmax"),
    ('[descriptor]\ntype = "DescriptorStack"\n' + MEMBER_PS.replace("r_cut = 4.0", "r_cut = -1.0"),
     r"descriptor.members\[0\] \(type 'PowerSpectrum'\): The 'r_cut' parameter of "
     r"PowerSpectrum must be a float in \(0, inf\). Got -1.0"),
    ('[descriptor]\ntype = "DescriptorStack"\n' + MEMBER_PS + 'species = ["Cu"]\n',
     r"descriptor.members\[0\].species is not allowed"),
    ('[descriptor]\ntype = "DescriptorStack"\nscales = [1.0, 2.0]\n' + MEMBER_PS,
     r"descriptor.scales must be a list of 1 positive numbers \(one per member\). "
     r"Got \[1.0, 2.0\]"),
    ('[descriptor]\ntype = "DescriptorStack"\nscales = [true]\n' + MEMBER_PS,
     r"descriptor.scales must be a list of 1 positive numbers .* Got \[True\]"),
    ('[descriptor]\ntype = "DescriptorStack"\nscales = [-1.0]\n' + MEMBER_PS,
     r"\[descriptor\] type 'DescriptorStack': .*'scales'.*-1.0"),
    ('[descriptor]\ntype = "DescriptorStack"\n' + MEMBER_PS
     + '[[descriptor.members]]\ntype = "ACSF"\nr_cut = 5.0\nangular = "none"\n'
       'angular_cutoff = 0.5\n',
     r"descriptor.members\[1\] \(type 'ACSF'\): The 'angular_cutoff' parameter of ACSF must "
     r"be None when angular=None"),
])
def test_stack_config_errors_are_one_line(tmp_path, emt_file, capsys, descriptor,  # noqa: F811
                                          message):
    cfg = _stack_config(tmp_path, emt_file, descriptor)
    with pytest.raises(ConfigError, match=message):
        build_descriptor(load_config(cfg), ["Cu"])
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error: " in err


def test_acsf_none_spelling_for_a_single_descriptor(tmp_path, emt_file):  # noqa: F811
    text = ('[descriptor]\ntype = "ACSF"\nr_cut = 5.0\nangular = "none"\n'
            'radial_etas = [1.0]\nradial_shifts = [1.0, 3.0]\n')
    desc = build_descriptor(load_config(_stack_config(tmp_path, emt_file, text)), ["Cu"])
    assert isinstance(desc, ACSF) and desc.angular is None and desc.n_features == 2
