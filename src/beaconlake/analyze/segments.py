"""Segments: k-means on standardised behaviour features, k chosen by silhouette, readable labels.

The model (the transform, the centroids, the labels) is plain numbers kept in the profile store,
so an incremental run assigns people to the nearest existing segment without refitting.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

log = logging.getLogger(__name__)

# (feature, log-transform?, phrase when high, phrase when low). Skewed counts and rates are
# log1p-transformed before standardising, so a few heavy users do not make a segment of their own.
FEATURES: tuple[tuple[str, bool, str | None, str | None], ...] = (
    ("sessions_per_week", True, "frequent visitors", "occasional visitors"),
    ("pageviews_per_session", True, "many pages per visit", "one-page visits"),
    ("engaged_secs_per_page", True, "long readers", "quick glancers"),
    ("avg_scroll_pct", False, "deep scrollers", "shallow scrollers"),
    ("clicks_per_min", True, "busy clickers", "few clicks"),
    ("mobile_share", False, "on mobile", "on desktop"),
    ("morning_share", False, "morning visitors", None),
    ("afternoon_share", False, "afternoon visitors", None),
    ("evening_share", False, "evening visitors", None),
    ("night_share", False, "night owls", None),
    ("weekend_share", False, "weekenders", "weekday visitors"),
    ("sale_share", False, "sale hunters", None),
    ("category_entropy", False, "explore many categories", "stick to one category"),
    ("conversion_rate", False, "frequent buyers", "rarely buy"),
    ("cart_adds_per_product_view", False, "quick to add to cart", None),
    ("bounce_rate", False, "bounce often", None),
    ("searches_per_session", True, "searchers", None),
)
NAMES = tuple(f[0] for f in FEATURES)
LOGGED = np.array([f[1] for f in FEATURES])
MIN_Z = 0.5  # a feature distinguishes a segment when its centroid is this many standard deviations off
SILHOUETTE_SAMPLE = 3000


def matrix(rows: list[dict[str, Any]]) -> np.ndarray:
    x = np.array([[float(r.get(n) or 0.0) for n in NAMES] for r in rows], dtype=float).reshape(len(rows), len(NAMES))
    x[:, LOGGED] = np.log1p(np.clip(x[:, LOGGED], 0, None))
    return x


def _units(z: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """From standardised back to feature units."""
    x = z * scale + mean
    x[..., LOGGED] = np.expm1(x[..., LOGGED])
    return x


class TooUniform(ValueError):
    """Fewer than two distinct behaviours: there is nothing to tell segments apart by."""


def fit(rows: list[dict[str, Any]], max_k: int, seed: int = 0) -> dict[str, Any]:
    """Fit k-means for k in 2..max_k on standardised features, keep the best silhouette."""
    x = matrix(rows)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    # k-means asked for more clusters than there are distinct points warns and makes empty ones
    distinct = len(np.unique(z.round(9), axis=0))
    if distinct < 2:
        raise TooUniform(f"cannot segment {len(z)} people: they all behave the same")
    best = None
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(z), size=min(len(z), SILHOUETTE_SAMPLE), replace=False)
    for k in range(2, min(max_k, len(z) - 1, distinct) + 1):
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
        if len(set(km.labels_[sample])) < 2:
            continue
        score = float(silhouette_score(z[sample], km.labels_[sample]))
        log.debug("k=%d silhouette=%.3f", k, score)
        if best is None or score > best[0]:
            best = (score, k, km)
    if best is None:
        raise TooUniform(f"cannot segment {len(z)} people: too few distinct behaviours")
    score, k, km = best
    # ids by size, largest first: "s1" is the biggest segment of this fit
    sizes = np.bincount(km.labels_, minlength=k)
    order = list(np.argsort(-sizes, kind="stable"))
    centroids = km.cluster_centers_[order]
    model = {"features": list(NAMES), "mean": mean.tolist(), "scale": scale.tolist(),
             "centroids": centroids.tolist(), "k": k, "silhouette": round(score, 4), "fitted_people": len(z),
             "sizes": [int(sizes[i]) for i in order]}
    model["segments"] = describe(model)
    return model


def describe(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Each segment's id, label, centroid in feature units and distinguishing features."""
    mean, scale = np.array(model["mean"]), np.array(model["scale"])
    overall = _units(np.zeros(len(NAMES)), mean, scale)  # the population's centre, in units
    out, seen = [], {}
    for i, c in enumerate(np.array(model["centroids"])):
        units = _units(c.copy(), mean, scale)
        ranked = sorted(range(len(NAMES)), key=lambda j: -abs(c[j]))
        phrases, distinguishing = [], []
        for j in ranked:
            if abs(c[j]) < MIN_Z:
                break
            phrase = FEATURES[j][2] if c[j] > 0 else FEATURES[j][3]
            distinguishing.append({"feature": NAMES[j], "value": round(float(units[j]), 4),
                                   "overall": round(float(overall[j]), 4), "z": round(float(c[j]), 2)})
            if phrase and len(phrases) < 3:
                phrases.append(phrase)
        label = ", ".join(phrases) or "typical visitors"
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label} ({seen[label]})"
        out.append({"id": f"s{i + 1}", "label": label,
                     "centroid": {n: round(float(v), 4) for n, v in zip(NAMES, units, strict=True)},
                     "distinguishing": distinguishing[:6]})
    return out


def assign(model: dict[str, Any], rows: list[dict[str, Any]]) -> list[int]:
    """Index of the nearest centroid for each row (the model's transform applied)."""
    if not rows:
        return []
    z = (matrix(rows) - np.array(model["mean"])) / np.array(model["scale"])
    d = ((z[:, None, :] - np.array(model["centroids"])[None, :, :]) ** 2).sum(axis=2)
    return [int(i) for i in d.argmin(axis=1)]
