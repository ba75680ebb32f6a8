"""The model registry refuses anything it cannot trust, and moves its CURRENT pointer atomically.

Models are real (exported through ``training.export`` with its parity check); each test works on
its own copy of a registry published once per module.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from click.testing import CliRunner
from support.models import publish_model

from stream.features import FeatureSpec
from stream.registry import LoadedModel, Manifest, ModelRegistry, ModelVerificationError, RegistryError
from stream.registry.manifest import MANIFEST_NAME, MODEL_FILE, TensorSpec, serving_inputs
from stream.registry.registry import CURRENT, sha256_file, validate_version_name
from tools.cli import main


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with v1 and v2 (window 12, not promoted) and w20 (window 20)."""
    root = tmp_path_factory.mktemp("registry")
    publish_model(root, "v1", seed=1, promote=False)
    publish_model(root, "v2", seed=2, promote=False)
    publish_model(root, "w20", seed=3, promote=False, window=20)
    return root


@pytest.fixture
def reg(published: Path, tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "models"
    shutil.copytree(published, root)
    return ModelRegistry(root)


def rewrite_manifest(reg: ModelRegistry, version: str, **changes: object) -> Manifest:
    """Replace manifest fields and re-hash every file, as a careless (or hostile) publisher would."""
    directory = reg.version_dir(version)
    manifest = reg.manifest(version)
    files = {name: sha256_file(directory / name) for name in manifest.files}
    updated = msgspec.structs.replace(manifest, files=files, **changes)
    (directory / MANIFEST_NAME).write_bytes(updated.to_json())
    return updated


def test_published_version_verifies_and_serves(reg: ModelRegistry) -> None:
    model = LoadedModel.load(reg, "v1")
    spec = model.manifest.feature_spec
    h, c = model.zero_state(3)
    win = np.zeros((3, spec.window), dtype=np.int64)
    steps = np.zeros((3, 1, spec.step_width), dtype=np.int64)
    out = model.step(steps, np.ones(3, dtype=np.int64), h, c, np.arange(3), win, win, win)
    assert out.scores.shape == (3, model.manifest.top_k)
    assert out.h.shape == (1, 3, model.hidden)
    assert reg.versions() == ["v1", "v2", "w20"]


def test_tampered_file_fails_hash_check(reg: ModelRegistry) -> None:
    path = reg.version_dir("v1") / "categories.json"
    path.write_text(path.read_text(encoding="utf-8").replace("c1", "c9", 1), encoding="utf-8")
    with pytest.raises(ModelVerificationError, match=r"categories\.json: sha256"):
        LoadedModel.load(reg, "v1")


def test_flipped_byte_in_graph_fails_hash_check(reg: ModelRegistry) -> None:
    path = reg.version_dir("v1") / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelVerificationError, match=r"model\.onnx: sha256"):
        reg.verify_files("v1")


def test_truncated_graph_fails_even_with_matching_hash(reg: ModelRegistry) -> None:
    path = reg.version_dir("v1") / MODEL_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ModelVerificationError, match="sha256"):
        LoadedModel.load(reg, "v1")
    rewrite_manifest(reg, "v1")  # hashes now match the truncated file: the graph itself must be refused
    reg.verify_files("v1")
    with pytest.raises(ModelVerificationError, match="does not load"):
        LoadedModel.load(reg, "v1")


def test_graph_exported_for_another_window_is_refused(reg: ModelRegistry) -> None:
    # v1's manifest (window 12) with w20's graph (window 20), hashes re-computed: only the ONNX
    # interface check can tell.
    shutil.copy2(reg.version_dir("w20") / MODEL_FILE, reg.version_dir("v1") / MODEL_FILE)
    rewrite_manifest(reg, "v1")
    with pytest.raises(ModelVerificationError, match="win_cat has shape"):
        LoadedModel.load(reg, "v1")


