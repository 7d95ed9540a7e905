"""Create the bucket and a KMS key for bulkmig (LocalStack ready hook; also runs against moto or AWS).

Endpoint from AWS_ENDPOINT_URL (LocalStack inside its container: http://localhost:4566); bucket from
BULKMIG_BUCKET.  Idempotent.  Prints the key id and the task-file lines that use them.
"""

import os

import boto3

endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://localhost:4566")
region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
bucket = os.environ.get("BULKMIG_BUCKET", "bulkmig-demo")
kw = {"endpoint_url": endpoint, "region_name": region}
s3 = boto3.client("s3", **kw)
kms = boto3.client("kms", **kw)
if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=bucket)
aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
key_id = aliases.get("alias/bulkmig")
if not key_id:
    key_id = kms.create_key(Description="bulkmig SSE-KMS")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/bulkmig", TargetKeyId=key_id)
print(f"bulkmig: bucket s3://{bucket}, KMS key {key_id} (alias/bulkmig)")
print(f"task file:  bucket: s3://{bucket}/run1   s3: {{endpoint_url: {endpoint}, sse: aws:kms, kms_key_id: {key_id}}}")
