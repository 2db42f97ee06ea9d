"""Training configs: one shared base, each run's own fields, and run folders written by the first
config version (one ``pairs`` field) still resume."""

from __future__ import annotations

import dataclasses
import json

import pytest

from semcorr.errors import InputError
from semcorr.train import DistillConfig, FinetuneConfig, TrainConfig
from semcorr.train.config import OPERATIONAL, record_digest
from semcorr.train.engine import check_run_folder


def write_v1(folder, run_format, record):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"format": run_format, "version": 1, "config": record}))


def v1_record(config: DistillConfig, pairs: str) -> dict:
    """What the first version wrote for a distillation: one ``pairs`` field instead of the four."""
    record = {k: v for k, v in config.record().items() if k not in ("pair_list", "benchmark", "data_root", "split")}
    return {**record, "pairs": pairs}


def test_the_base_holds_the_shared_fields_once():
    shared = {f.name for f in dataclasses.fields(TrainConfig)}
    distill = {f.name for f in dataclasses.fields(DistillConfig)} - shared
    finetune = {f.name for f in dataclasses.fields(FinetuneConfig)} - shared
    assert distill == {
        "images",
        "pair_list",
        "teacher_cache",
        "on_missing",
        "teacher",
        "teacher_weights",
        "temperature",
        "neighbours",
    }
    assert finetune == {"pair_file", "adapter", "beta", "points_per_pair", "jitter"}
    assert OPERATIONAL <= shared
    assert (DistillConfig(images="x").weight_decay, FinetuneConfig(pair_file="p").weight_decay) == (0.05, 0.0)


def test_student_config_of_a_run():
    student = FinetuneConfig(pair_file="p.h5", adapter="run/adapter", input_size=56, lora_rank=4).student_config()
    assert (student.input_size, student.adapter, student.merge, student.lora_rank) == (56, "run/adapter", False, 4)


def test_digest_ignores_operational_settings():
    config = DistillConfig(images="x")
    assert config.digest() == dataclasses.replace(config, device="cpu", log_every=3, progress=False).digest()
    assert config.digest() != dataclasses.replace(config, lr=5e-4).digest()


def test_a_first_version_distill_folder_resumes(tmp_path):
    listing = tmp_path / "pairs.txt"
    config = DistillConfig(images="images", pair_list=str(listing), epochs=3)
    old = v1_record(config, str(listing))
    write_v1(tmp_path / "run", config.RUN_FORMAT, old)
    assert check_run_folder(tmp_path / "run", config, rank=0) == record_digest(old)  # the checkpoint's digest
    with pytest.raises(InputError, match="another config.*lr"):
        check_run_folder(tmp_path / "run", dataclasses.replace(config, lr=1e-3), rank=0)


def test_a_first_version_spair_root_becomes_the_benchmark(tmp_path):
    root = tmp_path / "SPair-71k"
    root.mkdir()
    config = DistillConfig(benchmark="spair", data_root=str(root), teacher_cache="cache")
    write_v1(tmp_path / "run", config.RUN_FORMAT, v1_record(config, str(root)))
    check_run_folder(tmp_path / "run", config, rank=0)


@pytest.mark.parametrize(
    "pairs,fields", [("spair", {"benchmark": "spair", "data_root": "data"}), ("co3d.h5", {"pair_file": "co3d.h5"})]
)
def test_a_first_version_finetune_folder_resumes(tmp_path, pairs, fields):
    config = FinetuneConfig(**fields)
    record = config.record()
    for name in ("pair_file", "benchmark"):
        record.pop(name)
    record["pairs"] = pairs
    write_v1(tmp_path / "run", config.RUN_FORMAT, record)
    assert check_run_folder(tmp_path / "run", config, rank=0) == record_digest(record)


def test_unknown_or_bad_settings_are_one_line(tmp_path):
    config = DistillConfig(images="x")
    write_v1(tmp_path / "a", config.RUN_FORMAT, {**config.record(), "warp_speed": 9})
    with pytest.raises(InputError, match=r"config.json: settings \['warp_speed'\] are not distill settings"):
        check_run_folder(tmp_path / "a", config, rank=0)
    write_v1(tmp_path / "b", config.RUN_FORMAT, {**config.record(), "epochs": 0})
    with pytest.raises(InputError, match=r"config.json: --epochs 0"):
        check_run_folder(tmp_path / "b", config, rank=0)


def test_a_new_folder_records_version_2(tmp_path):
    config = FinetuneConfig(pair_file="p.h5")
    check_run_folder(tmp_path / "run", config, rank=0)
    content = json.loads((tmp_path / "run" / "config.json").read_text())
    assert content["version"] == 2 and content["format"] == "semcorr-finetune-run"
    assert FinetuneConfig.from_record(content["config"], 2, "x") == config
