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

WEIGHTS = {
    "dino.blocks.15.adapter.down_proj.weight": torch.randn(4, 8),
    "upscale.0.conv2.weight": torch.randn(8, 1, 3, 3),
}


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
    with pytest.raises(CheckpointError, match="junk.pth: not a checkpoint") as error:
        read_state_dict(tmp_path / "junk.pth")
    assert "\n" not in str(error.value)


class Payload:
    """Pickles as a call of os.system (it runs nothing unless loaded by plain torch.load)."""

    def __reduce__(self):
        return (os.system, ("true",))


@pytest.fixture
def bad_files(tmp_path):
    """Files no reader may load, each with the one line semcorr says about it."""
    evil = tmp_path / "evil.pth"
    torch.save({"model": WEIGHTS, "args": Payload()}, evil)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(7, 256)) * 8)
    text = tmp_path / "notes.pt"
    text.write_text("epoch 3, loss 0.2\n" * 40)
    good = tmp_path / "good.pt"
    torch.save(WEIGHTS, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {
        evil: f"{evil}: refused: the file names os.system, which semcorr never loads",
        garbage: f"{garbage}: not a checkpoint (neither PyTorch's zip format nor a pickle)",
        text: f"{text}: not a checkpoint (neither PyTorch's zip format nor a pickle)",
        cut: f"{cut}: a damaged checkpoint, cut short or corrupted (RuntimeError: PytorchStreamReader failed "
        "reading zip archive: failed finding central directory)",
    }


def test_refusals_say_what_semcorr_knows(bad_files):
    """The global refused, or "not a checkpoint": not PyTorch's long weights-only explanation. Both
    readers: released checkpoints (read_state_dict) and training checkpoints (weights only)."""
    from semcorr.train.checkpoint import load_checkpoint

    for path, message in bad_files.items():
        for read in (read_state_dict, load_checkpoint):
            with pytest.raises(CheckpointError) as caught:
                read(path)
            assert str(caught.value) == message, read


def test_a_training_checkpoint_refuses_any_global_outside_the_weights_only_list(tmp_path):
    import numpy as np

    from semcorr.train.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "semcorr-train-checkpoint", "lora": np.zeros(3)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: refused: the file names numpy.") and str(caught.value).endswith(
        "multiarray._reconstruct, which semcorr never loads"
    )
