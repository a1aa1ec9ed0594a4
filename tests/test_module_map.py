"""The README's module map names every module of the package (a new module gets a line)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_names_every_module() -> None:
    readme = ROOT.joinpath("README.md").read_text(encoding="utf-8")
    start = readme.index("* Layout: `src/aicp/`")
    section = readme[start:readme.index("\n* ", start + 1)]
    package = ROOT / "src" / "aicp"
    missing = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if path.name == "__init__.py":
            if relative.parent != Path(".") and f"`{relative.parent.name}/`" not in section:
                missing.append(str(relative.parent) + "/")
        elif f"`{path.stem}`" not in section:
            missing.append(str(relative))
    assert not missing, f"README's module map does not name: {missing}"
