"""The image service: Glance v2 compatible API, image records and image bytes on disk."""
