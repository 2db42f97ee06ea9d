"""SDXL-Turbo's UNet features: the extractor (:mod:`.extractor`), its components loaded from the hub
or a folder (:mod:`.parts`), the UNet trunk that stops after the first up stage (:mod:`.unet`) and
the tiny autoencoder TAESDXL (:mod:`.taesd`). Needs ``diffusers`` (``pip install 'semcorr[teacher]'``)."""
