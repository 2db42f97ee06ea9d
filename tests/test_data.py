"""Benchmark loaders: real files from ../shared/data, and small official-format fixtures in tmp_path."""

import dataclasses
import itertools
import json

import numpy as np
import pytest
import scipy.io
import torch
from conftest import data_path
from PIL import Image

from semcorr.data import Pair, load_ap10k, load_cub, load_pf_pascal, load_pf_willow, load_spair
from semcorr.errors import InputError


def write_image(path, size=(60, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 80, 40)).save(path)


class TestPair:
    def make(self, **changes):
        fields = dict(
            id="p",
            benchmark="b",
            category="c",
            source_image="a.png",
            target_image="b.png",
            source_points=[[1, 2], [3, 4]],
            target_points=[[5, 6], [7, 8]],
            source_visible=[True, True],
            target_visible=[True, False],
            keypoint_ids=[0, 3],
            source_box=[0, 0, 10, 10],
            target_box=[0, 0, 20, 10],
            source_size=(10, 10),
            target_size=(10, 20),
            flags={"mirror": 1},
        )
        fields.update(changes)
        return Pair(**fields)

    def test_arrays_typed_read_only_and_visibility(self):
        pair = self.make()
        assert pair.source_points.dtype == np.float32 and pair.keypoint_ids.dtype == np.int64
        assert pair.visible.tolist() == [True, False] and pair.num_keypoints == 1
        source, target = pair.counted_points()
        assert source.tolist() == [[1, 2]] and target.tolist() == [[5, 6]]
        with pytest.raises(ValueError):
            pair.source_points[0, 0] = 9
        with pytest.raises(TypeError):
            pair.flags["mirror"] = 0

    def test_pickles_and_replaces(self):
        import pickle

        pair = self.make()
        copy = pickle.loads(pickle.dumps(pair))
        assert np.array_equal(copy.target_points, pair.target_points) and copy.flags == {"mirror": 1}
        assert not copy.target_points.flags.writeable
        moved = dataclasses.replace(pair, target_image="c.png")
        assert moved.target_image.name == "c.png" and moved.flags["mirror"] == 1

    def test_shapes_are_checked(self):
        with pytest.raises(ValueError, match="target_points"):
            self.make(target_points=[[1, 2]])
        with pytest.raises(ValueError, match="source_box"):
            self.make(source_box=[0, 0, 1])


@pytest.fixture(scope="module")
def root():
    return data_path("spair-71k-mini", "SPair-71k")


@pytest.fixture(scope="module")
def willow_pairs():
    return load_pf_willow(data_path("pf-willow"))


