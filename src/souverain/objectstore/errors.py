"""S3's error codes, their HTTP status, and the exception every rule raises with one.

Knows nothing of HTTP beyond the status number: the API renders these as S3's XML.
"""

from __future__ import annotations

# S3 error codes and their HTTP status; the one table the API renders from.
ERROR_STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "ConditionalRequestConflict": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IllegalLocationConstraintException": 400,
    "IncompleteBody": 400,
    "InsufficientStorage": 507,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketState": 409,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidEncryptionAlgorithmError": 400,
    "KMS.NotFoundException": 400,
    "ServerSideEncryptionConfigurationNotFoundError": 404,
    "IncorrectNumberOfFilesInPostRequest": 400,
    "InvalidPart": 400,
    "InvalidPolicyDocument": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidStorageClass": 400,
    "InvalidRequest": 400,
    "InvalidTag": 400,
    "InvalidURI": 400,
    "KeyTooLongError": 400,
    "MalformedACLError": 400,
    "MalformedPolicy": 400,
    "MalformedXML": 400,
    "MalformedPOSTRequest": 400,
    "MaxMessageLengthExceeded": 400,
    "MaxPostPreDataLengthExceededError": 400,
    "MetadataTooLarge": 400,
    "MissingRequestBodyError": 400,
    "InvalidPartNumber": 416,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchBucketPolicy": 404,
    "NoSuchCORSConfiguration": 404,
    "NoSuchKey": 404,
    "NoSuchLifecycleConfiguration": 404,
    "NoSuchObjectLockConfiguration": 404,
    "NoSuchPublicAccessBlockConfiguration": 404,
    "NoSuchTagSet": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "NotModified": 304,
    "ObjectLockConfigurationNotFoundError": 404,
    "PreconditionFailed": 412,
    "QuotaExceeded": 403,
    "RequestTimeTooSkewed": 403,
    "RequestTimeout": 400,
    "SignatureDoesNotMatch": 403,
    "UnexpectedContent": 400,
    "UnresolvableGrantByEmailAddress": 400,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """An error in S3's terms: a code from ERROR_STATUS, a message, the resource."""

    def __init__(
        self,
        code: str,
        message: str,
        resource: str = "",
        headers: dict[str, str] | None = None,
        status: int | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource = resource
        self.headers = headers or {}
        self.status = status or ERROR_STATUS[code]
        # More elements of the error document, as S3 sends for some codes (`Region`).
        self.details = details or {}
