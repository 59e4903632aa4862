//! Sessions and secrets: logout, shared-secret registration, parser guards, preview addresses.
