"""``hf-hub:ORG/NAME[@REVISION]`` through huggingface_hub: its cache, HF_HOME, HF_HUB_OFFLINE, its progress bars.

Only the files the repo's layout needs are fetched (config.json first, then the weights in the
layout's order of preference), so a timm repo holding both safetensors and a .bin downloads one.
"""

from __future__ import annotations

from pathlib import Path

from ..io.api import LoadedWeights
from ._errors import SourceError
from .folder import TIMM_WEIGHTS, check_timm_architecture, layout_of, load_folder
from .hub_names import check_hub_name

# Files each layout needs beside config.json: (alternatives in order of preference, required).
NEEDS = {
    "timm": ((TIMM_WEIGHTS, True),),
    "transformers": ((("model.safetensors", "pytorch_model.bin"), True), (("preprocessor_config.json",), False)),
    "keras-hub": ((("metadata.json",), True), (("model.weights.h5",), True), (("task.json",), False),
                  (("preprocessor.json",), False), (("image_converter.json",), False), (("task.weights.h5",), False)),
}


def parse(source: str) -> tuple[str, str | None]:
    """("ORG/NAME", revision or None) from ``hf-hub:ORG/NAME[@REVISION]``."""
    return check_hub_name(source)


def _fetch(source: str, repo: str, filename: str, revision: str | None, optional: bool) -> Path | None:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo, filename, revision=revision, library_name="resnet-core"))
    except LocalEntryNotFoundError:
        if optional and _snapshot_cached(repo, revision):
            return None
        where = f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
        if constants.is_offline_mode():
            raise SourceError(source, f"{filename} is not in {where} and HF_HUB_OFFLINE is set",
                              "Fetch it once online (unset HF_HUB_OFFLINE, or `hf download "
                              f"{repo}`), or point HF_HOME at a cache that holds it") from None
        raise SourceError(source, f"{filename} is not in {where} and the hub cannot be reached",
                          "Check the network or proxy, or set HF_HOME to a cache that holds it") from None
    except EntryNotFoundError:
        if optional:
            return None
        raise
    except RevisionNotFoundError:
        raise SourceError(source, f"the repo has no revision {revision!r}", "Check the branch, tag or commit "
                          "after '@'") from None
    except GatedRepoError:
        raise SourceError(source, "the repo is gated", "Accept its terms on huggingface.co and log in "
                          "(`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise SourceError(source, f"no such repo {repo!r} (or it is private)", "Check the name, or log in "
                          "(`hf auth login`) for a private repo") from None
    except HfHubHTTPError as exc:
        raise SourceError(source, f"the hub answered {exc}", "Retry later or check the network") from None
    except OSError as exc:
        raise SourceError(source, f"fetching {filename} failed ({exc})", "Check the network and disk space") from None


def _snapshot_cached(repo: str, revision: str | None) -> bool:
    """True when the snapshot's config.json is cached, so a missing optional file is really absent."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str)


def load_hf_hub(source: str) -> LoadedWeights:
    """Spec, canonical weights and record of a hub repo in the timm, transformers or keras-hub layout."""
    repo, revision = parse(source)
    from huggingface_hub.errors import EntryNotFoundError

    try:
        config = _fetch(source, repo, "config.json", revision, optional=False)
    except EntryNotFoundError:
        raise SourceError(source, "the repo has no config.json", "resnet-core reads timm, transformers and "
                          "keras-hub model repos") from None
    assert config is not None  # optional=False raises instead
    folder = config.parent
    from .folder import _config

    config_data = _config(folder, source)
    layout = layout_of(config_data, folder)
    if layout == "timm":
        check_timm_architecture(str(config_data["architecture"]), source)  # before fetching any weights
    for names, required in NEEDS.get(layout, ()):
        found = None
        for name in names:
            found = _fetch(source, repo, name, revision, optional=True)
            if found is not None:
                break
        if found is None and required:
            raise SourceError(source, f"neither the repo nor the cache has {' or '.join(names)}",
                              "Fetch the repo once online (a partial download misses it)")
    return load_folder(folder, source)
