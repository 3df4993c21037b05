"""Object2Vec: SageMaker's pair-embedding model for ratings and binary recommendation.

``params`` (hyperparameters, SageMaker names, presets), ``tokens`` and ``content`` (ids plus side
tokens), ``encoders`` (the network), ``sampling`` (negatives) and ``model`` (the Recommender).
"""

from recengine.models.object2vec.model import Object2Vec
from recengine.models.object2vec.params import Object2VecParams

__all__ = ["Object2Vec", "Object2VecParams"]
