"""Lazy imports, backend selection and missing-framework errors.

Everything that depends on interpreter state (what is imported, the environment at start-up) runs in
a fresh subprocess through the ``run_python`` fixture (conftest.py).
"""

from __future__ import annotations

import json
import textwrap
import threading

import pytest

import resnet_core as rc
from resnet_core.selection import ENV_VAR

FRAMEWORKS = ("torch", "torchvision", "keras", "tensorflow", "jax")

LAZY_CODE = textwrap.dedent(
    """
    import importlib.util, json, sys
    import resnet_core as rc
    import resnet_core.testing, resnet_core.mapping, resnet_core.layouts
    plan = rc.make_plan(rc.get_spec("resnet50"))
    assert plan.num_params > 0 and rc.keras_table(plan)
    rc.list_specs(); rc.get_backend()
    resnet_core.testing.random_weights("tiny_resnext")
    frameworks = %r
    print(json.dumps({
        "imported": sorted(m for m in sys.modules if m.split(".")[0] in frameworks),
        "installed": [m for m in frameworks if importlib.util.find_spec(m) is not None],
    }))
    """
) % (FRAMEWORKS,)


@pytest.mark.parametrize(
    "installed",
    [
        pytest.param(False, id="core-env"),
        # In the framework env the frameworks ARE importable, which makes "not imported" meaningful.
        pytest.param(True, id="frameworks-installed", marks=pytest.mark.torch),
    ],
)
def test_import_and_plan_import_no_framework(run_python, installed):
    proc = run_python(LAZY_CODE)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["imported"] == []
    if installed:
        assert "torch" in result["installed"]


# ---------------------------------------------------------------------------------------------
# Backend selection: argument > use_backend > RESNET_CORE_BACKEND > "torch"


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("argument", "context", "env", "expected"),
    [
        ("keras", "torch", "torch", "keras"),
        ("torch", "keras", "keras", "torch"),
        (None, "keras", "torch", "keras"),
        (None, "torch", "keras", "torch"),
        (None, None, "keras", "keras"),
        (None, None, "torch", "torch"),
        (None, None, None, "torch"),
        (None, None, "", "torch"),
        (" Keras ", None, None, "keras"),
        (None, None, "KERAS", "keras"),
    ],
    ids=["arg-beats-context-and-env", "arg-beats-context-and-env-2", "context-beats-env", "context-beats-env-2",
         "env", "env-2", "default-torch", "empty-env-is-unset", "arg-normalised", "env-normalised"],
)
def test_backend_precedence(no_env, argument, context, env, expected):
    if env is not None:
        no_env.setenv(ENV_VAR, env)
    if context is None:
        assert rc.get_backend(argument) == expected
    else:
        with rc.use_backend(context):
            assert rc.get_backend(argument) == expected


@pytest.mark.parametrize(("env", "expected"), [("keras", "keras"), ("torch", "torch"), (None, "torch")],
                         ids=["env-keras", "env-torch", "env-unset"])
def test_env_var_read_in_fresh_process(run_python, env, expected):
    proc = run_python("import resnet_core as rc; print(rc.get_backend())", env={ENV_VAR: env})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_env_var_invalid_in_fresh_process(run_python):
    code = textwrap.dedent(
        """
        import resnet_core as rc
        try:
            rc.get_backend()
        except ValueError as exc:
            print(exc)
        else:
            print("NO ERROR")
        """
    )
    proc = run_python(code, env={ENV_VAR: "tensorflow"})
    assert proc.returncode == 0, proc.stderr
    assert "'tensorflow'" in proc.stdout and ENV_VAR in proc.stdout
    assert "'torch'" in proc.stdout and "'keras'" in proc.stdout


@pytest.mark.parametrize("bad", ["tensorflow", "jax", "", "pytorch", 3], ids=str)
def test_unknown_backend_argument_lists_valid_ones(no_env, bad):
    with pytest.raises(ValueError) as info:
        rc.get_backend(bad)
    message = str(info.value)
    assert repr(bad) in message and "backend= argument" in message
    assert "'torch'" in message and "'keras'" in message


