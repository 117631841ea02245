"""The conda environment, the pip setup and the CLI agree with each other."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()
    return name.lower().replace("_", "-") + spec.replace(" ", "")


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {_norm(r) for r in project["dependencies"]} | {_norm(r) for r in project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1
    listed = {_norm(r) for r in pip_lists[0]}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"


def test_constraints_pin_every_direct_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.lower().replace("_", "-")] = version
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        name = _norm(req).split("=")[0].split(">")[0].split("<")[0]
        assert name in pinned, f"{name} is not pinned in constraints.txt; regenerate it (see its header)"
        exact = re.search(r"==([^,]+)$", req)
        if exact:
            assert pinned[name] == exact.group(1), (
                f"{name}: pyproject pins {exact.group(1)}, constraints {pinned[name]}"
            )


def test_cli_help_lists_commands_and_each_command_has_examples():
    from medsam_focus.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    names = sorted(commands.choices)
    assert {"infer", "finetune", "evaluate", "export", "study", "demo", "prepare", "phantoms", "plot-sdf"} <= set(names)
    out = subprocess.run(
        [sys.executable, "-m", "medsam_focus", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in names:
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.M), f"--help does not list {name}"
        sub = subprocess.run(
            [sys.executable, "-m", "medsam_focus", name, "--help"], capture_output=True, text=True, check=True
        ).stdout
        assert "examples:" in sub and "medsam-focus " + name in sub, f"`{name} --help` lacks worked examples"
