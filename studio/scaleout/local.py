"""What a federated client and a decentralized peer both do on their own data: build the
run's model, read one client's rows, take local optimizer steps, score held-out rows,
and move the trainable tensors in and out as numpy arrays.

The local loop is a plain torch loop rather than trl's SFTTrainer: a client is handed
new weights every round and must add FedProx's proximal term to its loss, which a
Trainer rebuilt per round would hide behind a subclass (Flower's own examples do the
same). The rows are the ones SFT trains on (studio.methods.sft_tokens)."""
from __future__ import annotations

import copy
import functools
import hashlib
import math
import random

from studio.spec import RunSpec, SpecError


def client_specs(spec: RunSpec, count: int = 0) -> list[RunSpec]:
    """One spec per client/peer: each data source its own client, or `count` copies whose
    rows LocalTrainer shards (client i keeps rows i, i+count, ...)."""
    sources = spec.data.sources
    if count <= 0:
        if len(sources) < 2:
            raise SpecError("train.federation.clients", "one data source makes one client: add a source per "
                            "client in the Data tab, or set clients (or peers) to N to split it into N shards")
        out = []
        for src in sources:
            one = copy.deepcopy(spec)
            one.data.sources = [copy.deepcopy(src)]
            out.append(one)
        return out
    return [copy.deepcopy(spec) for _ in range(count)]


def check_method(spec: RunSpec, field: str) -> None:
    if spec.method.name != "sft":
        raise SpecError(field, f"federated and decentralized runs train SFT; method.name is "
                        f"'{spec.method.name}'. Set method.name: sft")


class LocalTrainer:
    """One client's model, rows and optimizer (kept across rounds, as a client would)."""

    def __init__(self, spec: RunSpec, shard: tuple[int, int] | None = None, need_train: bool = True):
        import torch

        from studio.methods import common
        from studio.methods.context import TrainContext

        self.spec = spec
        ctx = TrainContext(spec=spec, run_dir=None)
        self.tokenizer = common.load_tokenizer(ctx)
        self.train_rows, self.eval_rows = self._rows(ctx, shard, need_train)
        self.model = common.load_model(ctx, self.tokenizer)
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = dict(self.model.named_parameters())
        self.optimizer = torch.optim.AdamW([self.params[n] for n in self.names], lr=spec.train.learning_rate,
                                           weight_decay=spec.train.weight_decay)
        self.rng = random.Random(spec.train.seed + (shard[0] if shard else 0))
        self.steps_done = 0

    def _rows(self, ctx, shard, need_train):
        from studio.methods import common
        from studio.methods.sft import loss_mask
        from studio.methods.sft_tokens import drop_untrained, tokenise_chats

        block = self.spec.model.max_seq_len
        how = loss_mask(self.tokenizer, self.spec) if self.spec.data.assistant_only_loss else None
        tokenise = functools.partial(tokenise_chats, tokenizer=self.tokenizer, max_length=block,
                                     assistant_only=self.spec.data.assistant_only_loss, keep_untrained=True, how=how)
        data = common.load_data(ctx, ("conversation",), prepare=tokenise)
        train = drop_untrained(data.train)
        evals = (tokenise_chats(data.eval, self.tokenizer, block, self.spec.data.assistant_only_loss, how=how)
                 if data.eval is not None else None)
        if shard:  # N shards of one source: client i keeps every N-th row, held-out rows too
            train = train.shard(num_shards=shard[1], index=shard[0])
        rows = [(r["input_ids"], r["labels"]) for r in train] if need_train else []
        held = [(r["input_ids"], r["labels"]) for r in evals] if evals is not None else []
        if need_train and not rows:
            raise SpecError("data.sources", "a client has no training rows; give it more data or fewer shards")
        return rows, held

    def batch(self, rows):
        import torch

        pad = self.tokenizer.pad_token_id or 0
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (a, b) in enumerate(rows):
            ids[i, :len(a)] = torch.tensor(a)
            labels[i, :len(b)] = torch.tensor(b)
            mask[i, :len(a)] = 1
        return ids, labels, mask

    def train_steps(self, steps: int, proximal_mu: float = 0.0) -> float:
        """`steps` AdamW steps on random batches of this client's rows; FedProx adds
        (mu/2)*||w - w_start||^2 to keep a client near the global model it was sent."""
        import torch

        self.model.train()
        anchor = [self.params[n].detach().clone() for n in self.names] if proximal_mu > 0 else None
        losses = []
        for _ in range(steps):
            rows = [self.rng.choice(self.train_rows) for _ in range(self.spec.train.batch_size)]
            ids, labels, mask = self.batch(rows)
            loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
            losses.append(float(loss))
            if anchor is not None:
                loss = loss + proximal_mu / 2 * sum(((self.params[n] - a) ** 2).sum() for n, a in zip(self.names, anchor))
            loss.backward()
            if self.spec.train.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([self.params[n] for n in self.names], self.spec.train.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.steps_done += 1
        return sum(losses) / len(losses)

    def eval_loss(self, rows=None) -> float:
        """Mean per-token loss over held-out rows (assistant tokens only, as SFT trains)."""
        import torch

        rows = self.eval_rows if rows is None else rows
        if not rows:
            return math.nan
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(rows), 32):
                ids, labels, mask = self.batch(rows[i:i + 32])
                n = int((labels[:, 1:] != -100).sum())
                total += float(self.model(input_ids=ids, attention_mask=mask, labels=labels).loss) * n
                count += n
        return total / max(count, 1)

    def get(self) -> list:
        return [self.params[n].detach().cpu().numpy().copy() for n in self.names]

    def set(self, arrays) -> None:
        import torch

        if len(arrays) != len(self.names):
            raise ValueError(f"got {len(arrays)} tensors for {len(self.names)} trainable parameters: "
                             "server and client were built from different specs")
        with torch.no_grad():
            for n, a in zip(self.names, arrays):
                self.params[n].copy_(torch.as_tensor(a))

    def frozen_checksum(self) -> str:
        """A digest of the frozen weights: an adapter averaged over different bases is
        meaningless, so a client built on another base is refused by name."""
        h = hashlib.sha256()
        for n, p in self.model.named_parameters():
            if not p.requires_grad:
                h.update(n.encode())
                h.update(p.detach().float().cpu().numpy().tobytes()[:4096])
        return h.hexdigest()[:16]

    def save(self, run_dir) -> None:
        from studio.methods import common
        from studio.methods.context import TrainContext

        common.save_final(TrainContext(spec=self.spec, run_dir=run_dir), self.model, self.tokenizer)