@pytest.mark.parametrize("bad", ["tensorflow", "", None], ids=["tensorflow", "empty", "none"])
def test_unknown_use_backend_raises_and_changes_nothing(no_env, bad):
    with pytest.raises(ValueError, match=r"use_backend\(\).*'torch'.*'keras'"):
        with rc.use_backend(bad):
            pass  # pragma: no cover - never entered
    assert rc.get_backend() == "torch"


def test_unknown_env_value_lists_valid_ones(no_env):
    no_env.setenv(ENV_VAR, "mxnet")
    with pytest.raises(ValueError) as info:
        rc.get_backend()
    message = str(info.value)
    assert "'mxnet'" in message and ENV_VAR in message and "'torch'" in message and "'keras'" in message
    assert rc.get_backend("keras") == "keras"  # an explicit argument still wins


def test_use_backend_yields_and_restores(no_env):
    with rc.use_backend("keras") as chosen:
        assert chosen == "keras" and rc.get_backend() == "keras"
    assert rc.get_backend() == "torch"


def test_use_backend_nested_restores_each_level(no_env):
    no_env.setenv(ENV_VAR, "keras")
    with rc.use_backend("torch"):
        with rc.use_backend("keras"):
            with rc.use_backend("torch"):
                assert rc.get_backend() == "torch"
            assert rc.get_backend() == "keras"
        assert rc.get_backend() == "torch"
    assert rc.get_backend() == "keras"  # back to the environment


def test_use_backend_restores_on_exception(no_env):
    class Boom(Exception):
        pass

    with rc.use_backend("keras"):
        with pytest.raises(Boom):
            with rc.use_backend("torch"):
                raise Boom
        assert rc.get_backend() == "keras"
    assert rc.get_backend() == "torch"


@pytest.mark.parametrize(("env", "expected"), [(None, "torch"), ("torch", "torch"), ("keras", "keras")],
                         ids=["env-unset", "env-torch", "env-keras"])
def test_thread_started_inside_use_backend_sees_env_or_default(no_env, env, expected):
    if env is not None:
        no_env.setenv(ENV_VAR, env)
    other = "keras" if expected == "torch" else "torch"
    seen = []
    with rc.use_backend(other):
        thread = threading.Thread(target=lambda: seen.append(rc.get_backend()))
        thread.start()
        thread.join()
        assert rc.get_backend() == other
    assert seen == [expected]


@pytest.mark.parametrize("env", [None, "torch", "keras"], ids=["env-unset", "env-torch", "env-keras"])
def test_threads_with_different_use_backend_are_isolated(no_env, env):
    if env is not None:
        no_env.setenv(ENV_VAR, env)
    default = env or "torch"
    barrier = threading.Barrier(3, timeout=30)
    seen: dict[str, list[str]] = {}

    def worker(name: str, backend: str) -> None:
        log = seen.setdefault(name, [])
        with rc.use_backend(backend):
            barrier.wait()  # both threads are inside their block
            log.append(rc.get_backend())
            barrier.wait()  # both have read while the other's block was open
        log.append(rc.get_backend())

    threads = [threading.Thread(target=worker, args=("a", "keras")),
               threading.Thread(target=worker, args=("b", "torch"))]
    for t in threads:
        t.start()
    barrier.wait()
    main_during = rc.get_backend()
    barrier.wait()
    for t in threads:
        t.join()
    assert seen == {"a": ["keras", default], "b": ["torch", default]}
    assert main_during == default


# ---------------------------------------------------------------------------------------------
# Missing frameworks


BLOCKED_CODE = textwrap.dedent(
    """
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == %(module)r or name.startswith(%(module)r + "."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Block())
    import resnet_core as rc
    try:
        rc.build("tiny_resnext", backend=%(backend)r)
    except ImportError as exc:
        print("ImportError:", exc)
        print("cause:", type(exc.__cause__).__name__)
    else:
        print("NO ERROR")
    print("imported:", %(module)r in sys.modules)
    """
)


