"""The datasets ``semcorr data`` downloads: where each comes from, its licence and size, its files
and their checksums, and the counts its extracted layout must show.

A dataset is put in ``ROOT/<name>/`` in its publishers' own layout (the archives' folders as they
are, the pair lists beside them); :attr:`Dataset.loader_root` is the folder inside it that
semcorr's loaders take. Each file has the publisher's address (:attr:`DataFile.url`) and a name
(:attr:`DataFile.name`): a mirror serves the file at ``MIRROR/<dataset name>/<file name>``.

Checksums: only CO3D publishes them (a SHA-256 per zip, in its repository, read at a pinned
commit); the files of other repositories are pinned to a commit and their SHA-256 was taken from
that commit. MD5 values that many public loaders agree on but no publisher page shows are kept as
*unverified*: a mismatch is a warning, not an error. Where nothing is published, the SHA-256 of
the first download that extracts and passes the layout check is recorded in ``ROOT/<name>.lock.json``
and every later download must match it.

Counts: ``expected`` is the publisher's figure (README, paper) where one is known and certain;
``None`` means the count is recorded in the lock file at the first download and checked after.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from ..errors import InputError

CountKind = Literal["files", "folders", "lines", "rows"]
CHECKSUM_KINDS = ("sha256", "md5")


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset.

    Attributes:
        name: where a mirror serves it (``MIRROR/<dataset>/<name>``) and its name while downloaded.
        url: the publisher's address.
        size: bytes, where known (shown before downloading; the server is asked otherwise).
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"``, or None when none is known.
        trusted: the checksum comes from the publisher (or a pinned commit): a mismatch is an error;
            otherwise (a value many public loaders agree on) a mismatch is a warning.
        archive: a zip or tar archive to extract; otherwise the file is placed as it is.
        into: the folder (inside the dataset folder) it is extracted or placed into.
        members: extract only these archive members (all when empty).
        required: a file that cannot be fetched stops the download; an optional one is a warning.
    """

    name: str
    url: str
    size: int | None = None
    checksum: str | None = None
    trusted: bool = False
    archive: bool = True
    into: str = ""
    members: tuple[str, ...] = ()
    required: bool = True

    def __post_init__(self) -> None:
        if self.checksum is not None:
            kind, _, value = self.checksum.partition(":")
            if kind not in CHECKSUM_KINDS or not value or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(f"{self.name}: checksum must be 'sha256:<hex>' or 'md5:<hex>', got {self.checksum!r}")

    @property
    def sha256(self) -> str | None:
        """The SHA-256 this file must have, when the catalog gives a trusted one."""
        if self.trusted and self.checksum and self.checksum.startswith("sha256:"):
            return self.checksum.partition(":")[2]
        return None


@dataclass(frozen=True)
class Count:
    """A count the extracted layout must show.

    Attributes:
        pattern: a glob relative to the dataset folder (``SPair-71k/JPEGImages/*/*.jpg``), or a file
            for ``lines`` and ``rows``.
        expected: the count, or None: recorded at the first download, checked after.
        kind: ``files`` or ``folders`` matching the pattern, non-empty ``lines`` of a file, or
            ``rows`` of a CSV file (its non-empty lines after the header).
    """

    pattern: str
    expected: int | None
    kind: CountKind = "files"


@dataclass(frozen=True)
class Load:
    """A loader check of ``semcorr data verify --load``: the benchmark's split loads with this many pairs.

    Attributes:
        benchmark: a name of :data:`semcorr.data.benchmarks.BENCHMARKS`.
        split: the split to load.
        expected: the number of pairs, or the pattern of a :class:`Count` whose value it must equal.
    """

    benchmark: str
    split: str
    expected: int | str


