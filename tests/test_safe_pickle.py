"""Checkpoint files read without importing or running anything named in them (semcorr.weights.safe_pickle)."""

import collections
import dataclasses
import os
import sys
import types

import pytest
import torch

from semcorr.errors import CheckpointError
from semcorr.weights.safe_pickle import InertObject, read_checkpoint, read_state_dict

WEIGHTS = {"dino.blocks.15.adapter.down_proj.weight": torch.randn(4, 8), "upscale.0.conv2.weight": torch.randn(8, 1, 3, 3)}


def fake_config_module(name, marker):
    """A module with an OmegaConf-like config class (state restored through __setstate__, a nested
    dataclass and a defaultdict) whose restoring would leave a marker file if it ever ran."""
    module = types.ModuleType(name)

    @dataclasses.dataclass
    class Metadata:
        ref_type: object = None
        flags: dict = dataclasses.field(default_factory=dict)

    class DictConfig:
        def __init__(self, content):
            self._content, self._metadata = content, Metadata(ref_type=dict)
            self._flags = collections.defaultdict(dict)

        def __getstate__(self):
            return {"_content": self._content, "_metadata": self._metadata, "_flags": self._flags}

        def __setstate__(self, state):
            open(marker, "w").close()
            self.__dict__.update(state)

    for cls in (Metadata, DictConfig):
        cls.__module__ = name
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    return module


@pytest.fixture
def marco_file(tmp_path):
    """Writes a MARCO-layout checkpoint whose args is an object of a class that no longer exists."""
    def write(zip_format):
        name = f"not_here_cfg_{zip_format}"
        module = fake_config_module(name, tmp_path / "ran")
        sys.modules[name] = module
        try:
            path = tmp_path / f"marco_{'zip' if zip_format else 'legacy'}.pth"
            args = module.DictConfig({"lr": 1e-4, "model_cfg": {"n_upscale": 2}, "output_dir": "out"})
            torch.save({"model": WEIGHTS, "epoch": 7, "args": args}, path, _use_new_zipfile_serialization=zip_format)
        finally:
            del sys.modules[name]
        return path, name
    return write


@pytest.mark.parametrize("zip_format", [True, False])
def test_args_of_an_unknown_class_load_without_importing_or_running_it(marco_file, tmp_path, zip_format):
    path, name = marco_file(zip_format)
    state = read_state_dict(path, what="a MARCO checkpoint")
    assert set(state) == set(WEIGHTS) and all(torch.equal(state[k], WEIGHTS[k]) for k in WEIGHTS)
    content = read_checkpoint(path)
    assert content["epoch"] == 7 and isinstance(content["args"], InertObject)
    assert content["args"].qualified_name == f"{name}.DictConfig"
    assert content["args"].state["_content"]["lr"] == 1e-4
    assert name not in sys.modules and not (tmp_path / "ran").exists()


def test_the_fake_config_would_run_code_under_plain_torch_load(marco_file, tmp_path):
    """The check above means something: loading the same file the ordinary way restores (runs) it."""
    path, name = marco_file(True)
    sys.modules[name] = fake_config_module(name, tmp_path / "ran")
    try:
        torch.load(path, weights_only=False)
    finally:
        del sys.modules[name]
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("payload", ["exec", "system"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, payload):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            if payload == "exec":
                return (exec, (f"open({str(marker)!r}, 'w').close()",))
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"model": WEIGHTS, "args": Payload()}, path)
    with pytest.raises(CheckpointError, match="evil.pth: refused") as error:
        read_state_dict(path)
    assert ("builtins.exec" if payload == "exec" else ".system") in str(error.value)
    assert not marker.exists()


def test_an_inert_object_among_the_weights_is_refused_by_key(tmp_path, marco_file):
    name = "not_here_weights"
    module = fake_config_module(name, tmp_path / "ran")
    sys.modules[name] = module
    try:
        torch.save({"model": {**WEIGHTS, "upscale.0.odd": module.DictConfig({})}}, tmp_path / "odd.pth")
    finally:
        del sys.modules[name]
    with pytest.raises(CheckpointError, match="'upscale.0.odd'"):
        read_state_dict(tmp_path / "odd.pth")


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: {"model": s}, lambda s: {"state_dict": s, "epoch": 1}])
def test_plain_and_wrapped_state_dicts(tmp_path, wrap):
    torch.save(wrap(WEIGHTS), tmp_path / "w.pth")
    assert set(read_state_dict(tmp_path / "w.pth")) == set(WEIGHTS)


def test_junk_is_a_one_line_error(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: cannot be read") as error:
        read_state_dict(tmp_path / "junk.pth")
    assert "\n" not in str(error.value)