@pytest.mark.parametrize(("backend", "module"), [("torch", "torch"), ("keras", "keras")])
def test_missing_framework_names_the_extra(run_python, backend, module):
    proc = run_python(BLOCKED_CODE % {"backend": backend, "module": module})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ImportError:" in out, out
    assert f"resnet-core[{backend}]" in out and "pip install" in out
    assert "cause: ModuleNotFoundError" in out  # the original error stays attached
    assert "imported: False" in out


ENGINELESS_CODE = textwrap.dedent(
    """
    import sys

    class Block:  # Keras installed without any engine
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("jax", "jaxlib", "tensorflow", "torch"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Block())
    import resnet_core as rc
    try:
        rc.build("tiny_resnext", backend="keras")
    except rc.ResNetCoreError as exc:
        print("ResNetCoreError:", exc)
    """
)


@pytest.mark.keras
@pytest.mark.parametrize("engine", ["jax", "tensorflow", "torch"])
def test_keras_without_an_engine_names_the_engine_extras(run_python, engine):
    proc = run_python(ENGINELESS_CODE, env={"KERAS_BACKEND": engine})
    assert proc.returncode == 0, proc.stderr
    assert "ResNetCoreError:" in proc.stdout, proc.stdout
    assert all(f"resnet-core[{extra}]" in proc.stdout for extra in ("jax", "tensorflow", "torch"))


def test_get_weights_of_foreign_object_is_a_typeerror_without_importing(run_python):
    code = textwrap.dedent(
        """
        import sys
        import resnet_core as rc
        try:
            rc.get_weights(object())
        except TypeError as exc:
            print("TypeError:", exc)
        print(sorted(m for m in ("torch", "keras") if m in sys.modules))
        """
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "TypeError:" in proc.stdout and "<class 'object'>" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------------
# The library never sets KERAS_BACKEND (Keras picks its engine once, at import; that is the user's call)


@pytest.mark.keras
@pytest.mark.parametrize("how", ["env-set", "env-unset-keras-json"])
def test_library_never_sets_keras_backend(run_python, tmp_path, how):
    import keras

    engine = keras.backend.backend()
    env: dict[str, str | None] = {ENV_VAR: None}
    if how == "env-set":
        env["KERAS_BACKEND"] = engine
    else:  # engine chosen by keras.json, so the child would notice if anyone set the variable
        home = tmp_path / "keras_home"
        home.mkdir()
        (home / "keras.json").write_text(json.dumps({"backend": engine}))
        env.update(KERAS_BACKEND=None, KERAS_HOME=str(home))
    code = textwrap.dedent(
        """
        import json, os
        before = os.environ.get("KERAS_BACKEND")
        import resnet_core as rc
        with rc.use_backend("keras"):
            model = rc.build("tiny_resnext", layers=(1,))  # one block: quick to build on every engine
        rc.set_weights(model, rc.get_weights(model))
        import keras
        print(json.dumps({"before": before, "after": os.environ.get("KERAS_BACKEND"),
                          "engine": keras.backend.backend(), "type": type(model).__name__}))
        """
    )
    proc = run_python(code, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["type"] == "Functional"
    assert result["engine"] == engine
    assert result["after"] == result["before"] == env.get("KERAS_BACKEND")


# ---------------------------------------------------------------------------------------------
# Packaging: what tox installs (a wheel) must hold every subpackage of the source tree.


def _source_packages() -> list[str]:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names = []
    for base, package in ((root / "resnet_core", "resnet_core"), (root / "backends", "resnet_core.backends")):
        for init in sorted(base.rglob("__init__.py")):
            rel = init.parent.relative_to(base).parts
            names.append(".".join((package, *rel)))
    return names


@pytest.mark.parametrize("package", _source_packages())
def test_installed_package_has_every_source_subpackage(run_python, package):
    proc = run_python(f"import importlib.util; print(importlib.util.find_spec({package!r}) is not None)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True", f"{package} is in the source tree but not in the installed package " \
                                          "(pyproject.toml [tool.setuptools] packages)"