@dataclass(frozen=True)
class Dataset:
    """One downloadable dataset.

    Attributes:
        name: what ``semcorr data`` calls it; also its folder under the root.
        title: the dataset and its paper.
        source: the publisher's page.
        licence: its licence as the publisher states it (or that none is stated).
        terms: what a user accepts by downloading it.
        size: the download size in words (exact sizes are shown before downloading).
        files: its files, in download order.
        loader_root: the folder, relative to ``ROOT/<name>``, that semcorr's loaders take.
        counts: what the extracted layout must show.
        loads: what ``verify --load`` checks with semcorr's loaders.
        prepare: a preparation step after extraction (:mod:`semcorr.data.prepare`), or None.
        by_category: downloaded a category at a time (CO3D): ``--categories`` chooses them.
    """

    name: str
    title: str
    source: str
    licence: str
    terms: str
    size: str
    files: tuple[DataFile, ...]
    loader_root: str = ""
    counts: tuple[Count, ...] = ()
    loads: tuple[Load, ...] = ()
    prepare: str | None = None
    by_category: bool = False


_ENS = "https://www.di.ens.fr/willow/research"
_GEOAWARE = "https://raw.githubusercontent.com/Junyi42/GeoAware-SC/99fd6b6a37d22aa2fabe75e7f48a3eaba51cfb72"
_CO3D = "https://raw.githubusercontent.com/facebookresearch/co3d/eb51d7583c56ff23dc918d9deafee50f4d8178c3/co3d"
_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
_RESEARCH = "research use; cite the paper; the images keep their own owners' terms"