class TestSPair:
    def test_mini_test_split(self, root):
        pairs = load_spair(root, "test")
        assert len(pairs) == 12
        assert sorted({p.category for p in pairs}) == ["aeroplane", "cow", "dog", "horse", "motorbike", "pottedplant"]
        assert len({p.id for p in pairs}) == 12 and all(p.benchmark == "spair" for p in pairs)
        assert all(p.source_image.is_file() and p.target_image.is_file() for p in pairs)

    def test_fields_as_in_the_pair_file(self, root):
        pair = next(p for p in load_spair(root.parent) if p.id == "000167-2008_007604-2009_001056:aeroplane")
        raw = json.loads((root / "PairAnnotation" / "test" / f"{pair.id}.json").read_text())
        assert pair.source_points.tolist() == raw["src_kps"] and pair.target_points.tolist() == raw["trg_kps"]
        assert pair.keypoint_ids.tolist() == [0, 1, 2, 16, 18, 22, 23] and pair.num_keypoints == 7
        assert pair.target_box.tolist() == [14, 71, 483, 220]
        assert pair.source_size == (500, 333) and pair.target_size == (334, 500)  # SPair's imsize is [W, H, C]
        assert pair.target_size == Image.open(pair.target_image).size[::-1]
        assert (
            pair.flags["viewpoint_variation"] == 1 and pair.flags["mirror"] == 0 and pair.flags["trg_pose"] == "Right"
        )

    def test_missing_layout_and_split(self, root):
        with pytest.raises(InputError, match="small"):
            load_spair(root, "test", layout="small")
        with pytest.raises(InputError, match="split"):
            load_spair(root, "everything")
        with pytest.raises(InputError, match="not an SPair-71k folder"):
            load_spair(root / "JPEGImages")

    def fixture(self, tmp_path, annotation):
        root = tmp_path / "SPair-71k"
        write_image(root / "JPEGImages" / "cat" / "a.jpg")
        write_image(root / "JPEGImages" / "cat" / "b.jpg")
        folder = root / "PairAnnotation" / "test"
        folder.mkdir(parents=True)
        path = folder / "000001-a-b:cat.json"
        path.write_text(annotation if isinstance(annotation, str) else json.dumps(annotation))
        return root, path

    GOOD = {
        "category": "cat",
        "src_imname": "a.jpg",
        "trg_imname": "b.jpg",
        "src_kps": [[1, 2]],
        "trg_kps": [[3, 4]],
        "src_bndbox": [0, 0, 50, 30],
        "trg_bndbox": [1, 1, 40, 30],
        "kps_ids": ["5"],
    }

    def test_fixture_without_imsize_reads_image_headers(self, tmp_path):
        root, _ = self.fixture(tmp_path, self.GOOD)
        (pair,) = load_spair(root)
        assert pair.target_size == (40, 60) and pair.keypoint_ids.tolist() == [5]

    def test_malformed_json_names_the_file(self, tmp_path):
        root, path = self.fixture(tmp_path, '{"category": "cat", ')
        with pytest.raises(InputError, match="not valid JSON") as error:
            load_spair(root)
        assert str(path) in str(error.value)

    @pytest.mark.parametrize("field", ["trg_kps", "src_bndbox", "src_imname"])
    def test_missing_field_names_file_and_field(self, tmp_path, field):
        annotation = {k: v for k, v in self.GOOD.items() if k != field}
        root, path = self.fixture(tmp_path, annotation)
        with pytest.raises(InputError) as error:
            load_spair(root)
        assert str(path) in str(error.value) and f"'{field}'" in str(error.value)

    def test_bad_points_and_missing_image(self, tmp_path):
        root, path = self.fixture(tmp_path, {**self.GOOD, "src_kps": [[1, 2, 3]]})
        with pytest.raises(InputError, match="'src_kps' must be"):
            load_spair(root)
        path.write_text(json.dumps({**self.GOOD, "trg_imname": "zz.jpg"}))
        with pytest.raises(InputError, match="zz.jpg not found"):
            load_spair(root)


class TestPFWillow:
    def test_exactly_900_pairs_of_10_keypoints(self, willow_pairs):
        pairs = willow_pairs
        assert len(pairs) == 900 and len({p.id for p in pairs}) == 900
        assert all(p.num_keypoints == 10 and p.source_points.shape == (10, 2) for p in pairs)
        assert {p.category for p in pairs} == {"car", "duck", "motorbike", "winebottle"}
        assert len({p.flags["subclass"] for p in pairs}) == 10

    def test_every_ordered_pair_within_a_subclass(self, willow_pairs):
        pairs = willow_pairs
        assert all(p.source_image != p.target_image and p.source_image.parent == p.target_image.parent for p in pairs)
        by_subclass = {}
        for p in pairs:
            by_subclass.setdefault(p.flags["subclass"], set()).add((p.source_image.name, p.target_image.name))
        for ordered in by_subclass.values():
            images = {name for pair in ordered for name in pair}
            assert ordered == set(itertools.permutations(images, 2)) and len(images) == 10

    def test_keypoints_as_given_and_box_is_their_extent(self, willow_pairs):
        pair = willow_pairs[0]
        coords = scipy.io.loadmat(str(pair.target_image.with_suffix(".mat")))["pts_coord"]
        assert np.allclose(pair.target_points, coords.T)
        assert np.allclose(pair.target_box, [*coords.min(axis=1), *coords.max(axis=1)])
        assert pair.target_size == Image.open(pair.target_image).size[::-1]

    def test_bad_mat_files_name_file_and_field(self, tmp_path):
        folder = tmp_path / "car(G)"
        write_image(folder / "A.png")
        scipy.io.savemat(str(folder / "A.mat"), {"other": np.zeros((2, 10))})
        with pytest.raises(InputError, match=r"A\.mat: missing field 'pts_coord'"):
            load_pf_willow(tmp_path)
        (folder / "A.mat").write_bytes(b"not a mat file at all")
        with pytest.raises(InputError, match=r"A\.mat: not a readable MATLAB file"):
            load_pf_willow(tmp_path)
        with pytest.raises(InputError, match="only a test split"):
            load_pf_willow(tmp_path, "val")


