"""Swift's own rules over the object store's buckets and objects: account and container
metadata, container ACLs, temporary URLs, large-object manifests. Knows nothing of HTTP."""
