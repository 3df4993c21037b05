"""Explore what a model learned: t-SNE maps, K-Means and agglomerative clusters, nearest neighbours,
and how well all of it agrees with genres the model never saw.

``explore(model_dir, out_dir)`` writes the report; :mod:`recengine.explore.web` returns the same views
as JSON-ready dicts for a served model.
"""

from __future__ import annotations

from .analysis import ExploreOptions, analyse
from .embeddings import ExploreData, from_model, load
from .run import explore

__all__ = ["ExploreData", "ExploreOptions", "analyse", "explore", "from_model", "load"]
