"""Safe object graphs: Python objects <-> inert nodes plus tensors (no files here)."""

from amber.graph.decode import Decoder
from amber.graph.encode import Encoder
from amber.graph.nodes import GRAPH_PROTOCOL

__all__ = ["GRAPH_PROTOCOL", "Decoder", "Encoder"]
