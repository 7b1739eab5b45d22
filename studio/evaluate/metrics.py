"""Per-example scores of a reply against its reference, and their aggregate with a
bootstrap confidence interval. No torch: the UI reads summaries through here.

ROUGE-L and BLEU come from rouge-score and sacrebleu (the reference implementations);
the rest are one-liners on normalised text."""
from __future__ import annotations

import json
import math
import random
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")


def normalise(text) -> str:
    """SQuAD-style: lower case, no punctuation or articles, single spaces."""
    text = str(text or "").lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def first_number(text) -> float | None:
    match = _NUMBER.search(str(text or "").replace(",", ""))
    return float(match.group()) if match else None


def exact_match(reply, reference, **_) -> float:
    return float(normalise(reply) == normalise(reference))


def contains(reply, reference, **_) -> float:
    return float(normalise(reference) in normalise(reply))


def regex(reply, reference, pattern: str = "", **_) -> float:
    """The pattern's first group (or whole match) in the reply, equal to the reference."""
    match = re.search(pattern, str(reply or ""))
    if not match:
        return 0.0
    found = match.group(1) if match.groups() else match.group(0)
    return float(normalise(found) == normalise(reference))


def numeric(reply, reference, tolerance: float = 1e-6, **_) -> float:
    got, want = first_number(reply), first_number(reference)
    if got is None or want is None:
        return 0.0
    return float(abs(got - want) <= tolerance * max(1.0, abs(want)))


def rouge_l(reply, reference, **_) -> float:
    from rouge_score import rouge_scorer

    return float(_rouge(rouge_scorer).score(str(reference), str(reply or ""))["rougeL"].fmeasure)


def bleu(reply, reference, **_) -> float:
    """Sentence BLEU on a 0-1 scale (sacrebleu reports 0-100)."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(str(reply or ""), [str(reference)]).score / 100.0)


def json_valid(reply, reference=None, **_) -> float:
    try:
        json.loads(str(reply or "").strip())
    except ValueError:
        return 0.0
    return 1.0


_SCORER = {}


def _rouge(rouge_scorer):
    if "l" not in _SCORER:
        _SCORER["l"] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _SCORER["l"]


TEXT_METRICS = {"exact_match": exact_match, "contains": contains, "regex": regex, "numeric": numeric,
                "rouge_l": rouge_l, "bleu": bleu, "json_valid": json_valid}


# -- aggregation ----------------------------------------------------------------------


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def ratio(num: list[float], den: list[float]) -> float | None:
    total = sum(den)
    return sum(num) / total if total else None


def bootstrap(values: list[float], weights: list[float] | None = None, resamples: int = 1000,
              confidence: float = 0.95, seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile interval of the mean (or of sum(v)/sum(w) when weighted: a token-weighted
    loss resamples examples, not tokens, so long examples stay whole)."""
    n = len(values)
    if n < 2 or resamples <= 0:
        return None, None
    rng = random.Random(seed)
    stats = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        if weights is None:
            stats.append(sum(values[i] for i in idx) / n)
        else:
            den = sum(weights[i] for i in idx)
            stats.append(sum(values[i] for i in idx) / den if den else math.nan)
    stats = sorted(s for s in stats if not math.isnan(s))
    if not stats:
        return None, None
    lo = stats[int((1 - confidence) / 2 * (len(stats) - 1))]
    hi = stats[int((1 + confidence) / 2 * (len(stats) - 1))]
    return lo, hi


def aggregate(rows: list[dict], metric: str, settings) -> dict:
    """One metric over the rows of one model and task: value, interval, n, failures.
    loss and perplexity are token-weighted (sum of NLL over sum of tokens)."""
    ok = [r for r in rows if not r.get("error")]
    failed = len(rows) - len(ok)
    kw = dict(resamples=settings.bootstrap, confidence=settings.confidence, seed=settings.seed)
    if metric in ("loss", "perplexity"):
        ok = [r for r in ok if r.get("tokens")]
        nll, tokens = [r["nll"] for r in ok], [r["tokens"] for r in ok]
        value = ratio(nll, tokens)
        lo, hi = bootstrap(nll, tokens, **kw)
        if metric == "perplexity":
            value, lo, hi = (math.exp(v) if v is not None else None for v in (value, lo, hi))
        return {"value": value, "ci_low": lo, "ci_high": hi, "n": len(ok), "failed": failed,
                "tokens": int(sum(tokens))}
    values = [float(r["scores"][metric]) for r in ok if r.get("scores", {}).get(metric) is not None]
    lo, hi = bootstrap(values, **kw)
    return {"value": mean(values), "ci_low": lo, "ci_high": hi, "n": len(values), "failed": failed}
