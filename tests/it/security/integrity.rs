//! Writes refused whole: room creation, identifiers, sessions, secrets.
