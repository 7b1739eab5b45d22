"""Offline preference optimisation: DPO, KTO (trl), ORPO and SimPO (trl.experimental).

One module because the four share everything but the trainer: the tokenizer, the
policy with its parameter regime (studio.model.apply_regime, so full, freeze, LoRA,
DoRA and QLoRA all work), the reference model and saving final/.

Reference model (DPO, KTO): `method.reference_model` when set; otherwise the starting
policy. With an adapter regime trl gets no separate copy (it disables the adapter to
score the reference); with full/freeze weights we hand it a frozen copy of the loaded
policy, because trl would otherwise reload `config._name_or_path`, which is not the
starting policy when that was merged from an adapter run.
ORPO and SimPO are reference-free: SimPO is trl's CPO trainer with loss_type "simpo" and
the behaviour-cloning term off (cpo_alpha=0), as in the SimPO paper; `method.loss_type:
simpo, sft` turns it on (cpo_alpha=1, "CPO-SimPO"), as "sigmoid, sft" adds it to DPO.
"""
from __future__ import annotations

import copy

from studio.data.mix import map_procs
from studio.methods import common
from studio.methods.context import TrainContext
from studio.spec import comma_list

# trl 1.16 DPOConfig.loss_type values (a list there; the spec holds one name or a
# comma-separated mix such as "sigmoid,sft").
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
KTO_LOSSES = ("kto", "apo_zero_unpaired")


def dpo_loss_types(loss_type: str) -> list[str]:
    names = comma_list(loss_type) or ["sigmoid"]
    unknown = [n for n in names if n not in DPO_LOSSES]
    if unknown:
        raise ValueError(f"method.loss_type: '{unknown[0]}' is not a DPO loss; choose one of "
                         f"{', '.join(DPO_LOSSES)} (or several, comma-separated)")
    return names


def simpo_nll_weight(loss_type: str) -> float:
    """trl's cpo_alpha for SimPO: 1 when "sft" is in method.loss_type, else 0. The
    chosen answers' NLL keeps SimPO from lowering both answers' likelihood, which on the
    shipped task undid its gains after ~300 steps (0.835 -> 0.665 held-out at 600)."""
    names = comma_list(loss_type)
    unknown = [n for n in names if n not in ("simpo", "sigmoid", "sft")]  # sigmoid: the spec's default
    if unknown:
        raise ValueError(f"method.loss_type: '{unknown[0]}' is not a SimPO loss; use 'simpo', or 'simpo, sft' "
                         "to add the chosen answers' NLL")
    return 1.0 if "sft" in names else 0.0


def kto_loss_type(loss_type: str) -> str:
    # The spec's default ("sigmoid") is DPO's name; KTO's own loss is "kto".
    return loss_type if loss_type in KTO_LOSSES else "kto"


def load_reference(ctx: TrainContext, model, tokenizer):
    """The frozen reference for DPO/KTO, or None to let trl disable the adapter."""
    from studio.model import build_or_load, load_tokenizer
    from studio.spec import MethodSpec, ModelSpec

    m = ctx.spec.method
    if m.reference_model.strip():
        ref_spec = ModelSpec(source="pretrained", name_or_path=m.reference_model.strip(),
                             trust_remote_code=ctx.spec.model.trust_remote_code)
        ref_tok = load_tokenizer(ref_spec)
        if ref_tok.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"method.reference_model: '{m.reference_model}' uses another tokenizer than the policy; "
                             "the reference must share the policy's vocabulary (leave it empty to use the starting policy)")
        ref = build_or_load(ref_spec, ref_tok, MethodSpec(regime="full"), dtype=model.dtype, device=ctx.device)
    elif m.regime in ("full", "freeze"):
        ref = copy.deepcopy(model)
    else:
        return None
    ref.requires_grad_(False)
    return ref.eval()


def _dpo(ctx, model, tokenizer, data):
    from trl import DPOConfig, DPOTrainer

    m = ctx.spec.method
    args = common.make_config(DPOConfig, ctx, data.eval, beta=m.beta, loss_type=dpo_loss_types(m.loss_type),
                              max_length=ctx.spec.model.max_seq_len, dataset_num_proc=map_procs(data.train),
                              remove_unused_columns=False)
    return DPOTrainer(model=model, ref_model=load_reference(ctx, model, tokenizer), args=args,
                      train_dataset=data.train, eval_dataset=data.eval, processing_class=tokenizer,
                      callbacks=ctx.callbacks)


