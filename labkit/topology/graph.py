"""A topology as a graph: networks, nodes with their roles, the pods on each
node, services and the pods they send to; for a live lab also stopped nodes,
downed links, partitions and shaped links. Pure: `graph_of` builds the model,
`render` writes it as Mermaid or DOT text, or as SVG/PNG laid out by Graphviz.

The live state comes in as plain data (`LiveState`, or `live_from_faults`
from the fault records), so drawing never talks to the engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Literal

from labkit.errors import UsageError
from labkit.topology.addressing import Addresses
from labkit.topology.impairments import link_impairments
from labkit.topology.model import Service, Topology
from labkit.topology.networks import networks_of
from labkit.topology.services_alloc import allocate_vips, selects, target_port

Format = Literal["mermaid", "dot", "svg", "png"]
FORMATS: tuple[str, ...] = ("mermaid", "dot", "svg", "png")


@dataclass(frozen=True)
class LiveState:
    """What a running lab adds to its topology (from its fault records)."""

    stopped_nodes: frozenset[str] = frozenset()
    down_links: frozenset[tuple[str, str]] = frozenset()  # (node, network)
    partitions: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()  # (cut off, from)
    shaped_links: Mapping[tuple[str, str], str] = field(default_factory=dict)  # -> what tc does
    down_pods: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Vertex:
    id: str  # "<kind>.<name>", unique
    kind: str  # network | node | pod | service | partition
    name: str
    details: tuple[str, ...] = ()  # lines under the name
    parent: str | None = None  # a pod's node: drawn inside it
    state: str = "up"  # up | stopped | down


@dataclass(frozen=True)
class Edge:
    tail: str
    head: str
    kind: str  # link (node-network) | endpoint (service->pod) | partition
    label: str = ""
    state: str = "up"  # up | down | impaired | cut


@dataclass(frozen=True)
class Graph:
    name: str
    vertices: tuple[Vertex, ...]
    edges: tuple[Edge, ...]

    def vertex(self, vertex_id: str) -> Vertex:
        return next(v for v in self.vertices if v.id == vertex_id)

    def children(self, vertex_id: str) -> list[Vertex]:
        return [v for v in self.vertices if v.parent == vertex_id]


def live_from_faults(faults: Iterable[Mapping[str, Any]], topology: Topology) -> LiveState:
    """A LiveState from fault records (`dataclasses.asdict` of `labkit.faults.Fault`)."""
    stopped: set[str] = set()
    down: set[tuple[str, str]] = set()
    partitions: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    shaped: dict[tuple[str, str], str] = {}
    down_pods: set[str] = set()
    for fault in faults:
        kind, nodes, params = fault["kind"], list(fault.get("nodes", [])), fault.get("params", {})
        if kind == "node-stop":
            stopped.update(nodes)
        elif kind == "partition":
            partitions.append((tuple(nodes), tuple(fault.get("others", []))))
        elif kind == "pod-kill" and fault.get("pod"):
            down_pods.add(str(fault["pod"]))
        elif kind in ("link-down", "rate-limit", "netem"):
            for node in nodes:
                on = networks_of(topology, node) if node in topology.nodes else []
                network = params.get("network") or (on[0] if on else "")
                if kind == "link-down":
                    down.add((node, network))
                else:
                    shaped[(node, network)] = str(params.get("qdisc") or params.get("spec") or kind)
    return LiveState(
        frozenset(stopped), frozenset(down), tuple(partitions), shaped, frozenset(down_pods)
    )


def _service_details(service: Service, vip: IPv4Address | None) -> tuple[str, ...]:
    ports = []
    for port in service.ports:
        text = f"{port.port}/{port.protocol}"
        if port.target_port is not None and port.target_port != port.port:
            text += f"→{port.target_port}"
        if port.node_port:
            text += f" :{port.node_port}"
        ports.append(text)
    head = service.type + (f" {vip}" if vip else "")
    namespace = () if service.namespace == "default" else (f"ns {service.namespace}",)
    return (head, *namespace, ", ".join(ports))


def graph_of(
    topology: Topology,
    addresses: Addresses | None = None,
    live: LiveState | None = None,
    vips: Mapping[str, IPv4Address] | None = None,
) -> Graph:
    """The graph of a topology; with `addresses`, its IPs (and services' VIPs, planned
    unless `vips` gives the lab's own); with `live`, the state of a running lab."""
    live = live or LiveState()
    if vips is None and addresses is not None:
        vips = allocate_vips(topology)
    vertices: list[Vertex] = []
    edges: list[Edge] = []
    for name, declared in topology.networks.items():
        subnet = addresses.underlay_subnets.get(name) if addresses else declared.subnet
        vertices.append(
            Vertex(f"network.{name}", "network", name, (str(subnet),) if subnet else ())
        )
    impaired = link_impairments(topology)
    for name, node in topology.nodes.items():
        details = []
        if node.roles:
            details.append(", ".join(node.roles))
        if addresses and name in addresses.pod_subnets:
            details.append(f"pods {addresses.pod_subnets[name]}")
        stopped = name in live.stopped_nodes
        if stopped:
            details.append("STOPPED")
        vertices.append(
            Vertex(
                f"node.{name}", "node", name, tuple(details), state="stopped" if stopped else "up"
            )
        )
        for network in networks_of(topology, name):
            if network not in topology.networks:
                continue
            words = [str(addresses.node_ip(name, network))] if addresses else []
            state = "up"
            shaping = live.shaped_links.get((name, network))
            if shaping is None and (name, network) in impaired:
                shaping = str(impaired[(name, network)])
            if shaping:
                words.append(shaping)
                state = "impaired"
            if (name, network) in live.down_links:
                words.append("DOWN")
                state = "down"
            edges.append(Edge(f"node.{name}", f"network.{network}", "link", " ".join(words), state))
    for name, pod in topology.pods.items():
        details = [str(addresses.pod_ips[name])] if addresses and name in addresses.pod_ips else []
        if pod.namespace != "default":
            details.append(f"ns {pod.namespace}")
        state = "up"
        if pod.node in live.stopped_nodes:
            state = "stopped"
        elif name in live.down_pods:
            state = "down"
            details.append("KILLED")
        vertices.append(
            Vertex(
                f"pod.{name}", "pod", name, tuple(details), parent=f"node.{pod.node}", state=state
            )
        )
    for name, service in topology.services.items():
        vip = vips.get(name) if vips else None
        vertices.append(Vertex(f"service.{name}", "service", name, _service_details(service, vip)))
        for pod_name, pod in topology.pods.items():
            if not selects(service, pod):
                continue
            targets = sorted(
                {str(t) for p in service.ports if (t := target_port(p, pod)) is not None}
            )
            if not targets:
                continue
            pod_state = (
                "down" if pod.node in live.stopped_nodes or pod_name in live.down_pods else "up"
            )
            edges.append(
                Edge(f"service.{name}", f"pod.{pod_name}", "endpoint", ",".join(targets), pod_state)
            )
    for index, (cut_off, others) in enumerate(live.partitions, start=1):
        vertex_id = f"partition.{index}"
        vertices.append(
            Vertex(
                vertex_id, "partition", f"partition {index}", (f"cut off from {', '.join(others)}",)
            )
        )
        edges += [Edge(vertex_id, f"node.{node}", "partition", "", "cut") for node in cut_off]
    return Graph(topology.name, tuple(vertices), tuple(edges))


# -- renderers -----------------------------------------------------------------------------------


def render(graph: Graph, format: str) -> str | bytes:
    """Mermaid or DOT text, SVG text, or PNG bytes (both laid out by Graphviz's dot)."""
    if format == "mermaid":
        return to_mermaid(graph)
    if format == "dot":
        return to_dot(graph).source
    if format in ("svg", "png"):
        return render_image(graph, format)
    raise UsageError(f"graph format {format!r}: use one of {', '.join(FORMATS)}")


def _mermaid_id(vertex_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", vertex_id)


def _text(vertex: Vertex, newline: str) -> str:
    return newline.join([vertex.name, *vertex.details])


MERMAID_SHAPES = {
    "network": ('{{"', '"}}'),
    "node": ('["', '"]'),
    "pod": ('("', '")'),
    "service": ('(["', '"])'),
    "partition": ('{"', '"}'),
}
MERMAID_LINKS = {"up": "---", "impaired": "===", "down": "-.-", "cut": "-.-"}
MERMAID_CLASSES = {
    "network": "fill:#e8f0fe,stroke:#4a6fa5",
    "node": "fill:#fff7e0,stroke:#b08a2e",
    "pod": "fill:#e9f7ef,stroke:#3c8d5a",
    "service": "fill:#f3e8fd,stroke:#7b4fa5",
    "partition": "fill:#fde8e8,stroke:#c0392b",
    "stopped": "fill:#eeeeee,stroke:#999999,stroke-dasharray:4 3,color:#777777",
    "down": "fill:#fde8e8,stroke:#c0392b,stroke-dasharray:4 3",
}


def _mermaid_vertex(vertex: Vertex) -> str:
    opening, closing = MERMAID_SHAPES[vertex.kind]
    label = _text(vertex, "<br/>").replace('"', "#quot;")
    css = vertex.state if vertex.state in ("stopped", "down") else vertex.kind
    return f"{_mermaid_id(vertex.id)}{opening}{label}{closing}:::{css}"


def to_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart; a node with pods is a subgraph holding them."""
    lines = ["flowchart LR", f"  %% topology {graph.name}"]
    parents = {v.parent for v in graph.vertices if v.parent}
    for vertex in graph.vertices:
        if vertex.parent:
            continue
        if vertex.id in parents:
            css = "stopped" if vertex.state == "stopped" else "node"
            title = _text(vertex, "<br/>").replace('"', "#quot;")
            lines.append(f'  subgraph {_mermaid_id(vertex.id)}["{title}"]')
            lines += [f"    {_mermaid_vertex(child)}" for child in graph.children(vertex.id)]
            lines.append("  end")
            lines.append(f"  class {_mermaid_id(vertex.id)} {css}")
        else:
            lines.append(f"  {_mermaid_vertex(vertex)}")
    for edge in graph.edges:
        tail, head = _mermaid_id(edge.tail), _mermaid_id(edge.head)
        arrow = (
            ("-.->" if edge.state == "down" else "-->")
            if edge.kind == "endpoint"
            else MERMAID_LINKS[edge.state]
        )
        label = f'|"{edge.label}"|' if edge.label else ""
        lines.append(f"  {tail} {arrow}{label} {head}")
    lines += [f"  classDef {name} {style}" for name, style in MERMAID_CLASSES.items()]
    return "\n".join(lines) + "\n"


DOT_STYLES: dict[str, dict[str, str]] = {
    "network": {"shape": "hexagon", "style": "filled", "fillcolor": "#e8f0fe", "color": "#4a6fa5"},
    "node": {"shape": "box", "style": "filled,rounded", "fillcolor": "#fff7e0", "color": "#b08a2e"},
    "pod": {"shape": "ellipse", "style": "filled", "fillcolor": "#e9f7ef", "color": "#3c8d5a"},
    "service": {
        "shape": "component",
        "style": "filled",
        "fillcolor": "#f3e8fd",
        "color": "#7b4fa5",
    },
    "partition": {
        "shape": "octagon",
        "style": "filled",
        "fillcolor": "#fde8e8",
        "color": "#c0392b",
    },
}
DOT_STATES = {
    "stopped": {
        "style": "filled,dashed",
        "fillcolor": "#eeeeee",
        "color": "#999999",
        "fontcolor": "#777777",
    },
    "down": {"style": "filled,dashed", "fillcolor": "#fde8e8", "color": "#c0392b"},
}
DOT_EDGES = {
    "up": {},
    "impaired": {"color": "#d35400", "penwidth": "2", "fontcolor": "#d35400"},
    "down": {"color": "#c0392b", "style": "dashed", "fontcolor": "#c0392b"},
    "cut": {"color": "#c0392b", "style": "dashed"},
}


def _dot_label(vertex: Vertex) -> str:
    return "\n".join([vertex.name, *vertex.details])


def _dot_attrs(vertex: Vertex) -> dict[str, str]:
    attrs = dict(DOT_STYLES[vertex.kind])
    if vertex.kind == "node" and vertex.state != "stopped":
        attrs["style"] = "filled,rounded,bold"
    attrs.update(DOT_STATES.get(vertex.state, {}))
    return attrs


def to_dot(graph: Graph) -> Any:
    """A `graphviz.Digraph`: a node's pods in a cluster with the node; links undirected."""
    import graphviz  # imported here: the text formats do not need it

    dot = graphviz.Digraph(graph.name, graph_attr={
        "rankdir": "LR", "label": f"topology {graph.name}", "labelloc": "t", "fontname": "Helvetica",
        "nodesep": "0.3", "ranksep": "0.9",
    }, node_attr={"fontname": "Helvetica", "fontsize": "11"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"})  # fmt: skip
    parents = {v.parent for v in graph.vertices if v.parent}
    for vertex in graph.vertices:
        if vertex.parent:
            continue
        if vertex.id in parents:
            stopped = vertex.state == "stopped"
            with dot.subgraph(name=f"cluster_{vertex.id}") as cluster:
                cluster.attr(
                    style="rounded,dashed" if stopped else "rounded", color="#b08a2e", label=""
                )
                cluster.node(vertex.id, _dot_label(vertex), **_dot_attrs(vertex))
                for child in graph.children(vertex.id):
                    cluster.node(child.id, _dot_label(child), **_dot_attrs(child))
        else:
            dot.node(vertex.id, _dot_label(vertex), **_dot_attrs(vertex))
    for edge in graph.edges:
        attrs = dict(DOT_EDGES[edge.state])
        if edge.kind == "endpoint":
            attrs.update(
                color=attrs.get("color", "#7b4fa5"),
                style="dashed" if edge.state == "down" else "solid",
            )
        else:
            attrs["dir"] = "none"
        dot.edge(edge.tail, edge.head, edge.label or None, **attrs)
    return dot


def render_image(graph: Graph, format: str) -> str | bytes:
    """SVG (text) or PNG (bytes) from Graphviz's `dot` program."""
    import graphviz

    try:
        image: bytes = to_dot(graph).pipe(format=format)
    except graphviz.ExecutableNotFound:
        raise UsageError(
            f"--format {format} needs Graphviz's dot program (Debian: apt-get install graphviz); "
            "--format dot or mermaid need nothing"
        ) from None
    return image.decode() if format == "svg" else image
