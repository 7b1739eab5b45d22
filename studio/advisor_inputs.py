"""What the studio can answer for the advisor itself: the data kind of a file, the device
memory, whether a model is a base model, its size and the memory each regime needs.
No torch import: nvidia-smi for the GPU, studio.estimate (when present) for memory."""
from __future__ import annotations

from pathlib import Path

import yaml

from studio.advisor_recipe import apply_recipe
from studio.spec import RunSpec, SpecError

GIB = 1024**3
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


def _params_from_name(name: str) -> int | None:
    import re

    hit = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])", name)
    if not hit:
        return None
    return int(float(hit.group(1)) * (1e9 if hit.group(2) in "bB" else 1e6))


def _total(result) -> int | None:
    """The total bytes of whatever studio.estimate returned (dict or object)."""
    if isinstance(result, (int, float)):
        return int(result)
    get = result.get if isinstance(result, dict) else (lambda k, d=None: getattr(result, k, d))
    inner = get("memory_bytes", None) or get("memory", None)
    if inner is not None and inner is not result:
        return _total(inner)
    value = get("total", None)
    return int(value) if isinstance(value, (int, float)) else None


def _estimated_bytes(spec: RunSpec, regime: str) -> int | None:
    try:
        from studio.estimate import estimate_memory
    except ImportError:
        return None
    variant = apply_recipe(spec, {"method.regime": regime})
    try:
        try:
            result = estimate_memory(variant)
        except TypeError:  # an estimator that takes the sections rather than the run spec
            result = estimate_memory(variant.model, variant.method, variant.train)
        return _total(result)
    except Exception:  # noqa: BLE001 - the estimator is another module's; without it the advisor still answers
        return None


def _param_count(spec: RunSpec, estimate: dict | None) -> int | None:
    for key in ("parameters", "params", "total_parameters"):
        value = (estimate or {}).get(key)
        if isinstance(value, dict):
            value = value.get("total")
        if isinstance(value, (int, float)):
            return int(value)
    try:
        from studio.estimate import count_parameters

        return int(count_parameters(spec.model)["total"])
    except Exception:  # noqa: BLE001 - unreadable config / hub id / module not there yet: fall back to the name
        return _params_from_name(spec.model.name_or_path) if spec.model.source == "pretrained" else None


def infer_answers(spec: RunSpec, data_kind: str | None = None, estimate: dict | None = None,
                  device_memory_gb: float | None = None) -> Answers:
    """The answers the studio knows from a spec: base or not, size, memory per regime
    (`estimate` holds the Model tab's figures for the spec's own regime, shaped like
    {"memory_bytes": {"total": ...}, "parameters": ...}). The goal stays the person's."""
    from studio.advisor import Answers  # the advisor imports this module: resolve at call time
    need = {}
    for regime in ("full", "lora", "qlora"):
        own = _total(estimate) if estimate and spec.method.regime == regime else None
        need[regime] = own if own is not None else _estimated_bytes(spec, regime)
    return Answers(
        data_kind=data_kind,
        has_reward_model=True if spec.method.reward.startswith("model:") else None,
        model_is_base=guess_model_is_base(spec.model)[0],
        from_scratch=spec.model.source == "scratch",
        memory_needed_full_bytes=need["full"], memory_needed_lora_bytes=need["lora"],
        memory_needed_qlora_bytes=need["qlora"],
        device_memory_bytes=int(device_memory_gb * GIB) if device_memory_gb else None,
        model_size_params=_param_count(spec, estimate),
    )


def detect_device_memory() -> tuple[int | None, str]:
    """(bytes, what) of the first GPU per nvidia-smi, else this machine's RAM: the memory
    a run started here would train in. No torch import."""
    import os
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total,name", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        mib, gpu = out.strip().splitlines()[0].split(",", 1)
        return int(float(mib)) * 1024**2, gpu.strip()
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "CPU RAM, no GPU found"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def _sample_rows(path: Path, limit: int = 200) -> tuple[list, int | None]:
    import csv
    import json

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


def _kind_by_columns(rows: list) -> str | None:
    keys = set().union(*(r.keys() for r in rows if isinstance(r, dict))) if rows else set()
    for kind, need in (("preference", {"chosen", "rejected"}), ("unpaired", {"completion", "label"}),
                       ("conversation", {"messages"}), ("conversation", {"conversations"}),
                       ("conversation", {"prompt", "completion"}), ("conversation", {"instruction"}),
                       ("prompt", {"prompt"}), ("prompt", {"question"}), ("text", {"text"})):
        if need <= keys:
            return kind
    return None


def detect_data_kind(path: str | Path) -> tuple[str | None, int | None, str]:
    """(data kind, rows, how it was decided) for a local data file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("--data", f"no file '{path}': give a data file (jsonl, json, csv, txt) or a run spec YAML")
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt"):
        return None, None, f"cannot sample a {path.suffix or 'suffix-less'} file here: give the data kind yourself"
    rows, count = _sample_rows(path)
    try:
        from studio.data import detect_format
    except ImportError:
        return _kind_by_columns(rows), count, "studio.data is not available: guessed from the column names"
    guess = detect_format(rows)
    return guess.kind, count, f"detected format '{guess.name}' ({guess.matched}/{guess.sampled} sampled rows)"


def resolve_model(text: str):
    """A ModelSpec from a spec YAML, a model preset, a run recipe, or a folder / hub id."""
    from studio import presets
    from studio.spec import ModelSpec

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
            from studio.data import resolve_path

            path = resolve_path(source.path)
        except ImportError:
            path = Path(source.path)
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
