"""Propensity: the probability that a person reaches the tenant's goal in the next N days.

Trained on history with a time-based split, never on the future of what it is scored on:

* training snapshot: features as of ``as_of - 2N`` days, label = a goal event in the N days after;
* held-out snapshot: features as of ``as_of - N``, label = a goal event in the last N days;
  the model trained on the first is scored on the second: that ROC AUC is the one logged;
* the model used for the profiles is then refit on both snapshots and applied to features as of now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

log = logging.getLogger(__name__)

FEATURES = (
    "recency_days", "sessions", "sessions_per_week", "active_week_share", "pageviews_per_session",
    "engaged_secs_per_session", "avg_scroll_pct", "bounce_rate", "cart_adds", "cart_adds_per_product_view",
    "conversions", "conversion_rate", "monetary_value", "mobile_share", "sale_share", "category_entropy",
    "searches_per_session", "high_level_events", "evening_share", "weekend_share",
)
LOGGED = np.array([f in ("sessions", "sessions_per_week", "cart_adds", "conversions", "monetary_value",
                         "high_level_events", "engaged_secs_per_session", "recency_days") for f in FEATURES])


def matrix(rows: list[dict[str, Any]]) -> np.ndarray:
    x = np.array([[float(r.get(n) or 0.0) for n in FEATURES] for r in rows], dtype=float).reshape(len(rows), len(FEATURES))
    x[:, LOGGED] = np.log1p(np.clip(x[:, LOGGED], 0, None))
    return x


@dataclass
class Propensity:
    model: Any | None
    auc: float | None
    reason: str  # why there is no model, or how it was trained
    train_rows: int = 0
    test_rows: int = 0
    base_rate: float | None = None

    def score(self, rows: list[dict[str, Any]]) -> list[float | None]:
        if self.model is None or not rows:
            return [None] * len(rows)
        return [round(float(p), 4) for p in self.model.predict_proba(matrix(rows))[:, 1]]


def _model():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))


def train(train_rows: list[dict], train_labels: list[int], test_rows: list[dict], test_labels: list[int],
          min_people: int) -> Propensity:
    """Fit on the training snapshot, score ROC AUC on the held-out one, refit on both."""
    for name, rows, labels in (("training", train_rows, train_labels), ("held-out", test_rows, test_labels)):
        if len(rows) < min_people:
            return Propensity(None, None, f"{len(rows)} people in the {name} snapshot, fewer than min_people = {min_people}")
        if len(set(labels)) < 2:
            return Propensity(None, None, f"everyone in the {name} snapshot has the same outcome ({labels[0]}): nothing to learn")
    first = _model().fit(matrix(train_rows), train_labels)
    auc = float(roc_auc_score(test_labels, first.predict_proba(matrix(test_rows))[:, 1]))
    final = _model().fit(matrix(train_rows + test_rows), train_labels + test_labels)
    base = (sum(train_labels) + sum(test_labels)) / (len(train_labels) + len(test_labels))
    return Propensity(final, round(auc, 4), "trained", len(train_rows), len(test_rows), round(base, 4))
