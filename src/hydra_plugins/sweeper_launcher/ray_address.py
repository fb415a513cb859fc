"""Whether the Ray cluster that ``hydra.launcher.ray.init`` joins is there, asked before a sweep
starts: ``ray.init``, which the Ray launcher calls as it launches the first job, retries an
address where nothing listens for minutes, and fails with a traceback where ``auto`` finds no
cluster.

The address is found as ``ray.init`` finds it, by Ray's own lookup: ``RAY_ADDRESS`` in place of
an unset one or ``auto``; ``auto``, the cluster ``ray start`` last recorded under Ray's temp
directory, else a GCS process running on this machine; an unset address, the recorded cluster,
else (as ``local``) a Ray instance of the sweep's own, which needs no cluster. Ray is imported
only to ask. A connection refused, or none within ``CONNECT_TIMEOUT_S``, is no cluster. A
cluster's GCS that refuses this process's auth token (none, or not the cluster's) is a
``RayAuthTokenError``: ``ray.init`` would retry it for 20 s, its C++ client logging each try,
and end with an error that does not name the token. The GCS is asked once, through Ray's own
gRPC channel (its token, its TLS) and without Ray's C++ client, so none of its retries' lines
reach the terminal (Ray's own note that token authentication is on may, as ``ray.init``'s
would); any other answer is left to ``ray.init``.
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
# Ray's own: its token authentication, and the token (else ~/.ray/auth_token).
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
# A head on another machine answers a connection well within this; a firewall that drops it
# would otherwise hold the sweep for the system's own timeout (minutes).
CONNECT_TIMEOUT_S = 5.0


# Hydra's own exception classes as bases: its plugin scan executes this module again, so a
# class defined here is not the one a module that imported it before catches.
class RayAddressError(CompactHydraException):
    """An address ``ray.init`` cannot read; one line naming where it was given."""


class NoRayClusterError(ConnectionError):
    """No Ray cluster at the address ``ray.init`` would join; one line naming the address."""


class RayAuthTokenError(ConnectionError):
    """The cluster refuses the auth token ``ray.init`` would send, or there is none to send;
    one line naming ``RAY_AUTH_TOKEN``."""


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
    there, ``RayAuthTokenError`` where the cluster refuses its token, ``RayAddressError`` where
    it could not read the address; one line each."""
    address = init.get("address")
    source = ADDRESS_KEY
    named = os.environ.get(ADDRESS_VARIABLE)
    if named and address in (None, "auto"):
        address, source = named, ADDRESS_VARIABLE
    if address == "local":
        return
    # ray.init sends a token RAY_AUTH_MODE does not ask for only to a cluster it looked up.
    looked_up = address is None or address == "auto"
    if looked_up:
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
    # A Ray client address (ray://) is Ray client's server, not the GCS.
    if "://" not in str(address) and find_spec("ray") is not None:
        _check_auth_token(f"{host}:{port}", source, looked_up)


def _check_auth_token(address: str, source: str, looked_up: bool) -> None:
    """Raise ``RayAuthTokenError`` where the GCS at ``address`` refuses the token ``ray.init``
    would send, or ``ray.init`` would find none to send."""
    try:  # Ray's private modules: a Ray without them leaves the question to ray.init
        import grpc
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
        from ray._private.grpc_utils import init_grpc_channel
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
        from ray.exceptions import AuthenticationError
    except ImportError:
        return

    where = f"the Ray cluster at {address} ({source})"
    if looked_up:
        # As ray.init will in this process: RAY_AUTH_MODE=token where a token is found.
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    sends = os.environ.get(AUTH_MODE_VARIABLE, "").lower() == "token"
    channel = init_grpc_channel(address)
    try:
        gcs = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        # protobuf makes the message classes as the module loads: typed, none is seen.
        messages: Any = gcs_service_pb2
        request = messages.GetClusterIdRequest()
        gcs.GetClusterId(request, timeout=CONNECT_TIMEOUT_S)
    except AuthenticationError:  # token mode, and no token to send
        raise RayAuthTokenError(
            f"{where}: {AUTH_MODE_VARIABLE}=token but no Ray auth token is set: set "
            f"{TOKEN_VARIABLE} (or ~/.ray/auth_token) to the cluster's"
        ) from None
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.UNAUTHENTICATED:
            return  # ray.init's to report
        if sends:
            raise RayAuthTokenError(
                f"{where} refuses this process's auth token: set {TOKEN_VARIABLE} (or "
                "~/.ray/auth_token) to the one its nodes were started with"
            ) from None
        raise RayAuthTokenError(
            f"{where} needs its auth token: set {TOKEN_VARIABLE} (or ~/.ray/auth_token) to the "
            f"one its nodes were started with, and {AUTH_MODE_VARIABLE}=token"
        ) from None
    finally:
        channel.close()
