"""What the studio can answer for the advisor itself: the data kind of a file, whether
a model is a base model, its size and the memory each regime needs (studio.estimate;
the device's memory comes from studio.hardware). No torch import."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import yaml

from studio import presets
from studio.advisor.answers import Answers
from studio.advisor.recipe import apply_recipe
from studio.data import detect_format
from studio.data.sources import resolve_path as resolve_data_path
from studio.estimate import count_parameters, estimate_memory
from studio.spec import ModelSpec, RunSpec, SpecError
from studio.units import GIB

_INSTRUCT_NAME = ("instruct", "chat", "-it", "_it", "sft", "dpo", "rlhf", "assistant")


def guess_model_is_base(model) -> tuple[bool | None, str]:
    """(is it a base model?, why) from the ModelSpec alone: its source, its name, the run
    that trained it, or the chat template it ships. None when nothing tells."""
    if model.source == "scratch":
        return True, "built from scratch: it has learned nothing yet"
    name = model.name_or_path.strip()
    folder = Path(name)
    low = folder.name.lower()  # the model's own name, not the folders around it
    for spec_file in (folder / "spec.yaml", folder.parent / "spec.yaml"):
        if spec_file.is_file():  # a studio run: the spec says how it was trained
            trained = ((yaml.safe_load(spec_file.read_text()) or {}).get("method") or {}).get("name", "")
            return trained in ("pretrain", "cpt", ""), f"a studio run trained with method '{trained}'"
    if any(t in low for t in _INSTRUCT_NAME):
        return False, f"'{name}' is named as an instruction-tuned model"
    if low.endswith("-base") or "-base-" in low:
        return True, f"'{name}' is named as a base model"
    if folder.is_dir():
        config = folder / "tokenizer_config.json"
        template = (folder / "chat_template.jinja").is_file() or (
            config.is_file() and "chat_template" in config.read_text())
        if not template:
            return True, "the tokenizer has no chat template: a base model"
        return None, "it ships a chat template but its name does not say instruct; many base models do too"
    return None, "cannot tell from the name"


def params_from_name(name: str) -> int | None:
    """A parameter count from a name such as "Qwen2.5-0.5B" or "SmolLM2-135M"."""
    hit = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])", name)
    if not hit:
        return None
    return int(float(hit.group(1)) * (1e9 if hit.group(2) in "bB" else 1e6))


def _estimated_bytes(spec: RunSpec, regime: str, seq_len: int | None = None) -> int | None:
    try:
        return estimate_memory(apply_recipe(spec, {"method.regime": regime}), seq_len=seq_len)["total"]
    except Exception:  # noqa: BLE001 - an unreadable config, a hub id not cached, a family transformers lacks
        return None


def _param_count(spec: RunSpec) -> int | None:
    try:
        return count_parameters(spec.model)["total"]
    except Exception:  # noqa: BLE001 - as above: then the name may still tell the size
        return params_from_name(spec.model.name_or_path) if spec.model.source == "pretrained" else None


def infer_answers(spec: RunSpec, data_kind: str | None = None, device_memory_gb: float | None = None, *,
                  data_rows: int | None = None, seq_len: int | None = None, seq_len_source: str = "") -> Answers:
    """The answers the studio knows from a spec: base or not, size, memory per regime
    (studio.estimate on the spec with each regime, at `seq_len` tokens a row when the data's
    lengths are known, else the model's max_seq_len). The goal stays the person's. With the
    model readable, the advisor checks its pick against the device (Answers.model)."""
    need = {regime: _estimated_bytes(spec, regime, seq_len) for regime in ("full", "lora", "qlora")}
    precision = spec.train.precision if spec.train.precision in ("fp32", "bf16", "fp16") else "bf16"
    return Answers(
        data_rows=data_rows, seq_len=seq_len, seq_len_source=seq_len_source,
        model=spec.model if need["full"] is not None else None, precision=precision,
        data_kind=data_kind,
        has_reward_model=True if spec.method.reward.startswith("model:") else None,
        model_is_base=guess_model_is_base(spec.model)[0],
        from_scratch=spec.model.source == "scratch",
        memory_needed_full_bytes=need["full"], memory_needed_lora_bytes=need["lora"],
        memory_needed_qlora_bytes=need["qlora"],
        device_memory_bytes=int(device_memory_gb * GIB) if device_memory_gb else None,
        model_size_params=_param_count(spec),
    )


def sample_rows(path: Path, limit: int = 200) -> tuple[list, int | None]:
    """Up to `limit` rows of a local data file (None for an unreadable JSON line) and the
    file's row count."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text())
        rows = data if isinstance(data, list) else next((v for v in data.values() if isinstance(v, list)), [data])
        return rows[:limit], len(rows)
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        if suffix in (".csv", ".tsv"):
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            rows = [row for _, row in zip(range(limit), reader)]
        elif suffix == ".txt":
            rows = [{"text": line} for _, line in zip(range(limit), fh) if line.strip()]
        else:  # jsonl and friends
            rows = []
            for _, line in zip(range(limit), fh):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    rows.append(None)
    with path.open("rb") as fh:
        count = sum(1 for line in fh if line.strip())
    return rows, count - (1 if suffix in (".csv", ".tsv") else 0)


def detect_data_kind(path: str | Path) -> tuple[str | None, int | None, str]:
    """(data kind, rows, how it was decided) for a local data file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("--data", f"no file '{path}': give a data file (jsonl, json, csv, txt) or a run spec YAML")
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt"):
        return None, None, f"cannot sample a {path.suffix or 'suffix-less'} file here: give the data kind yourself"
    rows, count = sample_rows(path)
    guess = detect_format(rows)
    return guess.kind, count, f"detected format '{guess.name}' ({guess.matched}/{guess.sampled} sampled rows)"


def resolve_model(text: str):
    """A ModelSpec from a spec YAML, a model preset, a run recipe, or a folder / hub id."""
    path = Path(text)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
        return RunSpec.from_dict({"model": data.get("model", data)}).model
    if text in presets.list_presets("models"):
        return presets.load_model_preset(text)
    if text in presets.list_presets("recipes") and text != "sizes":
        return presets.load_run(text).model
    return ModelSpec(source="pretrained", name_or_path=text)


MAX_SOURCES_SAMPLED = 8  # a blend of many files: the first few tell the kind well enough


def kind_of_sources(sources) -> tuple[str | None, int | None, str]:
    """(data kind, rows, how it was decided) for a DataSpec's sources, the way the Method
    tab fills its data question. Only local files inside the allowed data roots are read;
    a hub dataset or a mix of kinds is said so, and the kind left for the person to pick."""
    kinds, rows, notes = [], 0, []
    for source in list(sources)[:MAX_SOURCES_SAMPLED]:
        if source.kind != "file":
            notes.append(f"{source.path}: a hub dataset is not sampled here")
            continue
        try:
            path = resolve_data_path(source.path)
        except (SpecError, ValueError) as exc:  # DataError: outside the roots, missing
            notes.append(str(exc))
            continue
        if path.is_dir():
            notes.append(f"{source.path}: a folder is not sampled here")
            continue
        try:
            kind, count, how = detect_data_kind(path)
        except (OSError, SpecError, ValueError) as exc:
            notes.append(f"{source.path}: {exc}")
            continue
        if kind in (None, "unknown"):
            notes.append(f"{source.path}: {how}")
            continue
        kinds.append(kind)
        rows += count or 0
        notes.append(f"{source.path}: {kind} ({how})")
    distinct = list(dict.fromkeys(kinds))
    if len(distinct) > 1:
        notes.append(f"the sources hold different kinds ({', '.join(distinct)}): the first one is assumed")
    if not distinct:
        return None, None, "; ".join(notes) or "no data sources"
    return distinct[0], rows or None, "; ".join(notes)
