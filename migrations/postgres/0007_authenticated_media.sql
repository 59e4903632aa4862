-- Media uploaded while enable_authenticated_media is on is served only where
-- clients show an access token. Rows from before stay on the legacy,
-- unauthenticated endpoints too.
ALTER TABLE media ADD COLUMN authenticated BOOLEAN NOT NULL DEFAULT FALSE;