def test_model_of_the_older_serving_format_is_refused_with_the_way_out(reg: ModelRegistry) -> None:
    """Format 1 graphs predicted at the last step of each row only; a worker cannot serve them."""
    rewrite_manifest(reg, "v1", format_version=1)
    with pytest.raises(ModelVerificationError, match=r"manifest format 1.*export the model again"):
        LoadedModel.load(reg, "v1")


def test_manifest_claiming_another_window_is_refused(reg: ModelRegistry) -> None:
    manifest = reg.manifest("v1")
    spec = msgspec.structs.replace(manifest.feature_spec, window=30)
    rewrite_manifest(reg, "v1", feature_spec=spec, inputs=serving_inputs(spec, manifest.hidden))
    with pytest.raises(ModelVerificationError, match="shape"):
        LoadedModel.load(reg, "v1")


def test_manifest_claiming_more_text_tokens_is_refused(reg: ModelRegistry) -> None:
    manifest = reg.manifest("v1")
    spec = msgspec.structs.replace(manifest.feature_spec, text_tokens=manifest.feature_spec.text_tokens + 1)
    rewrite_manifest(reg, "v1", feature_spec=spec, inputs=serving_inputs(spec, manifest.hidden))
    with pytest.raises(ModelVerificationError, match="steps has shape"):
        LoadedModel.load(reg, "v1")


def test_manifest_claiming_another_hidden_size_is_refused(reg: ModelRegistry) -> None:
    manifest = reg.manifest("v1")
    hidden = manifest.hidden * 2
    rewrite_manifest(reg, "v1", hidden=hidden, inputs=serving_inputs(manifest.feature_spec, hidden))
    with pytest.raises(ModelVerificationError, match="shape"):
        LoadedModel.load(reg, "v1")


def test_manifest_inputs_not_the_serving_interface_are_refused(reg: ModelRegistry) -> None:
    manifest = reg.manifest("v1")
    renamed = (TensorSpec("events", "int64", manifest.inputs[0].shape), *manifest.inputs[1:])
    rewrite_manifest(reg, "v1", inputs=renamed)
    with pytest.raises(ModelVerificationError, match="differ from the serving interface"):
        LoadedModel.load(reg, "v1")


def test_manifest_vocabulary_size_mismatch_is_refused(reg: ModelRegistry) -> None:
    rewrite_manifest(reg, "v1", n_categories=reg.manifest("v1").n_categories + 1)
    with pytest.raises(ModelVerificationError, match="vocabulary sizes"):
        LoadedModel.load(reg, "v1")


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", ".hidden", "a\\b", "/etc", "v1/../v2", "x" * 101])
def test_path_traversal_and_odd_version_names_are_refused(reg: ModelRegistry, name: str) -> None:
    with pytest.raises(RegistryError, match="invalid model version name"):
        validate_version_name(name)
    with pytest.raises(RegistryError, match="invalid model version name"):
        reg.version_dir(name)
    with pytest.raises(RegistryError, match="invalid model version name"):
        LoadedModel.load(reg, name)
    with pytest.raises(RegistryError, match="invalid model version name"):
        reg.promote(name)
    assert reg.current_version() is None


