"""Rendering of typed results (export, audit, inspect, validate) for people.

Data modules compute results and never import this package; renderers take a
result object (or its ``to_dict()``) and return text.
"""
