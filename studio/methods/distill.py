"""Knowledge distillation: a student learns the teacher's softened next-token
distribution as well as the data's own tokens.

    loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)

KL is Hinton's forward direction (F.kl_div(log student, teacher)): the student covers
every token the teacher finds likely. T^2 keeps the soft term's gradient on the same
scale as the CE term's whatever the temperature (the soft gradients shrink as 1/T^2).

Why not trl's DistillationTrainer: in trl 1.16 it trains on completions the student
generates (on-policy, prompt-only data) with a generalised-JSD loss and no
cross-entropy term and no T^2 factor, so it cannot express the loss above. This
subclasses trl's SFTTrainer instead, which already tokenises conversations and text,
masks non-assistant tokens and packs; only compute_loss differs.
"""
from __future__ import annotations

from studio.data.mix import map_procs
from studio.methods import common
from studio.methods.context import TrainContext


def distill_losses(student_logits, teacher_logits, labels, temperature: float):
    """(kl, ce) per target token: next-token logits [B, L, V] against labels [B, L]
    (-100 = not a target). kl is already multiplied by T^2."""
    import torch.nn.functional as F

    s = student_logits[:, :-1].float()
    t = teacher_logits[:, :-1].float()
    target = labels[:, 1:]
    keep = target != -100
    s, t, target = s[keep], t[keep], target[keep]
    if target.numel() == 0:
        zero = student_logits.sum() * 0.0
        return zero, zero
    ce = F.cross_entropy(s, target)
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                  log_target=True, reduction="batchmean")
    return kl * temperature**2, ce


def kl_to_teacher(student, teacher, input_ids, attention_mask=None) -> float:
    """Mean per-token KL(teacher || student) at T=1 on some text (what distillation lowers)."""
    import torch

    with torch.no_grad():
        s = student(input_ids=input_ids, attention_mask=attention_mask).logits
        t = teacher(input_ids=input_ids, attention_mask=attention_mask).logits
    labels = input_ids.clone()
    if attention_mask is not None:
        labels[attention_mask == 0] = -100
    kl, _ = distill_losses(s, t, labels, 1.0)
    return float(kl)


def load_teacher(ctx: TrainContext, student_tokenizer):
    """The teacher named by method.teacher (a run dir, a model folder or a hub id), frozen,
    after checking that it reads text the same way as the student."""
    from studio.inference import resolve_source
    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    name = ctx.spec.method.teacher.strip()
    if not name:
        raise ValueError("method.teacher: give the teacher: a run directory, a model folder or a hub id")
    spec = ModelSpec(source="pretrained", name_or_path=resolve_source(name),
                     trust_remote_code=ctx.spec.model.trust_remote_code)
    try:
        tokenizer = load_tokenizer(spec)
    except (OSError, ValueError) as exc:
        raise ValueError(f"method.teacher: cannot load '{name}' ({exc}); give a run directory, "
                         "a model folder or a hub id") from exc
    if tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise ValueError(f"method.teacher: '{name}' uses a different tokenizer from the student; distillation "
                         "compares next-token distributions, so both must share one (e.g. assets/tokenizer)")
    teacher = build_or_load(spec, tokenizer, None, device=ctx.device)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def make_trainer_class():
    from trl import SFTTrainer

    class DistillTrainer(SFTTrainer):
        def __init__(self, *args, teacher, temperature: float, alpha: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher = teacher
            self.temperature = temperature
            self.alpha = alpha
            # compute_loss returns a per-token mean, not a sum over num_items_in_batch: let the
            # Trainer divide by the accumulation steps itself
            self.loss_is_scaled_for_ga = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch

            mode = "train" if model.training else "eval"
            labels = inputs["labels"]
            feed = {k: v for k, v in inputs.items() if k != "labels"}
            feed["use_cache"] = False
            outputs = model(**feed)
            with torch.no_grad():
                teacher_logits = self.teacher(**feed).logits
            kl, ce = distill_losses(outputs.logits, teacher_logits, labels, self.temperature)
            loss = self.alpha * kl + (1 - self.alpha) * ce
            self._metrics[mode]["loss_kl"].append(kl.item())
            self._metrics[mode]["loss_ce"].append(ce.item())
            return (loss, outputs) if return_outputs else loss

    return DistillTrainer


def train(ctx: TrainContext) -> None:
    from trl import SFTConfig

    tokenizer = common.load_tokenizer(ctx)
    data = common.load_data(ctx)
    model = common.load_model(ctx, tokenizer)
    teacher = load_teacher(ctx, tokenizer)
    student_vocab = model.get_output_embeddings().weight.shape[0]
    teacher_vocab = teacher.get_output_embeddings().weight.shape[0]
    if student_vocab != teacher_vocab:
        raise ValueError(f"method.teacher: the teacher predicts {teacher_vocab} tokens and the student {student_vocab}; "
                         "build the student with the teacher's vocabulary (model.vocab_size empty)")
    spec = ctx.spec
    train_ds, eval_ds = _assistant_only(data, tokenizer, spec)
    args = common.make_config(
        SFTConfig, ctx, eval_ds,
        # tokenised, labelled and cut rows (conversations) leave trl only the packing
        max_length=spec.model.max_seq_len if spec.data.packing or train_ds is data.train else None,
        packing=spec.data.packing,
        dataset_num_proc=map_procs(train_ds),
    )
    trainer = make_trainer_class()(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        callbacks=ctx.callbacks, teacher=teacher, temperature=spec.method.distill_temperature,
        alpha=spec.method.distill_alpha, **common.optimizer_kwargs(ctx))
    common.train_and_save(ctx, trainer, tokenizer)


def _assistant_only(data, tokenizer, spec):
    """(train, eval) with the loss on the assistant's tokens only, for conversations: the
    mask SFT takes (studio.data.chat_mask: generation marks, or prefix rendering for a
    template without them, said in train.log), and a template where neither finds the
    assistant refused. It once fell back to the whole conversation, system prompt
    included, without a word. Text, or assistant_only_loss off: the rows as they are."""
    from studio.data.chat_mask import FIELD, MaskError
    from studio.data.errors import DataError
    from studio.methods.sft import _say_trained, loss_mask
    from studio.methods.sft_tokens import drop_untrained, tokenise_chats

    if data.kind != "conversation" or not spec.data.assistant_only_loss:
        return data.train, data.eval
    how = loss_mask(tokenizer, spec)
    block = spec.model.max_seq_len
    try:
        train_ds = tokenise_chats(data.train, tokenizer, block, True, how=how)
        eval_ds = tokenise_chats(data.eval, tokenizer, block, True, how=how) if data.eval is not None else None
    except MaskError as exc:  # a row the template renders unlike the probe: refused, not trained whole
        raise DataError(FIELD, f"{exc}. Fix or remove that row, or set {FIELD}: false to train on every token") from exc
    train_ds = drop_untrained(train_ds)
    _say_trained(train_ds, how)
    return train_ds, eval_ds
