"""Session-9 FLARE-user review: on-the-fly active learning (MD continued from the labelled
frame, threshold relative to the fitted noise, per-atom σ recorded, σ before/after refits)
and the σ-driven samplers' documented promises."""

import numpy as np
import pytest
from ase.build import bulk

from conftest import emt_dataset, emt_label
from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.learn import ActiveLearner, read_labels
from hybridpot.regression import BayesianLinearRegressor, NeuralNetworkRegressor
from hybridpot.sampling import UncertaintyMDSampler

pytestmark = pytest.mark.filterwarnings(
    "ignore:BayesianLinearRegressor. evidence maximisation did not converge")


def _desc():
    return PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4, l_max=3)


def _start():
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)


@pytest.fixture(scope="module")
def model():
    return HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(
        emt_dataset(2, 1, reps=(2, 1, 1)))


def _otf(**kw):
    p = dict(starts=[_start()], temperature_range=(300.0, 1200.0), n_steps=300,
             check_interval=5, sigma_threshold=2.0, threshold_mode="noise", continue_md=True)
    p.update(kw)
    return UncertaintyMDSampler(**p)


def _learner(run_dir, sampler, max_labels):
    initial = emt_dataset(1, 3, reps=(2, 1, 1))
    return ActiveLearner(HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()),
                         "EMT", sampler, None, run_dir=run_dir, initial=initial,
                         n_candidates=1, batch_size=1, max_labels=max_labels,
                         max_iterations=50, random_state=0, progress=False)


def test_on_the_fly_loop_continues_one_trajectory(tmp_path):
    """FLARE's loop: each label is a later frame of the same MD run, taken when its force σ
    passed the threshold; the labels record σ (per atom) and the history σ before/after."""
    md = _otf()
    res = _learner(tmp_path / "run", md, 6).run()
    labels = read_labels(tmp_path / "run" / "labels.extxyz")
    assert len(labels) >= 2
    steps = [int(a.info["md_step"]) for a in labels]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)   # one trajectory, forward
    for a, h in zip(labels, res.history_):
        # the labelled frame is the one that passed the threshold of the proposing model
        assert a.info["sigma_max"] > a.info["sigma_threshold"] > 0
        assert a.arrays["forces_std"].shape == (len(a), 3)
        np.testing.assert_allclose(a.arrays["forces_std"].max(), a.info["sigma_max"],
                                   atol=1e-8)   # extxyz keeps 8 decimals
        # temperature ramp over the whole trajectory: T(s) = T0 + (T1 - T0) s / n_steps
        np.testing.assert_allclose(a.info["md_temperature"],
                                   300.0 + 900.0 * a.info["md_step"] / 300, rtol=1e-9)
        assert a.has("momenta")                       # kept: the next iteration continues
        assert h["selected_sigma_max"] > 0 and h["selected_sigma_after"] > 0
    # the trajectory between labels: every checked frame, ending with the labelled one
    from ase.io import read

    for t, a in enumerate(labels):
        traj = read(tmp_path / "run" / "proposals" / f"trajectory_{t:04d}.extxyz", ":")
        assert [int(f.info["md_step"]) for f in traj] == list(
            range(int(traj[0].info["md_step"]), int(a.info["md_step"]) + 1, 5))
        assert all(f.info["sigma_max"] <= f.info["sigma_threshold"] for f in traj[:-1])
        # no bookkeeping of the label the trajectory continued from
        assert not any(k in f.info for f in traj for k in ("al_id", "oracle_seconds"))
        np.testing.assert_allclose(traj[-1].positions, a.positions, atol=1e-7)
    if len(labels) < 6:
        assert res.stop_reason_.startswith("the sampler's on-the-fly MD reached its n_steps "
                                           "(300)")
    else:
        assert res.stop_reason_ == "max_labels (6) reached"


def test_on_the_fly_resume_equals_uninterrupted(tmp_path):
    ref = _learner(tmp_path / "a", _otf(), 4).run()
    _learner(tmp_path / "b", _otf(), 2).run()
    res = _learner(tmp_path / "b", _otf(), 4).run()   # resumed: continues from label 2
    assert [a.info["md_step"] for a in res.labelled_] == \
        [a.info["md_step"] for a in ref.labelled_]
    for a, b in zip(res.labelled_, ref.labelled_):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)