def _kto(ctx, model, tokenizer, data):
    from trl import KTOConfig, KTOTrainer

    m = ctx.spec.method
    if ctx.spec.train.batch_size < 2:
        raise ValueError("train.batch_size: KTO estimates its KL term from the other rows of a batch; use at least 2")
    # trl pairs each row with its batch neighbours for the KL estimate, so it reads the
    # data in order: shuffle once here (seeded) so a batch mixes prompts and labels.
    train = data.train.shuffle(seed=ctx.spec.train.seed)
    args = common.make_config(KTOConfig, ctx, data.eval, beta=m.beta, loss_type=kto_loss_type(m.loss_type),
                              desirable_weight=m.desirable_weight, undesirable_weight=m.undesirable_weight,
                              max_length=ctx.spec.model.max_seq_len, dataset_num_proc=map_procs(data.train),
                              remove_unused_columns=False)
    return KTOTrainer(model=model, ref_model=load_reference(ctx, model, tokenizer), args=args,
                      train_dataset=train, eval_dataset=data.eval, processing_class=tokenizer,
                      callbacks=ctx.callbacks)


def _orpo(ctx, model, tokenizer, data):
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = common.make_config(ORPOConfig, ctx, data.eval, beta=ctx.spec.method.beta,
                              max_length=ctx.spec.model.max_seq_len, dataset_num_proc=map_procs(data.train),
                              remove_unused_columns=False)
    return ORPOTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                       processing_class=tokenizer, callbacks=ctx.callbacks)


def _simpo(ctx, model, tokenizer, data):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    m = ctx.spec.method
    args = common.make_config(CPOConfig, ctx, data.eval, beta=m.beta, loss_type="simpo",
                              cpo_alpha=simpo_nll_weight(m.loss_type),
                              simpo_gamma=m.simpo_gamma, max_length=ctx.spec.model.max_seq_len,
                              dataset_num_proc=map_procs(data.train), remove_unused_columns=False)
    return CPOTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                      processing_class=tokenizer, callbacks=ctx.callbacks)


def with_optimizer(trainer, ctx: TrainContext):
    """Optimizers transformers does not name (sophia, muon): these trainers' __init__
    does not take optimizer_cls_and_kwargs, but the Trainer reads the attribute."""
    extra = common.optimizer_kwargs(ctx).get("optimizer_cls_and_kwargs")
    if extra is not None:
        trainer.optimizer_cls_and_kwargs = extra
    return trainer


LOSS_CHECKS = {"dpo": dpo_loss_types, "simpo": simpo_nll_weight}
TRAINERS = {"dpo": _dpo, "kto": _kto, "orpo": _orpo, "simpo": _simpo}
DATA_KIND = {"dpo": "preference", "orpo": "preference", "simpo": "preference", "kto": "unpaired"}


def train(ctx: TrainContext) -> None:
    name = ctx.spec.method.name
    if name not in TRAINERS:
        raise ValueError(f"method.name: '{name}' is not a preference method ({', '.join(TRAINERS)})")
    if name in LOSS_CHECKS:
        LOSS_CHECKS[name](ctx.spec.method.loss_type)  # a bad name fails before any loading
    tokenizer = common.load_tokenizer(ctx)
    # KTO learns from unpaired labels; studio.data turns preference pairs into two rows
    data = common.load_data(ctx, (DATA_KIND[name],))
    model = common.load_model(ctx, tokenizer)
    trainer = with_optimizer(TRAINERS[name](ctx, model, tokenizer, data), ctx)
    train_and_save(ctx, trainer, tokenizer)


def train_and_save(ctx: TrainContext, trainer, tokenizer) -> None:
    """common.train_and_save, minus trl's frozen "ref" adapter: DPO/KTO add that copy
    of the starting adapter as the reference; final/ should hold only the trained one."""
    from studio.worker import stop_request

    common.run_trainer(ctx, trainer)  # with the divergence guard attached
    if stop_request(ctx.run_dir) == "now":
        return
    model = trainer.model
    if "ref" in (getattr(model, "peft_config", None) or {}):
        model.delete_adapter("ref")
    common.save_final(ctx, model, tokenizer)
