"""The run spec: the one description of a run that the UI, the CLI, presets and the
worker all share.

Plain dataclasses, a YAML round trip and `validate()`. Nothing here imports torch,
trl or peft: the UI process imports this module on every keystroke.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

POSITIONAL_ENCODINGS = ("sinusoidal", "rope", "alibi", "yarn")
ATTENTIONS = ("mha", "mqa", "gqa")
NORMS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("relu", "gelu", "silu", "leaky_relu", "swiglu")
MODEL_SOURCES = ("scratch", "pretrained")
REGIMES = ("full", "freeze", "lora", "qlora", "dora", "prefix", "prompt", "ia3")
OPTIMIZERS = ("adamw", "adamw_8bit", "adafactor", "lion", "sophia", "muon", "galore_adamw")
LORA_INITS = ("default", "pissa", "olora")  # peft init_lora_weights (#19)
SCHEDULERS = ("none", "cosine", "linear", "polynomial")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHECKPOINTING = ("auto", "on", "off")
MIXINGS = ("interleave", "concat")
STOPPING = ("all_exhausted", "first_exhausted")
REPORT_TO = ("none", "tensorboard", "wandb", "trackio")
DISTRIBUTED = ("ddp", "zero2", "zero3", "fsdp")
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2", "kernels")
COMPILE = ("off", "on", "auto")
SOURCE_KINDS = ("file", "hub")
DEFAULT_TOKENIZER = "assets/tokenizer"


@dataclass
class ModelSpec:
    """What to train: an architecture built from scratch, or an existing model."""

    source: str = "scratch"  # scratch | pretrained
    name_or_path: str = ""  # pretrained: hub id, local folder, or a run dir / its final/
    tokenizer: str = DEFAULT_TOKENIZER  # folder or hub id; the studio's own by default
    positional_encoding: str = "rope"
    rope_theta: float = 10000.0
    yarn_factor: float | None = None  # required when positional_encoding == "yarn"
    # pretrained, trained past its native context: linear | dynamic | yarn | llama3, the
    # context multiple, and the native context (empty: the config's max_position_embeddings)
    rope_scaling: str | None = None
    rope_factor: float | None = None
    rope_original_context: int | None = None
    attention: str = "gqa"
    norm: str = "rmsnorm"
    activation: str = "swiglu"
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int = 2
    d_ff: int = 352
    n_layers: int = 4
    vocab_size: int | None = None  # None: taken from the tokenizer
    max_seq_len: int = 128
    dropout: float = 0.0
    sliding_window: int | None = None
    attention_bias: bool = False
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    trust_remote_code: bool = False


@dataclass
class DataSource:
    """One line of the Data tab: a hub dataset or a local file, with a mixing weight."""

    kind: str = "file"  # file | hub
    path: str = ""  # file path, or hub dataset name
    subset: str | None = None
    split: str = "train"
    weight: float = 1.0
    format: str = "auto"  # auto, or a format name from studio.data.formats to override detection
    streaming: bool = False


@dataclass
class DataSpec:
    sources: list[DataSource] = field(default_factory=list)
    mixing: str = "interleave"
    stopping_strategy: str = "all_exhausted"
    seed: int = 0
    eval_fraction: float = 0.05
    max_rows: int | None = None
    packing: bool = False
    assistant_only_loss: bool = True


@dataclass
class MethodSpec:
    """How to train: the method, the parameter regime and each family's knobs.

    Fields a method does not use are ignored by it; the registry says which it reads.
    """

    name: str = "sft"
    regime: str = "full"
    # adapters (LoRA family, freeze, prompt-style)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"  # "all-linear" or comma-separated names
    freeze_trainable_layers: int = 2  # freeze: train only the last N blocks
    freeze_extra_modules: str = ""  # freeze: comma-separated name fragments also trained
    num_virtual_tokens: int = 16  # prefix / prompt tuning
    quant_type: str = "nf4"  # qlora: nf4 | fp4
    double_quant: bool = True
    compute_dtype: str = "auto"  # qlora compute dtype: auto | fp32 | bf16 | fp16
    # LoRA variants (#19), all through peft: rsLoRA scales by alpha/sqrt(r) (stable at high
    # ranks); PiSSA / OLoRA start the adapter from the weight's principal directions / a QR
    # factor; LoRA+ trains B at loraplus_ratio x the learning rate (0 = off; 16 in the paper);
    # quant_bits 8 puts qlora's adapters on a bitsandbytes int8 base instead of 4-bit
    use_rslora: bool = False
    lora_init: str = "default"  # default | pissa | olora
    loraplus_ratio: float = 0.0
    quant_bits: int = 4  # qlora: 4 (nf4/fp4) or 8 (int8)
    # preference methods
    beta: float = 0.1
    loss_type: str = "sigmoid"  # dpo variants
    simpo_gamma: float = 0.5
    # KTO: weights of the thumbs-up and thumbs-down rows' losses (the KTO paper keeps
    # desirable x n_desirable / (undesirable x n_undesirable) within [1, 4/3]; trl warns
    # outside it, but 2 taught the shipped task best: see the KTO truth test)
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    reference_model: str = ""  # "" = the starting policy
    # online RL (grpo, ppo)
    reward: str = "exact_match"  # a reward preset name, or "model:<run dir or folder>"
    group_size: int = 4
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 8
    ppo_epochs: int = 4
    clip_range: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    gae_lambda: float = 0.95
    kl_coef: float = 0.05
    mini_batch_size: int = 8
    # distillation
    teacher: str = ""
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5


@dataclass
class FederationSpec:
    """Federated fine-tuning through Flower (#24): clients train on their own data and send
    only parameter updates; the server averages them (FedAvg, or FedProx) each round."""

    enabled: bool = False
    clients: int = 0  # 0: one client per data source; N > 0: N shards of the one source
    rounds: int = 5
    local_steps: int = 10  # optimizer steps each client takes per round
    client_fraction: float = 1.0  # share of the clients sampled each round
    strategy: str = "fedavg"  # fedavg | fedprox
    proximal_mu: float = 0.01  # fedprox: weight of (mu/2)*||w - w_global||^2
    address: str = "127.0.0.1:0"  # the server's host:port (0: a free port); clients connect here


@dataclass
class DecentralizedSpec:
    """Decentralized training through hivemind (#24): peers train on their own data and
    average parameters with each other through a DHT every `average_every` local steps."""

    enabled: bool = False
    peers: int = 3  # peer processes started here, each on its own shard of the data
    average_every: int = 10  # K: local steps between averaging rounds
    host: str = "127.0.0.1"  # address the peers listen on (loopback here)
    initial_peers: str = ""  # comma-separated multiaddrs of a running DHT to join
    averaging_timeout: float = 30.0  # seconds an averaging round may take before a peer goes on alone


@dataclass
class TrainSpec:
    max_steps: int = 200
    epochs: float = 1.0  # used only when max_steps <= 0
    batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_steps: float = 10  # < 1 is read as a fraction of the total steps
    max_grad_norm: float = 1.0
    seed: int = 42
    precision: str = "auto"
    gradient_checkpointing: str = "auto"
    log_every: int = 5
    eval_every: int = 0  # 0: no evaluation during training
    eval_steps: int = 20  # number of eval batches
    eval_tasks: str = ""  # comma-separated prompt files scored (exact match) at each eval/checkpoint (#21)
    save_every: int = 0  # 0: checkpoints only at the end
    save_best_only: bool = False
    num_processes: int = 1  # per node (one per GPU); > 1 launches through accelerate
    distributed: str = "ddp"  # with several processes: ddp | zero2 | zero3 (DeepSpeed) | fsdp
    nnodes: int = 1
    node_rank: int = 0  # this machine's index among nnodes
    master_addr: str = ""  # multi-node: address of node 0
    master_port: int = 0  # 0: a free port on this machine
    report_to: str = "none"
    resume_from: str = ""  # checkpoint dir to resume from
    resume_optimizer: bool = True
    # non-finite loss/grad norm: stop (fail, naming the step), or roll back to the last good
    # state with half the learning rate, at most max_rollbacks times (studio.divergence)
    on_divergence: str = "stop"
    max_rollbacks: int = 2
    # speed options (#26), each a pass-through to transformers/trl; studio.hardware says
    # which this machine can use (Liger and flash attention need a CUDA GPU)
    attn_implementation: str = "auto"  # auto = sdpa; eager | flash_attention_2 | kernels
    use_liger_kernel: bool = False  # fused RMSNorm/RoPE/SwiGLU/cross-entropy (no logits peak)
    padding_free: bool = False  # SFT: rows flattened into one sequence with position_ids
    group_by_length: bool = False  # batches of similar length (less padding)
    torch_compile: str = "off"  # off | on | auto (on for GPU runs long enough to repay the compile)
    tf32: bool = True  # TF32 matmuls on GPUs that have them (ignored elsewhere)
    federation: FederationSpec = field(default_factory=FederationSpec)  # #24, studio.scaleout
    decentralized: DecentralizedSpec = field(default_factory=DecentralizedSpec)


@dataclass
class RunSpec:
    name: str = "run"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    method: MethodSpec = field(default_factory=MethodSpec)
    train: TrainSpec = field(default_factory=TrainSpec)

    # -- YAML round trip ---------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict | None) -> "RunSpec":
        return _build(cls, data or {}, "")

    @classmethod
    def from_yaml(cls, text: str, where: str = "spec") -> "RunSpec":
        return cls.from_dict(read_yaml(text, where) or {})

    @classmethod
    def load(cls, path: str | Path) -> "RunSpec":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(str(path), f"is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML") from None
        except IsADirectoryError:
            raise SpecError(str(path), "is a folder; give a spec YAML file") from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise  # callers fall back to recipe names on a missing file
            raise SpecError(str(path), f"cannot be read: {exc.strerror or exc}") from None
        return cls.from_yaml(text, str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    def with_overrides(self, assignments: list[str]) -> "RunSpec":
        """Apply `key.path=value` strings (the CLI's --set) and return a new spec."""
        data = self.to_dict()
        for item in assignments:
            if "=" not in item:
                raise SpecError(item, "write overrides as key.path=value, e.g. train.max_steps=60")
            key, raw = item.split("=", 1)
            set_path(data, key.strip(), read_yaml(raw, f"--set {key.strip()}") if raw.strip() else None)
        return RunSpec.from_dict(data)

    def validate(self) -> list["Problem"]:
        return validate(self)


class SpecError(ValueError):
    """A spec that cannot even be read: names the field and the fix."""

    def __init__(self, field_name: str, fix: str):
        self.field = field_name
        self.fix = fix
        super().__init__(f"{field_name}: {fix}")


@dataclass
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def read_yaml(text: str, where: str):
    """yaml.safe_load, with a syntax error told as the file (or --set key), line and
    column and what the parser expected, instead of the parser's traceback."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark, ctx = exc.problem_mark or exc.context_mark, exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = exc.problem or exc.context or "unreadable"
        if exc.context and exc.problem:
            what += f" ({exc.context}" + (f" that starts at line {ctx.line + 1}, column {ctx.column + 1}"
                                          if ctx is not None and ctx is not mark else "") + ")"
        fix = ("indent with spaces, not tabs" if "'\\t'" in what
               else "fix the YAML (quote text that holds ':', '#', '[' or '{')")
        raise SpecError(where, f"YAML syntax error at {at}{what}; {fix}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise SpecError(where, f"not readable as YAML ({type(exc).__name__}: {exc})"[:300]) from None


def comma_list(text: str | None) -> list[str]:
    """The entries of a comma-separated field (method.reward, method.loss_type,
    method.target_modules, ...), stripped, empty ones dropped: one grammar for all."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def set_path(data: dict, key: str, value) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(key, f"'{part}' is not an index of {'.'.join(parts[:i])}")
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise SpecError(key, f"unknown section '{part}'")
    last = parts[-1]
    if isinstance(node, dict) and last not in node:
        raise SpecError(key, f"unknown field '{last}'; known: {', '.join(node)}")
    node[last] = value


def _build(cls, data, path: str):
    if not isinstance(data, dict):
        raise SpecError(path or "spec", f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise SpecError(where + unknown[0], f"unknown field; known fields: {', '.join(sorted(names))}")
    kwargs = {}
    if cls is MethodSpec and isinstance(data.get("reward"), list):  # YAML list form -> the text form
        from studio.rewards.config import to_text

        try:
            data = {**data, "reward": to_text(data["reward"])}
        except ValueError as exc:
            raise SpecError("method.reward", str(exc).split(": ", 1)[-1]) from None
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{path}.{name}" if path else name)
    return cls(**kwargs)


def _coerce(tp, value, path: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value or {}, path)
    if origin is list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise SpecError(path, "expected a list")
        return [_coerce(args[0], v, f"{path}.{i}") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise SpecError(path, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SpecError(path, f"expected a whole number, got {value!r}")
        if isinstance(value, int):
            return value  # exact, however large (float() would overflow past 1e308)
        try:
            as_float = float(value)
        except (ValueError, OverflowError):
            raise SpecError(path, f"expected a whole number, got {value!r}") from None
        if not math.isfinite(as_float) or as_float != int(as_float):
            raise SpecError(path, f"expected a whole number, got {value!r}")
        return int(as_float)
    if tp is float:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise SpecError(path, f"expected a number, got {value!r}") from None
        if not math.isfinite(number):  # no field means anything by inf or nan
            raise SpecError(path, f"expected a finite number, got {value!r}")
        return number
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise SpecError(path, f"expected text, got {type(value).__name__}")
        if isinstance(value, bool):
            # YAML 1.1 (and so --set) reads on/off/yes/no as booleans; the text fields
            # that take a switch (train.gradient_checkpointing) spell it on/off
            return "on" if value else "off"
        return str(value)
    return value


# -- validation -----------------------------------------------------------------


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
