"""PPO, the method entry the worker calls: load the studio's tokenizer, policy, prompt data
and reward, run ppo_core's loop, save final/.

final/ holds the policy as save_pretrained writes it (the peft adapter for LoRA/DoRA, the
full model otherwise), the tokenizer, studio_spec.yaml and value_head.safetensors (the
value head's Linear, for a later PPO run to start from).
"""
from __future__ import annotations

import math
from pathlib import Path

from studio.methods.context import TrainContext

VALUE_HEAD_FILE = "value_head.safetensors"


def make_reward(ctx: TrainContext):
    from studio.rewards import build

    functions, weights = build(ctx.spec.method.reward, ctx.device, ctx.spec.model.trust_remote_code)

    def summed(**kw) -> list[float]:  # several rewards add up weighted, as in GRPO (None: not scored)
        per_fn = [fn(**kw) for fn in functions]
        return [sum(w * (s or 0.0) for w, s in zip(weights, scores)) for scores in zip(*per_fn)]

    return summed


def ppo_config(ctx: TrainContext, n_prompts: int):
    import torch

    from studio.methods.ppo_core import PPOConfig

    m, t = ctx.spec.method, ctx.spec.train
    steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * n_prompts / t.batch_size))
    return PPOConfig(
        batch_size=t.batch_size, mini_batch_size=max(1, min(m.mini_batch_size, t.batch_size)),
        ppo_epochs=m.ppo_epochs, max_steps=steps, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        scheduler=t.scheduler, warmup_steps=t.warmup_steps, max_grad_norm=t.max_grad_norm,
        clip_range=m.clip_range, vf_coef=m.vf_coef, gamma=m.gamma, gae_lambda=m.gae_lambda, kl_coef=m.kl_coef,
        temperature=m.temperature, top_k=m.top_k, top_p=m.top_p, max_new_tokens=m.max_new_tokens,
        seed=t.seed, log_every=t.log_every,
        autocast_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(ctx.precision),
    )


def prompts_and_answers(dataset) -> tuple[list, list | None]:
    prompts = list(dataset["prompt"])
    answers = list(dataset["answer"]) if "answer" in dataset.column_names else []
    # No answers at all: pass None so a preset that needs them (exact_match) says so clearly.
    return prompts, answers if any(a is not None for a in answers) else None


def save_policy(ctx: TrainContext, trainer, tokenizer, folder: Path | None = None) -> Path:
    """The policy (adapter or full model) + tokenizer + spec, and the value head beside them."""
    from safetensors.torch import save_file

    from studio.methods import common

    def save_value_head(into: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in trainer.model.value_head.state_dict().items()}
        save_file(state, str(into / VALUE_HEAD_FILE))

    if folder is None:
        # inside final/'s temporary folder, before the rename: a failed write (a full
        # disk) leaves no final/ without its value head
        return common.save_final(ctx, trainer.policy, tokenizer, extra=save_value_head)
    folder.mkdir(parents=True, exist_ok=True)
    trainer.policy.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    save_value_head(folder)
    return folder


def load_value_head(folder: Path, hidden_size: int):
    """A value head saved by an earlier PPO run, or None when the folder has none."""
    from safetensors.torch import load_file

    from studio.methods.ppo_core import ValueHead

    path = Path(folder) / VALUE_HEAD_FILE
    if not path.is_file():
        return None
    head = ValueHead(hidden_size)
    head.load_state_dict(load_file(str(path)))
    return head


def train(ctx: TrainContext) -> None:
    from studio.methods import common
    from studio.methods.ppo_core import mean_reward, train_ppo
    from studio.worker import stop_request

    spec = ctx.spec
    if spec.train.resume_from:
        raise ValueError("train.resume_from: PPO runs do not resume from checkpoints; start a new run with "
                         "model.name_or_path set to the checkpoint folder instead")
    if spec.train.optimizer != "adamw" or spec.train.grad_accum != 1:
        print("PPO trains with AdamW, one optimizer step per mini-batch: train.optimizer and "
              "train.grad_accum are not used (method.mini_batch_size sets the step size).", flush=True)
    tokenizer = common.load_tokenizer(ctx)
    data = common.load_data(ctx, ("prompt",))
    policy = common.load_model(ctx, tokenizer)
    reward_fn = make_reward(ctx)
    prompts, answers = prompts_and_answers(data.train)
    config = ppo_config(ctx, len(prompts))

    value_head = None
    if spec.model.source == "pretrained":
        from studio.model import resolve_model_path

        value_head = load_value_head(Path(resolve_model_path(spec.model.name_or_path)[0]),
                                     policy.get_output_embeddings().weight.shape[1])

    evaluate = None
    if data.eval is not None and len(data.eval) > 0 and spec.train.eval_every > 0:
        eval_prompts, eval_answers = prompts_and_answers(data.eval)
        # the trainer updates `policy` in place, so this always scores the current weights
        evaluate = lambda step: {  # noqa: E731
            "eval_reward": mean_reward(policy, tokenizer, eval_prompts, eval_answers, reward_fn, config)}

    def checkpoint(step, trainer):
        save_policy(ctx, trainer, tokenizer, ctx.checkpoints_dir / f"checkpoint-{step}")

    print(f"PPO: {config.max_steps} iterations x {config.batch_size} prompts, {config.ppo_epochs} epochs of "
          f"mini-batches of {config.mini_batch_size}", flush=True)
    trainer = train_ppo(
        policy, tokenizer, prompts, answers, reward_fn, config, value_head=value_head,
        log=ctx.log, progress=ctx.progress, should_stop=ctx.should_stop,
        evaluate=evaluate, eval_every=spec.train.eval_every,
        checkpoint=checkpoint, save_every=spec.train.save_every)
    if stop_request(ctx.run_dir) == "now":
        return  # "stop now": no final save, as for the Trainer-based methods
    save_policy(ctx, trainer, tokenizer)