CO3D_LINKS = DataFile(
    "links.json",
    f"{_CO3D}/links.json",
    size=34630,
    archive=False,
    trusted=True,
    checksum="sha256:3ed4997dc39ac01a20eb97eef03bc15fe49cd9895b8e1b0cad8aa4f7de9ccf97",
)
CO3D_SHA256S = DataFile(
    "co3d_sha256.json",
    f"{_CO3D}/co3d_sha256.json",
    size=39963,
    archive=False,
    trusted=True,
    checksum="sha256:09de118b3c0b58fa3f878cf7e529c6f0e2ab9055ba6fcb87922e99380067a9c8",
)
_CO3D_LICENCE = "CC BY-NC 4.0 (stated for the repository; the dataset's own terms presumably the same)"
COCO_SUBSET_SIZE = 12_000
COCO_IMAGES = "http://images.cocodataset.org/train2017"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="spair-71k",
            title="SPair-71k (Min et al., 2019)",
            source="https://cvlab.postech.ac.kr/research/SPair-71k/",
            licence="none stated; its README asks to cite Min et al. 2019; images from PASCAL VOC 2012 and PASCAL3D+ "
            "(Flickr terms)",
            terms=_RESEARCH,
            size="unknown (the server's figure is shown before downloading)",
            files=(
                DataFile("SPair-71k.tar.gz", "https://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz"),
            ),
            loader_root="SPair-71k",
            counts=(
                Count("SPair-71k/JPEGImages/*", 18, "folders"),
                Count("SPair-71k/JPEGImages/*/*.jpg", 1800),
                Count("SPair-71k/ImageAnnotation/*/*.json", 1800),
                Count("SPair-71k/PairAnnotation/trn/*.json", 53340),
                Count("SPair-71k/PairAnnotation/val/*.json", 5384),
                Count("SPair-71k/PairAnnotation/test/*.json", 12234),
                Count("SPair-71k/Layout/large/test.txt", 12234, "lines"),
                Count("SPair-71k/Layout/small/test.txt", 2438, "lines"),
            ),
            loads=(Load("spair", "test", 12234),),
        ),
        Dataset(
            name="pf-willow",
            title="PF-WILLOW (Ham et al., Proposal Flow, CVPR 2016)",
            source=f"{_ENS}/proposalflow/",
            licence="none stated (academic use; cite Ham et al. 2016)",
            terms=_RESEARCH,
            size="unknown (the server's figure is shown)",
            files=(
                DataFile("PF-dataset.zip", f"{_ENS}/proposalflow/dataset/PF-dataset.zip"),
                DataFile(
                    "test_pairs_pf.csv",
                    f"{_ENS}/cnngeometric/other_resources/test_pairs_pf.csv",
                    archive=False,
                    into="PF-dataset",
                ),
            ),
            loader_root="PF-dataset",
            counts=(
                Count("PF-dataset/*", 10, "folders"),
                Count("PF-dataset/*/*.png", 100),
                Count("PF-dataset/*/*.mat", 100),
                Count("PF-dataset/test_pairs_pf.csv", None, "rows"),
            ),
            loads=(Load("pf-willow", "test", 900),),
        ),
        Dataset(
            name="pf-pascal",
            title="PF-PASCAL (Ham et al., Proposal Flow, TPAMI 2018) with CNNGeometric's pair lists",
            source=f"{_ENS}/proposalflow/",
            licence="none stated (academic use; cite Ham et al. 2018); images from PASCAL VOC",
            terms=_RESEARCH,
            size="unknown (the server's figure is shown)",
            files=(
                DataFile("PF-dataset-PASCAL.zip", f"{_ENS}/proposalflow/dataset/PF-dataset-PASCAL.zip"),
                DataFile(
                    "test_pairs_pf_pascal.csv",
                    f"{_ENS}/cnngeometric/other_resources/test_pairs_pf_pascal.csv",
                    archive=False,
                    into="PF-dataset-PASCAL",
                ),
                DataFile(
                    "val_pairs_pf_pascal.csv",
                    f"{_ENS}/cnngeometric/other_resources/val_pairs_pf_pascal.csv",
                    archive=False,
                    into="PF-dataset-PASCAL",
                ),
                DataFile(
                    "trn_pairs_pf_pascal.csv",
                    f"{_DRIVE}111tpXshLiJ4qudBHoGK3HbMSNr9vVRq9",
                    archive=False,
                    into="PF-dataset-PASCAL",
                    required=False,
                ),
            ),
            loader_root="PF-dataset-PASCAL",
            counts=(
                Count("PF-dataset-PASCAL/Annotations/*", 20, "folders"),
                Count("PF-dataset-PASCAL/JPEGImages/*.jpg", None),
                Count("PF-dataset-PASCAL/test_pairs_pf_pascal.csv", 299, "rows"),
                Count("PF-dataset-PASCAL/val_pairs_pf_pascal.csv", 308, "rows"),
            ),
            loads=(Load("pf-pascal", "test", 299), Load("pf-pascal", "val", 308)),
        ),
        Dataset(
            name="cub-200-2011",
            title="CUB-200-2011 (Wah et al., 2011)",
            source="https://data.caltech.edu/records/65de6-vp158",
            licence="none in the archive (its README asks to cite Wah et al. 2011); Caltech's terms: non-commercial "
            "research",
            terms="non-commercial research use; cite the paper",
            size="1.15 GB",
            files=(
                DataFile(
                    "CUB_200_2011.tgz",
                    "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                    size=1_150_585_339,
                    checksum="md5:97eceeb196236b17998738112f37df78",
                ),
            ),
            loader_root="CUB_200_2011",
            counts=(
                Count("CUB_200_2011/images/*", 200, "folders"),
                Count("CUB_200_2011/images/*/*.jpg", 11788),
                Count("CUB_200_2011/images.txt", 11788, "lines"),
                Count("CUB_200_2011/train_test_split.txt", 11788, "lines"),
                Count("CUB_200_2011/bounding_boxes.txt", 11788, "lines"),
                Count("CUB_200_2011/parts/part_locs.txt", 11788 * 15, "lines"),
            ),
            loads=(Load("cub", "test", 1000),),
        ),
        Dataset(
            name="ap-10k",
            title="AP-10K (Yu et al., NeurIPS 2021), pair sets after GeoAware-SC (Zhang et al., CVPR 2024)",
            source="https://github.com/AlexTheBad/AP-10K",
            licence="CC-BY-4.0 (the AP-10K README); GeoAware-SC's crowd list: from its repository",
            terms="CC-BY-4.0: credit the authors",
            size="unknown (the server's figure is shown)",
            files=(
                DataFile("ap-10k.zip", f"{_DRIVE}1-FNNGcdtAQRehYYkGY1y4wzFNg4iWNad"),
                DataFile(
                    "ap-10k_is_crowd.txt",
                    f"{_GEOAWARE}/data/ap-10k_is_crowd.txt",
                    size=24011,
                    archive=False,
                    into="ap-10k",
                    trusted=True,
                    checksum="sha256:64444a59008ec9402b9409dce6234af946a2f480a8348d1751d22af10c812ee6",
                ),
            ),
            loader_root="ap-10k",
            prepare="ap10k",
            counts=(
                Count("ap-10k/annotations/ap10k-*-split*.json", 9),
                Count("ap-10k/ImageAnnotation/*", None, "folders"),
                Count("ap-10k/ImageAnnotation/*/*", None, "folders"),
                Count("ap-10k/ImageAnnotation/*/*/*.json", None),
                Count("ap-10k/JPEGImages/*/*/*.jpg", None),
                *(
                    Count(f"ap-10k/PairAnnotation/{folder}/*.json", None)
                    for folder in (
                        "trn",
                        "val",
                        "test",
                        "val_cross_species",
                        "test_cross_species",
                        "val_cross_family",
                        "test_cross_family",
                    )
                ),
            ),
            loads=tuple(
                Load(f"ap10k-{subset}", "test", f"ap-10k/PairAnnotation/test{suffix}/*.json")
                for subset, suffix in (
                    ("intra-species", ""),
                    ("cross-species", "_cross_species"),
                    ("cross-family", "_cross_family"),
                )
            ),
        ),
        Dataset(
            name="coco-distilldift",
            title=f"DistillDIFT's training images: {COCO_SUBSET_SIZE:,} COCO train2017 images (Lin et al., 2014)",
            source="https://cocodataset.org",
            licence="annotations CC BY 4.0; images: Flickr terms of use (COCO terms of use)",
            terms="COCO's terms of use; each image keeps its Flickr licence",
            size="253 MB of annotations (kept: instances_train2017.json) and about 2 GB of images (estimated)",
            files=(
                DataFile(
                    "annotations_trainval2017.zip",
                    "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                    size=252_907_541,
                    checksum="md5:f4bbac642086de4f52a3fdda2de5fa2c",
                    members=("annotations/instances_train2017.json",),
                ),
            ),
            prepare="coco-subset",
            counts=(
                Count("annotations/instances_train2017.json", 1),
                Count("train2017/*", None, "folders"),
                Count("train2017/*/*.jpg", COCO_SUBSET_SIZE),
                Count("subset.txt", COCO_SUBSET_SIZE, "lines"),
            ),
        ),
        Dataset(
            name="co3d",
            title="CO3D v2 (Reizenstein et al., ICCV 2021), chosen categories",
            source="https://github.com/facebookresearch/co3d",
            licence=_CO3D_LICENCE,
            terms="non-commercial use; credit the authors",
            size="5.5 TB for all 51 categories (about 20 GB per zip)",
            files=(CO3D_LINKS, CO3D_SHA256S),
            by_category=True,
        ),
        Dataset(
            name="co3d-single-sequence",
            title="CO3D v2 single-sequence subset (one sequence per category), chosen categories",
            source="https://github.com/facebookresearch/co3d",
            licence=_CO3D_LICENCE,
            terms="non-commercial use; credit the authors",
            size="8.9 GB for all 48 categories",
            files=(CO3D_LINKS, CO3D_SHA256S),
            by_category=True,
        ),
    )
}


ALIASES = {
    "spair": "spair-71k",
    "pfwillow": "pf-willow",
    "pfpascal": "pf-pascal",
    "cub": "cub-200-2011",
    "ap10k": "ap-10k",
    "coco": "coco-distilldift",
}  # the benchmark names of `semcorr eval`, and short forms


def get_dataset(name: str) -> Dataset:
    """The dataset called ``name`` (case-insensitive; or an alias such as ``spair``, ``cub``); an
    :class:`InputError` naming the choices otherwise."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in DATASETS:
        return DATASETS[key]
    close = difflib.get_close_matches(key, DATASETS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise InputError(f"unknown dataset {name!r}; {hint}choose one of: {', '.join(DATASETS)}")
