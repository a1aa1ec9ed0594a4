"""The package's public surface: ``aicp.__all__`` is exactly what ``aicp`` exports.

Like httpx's export test, but for a package whose names load lazily: every
name in ``__all__`` resolves (in a fresh interpreter, where nothing else has
been imported yet), every error the package raises for the user is there, and
nothing public is missing from it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import textwrap

import aicp
from aicp._errors import AicpError


def _all_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(aicp.__path__, "aicp."):
        if info.name != "aicp.__main__":  # importing it runs the CLI
            names.append(info.name)
    return names


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_all_is_sorted_and_unique() -> None:
    assert aicp.__all__ == sorted(set(aicp.__all__))


def test_every_name_in_all_resolves_lazily_in_a_fresh_interpreter() -> None:
    # `import aicp` alone imports none of the modules behind the names; each then resolves,
    # and `from aicp import *` binds every one of them.
    code = textwrap.dedent("""
        import sys
        import aicp
        heavy = sorted(m for m in sys.modules if m.startswith("aicp.") and m != "aicp._version")
        assert not heavy, heavy
        for name in aicp.__all__:
            assert getattr(aicp, name) is not None, name
        namespace = {}
        exec("from aicp import *", namespace)
        missing = set(aicp.__all__) - set(namespace)
        assert not missing, missing
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_each_export_is_the_object_its_module_defines() -> None:
    for name in aicp.__all__:
        value = getattr(aicp, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        module = importlib.import_module(aicp._LAZY[name])
        assert getattr(module, name) is value, name
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == module.__name__, name
    assert set(aicp._LAZY) == set(aicp.__all__) - {"__version__"}


def test_every_public_error_is_exported() -> None:
    for name in _all_modules():
        importlib.import_module(name)
    errors = {cls for cls in _subclasses(AicpError) | {AicpError} if cls.__module__.startswith("aicp.")}
    assert len(errors) >= 8
    for cls in errors:
        assert cls.__name__ in aicp.__all__, f"{cls.__module__}.{cls.__name__} is not in aicp.__all__"
        assert getattr(aicp, cls.__name__) is cls
        assert isinstance(cls.exit_code, int)


def test_nothing_public_is_missing_from_all() -> None:
    # What `dir(aicp)` lists, less the subpackages and modules, is __all__ (the dunders aside,
    # and the two names the module's own imports leave: the __future__ flag and TYPE_CHECKING).
    public = {name for name in dir(aicp)
              if not name.startswith("_") and not inspect.ismodule(getattr(aicp, name))}
    assert public - {"annotations", "TYPE_CHECKING"} == set(aicp.__all__) - {"__version__"}
