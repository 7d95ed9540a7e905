"""Package discovery for setuptools; everything else is in pyproject.toml.

The JSON Schemas live in the top-level ``manifests/`` folder (the project's layout: formats beside the code,
not inside it) and travel inside the package as ``bulkmig.manifests``, read with ``importlib.resources``.
pyproject.toml alone cannot add a package from outside the discovered tree, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["bulkmig", "bulkmig.*"]), "bulkmig.manifests"],
    package_dir={"bulkmig.manifests": "manifests"},
    package_data={"bulkmig.manifests": ["*.json", "examples/*.json"], "bulkmig.ops": ["dashboard.html"]},
)
