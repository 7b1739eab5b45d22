"""Validation of the run spec: every problem with a RunSpec, each naming its field and
the fix. Cheap and pure (no model or data is loaded), so the UI calls it on every edit.
Kept apart from studio.spec (the dataclasses and their YAML) so each stays readable;
studio.spec still answers every name defined here.
"""
from __future__ import annotations

from studio.spec import (
    ACTIVATIONS,
    ATTENTIONS,
    ATTN_IMPLEMENTATIONS,
    CHECKPOINTING,
    COMPILE,
    DEFAULT_TOKENIZER,
    DISTRIBUTED,
    DataSpec,
    LORA_INITS,
    MIXINGS,
    MODEL_SOURCES,
    MethodSpec,
    ModelSpec,
    NORMS,
    OPTIMIZERS,
    POSITIONAL_ENCODINGS,
    PRECISIONS,
    Problem,
    REPORT_TO,
    RunSpec,
    SCHEDULERS,
    SOURCE_KINDS,
    STOPPING,
    TrainSpec,
)


def validate(spec: RunSpec) -> list[Problem]:
    """Every problem with the spec, each naming its field and the fix. Cheap and pure
    (no model or data is loaded), so the UI can call it on every edit."""
    problems: list[Problem] = []
    add = lambda f, m: problems.append(Problem(f, m))  # noqa: E731
    if not spec.name or any(c in spec.name for c in "/\\\0") or spec.name.startswith("."):
        add("name", "use letters, digits, '-', '_' or '.'; no slashes, not starting with '.'")
    problems += validate_model(spec.model)
    problems += validate_data(spec.data)
    problems += validate_method(spec.method, spec.model)
    problems += validate_train(spec.train)
    problems += _speed_for_model(spec)
    problems += _galore_problems(spec)
    if spec.method.name in ("grpo", "ppo"):  # a reward that reads a data column the files lack
        from studio.rewards.checks import data_problems

        problems += [Problem(f, msg) for f, msg in data_problems(spec)]
    return problems


def _choice(add, name, value, options):
    if value not in options:
        add(name, f"'{value}' is not one of {', '.join(options)}")
        return False
    return True


