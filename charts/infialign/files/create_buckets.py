"""Create the chart's buckets on its MinIO (or any S3 endpoint); run by the post-install Job.

Idempotent: a bucket that exists is left alone. It waits for the endpoint (MinIO may still be starting
when the hook runs) and exits non-zero, naming the bucket and the error, when it cannot finish, so
`kubectl logs job/<release>-minio-buckets` says what is wrong. Uses botocore, which the operator image
has (s3fs → aiobotocore → botocore), so the chart needs no `mc` image.

Environment: S3_ENDPOINT, BUCKETS (comma-separated), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION (default us-east-1), WAIT_SECONDS (default 300).
"""

from __future__ import annotations

import os
import sys
import time

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

_EXISTS = ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")


def _client(endpoint: str, region: str):  # noqa: ANN202 - botocore builds the client class at runtime
    config = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30, s3={"addressing_style": "path"})
    return botocore.session.get_session().create_client("s3", endpoint_url=endpoint, region_name=region, config=config)


def ensure_buckets(endpoint: str, buckets: list[str], region: str = "us-east-1", wait_seconds: float = 300.0) -> list[str]:
    """Create every missing bucket; returns the ones created. Connection errors are retried until `wait_seconds`."""
    client = _client(endpoint, region)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            break
        except (EndpointConnectionError, ConnectionError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3_ENDPOINT {endpoint} did not answer within {wait_seconds:.0f} s: {e}") from e
            time.sleep(3)
    created = []
    for bucket in buckets:
        if bucket in existing:
            continue
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            client.create_bucket(Bucket=bucket, **kwargs)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in _EXISTS:
                raise
        created.append(bucket)
    return created


def main() -> int:
    endpoint = os.environ.get("S3_ENDPOINT", "")
    buckets = [b.strip() for b in os.environ.get("BUCKETS", "").split(",") if b.strip()]
    if not endpoint or not buckets:
        print(f"S3_ENDPOINT={endpoint!r} and BUCKETS={','.join(buckets)!r} must both be set (chart values minio.*)", file=sys.stderr)
        return 2
    try:
        created = ensure_buckets(
            endpoint, buckets, os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), float(os.environ.get("WAIT_SECONDS", "300"))
        )
    except (BotoCoreError, ClientError, RuntimeError) as e:
        print(f"cannot create buckets {buckets} at {endpoint}: {e}; check the endpoint and the credentials Secret", file=sys.stderr)
        return 1
    print(f"buckets at {endpoint}: created {created or 'none'}, present {[b for b in buckets if b not in created]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
