"""distill/pair_model.py: the projection a PairModel gets, and its forward for symmetric, asymmetric and
layer-wise students."""

import torch

from distill.pair_model import PairModel


class _Enc(torch.nn.Module):
    """A stand-in encoder: mean of embedded ids; with return_layers also per-'layer' vectors."""

    dim = 4

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)

    def forward(self, input_ids, attention_mask, return_layers=False):
        v = self.emb(input_ids).mean(1)
        return (v, [v, 2 * v]) if return_layers else v


def test_projection_by_teacher_width():
    assert PairModel(_Enc(), None).proj is None
    assert isinstance(PairModel(_Enc(), 4).proj, torch.nn.Identity)
    lin = PairModel(_Enc(), 6).proj
    assert isinstance(lin, torch.nn.Linear) and lin.weight.shape == (6, 4) and lin.bias is None


def test_forward():
    m = PairModel(_Enc(), None)
    q = {"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.ones(1, 2)}
    d = {"input_ids": torch.tensor([[3], [4]]), "attention_mask": torch.ones(2, 1)}
    qv, dv = m(q, d)
    assert qv.shape == (1, 4) and dv.shape == (2, 4)
    (qv2, q_layers), (dv2, d_layers) = m(q, d, True)
    assert torch.equal(qv2, qv) and len(q_layers) == 2 and torch.equal(d_layers[1], 2 * dv)
    qv3, none = m(q, None)  # asymmetric: queries only
    assert none is None and torch.equal(qv3, qv)