def test_continue_from_the_last_sampler_frame(model):
    md = _otf(n_steps=400, sigma_threshold=1e-9, threshold_mode="absolute")
    first = md.sample(1, random_state=0, model=model)
    assert len(first) == 1 and md.stop_reasons_ == ["threshold"]
    assert first[0].info["md_step"] == 5                  # the first check passed it
    other = emt_label(_start())                            # not from the sampler: skipped
    nxt = md.sample(1, random_state=1, model=model, labelled=[first[0], other])
    assert nxt[0].info["md_step"] == 10                   # continued, not restarted
    # one check interval of MD from the previous frame: a small displacement
    assert np.max(np.abs(nxt[0].positions - first[0].positions)) < 0.2
    # the trajectory's end: nothing left to sample
    done = first[0].copy()
    done.info["md_step"] = 400
    assert md.sample(1, random_state=2, model=model, labelled=[done]) == []
    assert md.finished_ is True
    with pytest.raises(InvalidParameterError, match="'labelled' argument of "
                       "UncertaintyMDSampler.sample must be a list of ase.Atoms"):
        md.sample(1, random_state=0, model=model, labelled=first[0])


def test_threshold_relative_to_the_fitted_noise(model):
    md = UncertaintyMDSampler(starts=[_start()], n_steps=10, check_interval=5,
                              sigma_threshold=3.0, threshold_mode="noise")
    md.sample(1, random_state=0, model=model)
    np.testing.assert_allclose(md.threshold_, 3.0 * model.regressor_.noise_["forces"],
                               rtol=1e-12)
    # σ includes the noise, so a factor <= 1 would fire at once
    with pytest.raises(InvalidParameterError, match=r"'sigma_threshold' parameter of "
                       r"UncertaintyMDSampler must be a float in \(1, inf\)"):
        md.set_params(sigma_threshold=1.0).sample(1, random_state=0, model=model)
    with pytest.raises(InvalidParameterError, match="'threshold_mode' parameter of "
                       "UncertaintyMDSampler must be one of"):
        md.set_params(threshold_mode="relative").sample(1, random_state=0, model=model)
    with pytest.raises(InvalidParameterError, match="'continue_md' parameter of "
                       "UncertaintyMDSampler must be a bool. Got 'yes'"):
        md.set_params(threshold_mode="noise", sigma_threshold=3.0,
                      continue_md="yes").sample(1, random_state=0, model=model)


@pytest.mark.filterwarnings("ignore:NeuralNetworkRegressor. L-BFGS stopped")
def test_noise_threshold_refused_for_a_network_ensemble():
    nn = HybridPotential(descriptor=_desc(), regressor=NeuralNetworkRegressor(
        hidden_layer_sizes=(4,), n_models=2, max_iter=20, random_state=0)).fit(
        emt_dataset(2, 1, reps=(2, 1, 1)))
    md = UncertaintyMDSampler(starts=[_start()], n_steps=10, sigma_threshold=3.0,
                              threshold_mode="noise")
    with pytest.raises(InvalidParameterError, match=r"threshold_mode='noise'\) needs a model "
                       r"with a fitted force noise; its regressor NeuralNetworkRegressor"):
        md.sample(1, random_state=0, model=nn)


def test_recorded_sigma_is_the_models_and_runs_are_deterministic(model):
    """Default (restarting) mode: frames carry the per-atom σ of the model at the frame,
    ``trajectory_`` every checked frame, and the same seed gives the same frames."""
    md = UncertaintyMDSampler(starts=[_start()], temperature_range=(600.0, 900.0),
                              n_steps=20, check_interval=5, sigma_threshold=10.0,
                              frames_per_run=2)
    out = md.sample(3, random_state=4, model=model)
    assert len(out) == 3 and len(md.trajectory_) == 4 * md.n_runs_
    _, s = model.predict_forces(out, return_std=True)
    for a, sa in zip(out, s):
        np.testing.assert_allclose(a.arrays["forces_std"], sa, rtol=1e-10)
        assert a.info["sigma_max"] == pytest.approx(float(sa.max()), rel=1e-10)
        assert a.info["sigma_threshold"] == 10.0
    again = md.sample(3, random_state=4, model=model)
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a.positions, b.positions)


def _recalibrated_learner(run_dir, **kw):
    initial = emt_dataset(2, 3, reps=(2, 1, 1))
    model = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(
        initial)
    md = UncertaintyMDSampler(starts=[_start()], n_steps=20, check_interval=5,
                              sigma_threshold=10.0, frames_per_run=1)
    return model, ActiveLearner(model, "EMT", md, None, run_dir=run_dir, initial=initial,
                                n_candidates=2, batch_size=1, max_iterations=2,
                                random_state=0, progress=False, **kw)


