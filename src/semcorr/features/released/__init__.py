"""Released methods, loaded exactly from their authors' files: DistillDIFT's students
(:mod:`.distilldift`, converted by :mod:`.distilldift_checkpoint`), MARCO (:mod:`.marco`), DIY-SC
(:mod:`.diysc`) and GECO (:mod:`.geco`), the last three on one adapted-DINOv2 base (:mod:`.adapted`).
Where their files come from: :mod:`semcorr.weights.releases`."""
