"""``semcorr reproduce distilldift``: the DistillDIFT paper's pipeline as one resumable plan.

Stages (each skipped when its outputs exist and are whole; :mod:`.plan`):

1. ``data``: the datasets (``semcorr data``): DistillDIFT's COCO training subset, CO3D (the
   single-sequence subset by default: the full set is 5.5 TB), SPair-71k, PF-WILLOW, CUB-200-2011.
2. ``teacher-cache``: the teacher's features of the COCO images (``semcorr cache-teacher``).
3. ``distill``: the student distilled from them (``semcorr distill``).
4. ``pairs-3d``: exact correspondences between CO3D views (``semcorr make-3d-pairs``).
5. ``refine``: the student refined on them (``semcorr finetune-3d``).
6. ``evaluate``: every model on every benchmark under the authors' rule and semcorr's
   (``semcorr eval``), one results file each.
7. ``table``: the paper's table beside ours (``semcorr compare``), in ``ROOT/table.md``.

``tiny`` runs the same stages on the small real data of the repository's test fixtures
(``../shared/data``: PF-WILLOW, 12 SPair-71k pairs, a posed RGB-D living room) in minutes on a
CPU: the teacher is DINOv2-S with random weights, the student a seeded random DINOv2-B-reg at
112² (its LoRA trained for real), the authors' released student is replaced by the weight-free
baseline, and CUB is left out. Every tiny figure says so; none of them means anything about the
method, only that the pipeline runs end to end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError, WeightsUnavailableError
from ..fileio import check_output_folder, make_folder, read_json, write_atomically, write_json
from .plan import Context, Plan, Stage

# The paper's table (the authors' project page; PCK@0.1 of the box, per keypoint; see the docs for
# which rule produced each cell): model row -> benchmark -> figure.
PAPER_TABLE: dict[str, dict[str, float]] = {
    "DINOv2 (840²)": {"spair-71k": 59.5, "pf-willow": 67.4, "cub-200-2011": 85.9},
    "DINOv2+SD1.5 (sd-dino)": {"spair-71k": 64.0, "pf-willow": 74.8, "cub-200-2011": 86.3},
    "DistillDIFT, unsupervised": {"spair-71k": 65.1, "pf-willow": 77.4, "cub-200-2011": 89.4},
}

FULL = {
    "train_images": 12_000,
    "epochs": 10,
    "refine_epochs": 1,
    "input_size": 434,
    "teacher": "teacher",
    "student_weights": None,
    "co3d": "single-sequence",
    "benchmarks": {"spair-71k": "spair", "pf-willow": "pf-willow", "cub-200-2011": "cub"},
}
TINY = {
    "train_images": 16,
    "epochs": 1,
    "refine_epochs": 1,
    "input_size": 112,
    "teacher": "dinov2-s-reg",
    "co3d": "rgbd-livingroom",
    "eval_limit": 8,
    "benchmarks": {"spair-71k": "spair", "pf-willow": "pf-willow"},
}
# Rough costs per unit, for the plan's printout: (seconds on a GPU, seconds on a CPU).
SECONDS: dict[str, tuple[float, float]] = {"teacher_image": (1.0, 240.0), "student_step": (0.05, 3.0)}
TEACHER_BYTES = 31 * 31 * 2048 * 2  # one image's fp16 teacher features


def _seconds(context: Context, what: str) -> float:
    gpu, cpu = SECONDS[what]
    return gpu if context.device.startswith("cuda") else cpu


def _folder(context: Context, *parts: str) -> Path:
    return context.root.joinpath(*parts)


# --- data -----------------------------------------------------------------------------------------


def _tiny_data(context: Context) -> dict[str, Path]:
    shared = Path(context.settings["data"])
    found = {
        "pf-willow": shared / "pf-willow",
        "spair-71k": shared / "spair-71k-mini" / "SPair-71k",
        "rgbd-livingroom": shared / "rgbd-livingroom",
    }
    missing = [f"{name} ({path})" for name, path in found.items() if not path.is_dir()]
    if missing:
        raise InputError(
            f"--tiny needs the small real data of semcorr's tests in --data {shared}: missing {', '.join(missing)}"
        )
    return found


def _train_list(context: Context) -> Path:
    """The training images: a list file (keys as written in it)."""
    if context.tiny:
        return _folder(context, "train-images.txt")
    from ..data.fetch import dataset_path

    return dataset_path("coco-distilldift", context.settings["data"]) / "subset.txt"


def _co3d_name(context: Context) -> str:
    return "co3d-single-sequence" if context.settings["co3d"] == "single-sequence" else "co3d"


def run_data(context: Context) -> dict[str, Any]:
    if context.tiny:
        found = _tiny_data(context)
        pictures = sorted(found["pf-willow"].rglob("*.png"))[: context.settings["train_images"]]
        _write_list(_train_list(context), pictures)
        _save_tiny_backbone(context)
        return {"data": {name: str(path) for name, path in found.items()}, "train_images": len(pictures)}
    from ..data.install import download_dataset

    root = Path(context.settings["data"])
    for name in ("coco-distilldift", "spair-71k", "pf-willow", "cub-200-2011"):
        download_dataset(name, root, progress=context.settings.get("progress", True))
    download_dataset(_co3d_name(context), root, categories=["all"], progress=context.settings.get("progress", True))
    return {"data": str(root)}


def _write_list(path: Path, pictures: list[Path]) -> None:
    if not pictures:
        raise InputError(f"{path}: no training images found")
    write_atomically(path, "".join(f"{p.resolve()}\n" for p in pictures).encode())


def _save_tiny_backbone(context: Context) -> None:
    """A seeded random DINOv2-B-reg (the student's architecture), saved once so that every tiny stage
    (training, refinement, evaluation) uses the same backbone."""
    import torch

    from ..features.backbones.dinov2 import build_backbone
    from ..features.config import DinoV2Config

    folder = _folder(context, "tiny-backbone")
    if (folder / "config.json").is_file():
        return
    torch.manual_seed(0)
    model = build_backbone(DinoV2Config(), random_weights=True, name="tiny backbone")
    temporary = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(temporary, safe_serialization=True)
    os.replace(temporary, folder)


def data_whole(context: Context) -> bool:
    if context.tiny:
        return _train_list(context).is_file() and _folder(context, "tiny-backbone", "config.json").is_file()
    from ..data.verify import verify_dataset

    names = ("coco-distilldift", "spair-71k", "pf-willow", "cub-200-2011", _co3d_name(context))
    return all(verify_dataset(name, context.settings["data"]).ok for name in names)


# --- teacher cache and distillation ---------------------------------------------------------------


def _teacher_spec(context: Context) -> Any:
    from ..extract.config import ModelSpec

    if context.tiny:
        return ModelSpec(
            context.settings["teacher"],
            random_weights=True,
            device=context.device,
            overrides={"input_size": context.settings["input_size"]},
        )
    return ModelSpec("teacher", device=context.device)


def run_teacher_cache(context: Context) -> dict[str, Any]:
    from ..extract.config import ExtractSettings
    from ..extract.run import extract_features
    from ..images import list_images

    images = list_images(_train_list(context), category_from_folder=not context.tiny)  # the prompt's category
    report = extract_features(
        images,
        _folder(context, "teacher-cache"),
        model=_teacher_spec(context),
        settings=ExtractSettings(embeddings=False, workers=0),
        progress=context.settings.get("progress", True),
    )
    return {"written": report.written, "already_done": report.already_done}


def teacher_cache_whole(context: Context) -> bool:
    from ..images import list_images
    from ..store.folder import FeatureFolder

    folder = _folder(context, "teacher-cache")
    if not (folder / "config.json").is_file():
        return False
    keys = [item.key for item in list_images(_train_list(context))]
    return not FeatureFolder(folder).missing(keys)


def _train_common(context: Context) -> dict[str, Any]:
    weights = str(_folder(context, "tiny-backbone")) if context.tiny else context.settings.get("student_weights")
    return {
        "weights": weights,
        "input_size": context.settings["input_size"],
        "device": context.device,
        "progress": context.settings.get("progress", True),
    }


def run_distill(context: Context) -> dict[str, Any]:
    from ..train.config import DistillConfig
    from ..train.distillation import distill

    config = DistillConfig(
        images=str(_train_list(context)),
        teacher_cache=str(_folder(context, "teacher-cache")),
        epochs=context.settings["epochs"],
        lr_decay_epoch=max(context.settings["epochs"] // 2, 1),
        **_train_common(context),
    )
    result = distill(config, _folder(context, "runs", "distill"))
    return {"adapter": str(result.adapter), "steps": result.global_step}


def _adapter_whole(folder: Path) -> bool:
    return (folder / "adapter" / "adapter_config.json").is_file() and any((folder / "adapter").glob("*.safetensors"))


# --- 3D pairs and refinement ----------------------------------------------------------------------


def run_pairs_3d(context: Context) -> dict[str, Any]:
    from ..threed.generate import make_3d_pairs

    out, progress = _folder(context, "pairs-3d.h5"), context.settings.get("progress", True)
    if context.tiny:
        summary = make_3d_pairs(
            Path(context.settings["data"]) / "rgbd-livingroom", out, format="rgbd", progress=progress
        )
    else:
        from ..data.fetch import dataset_path

        summary = make_3d_pairs(
            dataset_path(_co3d_name(context), context.settings["data"]), out, format="co3d", progress=progress
        )
    return {key: summary[key] for key in ("sequences", "written", "in_file", "pairs") if key in summary}


def pairs_whole(context: Context) -> bool:
    from ..threed.pairfile import count_pairs

    path = _folder(context, "pairs-3d.h5")
    if not path.is_file() or path.with_name(path.name + ".parts").exists():
        return False  # a run that stopped half-way leaves its finished sequences in the parts folder
    try:
        return count_pairs(path) > 0  # each pair is checked when refinement opens the file
    except InputError:
        return False


def run_refine(context: Context) -> dict[str, Any]:
    from ..train.config import FinetuneConfig
    from ..train.refinement import finetune

    config = FinetuneConfig(
        pair_file=str(_folder(context, "pairs-3d.h5")),
        adapter=str(_folder(context, "runs", "distill", "adapter")),
        epochs=context.settings["refine_epochs"],
        lr_decay_epoch=context.settings["refine_epochs"],
        **_train_common(context),
    )
    result = finetune(config, _folder(context, "runs", "refine"))
    return {"adapter": str(result.adapter), "steps": result.global_step}


# --- evaluation and the table ---------------------------------------------------------------------


def _models(context: Context) -> dict[str, dict[str, Any]]:
    """Row name -> the arguments of :func:`semcorr.eval.evaluate` that build it."""
    student = {"model": "student", "weights": _train_common(context)["weights"]}  # at its own 434²
    rows = {
        "semcorr: distilled": {**student, "adapter": str(_folder(context, "runs", "distill", "adapter"))},
        "semcorr: distilled + 3D": {**student, "adapter": str(_folder(context, "runs", "refine", "adapter"))},
    }
    if context.tiny:
        rows["baseline (stands in for the authors' student in --tiny)"] = {"model": "baseline"}
    else:
        rows["authors' released student"] = {"model": "distilldift-us"}
    return rows


RULES = {"authors'": "distilldift-paper", "semcorr": "semcorr"}  # each benchmark under both rules


def run_evaluate(context: Context) -> dict[str, Any]:
    """One results file per model, benchmark and rule (what ``semcorr eval --out`` writes, so that
    ``semcorr compare`` reads them), and ``results/index.json`` naming each file's row."""
    from ..eval.runner import evaluate

    data = _tiny_data(context) if context.tiny else None
    folder = make_folder(_folder(context, "results"))
    index_path = folder / "index.json"
    index: dict[str, Any] = read_json(index_path, expect=dict) if index_path.is_file() else {}
    skipped: list[str] = []
    for row, arguments in _models(context).items():
        try:
            for benchmark, loader in context.settings["benchmarks"].items():
                for rule, protocol in RULES.items():
                    out = _result_path(context, row, benchmark, rule)
                    if out.name in index and out.is_file():
                        continue
                    root = data[benchmark] if data is not None else _benchmark_root(context, benchmark)
                    result = evaluate(
                        loader,
                        root,
                        protocol=protocol,
                        device=context.device,
                        limit=context.settings.get("eval_limit"),
                        progress=False,
                        cache_dir=_folder(context, "eval-cache"),
                        **arguments,
                    )
                    write_json(out, result)
                    index[out.name] = {"row": row, "rule": rule, "benchmark": benchmark, "protocol": protocol}
                    write_json(index_path, index)
        except WeightsUnavailableError as error:  # the row's weights: no benchmark can use them
            context.log(f"[evaluate] {row}: left out ({error})")
            skipped.append(row)
    return {"results": len(index), "skipped": skipped}


def _benchmark_root(context: Context, benchmark: str) -> Path:
    from ..data.fetch import dataset_path

    return dataset_path(benchmark, context.settings["data"])


def _result_path(context: Context, row: str, benchmark: str, rule: str) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in row.lower()).strip("-")
    return _folder(context, "results", f"{slug}--{benchmark}--{rule.strip(chr(39))}.json")


