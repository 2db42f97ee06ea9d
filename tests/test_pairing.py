"""Image pairing: chunked nearest neighbours, seeded epochs, rank shares, listed pairs."""

from __future__ import annotations

import pytest
import torch
from conftest import data_path

from semcorr.errors import InputError
from semcorr.images import ImageItem
from semcorr.train.pairing import (
    ListedPairs,
    RetrievalPairs,
    benchmark_pairs,
    index_pairs,
    nearest_neighbours,
    rank_share,
    read_pair_list,
)


class TestNearestNeighbours:
    @pytest.mark.parametrize("chunk", [1, 7, 16, 1000])
    def test_chunks_equal_brute_force(self, chunk):
        torch.manual_seed(0)
        embeddings = torch.randn(53, 12)
        normed = torch.nn.functional.normalize(embeddings, dim=1)
        similarity = normed @ normed.T
        similarity.fill_diagonal_(float("-inf"))
        expected = similarity.topk(10, dim=1).indices
        assert torch.equal(nearest_neighbours(embeddings, 10, chunk=chunk), expected)

    def test_never_itself_and_checks_k(self):
        embeddings = torch.ones(5, 3)  # all identical: ties everywhere, still never itself
        neighbours = nearest_neighbours(embeddings, 4, chunk=2)
        assert not (neighbours == torch.arange(5)[:, None]).any()
        assert all(sorted(row.tolist()) == [j for j in range(5) if j != i] for i, row in enumerate(neighbours))
        with pytest.raises(InputError, match="neighbours"):
            nearest_neighbours(embeddings, 5)


class TestEpochs:
    def test_retrieval_pairs_are_a_function_of_seed_and_epoch(self):
        neighbours = nearest_neighbours(torch.randn(40, 8), 10)
        pairs = RetrievalPairs(neighbours, seed=3)
        first = pairs.epoch(0)
        assert first == RetrievalPairs(neighbours.clone(), seed=3).epoch(0)
        assert first != pairs.epoch(1) and first != RetrievalPairs(neighbours, seed=4).epoch(0)
        assert sorted(source for source, _ in first) == list(range(40))  # every image once per epoch
        assert all(target in neighbours[source].tolist() for source, target in first)

    def test_listed_pairs_shuffle_and_rank_shares(self):
        listed = ListedPairs(((0, 1), (1, 2), (2, 0), (3, 1), (4, 2)), seed=0)
        epoch = listed.epoch(2)
        assert sorted(epoch) == sorted(listed.pairs) and epoch == listed.epoch(2)
        shares = [rank_share(epoch, rank, 2) for rank in range(2)]
        assert len(shares[0]) == len(shares[1]) == 2 and not set(shares[0]) & set(shares[1])
        with pytest.raises(InputError, match="cannot be shared"):
            rank_share(epoch[:1], 0, 2)


class TestListedPairs:
    def test_pair_file(self, tmp_path):
        path = tmp_path / "pairs.txt"
        path.write_text("# source target\na.jpg b.jpg\n\nb.jpg c.jpg  # comment\n")
        assert read_pair_list(path) == [("a.jpg", "b.jpg"), ("b.jpg", "c.jpg")]
        items = [ImageItem(key, tmp_path / key) for key in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")]
        kept, index = index_pairs(items, read_pair_list(path), "pairs.txt")
        assert [item.key for item in kept] == ["a.jpg", "b.jpg", "c.jpg"] and index == ((0, 1), (1, 2))
        path.write_text("a.jpg b.jpg c.jpg\n")
        with pytest.raises(InputError, match="pairs.txt:1"):
            read_pair_list(path)
        with pytest.raises(InputError, match="not in the image folder"):
            index_pairs(items[:1], [("a.jpg", "z.jpg")], "pairs.txt")

    def test_spair_pairs_are_image_keys(self):
        root = data_path("spair-71k-mini", "SPair-71k")
        images, pairs = benchmark_pairs("spair", root, split="test")  # the mini copy holds test pairs only
        assert len(pairs) == 12
        assert all((images / key).is_file() for pair in pairs for key in pair)
