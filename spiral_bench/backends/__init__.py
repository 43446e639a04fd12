"""Generation backends behind one interface (`base.Backend`): `hf` (default), `vllm` (optional) and
`openai` (an OpenAI-compatible server, `openai_api`; optional).

`get_backend(name, model_path, **options)` builds one; the vllm backend is imported lazily and
asking for it without the `vllm` extra installed is a clear error.
"""
from .base import Backend, Request, Sample, SamplingConfig, derive_seed, sample_seed
from .factory import get_backend

__all__ = ["Backend", "Request", "Sample", "SamplingConfig", "derive_seed", "sample_seed", "get_backend"]
