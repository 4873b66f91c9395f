"""The multi-seed study's numbers (``metrics/study.json``, docs/study.md): every report seed's
Table 1 and frontier, their means over seeds, and the paired comparisons pooled over seeds.

Pooling a paired comparison over k independent seeds (each seed: its own trained models and
its own generated images):

- ``difference``: the mean of the per-seed differences;
- ``low`` / ``high``: a normal interval around it from the per-seed bootstrap standard errors
  combined, ``se = sqrt(Σ se_i²) / k`` (the mean of independent estimates); this is the
  image-sampling uncertainty of the mean, and ``verdict`` is read from it;
- ``seed_sd``: the standard deviation of the per-seed differences (ddof 1) — the spread between
  seeds, training randomness included — with ``seed_low`` / ``seed_high``, a t interval over the
  seeds (mean ± t_{k−1} · sd / √k), and ``same_sign``: every seed's difference on one side of 0.

Everything here is arithmetic on the per-seed JSON: the tests check it on numbers by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from emogen.evaluation.statistics import verdict

DIGITS = 4


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), DIGITS)


def _t_quantile(p: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, df))


def summarize(values: Sequence[float]) -> dict:
    """Mean, sd (ddof 1; None for one value), min and max of per-seed values."""
    k = len(values)
    mean = sum(values) / k
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1)) if k > 1 else None
    return {"mean": _r(mean), "sd": _r(sd), "min": _r(min(values)), "max": _r(max(values)), "seeds": k}


def pool_differences(differences: Sequence[float], ses: Sequence[float], confidence: float) -> dict:
    """Per-seed paired differences and their bootstrap se → the pooled comparison (module doc)."""
    if len(differences) != len(ses) or not differences:
        raise ValueError(f"pool_differences: {len(differences)} differences and {len(ses)} standard errors")
    k = len(differences)
    mean = sum(differences) / k
    se = math.sqrt(sum(s * s for s in ses)) / k
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    low, high = mean - z * se, mean + z * se
    out = {
        "difference": _r(mean),
        "low": _r(low),
        "high": _r(high),
        "se": _r(se),
        "verdict": verdict(low, high),
        "per_seed": [_r(d) for d in differences],
        "seed_sd": None,
        "seed_low": None,
        "seed_high": None,
        "same_sign": all(d > 0 for d in differences) or all(d < 0 for d in differences),
    }
    if k > 1:
        sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (k - 1))
        half = _t_quantile(1 - (1 - confidence) / 2, k - 1) * sd / math.sqrt(k)
        out.update(seed_sd=_r(sd), seed_low=_r(mean - half), seed_high=_r(mean + half))
    return out


def _value(entry) -> float | None:
    if isinstance(entry, dict):
        entry = entry.get("value")
    return entry if isinstance(entry, (int, float)) and not isinstance(entry, bool) else None


def table_means(tables: dict[int, dict]) -> dict:
    """{method: {metric: summary over seeds}} of every numeric ``methods`` entry all seeds share."""
    first = next(iter(tables.values()))
    out: dict[str, dict] = {}
    for method, metrics in first.get("methods", {}).items():
        for metric in metrics:
            values = [_value(t.get("methods", {}).get(method, {}).get(metric)) for t in tables.values()]
            if all(v is not None for v in values):
                out.setdefault(method, {})[metric] = summarize(values)
    return out


def pooled_comparisons(tables: dict[int, dict], confidence: float, source: str = "table1.json") -> dict:
    """{baseline: {metric: pooled comparison}} from each seed's ``comparisons`` block
    (entries with a difference and an se in every seed)."""
    first = next(iter(tables.values()))
    if "comparisons" not in first:
        return {}
    out: dict[str, dict] = {}
    for baseline, metrics in first["comparisons"].items():
        for metric in metrics:
            rows = []
            for seed, table in tables.items():
                row = table.get("comparisons", {}).get(baseline, {}).get(metric)
                if row is None:
                    raise ValueError(
                        f"{source} of seed {seed}: comparisons.{baseline}.{metric} missing "
                        "(every seed must come from the same code)"
                    )
                rows.append(row)
            if all(r.get("difference") is not None and r.get("se") is not None for r in rows):
                out.setdefault(baseline, {})[metric] = pool_differences(
                    [r["difference"] for r in rows], [r["se"] for r in rows], confidence
                )
    return out


def frontier_means(frontiers: dict[int, dict]) -> dict:
    """{method: [{guidance_scale, emo_a, sem_d}]} with the mean and spread over seeds per point."""
    first = next(iter(frontiers.values()))
    out = {}
    for method, curve in first.get("methods", {}).items():
        rows = []
        for k, point in enumerate(curve):
            row = {"guidance_scale": point["guidance_scale"]}
            for metric in ("emo_a", "sem_d"):
                row[metric] = summarize([_value(f["methods"][method][k][metric]) for f in frontiers.values()])
            rows.append(row)
        out[method] = rows
    return out


def pooled_matched(frontiers: dict[int, dict], confidence: float) -> dict:
    """{baseline: [{guidance_scale, seeds_defined, pooled comparison}]}: the frontier's matched-Emo-A
    Sem-D difference (``matched_difference``) pooled over the seeds in which it is defined."""
    first = next(iter(frontiers.values()))
    out = {}
    for baseline, rows in first.get("matched_difference", {}).items():
        pooled_rows = []
        for k, row in enumerate(rows):
            per_seed = {seed: f["matched_difference"][baseline][k] for seed, f in frontiers.items()}
            defined = {s: r for s, r in per_seed.items() if r.get("difference") is not None and r.get("se") is not None}
            entry = {
                "guidance_scale": row["guidance_scale"],
                "seeds_defined": sorted(defined),
                "emo_a": summarize([r["emo_a"] for r in per_seed.values()]),
            }
            if defined:
                entry.update(
                    pool_differences(
                        [r["difference"] for r in defined.values()], [r["se"] for r in defined.values()], confidence
                    )
                )
            else:
                entry.update(difference=None, verdict=None)
            pooled_rows.append(entry)
        out[baseline] = pooled_rows
    return out


def study_summary(tables: dict[int, dict], frontiers: dict[int, dict], confidence: float) -> dict:
    """The numbers of metrics/study.json from the per-seed files (``frontiers`` may be empty)."""
    if not tables:
        raise ValueError("study: no seed's table to pool")
    out = {
        "confidence": confidence,
        "pooling": "difference: mean over seeds; low/high: normal interval from sqrt(sum se_i^2)/k "
        "(per-seed bootstrap se); seed_sd/seed_low/seed_high: spread between seeds (t interval)",
        "per_seed": {
            str(seed): {
                "table": {m: {k: _value(v) for k, v in row.items()} for m, row in t.get("methods", {}).items()},
                "comparisons": t.get("comparisons", {}),
            }
            for seed, t in tables.items()
        },
        "means": table_means(tables),
        "comparisons": pooled_comparisons(tables, confidence),
    }
    if frontiers:
        for seed, f in frontiers.items():
            out["per_seed"][str(seed)]["frontier"] = {
                "images_per_emotion": f.get("images_per_emotion"),
                "methods": {
                    m: [
                        {
                            "guidance_scale": p["guidance_scale"],
                            "emo_a": _value(p["emo_a"]),
                            "sem_d": _value(p["sem_d"]),
                        }
                        for p in curve
                    ]
                    for m, curve in f.get("methods", {}).items()
                },
                "matched_difference": f.get("matched_difference", {}),
            }
        out["frontier"] = {
            "images_per_emotion": sorted({f.get("images_per_emotion") for f in frontiers.values()}),
            "means": frontier_means(frontiers),
            "matched_difference": pooled_matched(frontiers, confidence),
        }
    return out
