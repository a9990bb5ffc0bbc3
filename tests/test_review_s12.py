"""Session-12 review: regressions found in the new properties / "auto" weight / learn code."""

import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from hybridpot.cli import main


class _Captured(Exception):
    pass


def _fake_learner(seen):
    def fake(model, *args, **kwargs):
        seen["weights"] = model.weights
        raise _Captured

    return fake


@pytest.mark.parametrize("learn, message", [
    # sampler = "pool" without learn.pool: before, "fit.weights.energy = 'auto' needs at
    # least one training structure. Got none."
    ('[learn]\nsampler = "pool"\n', "learn.sampler = 'pool' needs learn.pool"),
    # an empty n_atoms range: the same misleading weight error before
    ('[learn]\nsampler = "disorder"\nn_atoms = [5, 2]\n', "'n_atoms' parameter"),
])
def test_learn_sampler_without_candidates_names_the_sampler_setting(tmp_path, capsys, learn,
                                                                    message):
    p = tmp_path / "l.toml"
    p.write_text(learn)
    assert main(["learn", "-q", "-c", str(p), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "auto" not in err


def test_learn_auto_weight_on_a_pool_of_mixed_sizes(tmp_path, monkeypatch):
    """A pool of 4-, 8- and 12-atom cells (two of 4): 15 x mean(4, 4, 8, 12)^2 = 15 x 49."""
    import hybridpot.learn as learn_pkg

    pool = [bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, k)) for k in (1, 1, 2, 3)]
    write(tmp_path / "pool.xyz", pool)
    p = tmp_path / "l.toml"
    p.write_text(f'[learn]\nsampler = "pool"\npool = "{tmp_path / "pool.xyz"}"\n')
    seen = {}
    monkeypatch.setattr(learn_pkg, "ActiveLearner", _fake_learner(seen))
    with pytest.raises(_Captured):
        main(["learn", "-q", "-c", str(p), "--run-dir", str(tmp_path / "run")])
    assert seen["weights"]["energy"] == pytest.approx(15.0 * 7.0 ** 2, rel=1e-15)
