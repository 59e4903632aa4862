//! `myelin-event-persister`: the room writer role alone, for split
//! deployments. Until partition leases exist, run exactly one replica.

fn main() -> std::process::ExitCode {
    myelin_process::worker_main("event-persister", |deps| {
        vec![myelin_event_persister::role(deps)]
    })
}
