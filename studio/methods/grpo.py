"""GRPO through trl's GRPOTrainer: sample `group_size` completions per prompt, score
them with the chosen reward, and push the policy towards the better ones of each group.

Rewards come from the studio's library (studio.rewards), a trained reward run
("model:<run dir>") or, in local mode only, the person's own file. Several may be
combined with commas, with arguments and weights, e.g. "json_valid, 2*json_match";
trl sums them weighted (reward_weights) and logs each unweighted as rewards/<name>/mean
and /std, plus reward, reward_std, frac_reward_zero_std (groups GRPO learns nothing
from), kl (beta > 0), entropy and completions/mean_length.
"""
from __future__ import annotations

from studio.methods import common
from studio.methods.context import TrainContext


def generation_batch(ctx: TrainContext) -> int:
    """Completions per generation round (trl's default): it must hold whole groups."""
    t, m = ctx.spec.train, ctx.spec.method
    per_round = t.grad_accum * max(1, t.num_processes) * max(1, t.nnodes)  # processes are per node
    completions = t.batch_size * per_round
    if completions % m.group_size:
        suggestion = next(b for b in range(t.batch_size, t.batch_size + m.group_size + 1)
                          if (b * per_round) % m.group_size == 0)
        raise ValueError(
            f"train.batch_size: GRPO scores whole groups, so batch_size x grad_accum x processes "
            f"({completions} completions) must be a multiple of method.group_size={m.group_size}; "
            f"e.g. batch_size={suggestion}")
    return completions


def starting_state(ctx: TrainContext, model):
    """The policy's weights when trl's reference would not match them, else None.

    trl builds the reference from config._name_or_path; that is the starting policy for
    a model folder, but the *base* when the policy was merged from an adapter run."""
    from studio.model import resolve_model_path

    if ctx.spec.method.beta == 0 or ctx.spec.method.regime not in ("full", "freeze"):
        return None
    spec = ctx.spec.model
    if spec.source == "pretrained" and not resolve_model_path(spec.name_or_path)[1]:
        return None
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(ctx: TrainContext) -> None:
    from trl import GRPOConfig, GRPOTrainer

    from studio.rewards import build

    m = ctx.spec.method
    funcs, weights = build(m.reward, ctx.device, ctx.spec.model.trust_remote_code)
    generation_batch(ctx)
    tokenizer = common.load_tokenizer(ctx)
    data = common.load_data(ctx, ("prompt",))
    model = common.load_model(ctx, tokenizer)
    reference_weights = starting_state(ctx, model)
    args = common.make_config(
        GRPOConfig, ctx, data.eval,
        num_generations=m.group_size,
        max_completion_length=m.max_new_tokens,
        temperature=m.temperature,
        top_k=m.top_k,
        top_p=m.top_p,
        beta=m.beta,
        reward_weights=weights,
        remove_unused_columns=False,  # the reward presets read the "answer" column
        per_device_eval_batch_size=max(m.group_size, ctx.spec.train.batch_size // m.group_size * m.group_size),
        log_completions=False,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=data.train,
                          eval_dataset=data.eval, processing_class=tokenizer, callbacks=ctx.callbacks)
    if reference_weights is not None and trainer.ref_model is not None:
        trainer.ref_model.load_state_dict(reference_weights, strict=False)
    from studio.methods.preference import with_optimizer

    common.train_and_save(ctx, with_optimizer(trainer, ctx), tokenizer)
