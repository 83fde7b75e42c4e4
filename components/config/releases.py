"""The release a model's `release` or `canary.release` section stands for, as the stack renders it: one formula for
the VllmService component and for the runbooks that move a model to a release (promote), so the release a runbook
patches in is exactly the one the next `pulumi up` renders. Plain Python: no Pulumi."""

from __future__ import annotations

from collections.abc import Mapping

from components.config.sections import Model, Release, Retrieval
from components.manifests.vllm import model_dir, serving_args
from components.release import ReleaseParts, index_fingerprint, release_parts


def release_of(model: Model, release: Release, fingerprints: Mapping[str, str]) -> ReleaseParts:
    """`release` of `model` (its stable or its canary release); `fingerprints`: retrieval index name -> fingerprint."""
    args = serving_args(name=model.name, model_dir=model_dir(model.registry.model, release.version),
                        tensor_parallel_size=model.tensor_parallel_size, max_model_len=model.max_model_len,
                        gpu_memory_utilization=model.gpu_memory_utilization)
    return release_parts(registered_model=model.registry.model, model_version=release.version, image=model.image,
                         serving_args=args, prompt_version=release.prompt_version, feature_view=release.feature_view,
                         retrieval_fingerprint=fingerprints.get(release.retrieval_index) if release.retrieval_index else None)


def retrieval_fingerprints(retrieval: Retrieval) -> dict[str, str]:
    """Each index's fingerprint by name, as the stack's RetrievalIndex component records them."""
    return {index.name: index_fingerprint(index) for index in retrieval.indexes}
