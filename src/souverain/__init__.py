"""Souverain: a sovereign public cloud platform speaking the OpenStack and S3 APIs."""

__version__ = "0.1.0"
