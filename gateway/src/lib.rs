//! The HTTP edge of Myelin: which role owns each `/_matrix` path (the only
//! routing table), and the answers the edge gives itself (the static page,
//! `.well-known`). The single process uses the edge routes directly; the
//! gateway binary of the split shape proxies by the route table.

pub mod edge;
pub mod route_table;
