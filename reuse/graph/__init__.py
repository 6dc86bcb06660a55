"""A stored network's architecture as a graph, and what a selection of it is.

- :mod:`reuse.graph.reader` reads a stored ``model_config`` into an :class:`~reuse.graph.arch.Architecture`
  (layers and operation nodes by path, nested models opened), :mod:`reuse.graph.arch` holds it and makes
  new layers from its nodes (only classes :mod:`reuse.trust` allows), :mod:`reuse.graph.replay` replays
  recorded calls;
- :mod:`reuse.graph.select` is the one place a scope pattern (RE2) meets layer paths;
  :mod:`reuse.graph.subgraph` says what part of the graph a selection is (entries, exits, gaps);
- :mod:`reuse.graph.applications` recognises a ``keras.applications`` architecture;
  :mod:`reuse.graph.signature` is a model's inputs and outputs as tensor specs (what serving and exports
  advertise).

Nothing here reads weights or the store: :mod:`reuse.build` builds networks from stored layers.
"""
