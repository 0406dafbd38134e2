"""A client set to another region: S3's AuthorizationHeaderMalformed names the region to
sign for (in <Region> and x-amz-bucket-region), and boto3 corrects itself from that.
"""

from __future__ import annotations

from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from defusedxml.ElementTree import fromstring

from tests.e2e.conftest import REGION, Cloud, Tenant, unique
from tests.e2e.s3_support import new_bucket, s3_error

pytestmark = pytest.mark.e2e

WRONG = "us-east-1"


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3region")


@pytest.fixture(scope="module")
def keys(cloud: Cloud, tenant: Tenant) -> tuple[str, str]:
    return cloud.ec2_credentials(tenant)


def client(cloud: Cloud, keys: tuple[str, str], region: str, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=cloud.s3_url,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        region_name=region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


def test_boto3_with_the_wrong_region_redirects_itself_for_bucket_operations(
    cloud: Cloud, keys: tuple[str, str]
) -> None:
    lost = client(cloud, keys, WRONG)
    bucket = unique("region")

    lost.create_bucket(Bucket=bucket)
    lost.put_object(Bucket=bucket, Key="k", Body=b"found my way")

    assert lost.get_object(Bucket=bucket, Key="k")["Body"].read() == b"found my way"
    assert lost.head_object(Bucket=bucket, Key="k")["ContentLength"] == 12
    assert lost.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [o["Key"] for o in lost.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    assert lost.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION


def test_without_a_bucket_to_redirect_for_the_error_names_the_region(
    cloud: Cloud, keys: tuple[str, str]
) -> None:
    lost = client(cloud, keys, WRONG)

    assert s3_error(lost.list_buckets) == ("AuthorizationHeaderMalformed", 400)


def test_the_error_document_and_header_carry_the_cloud_region(
    cloud: Cloud, keys: tuple[str, str]
) -> None:
    right = client(cloud, keys, REGION)
    bucket = new_bucket(right, "region-raw")
    lost = client(cloud, keys, WRONG)
    presigner = client(cloud, keys, WRONG, signature_version="s3v4")
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    signed = lost._request_signer  # a header-signed request, made by hand with botocore
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="GET", url=f"{cloud.s3_url}/{bucket}")
    S3SigV4Auth(signed._credentials, "s3", WRONG).add_auth(request)
    response = httpx.get(request.url, headers=dict(request.headers))

    assert response.status_code == 400
    assert response.headers["x-amz-bucket-region"] == REGION
    root = fromstring(response.content)
    assert root.findtext("Code") == "AuthorizationHeaderMalformed"
    assert root.findtext("Region") == REGION
    assert f"'{WRONG}' is wrong; expecting '{REGION}'" in (root.findtext("Message") or "")

    presigned = httpx.get(url)
    assert presigned.status_code == 400
    root = fromstring(presigned.content)
    assert root.findtext("Code") == "AuthorizationQueryParametersError"
    assert root.findtext("Region") == REGION
