"""The labelling workflow: a project that asks a person for labels, takes them back, and says
how the model is doing (``tidal init / query / label / status / report``).

``store``      the project's SQLite state (pool ids and paths, labels, rounds, selections)
``pool``       scanning a pool folder (any tree of images; class folders count as labels)
``project``    creating a project and opening it under its lock
``answers``    importing labels (CSV, Label Studio exports), validated before anything is stored
``query``      one round: the simulation's training and selection on the labels so far
``status``     the state as text; ``report``: the rounds as an HTML page
``labelstudio`` Label Studio's config, tasks and exports
``lsapi``      a running Label Studio's REST API (``tidal labelstudio push / connect``)
``serve``      ``tidal serve``: a Label Studio ML backend that stores webhooks' labels and retrains (its
               HTTP front; ``serve_requests``: each call's answer; ``serve_state``: model, inbox, retrains)

Importing this package imports no torch; the modules that train do, when called.
"""

# (`tidal.query` is the library call of a round; here `query` is its module.)
# (`tidal serve`'s library call is `tidal.project.serve.serve`; here `serve` is its module.)
__all__ = ["import_labels", "init_project", "project_status", "push_round", "query_project", "write_project_report"]

_LAZY = {
    "import_labels": "tidal.project.answers",
    "init_project": "tidal.project.project",
    "project_status": "tidal.project.status",
    "push_round": "tidal.project.lsapi",
    "query_project": "tidal.project.query",
    "write_project_report": "tidal.project.report",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tidal.project' has no attribute {name!r}")
