"""Hub ids (`org/name`, `org/name@revision`) resolved through the local Hugging Face
cache, laid out as the hub lays it out (HF_HUB_CACHE, else HF_HOME/hub:
models--org--name/{refs/<branch>, snapshots/<commit>/..., blobs/}), with HF_HUB_OFFLINE
honoured: offline, only what is cached resolves, and what is not gets a message naming
the id, the revision, the cache and what to do.

Light on purpose (huggingface_hub only, imported lazily; no torch): the Model tab calls
fetch_config on a typed hub id, and the estimate reads cached configs through it. The
worker's loaders (studio.model.load) and the data layer (studio.data.sources) resolve
through the same functions, so what the studio checks (safetensors only) is the folder
it then loads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

# What a model download fetches when online: configs, tokenizer files, safetensors
# weights. Pickle-format weights (*.bin, *.pt) are never fetched (studio.model.load
# refuses them anyway), which also keeps a download to one copy of the weights.
MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "tokenizer*"]


class HubError(ValueError):
    """A hub id that cannot be resolved; `field` is the spec field it came from."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def split_id(text: str) -> tuple[str, str | None]:
    """'org/name@rev' -> ('org/name', 'rev'); no '@' -> (text, None)."""
    text = text.strip()
    repo, sep, revision = text.partition("@")
    return repo, (revision.strip() or None) if sep else None


def looks_like_id(text: str) -> bool:
    """A hub id rather than a path: 'name' or 'org/name' (optionally @revision)."""
    repo, _ = split_id(text)
    return bool(repo) and not repo.startswith((".", "/", "~")) and repo.count("/") <= 1


def hub_cache() -> str:
    """The hub cache folder, read from the environment at call time (huggingface_hub's
    constants are read once at import, before a test or the CLI may set them)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def not_cached(field: str, repo: str, revision: str | None, kind: str = "model", detail: str = "") -> HubError:
    rev = revision or "main"
    fetch = f"hf download {repo}" + (" --repo-type dataset" if kind == "dataset" else "") + \
        (f" --revision {revision}" if revision else "")
    why = "HF_HUB_OFFLINE is set" if offline() else "the hub could not be reached"
    return HubError(field, f"{kind} '{repo}' (revision {rev}) is not in the local Hugging Face cache "
                           f"({hub_cache()}){detail} and {why}. Download it once while online "
                           f"(`{fetch}`), unset HF_HUB_OFFLINE, or give a local folder instead")


def cached_snapshot(repo: str, revision: str | None = None, kind: str = "model") -> Path | None:
    """The cached snapshot folder of repo@revision (a branch, tag or commit), else None.
    Never touches the network."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo, repo_type=kind, revision=revision, cache_dir=hub_cache(),
                                   local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, incomplete, or not a valid id: all mean "not here"
        return None
    return Path(folder)


def resolve_model(text: str, field: str = "model.name_or_path") -> Path:
    """The local snapshot folder of a hub model id: the cached one when it holds weights
    (or an adapter), else (online) a download of MODEL_FILES only. Offline and not
    cached: a HubError that says what to do."""
    repo, revision = split_id(text)
    folder = cached_snapshot(repo, revision)
    if folder is not None and _has_weights(folder):
        return folder
    if offline():
        detail = " (only its config is cached, not its weights)" if folder is not None else ""
        raise not_cached(field, repo, revision, detail=detail)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, cache_dir=hub_cache(), allow_patterns=MODEL_FILES))
    except Exception as exc:  # noqa: BLE001 - gated, missing, no network: one message with the cause
        raise HubError(field, f"could not download model '{repo}' (revision {revision or 'main'}): "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}. "
                              "Check the id (org/name), your access to it, or give a local folder") from None


def _has_weights(folder: Path) -> bool:
    names = ("model.safetensors", "model.safetensors.index.json", "adapter_config.json")
    return any((folder / n).is_file() for n in names)


def cached_config(text: str) -> dict | None:
    """config.json of repo@revision from the cache, else None. No network."""
    from huggingface_hub import try_to_load_from_cache

    repo, revision = split_id(text)
    try:
        found = try_to_load_from_cache(repo, "config.json", cache_dir=hub_cache(), revision=revision)
    except Exception:  # noqa: BLE001 - not a valid repo id
        return None
    return json.loads(Path(found).read_text()) if isinstance(found, str) else None


def fetch_config(text: str, revision: str | None = None, field: str = "model.name_or_path") -> dict:
    """config.json of a hub model, and nothing else: from the cache when it is there,
    else (online) hf_hub_download of config.json alone, kilobytes, so the Model tab can
    show the exact size and memory of a model before anyone downloads its weights.
    `revision` overrides an '@revision' in `text`."""
    repo, rev = split_id(text)
    rev = revision or rev
    label = f"{repo}@{rev}" if rev else repo
    cached = cached_config(label)
    if cached is not None:
        return cached
    if offline():
        raise not_cached(field, repo, rev, detail=" (not even its config.json)")
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo, "config.json", revision=rev, cache_dir=hub_cache())
    except Exception as exc:  # noqa: BLE001 - unknown repo, gated, no network
        raise HubError(field, f"could not fetch config.json of '{label}': {type(exc).__name__}. "
                              "Check the id (org/name) and your access, or give a local folder") from None
    return json.loads(Path(path).read_text())


def resolve_dataset(text: str) -> Path | None:
    """The cached snapshot folder of a hub dataset (data files as the hub keeps them),
    for datasets.load_dataset to read as a local folder, streaming included; None when
    it is not in the hub cache (then datasets' own resolution and cache apply)."""
    repo, revision = split_id(text)
    return cached_snapshot(repo, revision, kind="dataset")
