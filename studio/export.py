"""Ship a trained model: save the adapter, merge it into its base, push to a hub
repository, convert to GGUF. Used by the Chat tab's export section and
`python -m studio export`.

torch/peft/huggingface_hub are imported inside functions (the UI imports this module).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from studio.runfiles import atomic_folder

# files a pushed folder may hold: weights only as safetensors (a pickle runs code when loaded)
UPLOAD_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja", "*.txt", "*.model",
                   "*.md", "*.gguf")
# GGUF lives in studio.ship.gguf (convert, quantise, verify, Modelfile); these names stay for callers
from studio.ship import gguf as _gguf  # noqa: E402 - light: no torch/llama_cpp at import

GGUF_TYPES = _gguf.TYPES
GGUF_HOWTO = _gguf.SETUP_HINT + "; or set LLAMA_CPP_DIR=/path/to/llama.cpp (a checkout with convert_hf_to_gguf.py)"


class ExportError(RuntimeError):
    """A refusal with its reason and the fix, shown to the person as is."""


def _load(source: str, runs_dir: str | None):
    from studio.inference import load

    try:
        return load(source, device="cpu", runs_dir=runs_dir)
    except (ValueError, OSError) as exc:
        raise ExportError(f"source: cannot load '{source}': {exc}") from None


def _prepare_out(out: str | Path, overwrite: bool) -> Path:
    """The checked target. Nothing is removed here: the export is written beside it and
    replaces it only when complete (studio.runfiles.atomic_folder), so a failed export
    leaves neither a half folder nor a lost older one."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ExportError(f"out: '{out}' is a file; choose a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"out: '{out}' exists and is not empty; choose a new folder or pass overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def save_adapter(source: str, out: str | Path, runs_dir: str | None = None, overwrite: bool = False) -> Path:
    """The adapter of a LoRA-style run (adapter_config.json + safetensors + tokenizer)."""
    loaded = _load(source, runs_dir)
    if not loaded.is_adapter:
        raise ExportError(f"source: '{loaded.source}' is a full model, not an adapter; use merge (save the model) instead")
    out = _prepare_out(out, overwrite)
    with atomic_folder(out) as folder:
        loaded.model.save_pretrained(folder, safe_serialization=True)
        loaded.tokenizer.save_pretrained(folder)
    return out


def merge(source: str, out: str | Path, runs_dir: str | None = None, overwrite: bool = False) -> Path:
    """A standalone model folder: the adapter merged into its base (or the full model as
    is), safetensors weights, tokenizer and chat template. Loads with
    AutoModelForCausalLM.from_pretrained(out) with no peft installed."""
    loaded = _load(source, runs_dir)
    model = loaded.model.merge_and_unload() if loaded.is_adapter else loaded.model
    out = _prepare_out(out, overwrite)
    with atomic_folder(out) as folder:
        model.save_pretrained(folder, safe_serialization=True)
        loaded.tokenizer.save_pretrained(folder)  # writes the chat template with it
    return out


def prepared_upload(folder: str | Path) -> list[str]:
    """The files push() would upload (relative paths): only safetensors weights, configs,
    tokenizer and text. Refuses a folder whose only weights are pickles."""
    from fnmatch import fnmatch

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"folder: '{folder}' is not a folder; export the model first")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    chosen = [f for f in files if any(fnmatch(Path(f).name, pat) for pat in UPLOAD_PATTERNS)]
    if not any(f.endswith((".safetensors", ".gguf")) for f in chosen):
        raise ExportError(f"folder: '{folder}' has no *.safetensors weights to push; export with merge or save adapter")
    return chosen


def hub_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except ImportError:
        return None


def push(folder: str | Path, repo_id: str, token: str | None = None, endpoint: str | None = None,
         private: bool = True) -> str:
    """Create `repo_id` (if missing) and upload the prepared files; returns the commit URL.
    `endpoint` points at another hub (a mirror, an enterprise hub, a test server)."""
    from huggingface_hub import HfApi

    token = token or hub_token()
    if not token:
        raise ExportError("push: no hub token configured; set HF_TOKEN (or run `hf auth login`) and try again")
    if not repo_id or repo_id.count("/") != 1:
        raise ExportError(f"push: repository '{repo_id}' should look like user/name")
    allow = prepared_upload(folder)
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", allow_patterns=allow,
                             commit_message="Upload from Training Studio")
    return str(getattr(info, "commit_url", info))


def gguf_converter() -> Path | None:
    """llama.cpp's convert_hf_to_gguf.py from LLAMA_CPP_DIR, PATH or the copy setup.sh kept, else None."""
    root = _gguf.tools_dir()
    return root / "convert_hf_to_gguf.py" if root else None


def gguf_status() -> str:
    return _gguf.status()


def to_gguf(model_dir: str | Path, out_file: str | Path, outtype: str = "q8_0", timeout: float = 3600) -> Path:
    """Convert a merged model folder to one .gguf file with llama.cpp's converter."""
    try:
        return _gguf.write(model_dir, out_file, outtype, timeout)
    except _gguf.GGUFError as exc:
        raise ExportError(str(exc)) from None


def export(source: str, out: str | Path, merge_adapter: bool = True, push_to: str | None = None,
           gguf: str | None = None, runs_dir: str | None = None, endpoint: str | None = None,
           overwrite: bool = False) -> list[str]:
    """The whole pipeline; returns lines saying what was written where."""
    if gguf and not merge_adapter:
        raise ExportError("gguf: converting needs the merged model; add --merge")
    if gguf:  # before spending minutes on the merge: type known, converter and runtime there
        try:
            _gguf.check_ready(gguf)
        except _gguf.GGUFError as exc:
            raise ExportError(str(exc)) from None
    done = []
    if merge_adapter:
        folder = merge(source, out, runs_dir, overwrite)
        done.append(f"merged model: {folder}")
    else:
        folder = save_adapter(source, out, runs_dir, overwrite)
        done.append(f"adapter: {folder}")
    if gguf:
        try:  # converted, quantised, checked against the merged model, with an Ollama Modelfile
            done += _gguf.describe(_gguf.ship(folder, gguf))
        except (_gguf.GGUFError, ValueError) as exc:
            raise ExportError(str(exc)) from None
    if push_to:
        done.append(f"pushed: {push(folder, push_to, endpoint=endpoint)}")
    return done


def cmd_export(args) -> int:
    try:
        lines = export(args.run, args.out, merge_adapter=args.merge, push_to=args.push, gguf=args.gguf,
                       runs_dir=getattr(args, "runs_dir", None), endpoint=args.endpoint, overwrite=args.overwrite)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def add_cli(subparsers) -> None:
    e = subparsers.add_parser("export", help="save the adapter or the merged model; push; GGUF",
                              description="Export a run's model. " + gguf_status())
    e.add_argument("run", help="run id, run directory or model/adapter folder")
    e.add_argument("--out", required=True, help="folder to write (must be new or empty)")
    e.add_argument("--merge", action="store_true", help="merge the adapter into its base (a standalone model)")
    e.add_argument("--push", default=None, metavar="USER/REPO", help="upload to this hub repository (needs HF_TOKEN)")
    e.add_argument("--endpoint", default=os.environ.get("HF_ENDPOINT"), help="hub URL (default: huggingface.co)")
    e.add_argument("--gguf", default=None, choices=GGUF_TYPES, help="also write a .gguf (needs llama.cpp)")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    e.set_defaults(func=cmd_export)