def evaluate_whole(context: Context) -> bool:
    index_path = _folder(context, "results", "index.json")
    if not index_path.is_file():
        return False
    index = read_json(index_path, expect=dict)
    return bool(index) and all((index_path.parent / name).is_file() for name in index)


def run_table(context: Context) -> dict[str, Any]:
    from ..eval.compare import read_results

    folder = _folder(context, "results")
    rows: dict[str, dict[str, str]] = {
        f"paper: {name}": {b: f"{v:.1f}" for b, v in cells.items()} for name, cells in PAPER_TABLE.items()
    }
    for name, entry in read_json(folder / "index.json", expect=dict).items():
        (result,) = read_results(folder / name)  # checked: a semcorr results file of this version
        label = f"{entry['row']} [{entry['rule']} rule: {entry['protocol']}]"
        rows.setdefault(label, {})[entry["benchmark"]] = f"{result['pck_per_keypoint']['0.1']:.1f}"
    benchmarks = ["spair-71k", "pf-willow", "cub-200-2011"]
    lines = ["| model | " + " | ".join(benchmarks) + " |", "| --- |" + " --- |" * len(benchmarks)]
    lines += [f"| {name} | " + " | ".join(cells.get(b, "–") for b in benchmarks) + " |" for name, cells in rows.items()]
    notes = [
        "PCK@0.1 of the target box, per keypoint. Paper rows: the authors' project page (SPair-71k under "
        "their eval/ rule, PF-WILLOW and CUB under their train/eval.py rule: protocol distilldift-paper).",
        f"Every figure's file is in {folder}; `semcorr compare FILE ...` puts any of them side by side.",
    ]
    if context.tiny:
        notes.append("--tiny: random-weight models on a few images: these figures mean nothing about the method.")
    table = "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
    write_atomically(_folder(context, "table.md"), table.encode())
    context.log(table)
    return {"rows": len(rows)}