def test_recalibration_is_redone_at_every_refit(tmp_path):
    """Before: a recalibrated model lost its σ scale at the first refit (a clone), so σ
    changed meaning in the middle of the run (x2.1 smaller) without a word."""
    validation = emt_dataset(3, 9, reps=(2, 1, 1))
    model, al = _recalibrated_learner(tmp_path / "a", validation=validation,
                                      recalibration="nll")
    al.run()
    ref = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(
        al._training())
    ref.recalibrate(validation, method="nll")
    assert al.model_.uncertainty_scale_["forces"] == pytest.approx(
        ref.uncertainty_scale_["forces"], rel=1e-8)
    assert al.model_.uncertainty_scale_["forces"] != pytest.approx(1.0, abs=1e-3)
    saved = HybridPotential.load(tmp_path / "a" / "model.hpot")
    assert saved.uncertainty_scale_ == al.model_.uncertainty_scale_


def test_recalibrated_template_without_recalibration_warns(tmp_path):
    validation = emt_dataset(3, 9, reps=(2, 1, 1))
    model, al = _recalibrated_learner(tmp_path / "b")
    model.recalibrate(validation, method="nll")
    with pytest.warns(RuntimeWarning, match="carries a σ recalibration or posterior "
                      "committee; refits clone the unfitted model"):
        al.run()
    assert getattr(al.model_, "uncertainty_scale_", None) is None


@pytest.mark.parametrize("kw, match", [
    ({"recalibration": "nl", "validation": [1]},
     r"'recalibration' parameter of ActiveLearner must be one of \['nll', 'coverage'"),
    ({"recalibration": "nll"},
     "'recalibration' parameter of ActiveLearner needs labelled 'validation' structures"),
    ({"recalibration": "split", "validation": [1]},
     r"\('split' needs a posterior committee, which refits do not have\). Got 'split'"),
])
def test_recalibration_errors(tmp_path, kw, match):
    _, al = _recalibrated_learner(tmp_path / "c", **kw)
    with pytest.raises(InvalidParameterError, match=match):
        al.run()


def _cli_config(tmp_path, extra):
    from ase.io import write

    write(tmp_path / "init.extxyz", emt_dataset(1, 3, reps=(2, 1, 1)))
    write(tmp_path / "val.extxyz", emt_dataset(2, 9, reps=(2, 1, 1)))
    cfg = tmp_path / "learn.toml"
    cfg.write_text(f"""
[descriptor]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 4
l_max = 3

[regressor]
type = "BayesianLinearRegressor"

[baseline]
type = "none"

[learn]
run_dir = "{tmp_path / 'run'}"
sampler = "md"
species = ["Cu"]
lattice_constant = 3.61
supercell = [2, 1, 1]
initial = "{tmp_path / 'init.extxyz'}"
validation = "{tmp_path / 'val.extxyz'}"
temperature_range = [300, 900]
md_steps = 200
check_interval = 5
timestep_fs = 2.0
max_labels = 4
max_iterations = 20
{extra}
""")
    return cfg


def test_cli_learn_on_the_fly(tmp_path, capsys):
    from hybridpot.cli import main

    cfg = _cli_config(tmp_path, 'md_mode = "on_the_fly"\nthreshold_mode = "noise"\n'
                      'sigma_threshold = 2.0\nrecalibration = "nll"')
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    labels = read_labels(tmp_path / "run" / "labels.extxyz")
    assert len(labels) >= 2
    assert f"learn: {len(labels)} labels, 0 failures" in out
    steps = [a.info["md_step"] for a in labels]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert all(a.info["sigma_max"] > a.info["sigma_threshold"] for a in labels)
    assert HybridPotential.load(tmp_path / "run" / "model.hpot").uncertainty_scale_


def test_cli_learn_md_mode_typo(tmp_path, capsys):
    from hybridpot.cli import main

    cfg = _cli_config(tmp_path, 'md_mode = "otf"')
    assert main(["learn", "-c", str(cfg), "-q"]) == 2
    assert "learn.md_mode must be 'restart' (independent MD runs from the structure) or " \
        "'on_the_fly'" in capsys.readouterr().err