def test_publish_refuses_a_traversing_name(reg: ModelRegistry, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    shutil.copytree(reg.version_dir("v1"), staging)
    with pytest.raises(RegistryError, match="invalid model version name"):
        reg.publish(staging, "../escaped")
    assert not (reg.root / "escaped").exists()
    assert not (reg.versions_dir.parent / "escaped").exists()


def test_current_pointer_with_a_traversing_name_is_refused(reg: ModelRegistry) -> None:
    (reg.root / CURRENT).write_text("../../etc\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="invalid model version name"):
        reg.current_version()


def test_missing_file_is_refused(reg: ModelRegistry) -> None:
    (reg.version_dir("v1") / "items.json").unlink()
    with pytest.raises(ModelVerificationError, match="do not match the manifest"):
        LoadedModel.load(reg, "v1")


def test_extra_file_is_refused(reg: ModelRegistry) -> None:
    (reg.version_dir("v1") / "backdoor.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelVerificationError, match=r"backdoor\.pkl"):
        LoadedModel.load(reg, "v1")


def test_manifest_naming_another_version_is_refused(reg: ModelRegistry) -> None:
    shutil.copytree(reg.version_dir("v1"), reg.versions_dir / "v9")
    with pytest.raises(ModelVerificationError, match="manifest names version 'v1'"):
        LoadedModel.load(reg, "v9")


def test_unreadable_manifest_and_unknown_version(reg: ModelRegistry) -> None:
    (reg.version_dir("v1") / MANIFEST_NAME).write_bytes(b"{not json")
    with pytest.raises(ModelVerificationError, match="unreadable manifest"):
        LoadedModel.load(reg, "v1")
    with pytest.raises(RegistryError, match="no such model version") as info:
        LoadedModel.load(reg, "nope")
    assert not isinstance(info.value, ModelVerificationError)


def test_publish_refuses_an_existing_version_and_leaves_no_temp_dirs(reg: ModelRegistry, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    shutil.copytree(reg.version_dir("v2"), staging)
    before = sha256_file(reg.version_dir("v1") / MODEL_FILE)
    with pytest.raises(RegistryError, match="already exists"):
        reg.publish(staging, "v1")
    assert sha256_file(reg.version_dir("v1") / MODEL_FILE) == before
    assert sorted(p.name for p in reg.versions_dir.iterdir()) == ["v1", "v2", "w20"]


def test_promote_rollback_and_history(reg: ModelRegistry) -> None:
    assert reg.current_version() is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    reg.promote("v1")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()  # v1 was the first model: there is no earlier one
    reg.promote("v2")
    assert reg.current_version() == "v2"
    assert reg.rollback() == "v1"
    assert reg.current_version() == "v1"
    history = reg.history()
    assert [(e["action"], e["version"], e["previous"]) for e in history] == [
        ("promote", "v1", None),
        ("promote", "v2", "v1"),
        ("rollback", "v1", "v2"),
    ]
    assert all(isinstance(e["at"], str) and e["at"].endswith("Z") for e in history)
    # history.jsonl is one JSON object per line
    lines = (reg.root / "history.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["version"] for line in lines] == ["v1", "v2", "v1"]


def test_promote_refuses_a_corrupt_version_and_keeps_current(reg: ModelRegistry) -> None:
    reg.promote("v1")
    (reg.version_dir("v2") / "items.json").write_text('{"tokens": []}', encoding="utf-8")
    with pytest.raises(ModelVerificationError):
        reg.promote("v2")
    with pytest.raises(RegistryError, match="no such model version"):
        reg.promote("v404")
    assert reg.current_version() == "v1"
    assert [e["version"] for e in reg.history()] == ["v1"]


def test_rollback_refuses_a_previous_version_that_was_corrupted(reg: ModelRegistry) -> None:
    reg.promote("v1")
    reg.promote("v2")
    (reg.version_dir("v1") / MODEL_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelVerificationError):
        reg.rollback()
    assert reg.current_version() == "v2"


def test_current_is_written_through_a_temp_file_and_rename(reg: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    reg.promote("v1")
    renames: list[tuple[Path, Path, str]] = []
    real_replace = os.replace

    def spying_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        # At rename time the new content is complete in the temp file and CURRENT is still the old one.
        renames.append((Path(src), Path(dst), (reg.root / CURRENT).read_text(encoding="utf-8")))
        assert Path(src).read_text(encoding="utf-8") == "v2\n"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spying_replace)  # the registry calls os.replace
    reg.promote("v2")
    assert len(renames) == 1
    src, dst, current_at_rename = renames[0]
    assert dst == reg.root / CURRENT
    assert src.parent == reg.root and src.name.startswith(".CURRENT.")  # same filesystem: rename is atomic
    assert current_at_rename == "v1\n"
    assert (reg.root / CURRENT).read_text(encoding="utf-8") == "v2\n"
    assert not src.exists()


def test_failed_pointer_write_leaves_current_and_no_temp_file(
    reg: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg.promote("v1")

    def failing_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        reg.promote("v2")
    assert reg.current_version() == "v1"
    assert sorted(p.name for p in reg.root.iterdir()) == [CURRENT, "history.jsonl", "versions"]
    assert [e["version"] for e in reg.history()] == ["v1"]  # no history line for a promotion that failed


def test_readers_never_see_a_partial_current_while_promoting(reg: ModelRegistry) -> None:
    reg.promote("v1")
    seen: set[str] = set()
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            seen.add((reg.root / CURRENT).read_text(encoding="utf-8"))

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for i in range(150):
            reg.promote("v2" if i % 2 == 0 else "v1")
    finally:
        stop.set()
        reader.join()
    assert seen <= {"v1\n", "v2\n"}
    assert seen  # the reader did read
    assert sorted(p.name for p in reg.root.iterdir()) == [CURRENT, "history.jsonl", "versions"]
    assert len(reg.history()) == 151


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    yield CliRunner()


def test_models_cli_list_verify_promote_rollback(reg: ModelRegistry, runner: CliRunner) -> None:
    root = str(reg.root)
    # Through the top-level group, as users run it: it turns a RegistryError into the one-line report.
    result = runner.invoke(main, ["models", "verify", "--registry", root])
    assert result.exit_code == 1 and "has no serving model" in result.output
    assert runner.invoke(main, ["models", "promote", "--registry", root, "v1"]).exit_code == 0
    result = runner.invoke(main, ["models", "promote", "--registry", root, "v2"])
    assert result.exit_code == 0 and "serving v2" in result.output
    listed = runner.invoke(main, ["models", "list", "--registry", root]).stdout.splitlines()
    assert [line.strip() for line in listed] == ["v1", "* v2", "w20"]
    assert runner.invoke(main, ["models", "verify", "--registry", root]).stdout.strip() == "v2: ok"
    result = runner.invoke(main, ["models", "rollback", "--registry", root])
    assert result.exit_code == 0 and "rolled back to v1" in result.output
    assert reg.current_version() == "v1"


def test_models_cli_refuses_a_corrupt_version(reg: ModelRegistry, runner: CliRunner) -> None:
    reg.promote("v1")
    (reg.version_dir("v2") / MODEL_FILE).write_bytes(b"\x00" * 10)
    result = runner.invoke(main, ["models", "verify", "--registry", str(reg.root), "v2"])
    assert result.exit_code == 1 and "sha256" in result.output
    result = runner.invoke(main, ["models", "promote", "--registry", str(reg.root), "v2"])
    assert result.exit_code == 1
    result = runner.invoke(main, ["models", "promote", "--registry", str(reg.root), "../v1"])
    assert result.exit_code == 1 and "invalid model version name" in result.output
    assert reg.current_version() == "v1"


def test_feature_spec_round_trips_through_the_manifest(reg: ModelRegistry) -> None:
    manifest = reg.manifest("w20")
    assert manifest.feature_spec == FeatureSpec(window=20, text_tokens=3, text_buckets=256)
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_models_list_marks_shadows_and_says_whether_intent_is_calibrated(
    reg: ModelRegistry, runner: CliRunner
) -> None:
    from tools.models_cli import intent_verdict

    reg.promote("v1")
    reg.set_shadow("v2")
    listed = runner.invoke(main, ["models", "list", "--registry", str(reg.root)]).stdout.splitlines()
    assert [line.strip() for line in listed] == ["* v1", "s v2", "w20"]
    methods = {"lstm": {"ece": 0.031, "roc_auc": 0.58}, "count_logistic": {"ece": 0.017, "roc_auc": 0.713}}
    report = {"methods": methods, "best_baseline": "count_logistic", "model_beats_best_baseline": False,
              "model_calibrated": False}  # fmt: skip
    assert intent_verdict(report) == "intent NOT calibrated (ECE 0.031), AUC 0.580 <= count_logistic 0.713"
    report |= {"model_beats_best_baseline": True, "model_calibrated": True}
    assert intent_verdict(report).startswith("intent calibrated (ECE 0.031), AUC 0.580 > count_logistic")
    assert intent_verdict({}) == ""
