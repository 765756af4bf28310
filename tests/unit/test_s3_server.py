"""The local S3 server fixture itself: boto3, s3fs and delta-rs all reach it through the standard variables."""

import deltalake
import pyarrow as pa
import s3fs


def test_s3_server_serves_boto3_s3fs_and_delta_rs(s3_env):
    bucket = s3_env.bucket("fixture-check")
    s3_env.client().put_object(Bucket=bucket, Key="a/x.txt", Body=b"hello")
    fs = s3fs.S3FileSystem()
    assert fs.cat(f"{bucket}/a/x.txt") == b"hello"
    assert fs.glob(f"{bucket}/a/*.txt") == [f"{bucket}/a/x.txt"]
    deltalake.write_deltalake(f"s3://{bucket}/t", pa.table({"x": [1, 2]}))
    assert deltalake.DeltaTable(f"s3://{bucket}/t").to_pyarrow_table().num_rows == 2