def pascal_fixture(tmp_path, rows=None, header="source_image,target_image,class,XA,YA,XB,YB"):
    root = tmp_path / "PF-dataset-PASCAL"
    for name, size in (("2009_000001", (80, 50)), ("2009_000002", (64, 96))):
        write_image(root / "JPEGImages" / f"{name}.jpg", size)
    (root / "Annotations" / "bird").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        str(root / "Annotations" / "bird" / "2009_000002.mat"),
        {"kps": np.array([[1.0, 2.0], [np.nan, np.nan]]), "bbox": np.array([[3, 4, 50, 60]])},
    )
    rows = (
        rows
        if rows is not None
        else [
            "PF-dataset-PASCAL/JPEGImages/2009_000001.jpg,PF-dataset-PASCAL/JPEGImages/2009_000002.jpg,3,"
            "10.5;20;30,11;21;31,12;22;32,13;23;33",
            "2009_000002.jpg,2009_000001.jpg,cat,1;2,3;4,5;6,7;8",
        ]
    )
    (root / "test_pairs.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


class TestPFPascal:
    def test_official_csv(self, tmp_path):
        root = pascal_fixture(tmp_path)
        first, second = load_pf_pascal(root)
        assert first.category == "bird" and second.category == "cat"  # class 3 of the 20 VOC classes
        assert first.source_points.tolist() == [[10.5, 11], [20, 21], [30, 31]]
        assert first.target_points.tolist() == [[12, 13], [22, 23], [32, 33]]
        assert first.target_size == (96, 64) and first.source_size == (50, 80)
        assert first.target_box.tolist() == [3, 4, 50, 60] and first.flags["box_from"] == "annotation"
        assert second.flags["box_from"] == "keypoints" and second.target_box.tolist() == [5, 7, 6, 8]
        assert first.source_image.name == "2009_000001.jpg" and first.id.startswith("0000-")

    def test_pairs_file_in_parent_with_cnngeometric_name(self, tmp_path):
        root = pascal_fixture(tmp_path)
        (root / "test_pairs.csv").rename(tmp_path / "test_pairs_pf_pascal.csv")
        assert len(load_pf_pascal(root)) == 2

    def test_missing_column_names_file_and_field(self, tmp_path):
        root = pascal_fixture(
            tmp_path, header="source_image,target_image,XA,YA,XB,YB", rows=["2009_000001.jpg,2009_000002.jpg,1,2,3,4"]
        )
        with pytest.raises(InputError, match=r"test_pairs\.csv: missing field 'class'"):
            load_pf_pascal(root)

    def test_bad_rows_name_line_and_field(self, tmp_path):
        root = pascal_fixture(tmp_path, rows=["2009_000001.jpg,2009_000002.jpg,3,1;2,3,4;5,6;7"])
        with pytest.raises(InputError, match="line 2: XA, YA, XB, YB have 2, 1, 2, 2 values"):
            load_pf_pascal(root)
        root = pascal_fixture(tmp_path, rows=["2009_000001.jpg,2009_000002.jpg,3,1;x,3;4,5;6,7;8"])
        with pytest.raises(InputError, match="line 2: field 'XA' must be"):
            load_pf_pascal(root)
        root = pascal_fixture(tmp_path, rows=["2009_000001.jpg,missing.jpg,3,1,3,5,7"])
        with pytest.raises(InputError, match="missing.jpg' not found"):
            load_pf_pascal(root)
        with pytest.raises(InputError, match="no PF-PASCAL pair list"):
            load_pf_pascal(root, "val")


def cub_fixture(tmp_path, parts=3):
    """Class 1: test images 1, 2, 4, 5 and train image 3; class 2: test images 6, 7, 8."""
    root = tmp_path / "CUB_200_2011"
    classes = {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross"}
    labels = {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 2}
    images, locs = [], []
    for image_id, label in labels.items():
        name = f"{classes[label]}/bird_{image_id}.jpg"
        write_image(root / "images" / name, (100 + image_id, 80))
        images.append(f"{image_id} {name}")
        for part in range(1, parts + 1):
            visible = int(not (image_id == 2 and part == 1))
            locs.append(f"{image_id} {part} {10.0 * part + image_id} {5.0 * part} {visible}")
    (root / "parts").mkdir(parents=True)
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(f"{i} {c}" for i, c in labels.items()) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(f"{i} {int(i == 3)}" for i in labels) + "\n")
    (root / "bounding_boxes.txt").write_text("\n".join(f"{i} 10.0 20.0 {30 + i}.0 40.0" for i in labels) + "\n")
    (root / "parts" / "part_locs.txt").write_text("\n".join(locs) + "\n")
    return root


class TestCUB:
    def test_sampling_is_randperm_seed_42_over_same_class_pairs(self, tmp_path):
        root = cub_fixture(tmp_path)
        everything = load_cub(root, n_pairs=None)
        expected = [
            ("1", "2"),
            ("1", "4"),
            ("1", "5"),
            ("2", "4"),
            ("2", "5"),
            ("4", "5"),
            ("6", "7"),
            ("6", "8"),
            ("7", "8"),
        ]
        assert [(p.flags["source_image_id"], p.flags["target_image_id"]) for p in everything] == expected
        torch.manual_seed(42)
        order = torch.randperm(len(expected))[:5].tolist()
        sampled = load_cub(root, n_pairs=5)
        assert [(p.flags["source_image_id"], p.flags["target_image_id"]) for p in sampled] == [
            expected[i] for i in order
        ]
        assert [p.id for p in load_cub(root, n_pairs=5)] == [p.id for p in sampled]  # deterministic

    def test_record_fields(self, tmp_path):
        pair = load_cub(cub_fixture(tmp_path), n_pairs=None)[0]  # images 1 -> 2
        assert pair.category == "Black_footed_Albatross" and pair.benchmark == "cub"
        assert pair.visible.tolist() == [False, True, True] and pair.num_keypoints == 2  # part 1 hidden in image 2
        assert pair.target_points.tolist() == [[12, 5], [22, 10], [32, 15]] and pair.keypoint_ids.tolist() == [0, 1, 2]
        assert pair.target_box.tolist() == [10, 20, 42, 60]  # x, y, x + w, y + h
        assert pair.target_size == (80, 102)

    def test_missing_and_malformed_files(self, tmp_path):
        root = cub_fixture(tmp_path)
        (root / "bounding_boxes.txt").write_text("1 10.0 20.0 30.0\n")
        with pytest.raises(InputError, match=r"bounding_boxes\.txt: line 1: .*missing field 'height'"):
            load_cub(root)
        (root / "bounding_boxes.txt").write_text("1 10.0 20.0 thirty 40\n")
        with pytest.raises(
            InputError, match=r"bounding_boxes\.txt: line 1: fields x, y, width, height must be numbers"
        ):
            load_cub(root)
        (root / "bounding_boxes.txt").write_text("1 10.0 20.0 30.0 40\n")
        (root / "parts" / "part_locs.txt").unlink()
        with pytest.raises(InputError, match=r"part_locs\.txt: not found"):
            load_cub(root)


class TestAP10K:
    def test_real_samples_cross_family(self):
        (pair,) = load_ap10k(data_path("ap10k-samples", "ap10k"), subset="cross-family")
        assert pair.category == "all" and pair.benchmark == "ap10k-cross-family"
        assert {pair.flags["source_family"], pair.flags["target_family"]} == {"Bovidae", "Felidae"}
        raw = json.loads(data_path("ap10k-samples", "ap10k", "test_ap10k.json").read_text())
        annotation = next(a for a in raw["annotations"] if a["id"] == int(pair.id.split("-")[1].split(":")[0]))
        keypoints = np.array(annotation["keypoints"]).reshape(-1, 3)
        assert np.array_equal(pair.target_points, keypoints[:, :2]) and np.array_equal(
            pair.target_visible, keypoints[:, 2] > 0
        )
        x, y, w, h = annotation["bbox"]
        assert pair.target_box.tolist() == [x, y, x + w, y + h] and pair.num_keypoints == 16
        assert load_ap10k(data_path("ap10k-samples", "ap10k")) == []  # two species: no intra-species pair

    def test_real_samples_intra_species(self):
        pairs = load_ap10k(data_path("ap10k-samples", "horse10", "test_horse10.json"))
        assert len(pairs) == 3 and {p.category for p in pairs} == {"horse"}
        assert all(p.num_keypoints >= 3 and p.source_points.shape == (22, 2) for p in pairs)
        assert [p.id for p in pairs] == [p.id for p in load_ap10k(data_path("ap10k-samples", "horse10"))]
        assert len(load_ap10k(data_path("ap10k-samples", "animalpose"))) == 1

    def test_the_crowd_list_names_image_ids(self):
        """GeoAware-SC's ap-10k_is_crowd.txt lists its per-image file names: image ids, which in AP-10K
        differ from annotation ids (annotation 9284 is on image 37516)."""
        from semcorr.data.ap10k import coco_files, read_coco
        from semcorr.data.ap10k_pairs import eligible

        groups = read_coco(*coco_files(data_path("ap10k-samples", "ap10k")))
        assert sorted((a.id, a.image_id) for group in groups for a in group) == [(6, 4), (9284, 37516)]
        assert [a.id for a in eligible(groups, {37516})] == [6]
        assert sorted(a.id for a in eligible(groups, {9284})) == [6, 9284]

    def test_crowd_file_and_bad_json(self, tmp_path):
        crowd = tmp_path / "crowd.txt"
        crowd.write_text("000000000100\n")
        pairs = load_ap10k(data_path("ap10k-samples", "horse10"), crowd_file=crowd)
        assert len(pairs) == 1 and "100" not in pairs[0].id.split(":")[0].split("-")
        bad = tmp_path / "coco.json"
        bad.write_text(json.dumps({"images": [], "categories": []}))
        with pytest.raises(InputError, match=r"coco\.json: missing field 'annotations'"):
            load_ap10k(bad)
        bad.write_text(
            json.dumps(
                {
                    "images": [{"id": 1, "file_name": "x.jpg", "width": 5, "height": 5}],
                    "categories": [{"id": 1, "name": "cat"}],
                    "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
                }
            )
        )
        with pytest.raises(InputError, match=r"coco\.json: annotation 7: missing field 'keypoints'"):
            load_ap10k(bad)

    def test_geoaware_prepared_layout(self, tmp_path):
        root = tmp_path / "ap-10k"
        for family, species, ident in (("Felidae", "cat", 11), ("Canidae", "dog", 12)):
            annotation = {
                "id": ident,
                "keypoints": [5, 6, 2] * 3 + [0, 0, 0],
                "bbox": [1, 2, 30, 20],
                "width": 40,
                "height": 30,
                "name": species,
                "supercategory": family,
            }
            path = root / "ImageAnnotation" / family / species / f"{ident:012d}.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(annotation))
            write_image((root / "JPEGImages" / family / species / f"{ident:012d}.jpg"), (40, 30))
        folder = root / "PairAnnotation" / "test_cross_family"
        folder.mkdir(parents=True)
        (folder / "000000000011-000000000012:all.json").write_text(
            json.dumps(
                {
                    "src_json_path": "data/ap-10k/ImageAnnotation/Felidae/cat/000000000011.json",
                    "trg_json_path": "data/ap-10k/ImageAnnotation/Canidae/dog/000000000012.json",
                }
            )
        )
        (pair,) = load_ap10k(root, subset="cross-family")
        assert pair.id == "000000000011-000000000012:all" and pair.num_keypoints == 3
        assert pair.target_box.tolist() == [1, 2, 31, 22] and pair.target_size == (30, 40)
        with pytest.raises(InputError, match="test_cross_species: not found"):
            load_ap10k(root, subset="cross-species")


class TestAP10KSets:
    """GeoAware-SC's set definitions on synthetic animals (see semcorr.data.ap10k_pairs)."""

    def animals(self, tmp_path):
        from semcorr.data.ap10k import Instance

        image = tmp_path / "x.jpg"
        write_image(image)
        groups, ident = [], 0
        for family, species, count in (("F1", "s1", 35), ("F1", "s2", 3), ("F2", "s3", 2)):
            for _ in range(count):
                ident += 1
                groups.append(
                    [
                        Instance(
                            ident,
                            image,
                            np.array([[1, 1, 2]] * 3, np.float32),
                            np.array([0, 0, 9, 9], np.float32),
                            (40, 60),
                            species,
                            family,
                            tmp_path / "a.json",
                        )
                    ]
                )
        hidden = np.array([[1, 1, 2], [1, 1, 0], [1, 1, 0]], np.float32)  # 1 keypoint: never eligible
        groups.append([Instance(99, image, hidden, np.zeros(4, np.float32), (40, 60), "s3", "F2", tmp_path / "a.json")])
        crowd = [
            Instance(
                i,
                image,
                np.array([[1, 1, 2]] * 3, np.float32),
                np.zeros(4, np.float32),
                (40, 60),
                "s3",
                "F2",
                tmp_path / "a.json",
            )
            for i in (100, 101)
        ]
        return groups + [crowd]

    def test_sets(self, tmp_path):
        from semcorr.data.ap10k_pairs import build_pairs, eligible, split_species

        groups = self.animals(tmp_path)
        assert {a.id for a in eligible(groups, None)} == set(range(1, 41))
        assert 100 in {a.id for a in eligible(groups, set())}  # with a crowd list only listed ids are left out
        test = split_species(eligible(groups, None), "test")
        assert [a.id for a in test[("F1", "s1")]] == list(range(6, 36))  # the last 30 by id
        assert [a.id for a in split_species(eligible(groups, None), "val")[("F1", "s1")]] == list(range(1, 6))
        intra = build_pairs(groups, "test", "intra-species")
        assert len(intra) == 435 + 3 + 1 and {p.category for p in intra} == {"s1", "s2", "s3"}
        cross_species = build_pairs(groups, "test", "cross-species")
        assert len(cross_species) == 30 * 3 and {p.category for p in cross_species} == {"F1"}
        assert all(p.flags["source_species"] == "s1" and p.flags["target_species"] == "s2" for p in cross_species)
        cross_family = build_pairs(groups, "test", "cross-family")
        assert len(cross_family) == 30 and {p.category for p in cross_family} == {"all"}
        assert [p.id for p in build_pairs(groups, "test", "cross-family")] == [p.id for p in cross_family]
        assert [p.id for p in build_pairs(groups, "test", "cross-family", seed=1)] != [p.id for p in cross_family]


# What every benchmark's folder is called in the messages of a data root that is a file or missing.
AP10K = "an AP-10K folder or COCO keypoint .json file"
FOLDERS = {
    "spair": "an SPair-71k folder",
    "pf-willow": "the PF-WILLOW folder",
    "pf-pascal": "the PF-dataset-PASCAL folder",
    "cub": "a CUB-200-2011 folder",
    "ap10k-intra-species": AP10K,
    "ap10k-cross-species": AP10K,
    "ap10k-cross-family": AP10K,
}


def test_a_data_root_that_is_a_file_or_missing_says_so_for_every_benchmark(tmp_path):
    from semcorr.data.benchmarks import BENCHMARKS, load_benchmark

    assert set(FOLDERS) == set(BENCHMARKS)
    afile = tmp_path / "annotations.txt"
    afile.write_text("not a folder\n")
    for name, benchmark in BENCHMARKS.items():
        with pytest.raises(InputError) as caught:
            load_benchmark(benchmark, afile)
        assert str(caught.value) == f"{afile}: is a file, not {FOLDERS[name]}", name
        with pytest.raises(InputError) as caught:
            load_benchmark(benchmark, tmp_path / "missing")
        assert str(caught.value) == f"{tmp_path / 'missing'}: not found; expected {FOLDERS[name]}", name