def table_whole(context: Context) -> bool:
    return _folder(context, "table.md").is_file()


def settings_for(tiny: bool, data: str | os.PathLike | None, root: Path) -> dict[str, Any]:
    settings = dict(TINY if tiny else FULL)
    settings["data"] = str(data) if data is not None else str(root / "data")
    return settings


def distilldift_plan() -> Plan:
    """The stages of the module docstring, with their rough disk and time."""
    return Plan(
        "distilldift",
        (
            Stage(
                "data",
                "datasets (COCO subset, CO3D, SPair-71k, PF-WILLOW, CUB-200-2011)",
                ("data/",),
                run_data,
                data_whole,
                disk=lambda c: 0 if c.tiny else 13e9,
                seconds=lambda c: 5 if c.tiny else 3600,
            ),
            Stage(
                "teacher-cache",
                "teacher features of the training images",
                ("teacher-cache/",),
                run_teacher_cache,
                teacher_cache_whole,
                disk=lambda c: TEACHER_BYTES * c.settings["train_images"] / (64 if c.tiny else 1),
                seconds=lambda c: _seconds(c, "teacher_image") * c.settings["train_images"] / (200 if c.tiny else 1),
            ),
            Stage(
                "distill",
                "the student distilled from the teacher",
                ("runs/distill/",),
                run_distill,
                lambda c: _adapter_whole(_folder(c, "runs", "distill")),
                disk=lambda c: 5e6,
                seconds=lambda c: (
                    _seconds(c, "student_step")
                    * c.settings["train_images"]
                    * c.settings["epochs"]
                    / (20 if c.tiny else 1)
                ),
            ),
            Stage(
                "pairs-3d",
                "exact correspondences between posed views",
                ("pairs-3d.h5",),
                run_pairs_3d,
                pairs_whole,
                disk=lambda c: 1e6 if c.tiny else 2e8,
                seconds=lambda c: 10 if c.tiny else 600,
            ),
            Stage(
                "refine",
                "the student refined on the 3D pairs",
                ("runs/refine/",),
                run_refine,
                lambda c: _adapter_whole(_folder(c, "runs", "refine")),
                disk=lambda c: 5e6,
                seconds=lambda c: 20 if c.tiny else 3600 * (1 if c.device.startswith("cuda") else 40),
            ),
            Stage(
                "evaluate",
                "every model, benchmark and rule",
                ("results/",),
                run_evaluate,
                evaluate_whole,
                disk=lambda c: 1e6 if c.tiny else 5e9,
                seconds=lambda c: 60 if c.tiny else 3600 * (1 if c.device.startswith("cuda") else 60),
            ),
            Stage(
                "table",
                "the paper's table beside ours",
                ("table.md",),
                run_table,
                table_whole,
                disk=lambda c: 1e4,
                seconds=lambda c: 1,
            ),
        ),
    )


