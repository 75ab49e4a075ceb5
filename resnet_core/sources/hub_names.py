"""Hub repo names: ``hf-hub:ORG/NAME[@REVISION]`` checked by the hub's own rule before anything is fetched."""

from __future__ import annotations

from ._errors import SourceError

HF_HUB = "hf-hub:"


def check_hub_name(source: str) -> tuple[str, str | None]:
    """``(repo, revision)`` of ``hf-hub:ORG/NAME[@REVISION]``; a repo id the hub forbids is an input error."""
    repo, _, revision = source[len(HF_HUB):].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise SourceError(source, "expected hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    try:
        from huggingface_hub.utils import validate_repo_id
    except ImportError:  # reading the repo will name the missing package
        return repo, revision or None
    try:
        validate_repo_id(repo)
    except ValueError:
        raise SourceError(source, f"{repo!r} is not a valid Hugging Face repo id", "Use letters, digits, '-', '_' "
                          "and '.', with no '--' or '..', as ORG/NAME") from None
    return repo, revision or None