@pytest.mark.parametrize("cls", ["md", "adversarial"])
def test_starts_with_an_element_the_model_cannot_predict(model, cls):
    """Before: every MD run failed at its first step and the sampler said 'reduce
    temperature_range or timestep_fs'; the adversarial sampler returned the rattled start
    with adversarial_J = -inf and no error."""
    from hybridpot.sampling import AdversarialSampler

    ni = bulk("Ni", "fcc", a=3.52, cubic=True) * (2, 1, 1)
    s = (UncertaintyMDSampler(starts=[_start(), ni], n_steps=10) if cls == "md"
         else AdversarialSampler(starts=[_start(), ni], n_steps=1))
    with pytest.raises(InvalidParameterError, match=r"'starts' parameter of \w+Sampler must "
                       r"hold elements the model can predict \(Cu\): structure 1 \(Ni8\) has "
                       r"Ni\."):
        s.sample(1, random_state=0, model=model)


@pytest.mark.parametrize("continue_md", [False, True])
def test_unusable_md_message_quotes_the_error(model, continue_md):
    bad = _start()
    bad.positions[0, 0] = np.nan
    md = UncertaintyMDSampler(starts=[bad], n_steps=10, check_interval=5,
                              continue_md=continue_md)
    with pytest.raises(InvalidParameterError, match=r"InvalidStructureError: .*non-finite"):
        md.sample(1, random_state=0, model=model)


class _SlowEMT:
    """EMT factory whose every calculation takes at least 0.05 s (oracle_seconds)."""

    def __call__(self):
        import time

        from ase.calculators.emt import EMT

        class Slow(EMT):
            def calculate(self, *a, **k):
                time.sleep(0.05)
                super().calculate(*a, **k)

        return Slow()


def test_oracle_time_budget(tmp_path):
    initial = emt_dataset(1, 3, reps=(2, 1, 1))
    md = _otf(sigma_threshold=1e-9, threshold_mode="absolute", n_steps=1000)

    def learner(budget):
        return ActiveLearner(
            HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()),
            _SlowEMT(), md, None, run_dir=tmp_path / "run", initial=initial,
            n_candidates=1, batch_size=1, max_labels=20, max_iterations=20,
            random_state=0, progress=False, max_oracle_seconds=budget)

    res = learner(0.12).run()
    used = sum(a.info["oracle_seconds"] for a in res.labelled_)
    assert res.oracle_seconds_ == pytest.approx(used, rel=1e-12)
    # each label takes >= 0.05 s: the budget stops the run after 3 labels at most
    assert 1 <= len(res.labelled_) <= 3 and used >= 0.12
    assert res.stop_reason_.startswith("oracle time budget used (")
    assert "of max_oracle_seconds = 0.12 s)" in res.stop_reason_
    # a resumed run counts the time of the earlier runs: no new label
    again = learner(0.12).run()
    assert len(again.labelled_) == len(res.labelled_) and again.n_oracle_calls_ == 0
    with pytest.raises(InvalidParameterError, match=r"'max_oracle_seconds' parameter of "
                       r"ActiveLearner must be a float in \(0, inf\)"):
        learner(-1.0).run()


def test_cli_on_the_fly_iterations_default_to_the_label_cap(tmp_path, capsys):
    """One label per iteration: the default max_iterations (10) stopped an on-the-fly run
    with max_labels = 12 at 10 labels."""
    from hybridpot.cli import main

    cfg = _cli_config(tmp_path, 'md_mode = "on_the_fly"\nsigma_threshold = 1e-9')
    text = cfg.read_text().replace("max_labels = 4\nmax_iterations = 20\n",
                                   "max_labels = 12\n")
    cfg.write_text(text)
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    assert "learn: 12 labels, 0 failures, 12 iterations" in capsys.readouterr().out


