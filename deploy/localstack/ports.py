"""Free TCP ports on 127.0.0.1, where every process of a local stack listens."""

from __future__ import annotations

import random
import socket

from facefleet.localstack.errors import StackError

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port_pairs(count: int, offset: int) -> list[int]:
    """`count` ports P, each with P + offset free too, all distinct."""
    chosen: set[int] = set()
    result: list[int] = []
    rng = random.SystemRandom()
    for _ in range(20000):
        if len(result) == count:
            return result
        port = rng.randrange(20000, 65535 - offset)
        pair = {port, port + offset}
        if pair & chosen or not (port_is_free(port) and port_is_free(port + offset)):
            continue
        chosen |= pair
        result.append(port)
    raise StackError(f"could not find {count} free port pairs on {HOST}")


def tcp_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False
