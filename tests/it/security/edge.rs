//! Connections, bodies and headers at the HTTP edge, on both shapes.