def validate_model(m: ModelSpec) -> list[Problem]:
    problems: list[Problem] = []
    add = lambda f, msg: problems.append(Problem("model." + f, msg))  # noqa: E731
    _choice(add, "source", m.source, MODEL_SOURCES)
    if m.source == "pretrained":
        if not m.name_or_path.strip():
            add("name_or_path", "give a hub id (org/name), a local model folder, or a run directory")
        return problems + _rope_scaling_problems(m)
    if m.rope_scaling:
        add("rope_scaling", "scales an existing model's context; a scratch model sets positional_encoding: yarn "
                            "and yarn_factor instead")
    if not m.tokenizer.strip():
        add("tokenizer", f"give a tokenizer folder or hub id, e.g. {DEFAULT_TOKENIZER}")
    _choice(add, "positional_encoding", m.positional_encoding, POSITIONAL_ENCODINGS)
    _choice(add, "attention", m.attention, ATTENTIONS)
    _choice(add, "norm", m.norm, NORMS)
    _choice(add, "activation", m.activation, ACTIVATIONS)
    for name in ("d_model", "n_heads", "n_kv_heads", "d_ff", "n_layers", "max_seq_len"):
        if getattr(m, name) < 1:
            add(name, "must be at least 1")
    if m.vocab_size is not None and m.vocab_size < 2:
        add("vocab_size", "must be at least 2, or empty to take it from the tokenizer")
    if m.n_heads >= 1 and m.d_model >= 1:
        if m.d_model % m.n_heads:
            lo = m.d_model - m.d_model % m.n_heads
            add("d_model", f"{m.d_model} is not divisible by n_heads={m.n_heads}; try d_model={lo or m.n_heads} or change n_heads")
        elif (m.d_model // m.n_heads) % 2 and m.positional_encoding in ("rope", "yarn"):
            add("d_model", f"rope needs an even head size; d_model/n_heads = {m.d_model // m.n_heads}")
    if m.n_kv_heads >= 1 and m.n_heads >= 1:
        if m.attention == "mha" and m.n_kv_heads != m.n_heads:
            add("n_kv_heads", f"mha uses one K/V head per query head: set n_kv_heads={m.n_heads} or choose gqa")
        elif m.attention == "mqa" and m.n_kv_heads != 1:
            add("n_kv_heads", "mqa shares a single K/V head: set n_kv_heads=1 or choose gqa")
        elif m.n_heads % m.n_kv_heads:
            add("n_kv_heads", f"n_heads={m.n_heads} is not divisible by n_kv_heads={m.n_kv_heads}; pick a divisor of {m.n_heads}")
    if m.positional_encoding == "yarn":
        if m.yarn_factor is None or m.yarn_factor <= 1.0:
            add("yarn_factor", "yarn needs a context scaling factor above 1, e.g. 4.0")
    if m.positional_encoding in ("rope", "yarn") and m.rope_theta <= 0:
        add("rope_theta", "must be positive, e.g. 10000")
    if not 0.0 <= m.dropout < 1.0:
        add("dropout", "must be in [0, 1), e.g. 0.0 or 0.1")
    if m.sliding_window is not None and m.sliding_window < 1:
        add("sliding_window", "must be a positive number of tokens, or empty for full attention")
    if m.norm_eps <= 0 or m.norm_eps > 0.1:
        add("norm_eps", "must be a small positive number, e.g. 1e-6")
    return problems


def _rope_scaling_problems(m: ModelSpec) -> list[Problem]:
    """model.rope_scaling / rope_factor / rope_original_context of a pretrained model; the
    family is checked when its config can be read here (else when it loads)."""
    from studio.estimate.rope import ROPE_SCALINGS, family_problem

    problems: list[Problem] = []
    add = lambda f, msg: problems.append(Problem("model." + f, msg))  # noqa: E731
    if not m.rope_scaling:
        if m.rope_factor is not None or m.rope_original_context is not None:
            add("rope_scaling", f"rope_factor/rope_original_context need a type: one of {', '.join(ROPE_SCALINGS)}")
        return problems
    _choice(add, "rope_scaling", m.rope_scaling, ROPE_SCALINGS)
    if m.rope_factor is None or not m.rope_factor > 1.0:
        add("rope_factor", "give the context multiple above 1, e.g. 2.0 to train at twice the native context")
    if m.rope_original_context is not None and m.rope_original_context < 1:
        add("rope_original_context", "must be a positive number of tokens, or empty for the config's "
                                      "max_position_embeddings")
    if problems:
        return problems
    from studio.estimate.config import EstimateError, read_config

    try:
        config = read_config(m.name_or_path)
    except (EstimateError, OSError, ValueError):
        return problems  # not readable here: studio.model.load checks it when the model loads
    why = family_problem(config, m.rope_scaling)
    if why:
        add("rope_scaling", why)
    return problems


def validate_data(d: DataSpec) -> list[Problem]:
    problems: list[Problem] = []
    add = lambda f, msg: problems.append(Problem("data." + f, msg))  # noqa: E731
    if not d.sources:
        add("sources", "add at least one source (a file or a hub dataset)")
    for i, s in enumerate(d.sources):
        prefix = f"sources.{i}."
        _choice(add, prefix + "kind", s.kind, SOURCE_KINDS)
        if not s.path.strip():
            add(prefix + "path", "give a file path or a hub dataset name")
        elif s.kind == "file":
            # cheap checks now, so a typo is caught before a worker starts
            from studio.data.errors import DataError
            from studio.data.sources import resolve_path

            try:
                resolve_path(s.path, f"data.{prefix}path")
            except DataError as exc:
                add(prefix + "path", exc.message if hasattr(exc, "message") else str(exc))
        if not s.weight > 0:
            add(prefix + "weight", f"weights must be positive, got {s.weight}")
    _choice(add, "mixing", d.mixing, MIXINGS)
    _choice(add, "stopping_strategy", d.stopping_strategy, STOPPING)
    if not 0.0 <= d.eval_fraction < 0.9:
        add("eval_fraction", "must be in [0, 0.9), e.g. 0.05")
    if d.seed < 0 or d.seed >= 2**32:
        add("seed", "must be in 0..4294967295 (the blend's random seed)")
    if d.max_rows is not None and d.max_rows < 1:
        add("max_rows", "must be at least 1, or empty for all rows")
    return problems


def validate_method(m: MethodSpec, model: ModelSpec) -> list[Problem]:
    # Over 60 lines on purpose: one check per method field, in the field order of MethodSpec.
    # The registry knows which names and regimes exist; import it lazily (it is
    # light: no trl at import) to keep this module free of cycles.
    from studio.methods import REGISTRY

    problems: list[Problem] = []
    add = lambda f, msg: problems.append(Problem("method." + f, msg))  # noqa: E731
    info = REGISTRY.get(m.name)
    if info is None:
        add("name", f"'{m.name}' is not a method; choose one of {', '.join(REGISTRY)}")
        return problems
    if m.regime not in info.regimes:
        add("regime", f"{m.name} supports {', '.join(info.regimes)}; '{m.regime}' is not one of them")
    if m.regime in ("lora", "qlora", "dora"):
        if m.lora_r < 1:
            add("lora_r", "rank must be at least 1, e.g. 16")
        if m.lora_alpha <= 0:
            add("lora_alpha", "must be positive, e.g. 2 x lora_r")
        if not 0 <= m.lora_dropout < 1:
            add("lora_dropout", "must be in [0, 1)")
    if m.regime == "qlora":
        _choice(add, "quant_type", m.quant_type, ("nf4", "fp4"))
        if m.quant_bits not in (4, 8):
            add("quant_bits", "must be 4 (nf4/fp4) or 8 (bitsandbytes int8)")
    problems += _lora_variant_problems(m)
    if m.regime in ("prefix", "prompt") and m.num_virtual_tokens < 1:
        add("num_virtual_tokens", "must be at least 1, e.g. 16")
    if m.regime == "freeze" and m.freeze_trainable_layers < 0:
        add("freeze_trainable_layers", "must be zero or a positive number of blocks")
    elif m.regime == "freeze" and model.source == "scratch" and m.freeze_trainable_layers > model.n_layers:
        add("freeze_trainable_layers", f"the model has {model.n_layers} blocks; train at most that many")
    if m.beta <= 0 and m.name in ("dpo", "orpo", "simpo", "kto"):
        add("beta", "must be positive, e.g. 0.1")
    if m.name == "kto":
        for weight in ("desirable_weight", "undesirable_weight"):
            if getattr(m, weight) <= 0:
                add(weight, "must be positive, e.g. 1.0")
    if m.name in ("grpo", "ppo"):
        from studio.rewards.checks import reward_problems

        problems += [Problem(f, msg) for f, msg in reward_problems(m.reward)]  # names, arguments, files
        if m.group_size < 2 and m.name == "grpo":
            add("group_size", "GRPO compares answers within a group: use at least 2")
        if m.temperature <= 0:
            add("temperature", "must be positive, e.g. 1.0")
        if not 0 < m.top_p <= 1:
            add("top_p", "must be in (0, 1]")
        if m.max_new_tokens < 1:
            add("max_new_tokens", "must be at least 1")
        if m.top_k < 0:
            add("top_k", "must be zero (off) or positive")
        if m.kl_coef < 0:
            add("kl_coef", "must be zero or positive, e.g. 0.05")
    if m.name == "ppo":
        if not 0 < m.clip_range < 1:
            add("clip_range", "must be in (0, 1), e.g. 0.2")
        if not 0 <= m.gae_lambda <= 1 or not 0 <= m.gamma <= 1:
            add("gae_lambda", "gamma and gae_lambda must be in [0, 1]")
        if m.ppo_epochs < 1:
            add("ppo_epochs", "must be at least 1")
        if m.mini_batch_size < 1:
            add("mini_batch_size", "must be at least 1")
        if m.vf_coef < 0:
            add("vf_coef", "must be zero or positive, e.g. 0.1")
    if m.name == "distill":
        if not m.teacher.strip():
            add("teacher", "give the teacher: a run directory, a model folder or a hub id sharing the tokenizer")
        if not 0 <= m.distill_alpha <= 1:
            add("distill_alpha", "must be in [0, 1]: the weight of the KL term")
        if m.distill_temperature <= 0:
            add("distill_temperature", "must be positive, e.g. 2.0")
    if info.needs_base and model.source == "scratch" and m.name not in ("pretrain", "sft", "distill"):
        add("name", f"{m.name} refines an existing policy: set model.source=pretrained with a run or model folder")
    return problems


def _galore_problems(spec: RunSpec) -> list[Problem]:
    """GaLore (train.optimizer: galore_adamw) projects full weight gradients to low rank:
    for full training, with its package (galore-torch) installed."""
    if spec.train.optimizer != "galore_adamw":
        return []
    import importlib.util

    if spec.method.regime not in ("full", "freeze"):
        return [Problem("train.optimizer", "galore_adamw trains whole weight matrices (regime full or freeze); "
                        "adapters are already low-rank: use adamw")]
    if importlib.util.find_spec("galore_torch") is None:
        return [Problem("train.optimizer", "galore_adamw needs the galore-torch package: pip install galore-torch")]
    return []


def _lora_variant_problems(m: MethodSpec) -> list[Problem]:
    """rsLoRA / PiSSA / OLoRA / LoRA+ apply to the LoRA family only; PiSSA and OLoRA
    decompose full-precision weights (not a quantised base, not DoRA's magnitudes)."""
    out: list[Problem] = []
    lora = m.regime in ("lora", "qlora", "dora")
    if m.lora_init not in LORA_INITS:
        out.append(Problem("method.lora_init", f"'{m.lora_init}' is not one of {', '.join(LORA_INITS)}"))
    elif m.lora_init != "default" and m.regime != "lora":
        out.append(Problem("method.lora_init", f"{m.lora_init} initialises plain LoRA on full-precision weights; "
                           "use regime lora, or lora_init: default"))
    if m.loraplus_ratio and (m.loraplus_ratio < 1 or not lora):
        out.append(Problem("method.loraplus_ratio", "0 (off) or at least 1 (16 in the LoRA+ paper), "
                           "with a LoRA-family regime (lora, dora, qlora)"))
    if m.use_rslora and not lora:
        out.append(Problem("method.use_rslora", "rsLoRA scales LoRA adapters: use regime lora, dora or qlora"))
    return out


def validate_train(t: TrainSpec) -> list[Problem]:
    problems: list[Problem] = []
    add = lambda f, msg: problems.append(Problem("train." + f, msg))  # noqa: E731
    if t.max_steps < 0:
        add("max_steps", f"must be a positive number of steps, or 0 to train for `epochs`; got {t.max_steps}")
    elif t.max_steps == 0 and t.epochs <= 0:
        add("max_steps", "set max_steps > 0, or epochs > 0 with max_steps = 0")
    if t.epochs < 0:
        add("epochs", f"must be zero or positive, got {t.epochs:g}")
    if t.seed < 0 or t.seed >= 2**32:
        add("seed", "must be in 0..4294967295 (numpy and torch seeds are unsigned 32-bit)")
    if t.eval_steps < 0:
        add("eval_steps", "must be zero or a positive number of eval batches")
    for name in ("batch_size", "grad_accum", "num_processes", "log_every"):
        if getattr(t, name) < 1:
            add(name, "must be at least 1")
    if not t.learning_rate > 0:
        add("learning_rate", "must be positive, e.g. 1e-4")
    if t.weight_decay < 0:
        add("weight_decay", "must be zero or positive")
    _choice(add, "optimizer", t.optimizer, OPTIMIZERS)
    _choice(add, "scheduler", t.scheduler, SCHEDULERS)
    _choice(add, "precision", t.precision, PRECISIONS)
    _choice(add, "gradient_checkpointing", t.gradient_checkpointing, CHECKPOINTING)
    _choice(add, "report_to", t.report_to, REPORT_TO)
    _choice(add, "distributed", t.distributed, DISTRIBUTED)
    if t.nnodes < 1:
        add("nnodes", "must be at least 1")
    elif not 0 <= t.node_rank < t.nnodes:
        add("node_rank", f"must be in 0..{t.nnodes - 1} (this machine's index among nnodes)")
    elif t.nnodes > 1 and not t.master_addr.strip():
        add("master_addr", "several nodes need the address of node 0, e.g. 10.0.0.1")
    if not 0 <= t.master_port <= 65535:
        add("master_port", "must be a port number (1-65535), or 0 for a free one")
    if t.warmup_steps < 0:
        add("warmup_steps", "must be zero or positive (below 1 it is a fraction of the steps)")
    if t.max_grad_norm < 0:
        add("max_grad_norm", "must be zero (off) or positive, e.g. 1.0")
    if t.eval_every < 0 or t.save_every < 0:
        add("eval_every", "eval_every and save_every must be zero (off) or positive")
    if t.save_best_only and t.eval_every <= 0:
        add("save_best_only", "needs evaluation: set eval_every > 0, or turn save_best_only off")
    if _choice(add, "on_divergence", t.on_divergence, ("stop", "rollback")) and t.on_divergence == "rollback":
        if not 1 <= t.max_rollbacks <= 20:
            add("max_rollbacks", "must be 1-20 (each rollback halves the learning rate)")
        elif t.num_processes * t.nnodes > 1:
            add("on_divergence", "rollback works in one process; use stop with several processes")
    problems += speed_problems(t)
    problems += scaleout_problems(t)
    return problems


def _speed_for_model(spec: RunSpec) -> list[Problem]:
    """The studio's own architecture (a scratch spec that is not a Llama/Mistral shape)
    runs torch's SDPA and has no Liger patch: other kernels are for transformers' families."""
    t = spec.train
    if spec.model.source != "scratch" or not (t.use_liger_kernel or t.attn_implementation not in ("auto", "sdpa")):
        return []
    from studio.estimate.config import architecture_of

    if architecture_of(spec.model) != "studio":
        return []
    out = []
    if t.attn_implementation not in ("auto", "sdpa") and t.attn_implementation in ATTN_IMPLEMENTATIONS:
        out.append(Problem("train.attn_implementation", "the studio's own architecture (this scratch model's "
                           "positional encoding, norm or activation) always runs torch's SDPA; use auto or sdpa"))
    if t.use_liger_kernel:
        out.append(Problem("train.use_liger_kernel", "Liger patches transformers' families (Llama, Qwen, ...), "
                           "not the studio's own architecture (this scratch model); set use_liger_kernel: false"))
    return out


def speed_problems(t: TrainSpec) -> list[Problem]:
    """The speed options: known names, and whether this machine can use them (asked of
    studio.hardware only when an option needs a GPU, so the common path stays free)."""
    problems: list[Problem] = []
    add = lambda f, msg: problems.append(Problem("train." + f, msg))  # noqa: E731
    known = _choice(add, "attn_implementation", t.attn_implementation, ATTN_IMPLEMENTATIONS)
    _choice(add, "torch_compile", t.torch_compile, COMPILE)
    if t.use_liger_kernel or (known and t.attn_implementation in ("flash_attention_2", "kernels")):
        from studio.hardware import speed_refusals

        problems += [Problem(f, msg) for f, msg in speed_refusals(t)]
    return problems


def scaleout_problems(t: TrainSpec) -> list[Problem]:
    """train.federation / train.decentralized (#24): numbers in range, one mode at a time."""
    problems: list[Problem] = []
    fed, dec = t.federation, t.decentralized
    add = lambda f, msg: problems.append(Problem(f, msg))  # noqa: E731
    if fed.enabled and dec.enabled:
        add("train.decentralized.enabled", "federated and decentralized are exclusive; turn one off")
    if fed.enabled:
        if fed.clients < 0 or fed.clients == 1:
            add("train.federation.clients", "0 (one client per data source) or at least 2 shards")
        for name in ("rounds", "local_steps"):
            if getattr(fed, name) < 1:
                add(f"train.federation.{name}", "must be at least 1")
        if not 0 < fed.client_fraction <= 1:
            add("train.federation.client_fraction", "must be in (0, 1], e.g. 1.0 for every client each round")
        _choice(add, "train.federation.strategy", fed.strategy, ("fedavg", "fedprox"))
        if fed.proximal_mu < 0:
            add("train.federation.proximal_mu", "must be zero or positive, e.g. 0.01")
        if t.num_processes * t.nnodes > 1:
            add("train.num_processes", "federated clients run one process each; set num_processes: 1")
    if dec.enabled:
        if dec.peers < 1:
            add("train.decentralized.peers", "must be at least 1 (peers started on this machine)")
        if dec.average_every < 1:
            add("train.decentralized.average_every", "must be at least 1 local step")
        if not dec.averaging_timeout > 0:
            add("train.decentralized.averaging_timeout", "must be positive seconds, e.g. 30")
        if t.num_processes * t.nnodes > 1:
            add("train.num_processes", "each peer is one process; set num_processes: 1")
    return problems
