"""The hub functions under the model package's name, for the worker side. They live in
studio.hub, which stays light (this package imports torch on import, and the Model tab
must not): the UI calls studio.hub.fetch_config directly."""
from studio.hub import (  # noqa: F401
    HubError, cached_config, cached_snapshot, fetch_config, hub_cache, looks_like_id, offline, resolve_dataset,
    resolve_model, split_id)