def reproduce(
    name: str,
    root: str | os.PathLike,
    *,
    tiny: bool = False,
    data: str | os.PathLike | None = None,
    stage: str | None = None,
    device: str | None = None,
    plan_only: bool = False,
    log: Any = print,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or with ``plan_only`` just print) a paper's plan in ``root``; see the module.

    Returns:
        ``{"plan": the printed plan, "stages": {name: summary}}``.
    """
    from ..runtime import resolve_device

    if name != "distilldift":
        raise InputError(f"unknown plan {name!r}; plans: distilldift")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: is a file; give a folder for the run folder")
    if not plan_only:
        check_output_folder(root, what="run folder")
    # a plan can be printed for a device this machine lacks (to size a run elsewhere)
    context_device = str(device) if plan_only and device not in (None, "auto") else str(resolve_device(device))
    recorded = root / "reproduce.json"
    settings = settings_for(tiny, data, root)
    settings["progress"] = progress
    if recorded.is_file():
        before = read_json(recorded, expect=dict)
        if before.get("tiny") != tiny:
            raise InputError(f"{root}: holds a {'--tiny' if before.get('tiny') else 'full'} run; use another folder")
    context = Context(root, tiny, context_device, settings, log)
    plan = distilldift_plan()
    states = plan.states(context)
    text = plan.describe(context, states)
    log(text)
    if plan_only:
        return {"plan": text, "stages": {}}
    make_folder(root)
    write_json(
        recorded, {"plan": name, "tiny": tiny, "settings": {k: v for k, v in settings.items() if k != "progress"}}
    )
    return {"plan": text, "stages": plan.run(context, only=stage, states=states)}
