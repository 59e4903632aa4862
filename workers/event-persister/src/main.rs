//! `myelin-event-persister`: the room writer role alone, for split
//! deployments; replicas share the room partitions through leases.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("event-persister", |deps| {
        vec![myelin_event_persister::role(deps)]
    })
}
