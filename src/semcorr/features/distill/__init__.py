"""The distillation pair: the ensemble teacher (SDXL-Turbo + DINOv2, :mod:`.teacher`) and the LoRA
student (DINOv2-B-reg + LoRA, :mod:`.student`). Training them: :mod:`semcorr.train`."""