def test_run_report_of_an_on_the_fly_run(tmp_path, capsys):
    import json

    from hybridpot.cli import main
    from hybridpot.learn import run_summary

    cfg = _cli_config(tmp_path, 'md_mode = "on_the_fly"\nthreshold_mode = "noise"\n'
                      'sigma_threshold = 2.0')
    assert main(["learn", "-c", str(cfg), "-q", "--report", str(tmp_path / "rep")]) == 0
    assert f"run report -> {tmp_path / 'rep' / 'report.html'}" in capsys.readouterr().out
    s = run_summary(tmp_path / "run")
    labels = read_labels(tmp_path / "run" / "labels.extxyz")
    assert [r["al_id"] for r in s["labels"]] == [a.info["al_id"] for a in labels]
    assert [r["md_step"] for r in s["labels"]] == [a.info["md_step"] for a in labels]
    assert s["oracle_seconds"] == pytest.approx(
        sum(a.info["oracle_seconds"] for a in labels), rel=1e-9)
    # the trajectory: every checked frame, the labelled ones among them
    steps = [r["md_step"] for r in s["trajectory"]]
    assert set(r["md_step"] for r in s["labels"]) <= set(steps)
    assert len(s["history"]) == len(labels)
    assert json.loads((tmp_path / "rep" / "run.json").read_text())["labels"] == s["labels"]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert f"{len(labels)} labels, 0 failures" in page
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return
    assert (tmp_path / "rep" / "sigma_trajectory.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "history.png").stat().st_size > 1000


def test_run_summary_of_a_folder_that_is_no_run(tmp_path):
    from hybridpot.learn import run_summary

    with pytest.raises(InvalidParameterError, match="'run_dir' argument of run_summary must "
                       "be an active-learning run directory \\(with state.json\\)"):
        run_summary(tmp_path)


def test_on_the_fly_quench(model):
    """A decreasing ramp (quench) is a valid on-the-fly schedule (restart mode draws both
    temperatures from a range, which must be increasing)."""
    md = _otf(temperature_range=(1200.0, 300.0), n_steps=100, sigma_threshold=1e-9,
              threshold_mode="absolute")
    out = md.sample(1, random_state=0, model=model)
    assert out[0].info["md_temperature"] == pytest.approx(1200.0 - 900.0 * 5 / 100)
    with pytest.raises(InvalidParameterError, match=r"'temperature_range' parameter of "
                       r"UncertaintyMDSampler must be a float in \[0, inf\)"):
        md.set_params(temperature_range=(300.0, -5.0)).sample(1, random_state=0, model=model)
    with pytest.raises(InvalidParameterError, match="must be a finite pair with low <= high"):
        md.set_params(temperature_range=(1200.0, 300.0), continue_md=False).sample(
            1, random_state=0, model=model)


def test_on_the_fly_frame_duplicating_a_label_says_why(tmp_path):
    """Before: 'stopped: no candidates' after one label (the selector dropped the frame one
    0.2 fs step after the label as a near-duplicate, σ being above the threshold there)."""
    from hybridpot.uq.selection import MaxVarianceSelector

    md = _otf(temperature_range=(50.0, 50.0), n_steps=200, check_interval=1,
              timestep_fs=0.2, sigma_threshold=1e-9, threshold_mode="absolute")
    res = _learner(tmp_path / "a", md, 4).run()
    assert len(res.labelled_) == 1
    assert res.stop_reason_.startswith("the on-the-fly frame of MD step 2 (force σ ")
    assert "duplicates a labelled structure (the selector's deduplication" in res.stop_reason_
    # without deduplication every frame is labelled, as the threshold asks
    al = _learner(tmp_path / "b", md, 4)
    al.selector = MaxVarianceSelector(dedup_threshold=None)
    assert len(al.run().labelled_) == 4


def test_on_the_fly_from_no_label(tmp_path, capsys):
    """FLARE's first step: without labelled structures the first MD frame is labelled, then
    the trajectory starts from it (was: 'needs a fitted model; give initial ...')."""
    from hybridpot.cli import main

    md = _otf(n_steps=200)
    res = ActiveLearner(HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()),
                        "EMT", md, None, run_dir=tmp_path / "run", n_candidates=1,
                        batch_size=1, max_labels=4, max_iterations=10, random_state=0,
                        progress=False).run()
    first = res.labelled_[0]
    assert first.info["md_step"] == 0 and first.info["md_temperature"] == 300.0
    np.testing.assert_allclose(first.positions, _start().positions, atol=1e-8)
    assert res.history_[0]["selected_sigma_max"] is None          # no model proposed it
    steps = [a.info["md_step"] for a in res.labelled_]
    assert len(steps) >= 2 and steps == sorted(steps) and steps[1] > 0
    # a model is still required to continue labelled frames
    with pytest.raises(InvalidParameterError, match="continues the trajectory of the "
                       "'labelled' frames with the model fitted to them; got model=None"):
        md.sample(1, random_state=0, labelled=res.labelled_)
    # the command line without learn.initial
    cli = tmp_path / "cli"
    cli.mkdir()
    cfg = _cli_config(cli, 'md_mode = "on_the_fly"\nthreshold_mode = "noise"\n'
                      'sigma_threshold = 2.0')
    text = cfg.read_text()
    assert f'initial = "{cli / "init.extxyz"}"\n' in text
    cfg.write_text(text.replace(f'initial = "{cli / "init.extxyz"}"\n', ""))
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    labels = read_labels(cli / "run" / "labels.extxyz")
    assert labels[0].info["md_step"] == 0 and len(labels) >= 2
    assert f"learn: {len(labels)} labels, 0 failures" in capsys.readouterr().out


