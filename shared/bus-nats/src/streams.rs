//! The JetStream streams of one deployment: their prefixed names and
//! subjects, created at connect and never changed afterwards.

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{Config, StorageType};
use myelin_bus::subjects::ALL_STREAMS;
use myelin_bus::{BusError, BusResult, StreamSpec, subject_matches};

/// Replaces what NATS refuses in stream and consumer names (`.`, `*`, `>`,
/// whitespace, path separators) with `_`.
pub(crate) fn legal_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `{PREFIX}_{name}`, so deployments sharing a server keep their streams apart.
pub(crate) fn stream_name(prefix: &str, spec: &StreamSpec) -> String {
    legal_name(&format!("{prefix}_{}", spec.name)).to_uppercase()
}

pub(crate) fn prefixed_subjects(prefix: &str, spec: &StreamSpec) -> Vec<String> {
    spec.subjects
        .iter()
        .map(|subject| format!("{prefix}.{subject}"))
        .collect()
}

/// The stream that stores `subject` (unprefixed), if any.
pub(crate) fn owning_stream(subject: &str) -> Option<&'static StreamSpec> {
    ALL_STREAMS.iter().find(|spec| {
        spec.subjects
            .iter()
            .any(|pattern| subject_matches(pattern, subject))
    })
}

/// How long a stream keeps a message: a consumer that was down over a long
/// weekend can still catch up, and no stream fills the NATS server's disk.
/// Readers that need everything (the synchrotron) read the store instead.
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 60 * 60);

fn config(prefix: &str, spec: &StreamSpec) -> Config {
    Config {
        name: stream_name(prefix, spec),
        subjects: prefixed_subjects(prefix, spec),
        storage: StorageType::File,
        max_age: RETENTION,
        ..Default::default()
    }
}

/// Gets or creates every stream of [`ALL_STREAMS`]. A stream that exists
/// with other subjects is an error: changing it could lose or misroute
/// messages, so that is left to an operator.
pub(crate) async fn ensure_all(jetstream: &Context, prefix: &str) -> BusResult<()> {
    for spec in ALL_STREAMS {
        ensure(jetstream, prefix, spec).await?;
    }
    Ok(())
}

const CREATE_ATTEMPTS: u32 = 3;
const CREATE_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

async fn ensure(jetstream: &Context, prefix: &str, spec: &StreamSpec) -> BusResult<()> {
    let wanted = config(prefix, spec);
    // A create can fail for a moment while the server removes the storage
    // directory of the last stream just deleted (seen when test runs share
    // a server), so a failure is tried again before it counts.
    let mut attempt = 1;
    let mut stream = loop {
        match jetstream.get_or_create_stream(wanted.clone()).await {
            Ok(stream) => break stream,
            Err(_) if attempt < CREATE_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(CREATE_RETRY_PAUSE).await;
            }
            Err(error) => {
                return Err(BusError::Unavailable(format!(
                    "cannot get or create stream {}: {error}",
                    wanted.name
                )));
            }
        }
    };
    let info = stream.info().await.map_err(|error| {
        BusError::Unavailable(format!("cannot read stream {}: {error}", wanted.name))
    })?;
    let mut found = info.config.subjects.clone();
    let mut expected = wanted.subjects.clone();
    found.sort();
    expected.sort();
    if found != expected {
        return Err(BusError::Unavailable(format!(
            "stream {} has drifted: it stores {found:?} but this build expects {expected:?}; \
             streams are never changed automatically, migrate or remove it by hand",
            wanted.name
        )));
    }
    if info.config.max_age != wanted.max_age {
        // Unlike subjects, a retention limit changes nothing but how long
        // messages stay, so a stream from an older build just gets it.
        let updated = Config {
            max_age: wanted.max_age,
            ..info.config.clone()
        };
        jetstream.update_stream(updated).await.map_err(|error| {
            BusError::Unavailable(format!(
                "cannot set the retention of stream {}: {error}",
                wanted.name
            ))
        })?;
    }
    Ok(())
}

/// Deletes every stream of [`ALL_STREAMS`] under `prefix`; missing ones are
/// already gone.
pub(crate) async fn delete_all(jetstream: &Context, prefix: &str) -> BusResult<()> {
    for spec in ALL_STREAMS {
        let name = stream_name(prefix, spec);
        match jetstream.delete_stream(&name).await {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {}
            Err(error) => {
                return Err(BusError::Unavailable(format!(
                    "cannot delete stream {name}: {error}"
                )));
            }
        }
    }
    Ok(())
}

fn is_not_found(error: &async_nats::jetstream::context::DeleteStreamError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::DeleteStreamErrorKind;
    matches!(
        error.kind(),
        DeleteStreamErrorKind::JetStream(ref error) if error.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_bus::subjects::PERSISTED_EVENTS;

    #[test]
    fn names_are_prefixed_and_legal() {
        assert_eq!(
            stream_name("conformance_1_2", &PERSISTED_EVENTS),
            "CONFORMANCE_1_2_PERSISTED_EVENTS"
        );
        assert_eq!(
            stream_name("prod.eu west", &PERSISTED_EVENTS),
            "PROD_EU_WEST_PERSISTED_EVENTS"
        );
        assert_eq!(legal_name("a.b*c>d/e\\f g-h_i"), "a_b_c_d_e_f_g-h_i");
        assert_eq!(
            prefixed_subjects("myelin", &PERSISTED_EVENTS),
            vec!["myelin.persisted.>".to_owned()]
        );
    }

    #[test]
    fn only_stored_subjects_have_a_stream() {
        assert_eq!(owning_stream("persisted.3"), Some(&PERSISTED_EVENTS));
        assert_eq!(owning_stream("room_input.3"), None);
        assert_eq!(owning_stream("persisted"), None);
    }
}
