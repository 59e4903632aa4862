-- Which rows name a file, so files no row names can be found and removed.
CREATE INDEX media_sha256 ON media (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);