class _FailingEMT:
    """EMT factory whose calls number ``fail`` (1-based) raise like a failed SCF."""

    def __init__(self, fail):
        self.fail, self.n = set(fail), 0

    def __call__(self):
        from ase.calculators.emt import EMT

        self.n += 1
        if self.n in self.fail:
            raise RuntimeError("SCF did not converge")
        return EMT()


def test_on_the_fly_survives_one_failed_frame(tmp_path):
    """Before: one failed oracle call ended an on-the-fly run ('every oracle call of
    iteration 1 failed (1 structures ...)'), one call being a whole iteration."""
    def learner(run_dir, oracle, max_labels):
        return ActiveLearner(
            HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()), oracle,
            _otf(), None, run_dir=run_dir, initial=emt_dataset(1, 3, reps=(2, 1, 1)),
            n_candidates=1, batch_size=1, max_labels=max_labels, max_iterations=20,
            random_state=0, progress=False)

    res = learner(tmp_path / "a", _FailingEMT({2}), 4).run()
    assert len(res.labelled_) == 4 and len(res.failures_) == 1
    assert res.stop_reason_ == "max_labels (4) reached"
    # a broken oracle still stops the run: after three failed iterations in a row
    res = learner(tmp_path / "b", _FailingEMT(range(1, 100)), 4).run()
    assert res.labelled_ == [] and len(res.history_) == 3
    assert res.stop_reason_ == ("every oracle call of iterations 0-2 failed (3 structures; "
                                "first error: RuntimeError: SCF did not converge); see "
                                "failures.jsonl")


def test_on_the_fly_temperature_schedule(model):
    sched = [(0, 300.0), (20, 900.0), (40, 900.0), (60, 100)]
    md = _otf(n_steps=80, sigma_threshold=1e9, threshold_mode="absolute",
              temperature_schedule=sched)
    assert md.sample(1, random_state=0, model=model) == [] and md.finished_
    temps = {int(f.info["md_step"]): f.info["md_temperature"] for f in md.trajectory_}
    expect = {5: 450.0, 20: 900.0, 30: 900.0, 50: 500.0, 60: 100.0, 80: 100.0}
    for step, temp in expect.items():
        assert temps[step] == pytest.approx(temp, rel=1e-12)
    for bad in ([(5, 300.0)], [(0, 300.0), (0, 400.0)], [(0, -1.0)], [(0, 300.0, 1)], 5,
                [(0.5, 300.0)]):
        with pytest.raises(InvalidParameterError, match="'temperature_schedule' parameter "
                           "of UncertaintyMDSampler must be a list of \\(step, temperature K\\)"
                           " pairs with steps increasing from 0"):
            md.set_params(temperature_schedule=bad).sample(1, random_state=0, model=model)
    with pytest.raises(InvalidParameterError, match="'temperature_schedule' parameter of "
                       "UncertaintyMDSampler needs continue_md=True"):
        md.set_params(temperature_schedule=sched, continue_md=False).sample(
            1, random_state=0, model=model)


def test_cli_temperature_schedule(tmp_path, capsys):
    from hybridpot.cli import main

    cfg = _cli_config(tmp_path, 'md_mode = "on_the_fly"\nsigma_threshold = 1e-9\n'
                      'temperature_schedule = [[0, 300], [10, 1300]]')
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    labels = read_labels(tmp_path / "run" / "labels.extxyz")
    assert [a.info["md_temperature"] for a in labels[:3]] == pytest.approx(
        [800.0, 1300.0, 1300.0])
    (tmp_path / "bad").mkdir()
    bad = _cli_config(tmp_path / "bad",
                      'md_mode = "on_the_fly"\ntemperature_schedule = [[5, 300]]')
    assert main(["learn", "-c", str(bad), "-q"]) == 2
    assert "'temperature_schedule' parameter of UncertaintyMDSampler must be a list of " \
        "(step, temperature K) pairs" in capsys.readouterr().err
