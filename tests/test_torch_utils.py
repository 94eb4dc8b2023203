import warnings

import pytest
import torch

from llarapp.models.torch_utils import csr_index_dtype, sparse_csr


@pytest.mark.parametrize(("sizes", "expected"), [
    ((3, 5), torch.int32),
    ((2 ** 31 - 1, 7), torch.int32),
    ((2 ** 31, 7), torch.int64),
    ((4, 4, 2 ** 31), torch.int64),  # too many stored values for 32-bit row offsets
])
def test_csr_indices_are_32_bit_only_when_every_size_fits(sizes, expected):
    assert csr_index_dtype(*sizes) == expected


def test_sparse_csr_builds_the_matrix_quietly_from_64_bit_indices(monkeypatch):
    crow, col = torch.tensor([0, 2, 2, 3]), torch.tensor([0, 2, 1])
    values = torch.tensor([1.0, 2.0, 3.0])
    build = torch.sparse_csr_tensor

    def beta_warning(*args, **kwargs):  # torch warns once per process; here on every call
        warnings.warn("Sparse CSR tensor support is in beta state", UserWarning, stacklevel=2)
        return build(*args, **kwargs)

    monkeypatch.setattr(torch, "sparse_csr_tensor", beta_warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the beta warning would fail here
        matrix = sparse_csr(crow, col, values, (3, 3))
    assert matrix.crow_indices().dtype == matrix.col_indices().dtype == torch.int32
    torch.testing.assert_close(matrix.to_dense(), torch.tensor(
        [[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]]))
