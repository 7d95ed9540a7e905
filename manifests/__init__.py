"""The JSON Schemas of every document bulkmig writes, shipped inside the package as ``bulkmig.manifests``.

This folder stays at the top of the repository (formats beside the code, readable without Python);
setup.py maps it into the package so an installed bulkmig carries its schemas.  Read them with
``importlib.resources.files("bulkmig.manifests")``.
"""
