# ruff: noqa: I001  (import order is the order the layers are applied)
"""The layers above the pod network. Importing this package registers them in
`labkit.lab.LAYERS`, in the order they are applied."""

from labkit.layers import convergence  # noqa: F401  (first: later layers need a converged pod network)
from labkit.layers import floating  # noqa: F401  (floating IPs: DNAT and routes)
from labkit.layers import services  # noqa: F401  (service VIPs, node ports, cluster DNS)
from labkit.layers import ingress  # noqa: F401  (after services: it reads their endpoints)
from labkit.layers import policy  # noqa: F401  (late: its FORWARD hook must stay first)
