"""The run spec: the one description of a run that the UI, the CLI, presets and the
worker all share.

Plain dataclasses, a YAML round trip and `validate()`. Nothing here imports torch,
trl or peft: the UI process imports this module on every keystroke.
"""
# Over ~400 lines on purpose: every field of a run, with its default and meaning, in one place (the checks live in spec_checks.py).
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
        from studio.spec_checks import validate  # studio.spec_checks imports this module

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


# The checks live in studio.spec_checks (they reach into the reward, policy and hardware
# modules, which the dataclasses never need); their names are still answered here.
_CHECKS = frozenset(('validate', '_choice', 'validate_model', '_rope_scaling_problems', 'validate_data', 'validate_method', '_galore_problems', '_lora_variant_problems', 'validate_train', '_speed_for_model', 'speed_problems', 'scaleout_problems'))


def __getattr__(name: str):
    if name in _CHECKS:
        from studio import spec_checks

        return getattr(spec_checks, name)
    raise AttributeError(f"module 'studio.spec' has no attribute {name!r}")
