"""The cross-lingual English model's second reading: positive against negative, fine-tuned.

Why a second reading. The frozen multilingual encoder with one linear reading
(crosslingual.py) learns "neutral" from Weibo posts and carries it to English, but it reads
positive against negative at 0.80 on SST-2 dev: a frozen encoder does not follow negation
and contrast. Fine-tuning the whole encoder on SST-2 would mend that and lose the neutral
reading, since every English training row is polar and the encoder would learn that English
is never neutral. So the model reads twice over one encoder: the frozen layers and the
linear reading say how likely a post is neutral, and a copy of the top layers, fine-tuned on
SST-2 train with a one-number head, says which way the rest leans. The graph shares the lower
layers, so the copy costs a few layers' weights and time.

Training needs PyTorch (`pip install -e .[train-transformer]`); reading never does. The
layers are rebuilt here from the E5S1 weights (post-LayerNorm BERT, as build_graph writes
it) and the fine-tuned copy is returned in the same layout, under the names `d{layer}.*`.
On 2 CPU cores one epoch over SST-2 train takes about ten minutes.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from tingfeng.training.crosslingual import E5Base
from tingfeng.training.transformer import _batches

log = logging.getLogger(__name__)

_MATRICES = ("q", "k", "v", "ao", "fi", "fo")
_NORMS = ("aln", "oln")


def _modules(base: E5Base, keep: list[int]) -> tuple[Any, Any]:
    """(embed, layer class) in torch, with the file's weights."""
    import torch
    from torch import nn
    from torch.nn import functional

    t, h = base.tensors, base.hidden

    def tensor(name: str, shape: tuple[int, ...] | None = None) -> Any:
        value = t[name] if shape is None else t[name].reshape(shape)
        return torch.tensor(np.ascontiguousarray(value, dtype=np.float32))

    class Layer(nn.Module):
        def __init__(self, index: int) -> None:
            super().__init__()
            sizes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (base.ffn, h),
                     "fo": (h, base.ffn)}  # fmt: skip
            for name, (n_out, n_in) in sizes.items():
                linear = nn.Linear(n_in, n_out)
                linear.weight.data = tensor(f"l{index}.{name}.w", (n_out, n_in))
                linear.bias.data = tensor(f"l{index}.{name}.b")
                self.add_module(name, linear)
            for name in _NORMS:
                norm = nn.LayerNorm(h, eps=base.eps)
                norm.weight.data = tensor(f"l{index}.{name}.w")
                norm.bias.data = tensor(f"l{index}.{name}.b")
                self.add_module(name, norm)

        def forward(self, x: Any, blocked: Any) -> Any:
            batch, length, _ = x.shape
            width = h // base.heads

            def heads(y: Any) -> Any:
                return y.view(batch, length, base.heads, width).transpose(1, 2)

            q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
            attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width) + blocked, -1)
            context = (attention @ v).transpose(1, 2).reshape(batch, length, h)
            x = self.aln(x + self.ao(context))
            return self.oln(x + self.fo(functional.gelu(self.fi(x))))

        def weights(self, index: int) -> dict[str, np.ndarray]:
            out = {}
            for name in _MATRICES + _NORMS:
                module = getattr(self, name)
                out[f"d{index}.{name}.w"] = module.weight.detach().cpu().numpy().reshape(-1)
                out[f"d{index}.{name}.b"] = module.bias.detach().cpu().numpy()
            return out

    word = tensor("emb.word", (-1, h))[keep]
    positions = tensor("emb.pos", (-1, h))
    kind = tensor("emb.type")[:h]
    norm = nn.LayerNorm(h, eps=base.eps)
    norm.weight.data, norm.bias.data = tensor("emb.ln.w"), tensor("emb.ln.b")

    def embed(ids: Any, mask: Any) -> Any:
        # Positions count the text's own tokens, as in the graph.
        return norm(word[ids] + positions[(mask.cumsum(1) - 1).clamp(min=0)] + kind)

    return embed, Layer


def fine_tune_direction(
    base: E5Base,
    keep: list[int],
    tokenizer: Any,
    texts: list[str],
    labels: list[str],
    params: dict[str, Any],
    seed: int,
) -> dict[str, np.ndarray]:
    """The top `params["direction_layers"]` layers, copied and fine-tuned with a one-number
    head (positive against negative) on (texts, labels); their weights as `d{layer}.*` and the
    head as `direction.w`, `direction.b`. Lower layers stay as they are (shared in the graph)."""
    import torch
    from torch.nn import functional

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start = base.layers - params["direction_layers"]
    embed, layer_class = _modules(base, keep)
    with torch.no_grad():
        shared = [layer_class(i).eval() for i in range(start)]
    copies = torch.nn.ModuleList([layer_class(i) for i in range(start, base.layers)])
    head = torch.nn.Linear(base.hidden, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    encoded = [e.ids for e in tokenizer.encode_batch(texts)]
    target = torch.tensor([1.0 if label == "positive" else 0.0 for label in labels])
    lengths = np.array([len(ids) for ids in encoded])
    batches: list[np.ndarray] = []
    for _ in range(params["direction_epochs"]):
        batches += _batches(lengths, params["direction_batch"], rng)
    optimiser = torch.optim.AdamW(
        [
            {"params": copies.parameters(), "lr": params["direction_lr"]},
            {"params": head.parameters(), "lr": params["direction_head_lr"]},
        ],
        weight_decay=0.01,
    )
    warm, total = max(1, int(0.06 * len(batches))), len(batches)

    def share(step: int) -> float:  # 6 % warm-up, then linear decay (as the MiniLM recipe)
        return min((step + 1) / warm, max(0.0, (total - step) / max(total - warm, 1)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, share)
    t0 = time.perf_counter()
    for step, rows in enumerate(batches):
        width = int(lengths[rows].max())
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : lengths[i]] = torch.tensor(encoded[i])
            mask[r, : lengths[i]] = 1
        blocked = ((1.0 - mask.float()) * -1e4)[:, None, None, :]
        with torch.no_grad():
            x = embed(ids, mask)
            for layer in shared:
                x = layer(x, blocked)
        for layer in copies:
            x = layer(x, blocked)
        weights = mask.float()[:, :, None]
        pooled = functional.normalize((x * weights).sum(1) / weights.sum(1), dim=-1)
        loss = functional.binary_cross_entropy_with_logits(head(pooled).squeeze(-1), target[rows])
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(copies.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if (step + 1) % 200 == 0:
            log.info("direction: step %d/%d, loss %.3f, %.0f s", step + 1, len(batches),
                     loss.item(), time.perf_counter() - t0)  # fmt: skip
    out: dict[str, np.ndarray] = {}
    for offset, layer in enumerate(copies):
        out.update(layer.weights(start + offset))
    out["direction.w"] = head.weight.detach().cpu().numpy()
    out["direction.b"] = head.bias.detach().cpu().numpy()
    return out
