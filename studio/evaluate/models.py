"""Model references of an evaluation -> what to load, checked before work starts, and
the loading itself through the studio's own loaders (studio.inference, studio.model).

Resolving is pure path logic (no torch), so a bad reference is refused by the UI and
the CLI before a process starts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.evaluate import gguf_model

RUN = "run:"
BASE = "base:"


@dataclass
class ModelRef:
    ref: str  # as written in the spec
    label: str  # what the scorecard shows
    kind: str  # final | checkpoint | base | path | gguf
    where: str = ""  # folder, hub id or .gguf file (final, checkpoint, path, a pretrained base, gguf)
    run_dir: str = ""  # the run it belongs to, if any


def _run_dir(name: str, runs_dir) -> Path:
    from studio import jobs

    path = Path(name)
    if path.is_dir() and (path / "spec.yaml").is_file():
        return path.resolve()
    run_dir = jobs.run_path(name, runs_dir)
    if not (run_dir / "spec.yaml").is_file():
        raise ValueError(f"models: no run '{name}' in {run_dir.parent}; pick one from `python -m studio runs list`")
    return run_dir


def resolve(ref: str, runs_dir=None) -> ModelRef:
    """A reference -> ModelRef. ValueError names the field and the fix."""
    from studio import jobs

    text = ref.strip()
    if text.startswith(BASE):
        run_dir = _run_dir(text[len(BASE):], runs_dir)
        spec = _run_spec(run_dir)
        where = spec.model.name_or_path if spec.model.source == "pretrained" else ""
        return ModelRef(text, f"base of {run_dir.name}", "base", where, str(run_dir))
    if text.startswith(RUN):
        name, _, checkpoint = text[len(RUN):].partition("@")
        run_dir = _run_dir(name, runs_dir)
        if checkpoint:
            folder = run_dir / "checkpoints" / checkpoint
            if not folder.is_dir():
                have = ", ".join(p.name for p in jobs.checkpoints(run_dir)) or "none"
                raise ValueError(f"models: run {run_dir.name} has no {checkpoint} (it has: {have})")
            return ModelRef(text, f"{run_dir.name}@{checkpoint}", "checkpoint", str(folder), str(run_dir))
        if not jobs.has_final(run_dir):
            raise ValueError(f"models: run {run_dir.name} has no final model yet; wait for it to finish, "
                             f"or name a checkpoint as run:{run_dir.name}@checkpoint-N")
        return ModelRef(text, run_dir.name, "final", str(run_dir / "final"), str(run_dir))
    path = Path(text).expanduser()
    if gguf_model.is_gguf(text):  # an exported GGUF file, run by llama.cpp's runtime
        gguf_model.check(path, ref)
        return ModelRef(text, path.name, "gguf", str(path.resolve()))
    if path.is_dir() and (path / "spec.yaml").is_file():  # a run directory given as a path
        return resolve(RUN + str(path), runs_dir)
    if path.is_dir():
        _check_folder(path, ref)
        return ModelRef(text, path.name, "path", str(path.resolve()))
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        _check_hub_id(text)
        return ModelRef(text, text, "path", text)  # a hub id: loaded from the offline cache or the hub
    try:  # a bare run id
        return resolve(RUN + text, runs_dir)
    except Exception:
        raise ValueError(f"models: '{ref}' is not a run, a model folder or a hub id; write run:<id>, "
                         "base:<id>, a folder with config.json, a .gguf file, or owner/name") from None


def _check_folder(path: Path, ref: str) -> None:
    """Light checks (no torch: the UI calls this); the loader's own safetensors rule runs
    again, file by file, in the evaluation process."""
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise ValueError(f"models: '{ref}' has neither config.json nor adapter_config.json; "
                         "point at a model folder (e.g. what `studio export` wrote) or a run")
    if not any(path.glob("*.safetensors")):
        raise ValueError(f"models: '{ref}' holds no .safetensors weights; the studio loads only safetensors "
                         "(save the model with safe_serialization=True)")


def _check_hub_id(text: str) -> None:
    """Offline, a hub id (org/name[@revision]) must already be in the cache: the same
    lookup the model loader makes (studio.hub), so revisions and HF_HUB_CACHE count."""
    from studio import hub

    if not hub.offline():
        return
    repo, revision = hub.split_id(text)
    if hub.cached_snapshot(repo, revision) is None:
        raise ValueError(f"models: '{text}' is not in the local hub cache and this machine is offline "
                         "(HF_HUB_OFFLINE=1); download it first or give a local folder")


def _run_spec(run_dir: Path):
    from studio.spec import RunSpec

    return RunSpec.load(Path(run_dir) / "spec.yaml")


def run_of(refs: list[ModelRef]) -> ModelRef | None:
    """The first model that belongs to a run: the run whose held-out split `data: run` means."""
    return next((r for r in refs if r.run_dir), None)


def load(ref: ModelRef, device: str):
    """(model, tokenizer) in eval mode. A scratch base is rebuilt as the run built it:
    the same architecture, tokenizer and seed, so it is the model before step one. A GGUF
    is (GGUFBackend, None): it tokenises itself."""
    from studio.inference import load as load_model

    if ref.kind == "gguf":
        return gguf_model.load(ref), None

    if ref.kind == "base" and not ref.where:
        from transformers import set_seed

        from studio.model import build_or_load, load_tokenizer

        spec = _run_spec(Path(ref.run_dir))
        tokenizer = load_tokenizer(spec.model)
        set_seed(spec.train.seed)  # the trainer seeds here too (methods.common.load_model)
        model = build_or_load(spec.model, tokenizer, None, device=device)
        model.eval()
        return model, tokenizer
    loaded = load_model(ref.where, device=device)
    return loaded.model, loaded.tokenizer
