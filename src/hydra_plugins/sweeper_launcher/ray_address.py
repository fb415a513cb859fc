"""Whether the Ray cluster that ``hydra.launcher.ray.init`` joins is there, asked before a sweep
starts: ``ray.init``, which the Ray launcher calls as it launches the first job, retries an
address where nothing listens for minutes, and fails with a traceback where ``auto`` finds no
cluster.

The address is found as ``ray.init`` finds it, by Ray's own lookup: ``RAY_ADDRESS`` in place of
an unset one or ``auto``; ``auto``, the cluster ``ray start`` last recorded under Ray's temp
directory, else a GCS process running on this machine; an unset address, the recorded cluster,
else (as ``local``) a Ray instance of the sweep's own, which needs no cluster. Ray is imported
only for that lookup. That something listens at the address is all that is asked: a
connection refused, or none within ``CONNECT_TIMEOUT_S``, is no cluster.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from importlib.util import find_spec
from typing import Any, cast

from hydra.errors import CompactHydraException

ADDRESS_KEY = "hydra.launcher.ray.init.address"
# Ray's own: the address that replaces an unset one or ``auto``.
ADDRESS_VARIABLE = "RAY_ADDRESS"
# A head on another machine answers a connection well within this; a firewall that drops it
# would otherwise hold the sweep for the system's own timeout (minutes).
CONNECT_TIMEOUT_S = 5.0


# Hydra's own exception classes as bases: its plugin scan executes this module again, so a
# class defined here is not the one a module that imported it before catches.
class RayAddressError(CompactHydraException):
    """An address ``ray.init`` cannot read; one line naming where it was given."""


class NoRayClusterError(ConnectionError):
    """No Ray cluster at the address ``ray.init`` would join; one line naming the address."""


def _host_port(address: str, source: str) -> tuple[str, int]:
    """``HOST:PORT`` of ``address``, a Ray client's ``ray://`` prefix left out."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise RayAddressError(
            f"{source}={address!r} is invalid: HOST:PORT, auto, or local for a Ray instance "
            "of the sweep's own"
        )
    return host.strip("[]"), int(port)


def check_ray_cluster(init: Mapping[str, Any]) -> None:
    """Raise ``NoRayClusterError`` where ``ray.init(**init)`` would join a cluster that is not
    there, ``RayAddressError`` where it could not read the address; one line each."""
    address = init.get("address")
    source = ADDRESS_KEY
    named = os.environ.get(ADDRESS_VARIABLE)
    if named and address in (None, "auto"):
        address, source = named, ADDRESS_VARIABLE
    if address == "local":
        return
    if address is None or address == "auto":
        if find_spec("ray") is None:
            return  # the launcher's missing package is what to say (the [ray] extra)
        given = address or "null"
        from ray._private.services import get_ray_address_from_environment

        try:
            # Ray's annotation leaves out the None it takes.
            found = get_ray_address_from_environment(cast(str, address), init.get("_temp_dir"))
        except ConnectionError:
            raise NoRayClusterError(
                f"no Ray cluster runs on this machine ({source}={given}): start one with "
                f"ray start --head, or give its address as {ADDRESS_KEY}=HOST:PORT"
            ) from None
        if found is None:
            return  # ray.init starts an instance of its own
        source = f"found by {source}={given}"
        address = found
    host, port = _host_port(str(address), source)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        raise NoRayClusterError(
            f"no Ray cluster at {host}:{port} ({source}): is it running?"
        ) from None
