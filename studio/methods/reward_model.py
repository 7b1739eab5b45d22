"""A trained reward run as a scoring function: `method.reward = "model:<run dir>"`.

`load_reward_model(path)` returns a callable `(prompts, completions, **kw) ->
list[float]` in the shape trl's GRPOTrainer calls reward functions (keyword arguments,
one score per completion), which the studio's PPO calls too. It formats each
(prompt, completion) exactly as trl's RewardTrainer did in training (the chat template
over prompt + completion messages; plain text + eos otherwise), so the scores mean
what they meant on the held-out pairs.

Only safetensors are read (through studio.model.resolve_model_path); a LoRA/DoRA/QLoRA
reward run (an adapter over its base's classifier) is merged for scoring.
"""
from __future__ import annotations

from pathlib import Path

from studio.rewards import MODEL_PREFIX

NAME = "reward_model"  # trl logs it as rewards/reward_model/mean


def _as_messages(value, role: str) -> list[dict]:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return [value]
    return [{"role": role, "content": value or ""}]


class RewardModel:
    """A sequence-classification model (num_labels=1) and its tokenizer, as a reward."""

    def __init__(self, model, tokenizer, batch_size: int = 32, source: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.source = source
        self.__name__ = NAME  # trl names the metric after the callable

    def texts_to_ids(self, prompts, completions) -> list[list[int]]:
        ids = []
        for prompt, completion in zip(prompts, completions):
            if isinstance(prompt, (list, dict)) or isinstance(completion, (list, dict)):
                messages = _as_messages(prompt, "user") + _as_messages(completion, "assistant")
                out = self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
                ids.append(list(out["input_ids"]))
            else:
                text = (prompt or "") + (completion or "")
                eos = self.tokenizer.eos_token or ""
                if eos and not text.endswith(eos):
                    text += eos  # RewardTrainer appends eos to plain-text pairs
                ids.append(self.tokenizer(text)["input_ids"])
        return ids

    def __call__(self, prompts=None, completions=None, **kw) -> list[float]:
        import torch

        if completions is None:
            raise ValueError("reward model: no completions to score")
        if prompts is None:
            prompts = [""] * len(completions)
        if len(prompts) != len(completions):
            raise ValueError(f"reward model: {len(prompts)} prompts but {len(completions)} completions")
        all_ids = self.texts_to_ids(prompts, completions)
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(all_ids), self.batch_size):
                chunk = all_ids[start:start + self.batch_size]
                width = max(len(x) for x in chunk)
                # right padding: the classifier reads the last non-pad token of each row
                input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=device)
                mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=device)
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits
                scores.extend(float(v) for v in logits[:, 0].float().cpu())
        return scores


def reward_path(name: str) -> str:
    """'model:<dir>' -> '<dir>' (a clear error for an empty one)."""
    path = name.strip()[len(MODEL_PREFIX):].strip() if name.strip().startswith(MODEL_PREFIX) else name.strip()
    if not path:
        raise ValueError("method.reward: write model:<reward run dir>, e.g. model:runs/my-reward-run")
    return path


def load_reward_model(path: str | Path, device: str = "cpu", dtype=None, trust_remote_code: bool = False) -> RewardModel:
    """A reward run (its directory or final/) or a saved sequence-classification model
    folder -> a scoring callable. Raises a ValueError naming method.reward otherwise."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import studio.model  # noqa: F401  (registers the studio architecture)
    from studio.model.load import adapter_base, resolve_model_path

    from studio import policy

    path = reward_path(str(path))
    policy.check_remote_code(trust_remote_code, "method.reward")
    # the safetensors rule, file by file, for the reward run and (below) its base
    folder, is_adapter = resolve_model_path(path, "method.reward")
    if not Path(folder).is_dir():
        raise ValueError(f"method.reward: no folder '{path}'; give the directory of a finished reward run")
    if is_adapter:
        import json

        task = json.loads((Path(folder) / "adapter_config.json").read_text()).get("task_type")
        config_dir, _ = resolve_model_path(adapter_base(folder), "method.reward")
        is_reward = task == "SEQ_CLS"
    else:
        from transformers import AutoConfig

        config_dir = folder
        config = AutoConfig.from_pretrained(config_dir, trust_remote_code=trust_remote_code)
        archs = getattr(config, "architectures", None) or []
        is_reward = config.num_labels == 1 and any("SequenceClassification" in a for a in archs)
    if not is_reward:
        raise ValueError(f"method.reward: '{path}' is not a reward model (it has no one-score classification "
                         "head); train one with method.name=reward and point at that run")
    kwargs = dict(use_safetensors=True, num_labels=1, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code)
    from studio.model.classifier import ensure_sequence_classifier

    ensure_sequence_classifier(config_dir, trust_remote_code)  # families transformers has no classifier for
    model = AutoModelForSequenceClassification.from_pretrained(config_dir, **kwargs)
    if is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(folder if (Path(folder) / "tokenizer_config.json").is_file()
                                              else config_dir, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return RewardModel(model.to(device), tokenizer, source=str(folder))


def reward_for(name: str, device: str = "cpu", trust_remote_code: bool = False):
    """One method.reward entry -> its callable: a preset by name, or a trained reward run
    ("model:<run dir>"). GRPO and PPO both resolve their rewards here."""
    from studio.rewards import get_reward, is_model_reward

    if is_model_reward(name):
        return load_reward_model(name, device, trust_remote_code=trust_remote_code)
    return get_reward(name)


def reward_functions(spec_reward: str, device: str = "cpu", trust_remote_code: bool = False) -> list:
    """Every entry of method.reward (comma-separated) -> its callable, each named for its metric."""
    from studio.spec import comma_list

    names = comma_list(spec_reward)
    if not names:
        raise ValueError("method.reward: choose a reward preset (e.g. exact_match) or model:<reward run dir>")
    return [reward_for(name, device, trust_remote_code) for name in names]
