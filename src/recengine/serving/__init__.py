"""Serving: the HTTP app (SageMaker contract and REST API v1), the model registry with hot reload,
the feedback store and the serverless handler.

Nothing here loads a model at import: models are loaded by :func:`recengine.serving.app.create_app`
(or the Lambda handler on its first call), so importing the package is cheap and side-effect free.
"""
