"""The distillation workflow through the real ``semcorr`` command, end to end, at full model size:
``cache-teacher`` fills a teacher cache, ``distill`` trains the ViT-B/14 student's LoRA (random
backbone weights, 56 px inputs so a step takes well under a second), and ``match`` loads the adapter.
"""

from __future__ import annotations

import json

import torch
from conftest import data_path
from safetensors.torch import load_file


def test_cache_distill_then_match(cli, tmp_path, one_thread):
    images = sorted(data_path("pf-willow", "car(G)").glob("*.png"))[:4]
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{path}\n" for path in images))
    cache, run = tmp_path / "cache", tmp_path / "run"

    cached = cli("cache-teacher", str(listing), "--out", str(cache), "--model", "baseline")
    assert cached.returncode == 0, cached.stderr[-2000:]

    distilled = cli(
        "distill",
        "--images",
        str(listing),
        "--teacher-cache",
        str(cache),
        "--out",
        str(run),
        "--random-weights",
        "--input-size",
        "56",
        "--epochs",
        "2",
        "--lr-decay-epoch",
        "1",
        "--neighbours",
        "2",
        "--lr",
        "1e-3",
        "--no-progress",
    )
    assert distilled.returncode == 0, distilled.stderr[-2000:]
    assert f"--adapter {run / 'adapter'}" in distilled.stdout
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["trainable_parameters"] == 294_912 and config["backbone"]["hidden_size"] == 768
    weights = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert any(tensor.abs().max() > 0 for name, tensor in weights.items() if "lora_B" in name)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 * 4 and {"loss", "lr", "pairs_per_s"} <= set(log[-1])

    matched = cli(
        "match",
        str(images[0]),
        str(images[1]),
        "--points",
        "50,60",
        "120,80",
        "--model",
        "student",
        "--random-weights",
        "--adapter",
        str(run / "adapter"),
        "--input-size",
        "56",
        "--out",
        str(tmp_path / "m.json"),
    )
    assert matched.returncode == 0, matched.stderr[-2000:]
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["model"] == "student" and len(result["matches"]) == 2
    assert "no --adapter" not in matched.stderr
    refused = cli(
        "match",
        str(images[0]),
        str(images[1]),
        "--points",
        "50,60",
        "--model",
        "student",
        "--random-weights",
        "--adapter",
        str(tmp_path),
        "--input-size",
        "56",
    )
    assert refused.returncode != 0 and "not a student adapter" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert torch.load(run / "checkpoint.pt", weights_only=True)["global_step"] == 8
