use myelin_types::StreamPosition;

use crate::{AnsweredTransaction, EduStream, InboundTurn, QueuedPdu, Store, StoreError};

const DEVICE_LISTS: EduStream = EduStream::DeviceLists;
const RECEIPTS: EduStream = EduStream::Receipts;

fn queued(destination: &str, event_id: &str) -> QueuedPdu {
    QueuedPdu {
        destination: destination.to_owned(),
        event_id: event_id.to_owned(),
    }
}

fn ids(batch: &crate::OutboxBatch) -> Vec<&str> {
    batch
        .entries
        .iter()
        .map(|entry| entry.event_id.as_str())
        .collect()
}

/// A destination's queue goes out in order, one transaction at a time: the
/// transaction's ID and entries survive until the destination accepts it,
/// entries queued meanwhile wait for the next one, and a superseded lease
/// queues nothing.
pub(super) async fn outbox_sends_in_order_and_keeps_transactions(store: &dyn Store) {
    let partition = 63;
    let key = 7_200_063;
    let holder = store.lease_session().await.expect("session");
    let fence = holder
        .try_acquire(key)
        .await
        .expect("acquire")
        .expect("a free lease");
    let start = store.outbox_cursor(partition).await.expect("cursor");
    store
        .enqueue_pdus(
            partition,
            fence,
            StreamPosition(start.0 + 10),
            vec![
                queued("a.test", "$1"),
                queued("b.test", "$1"),
                queued("a.test", "$2"),
                queued("a.test", "$3"),
            ],
        )
        .await
        .expect("enqueue");
    assert_eq!(
        store.outbox_cursor(partition).await.expect("cursor"),
        StreamPosition(start.0 + 10)
    );
    let mut destinations = store
        .queued_destinations(&[partition])
        .await
        .expect("destinations");
    destinations.sort();
    assert_eq!(destinations, vec!["a.test", "b.test"]);

    let first = store.outbox_batch("a.test", 2, 100).await.expect("batch");
    assert_eq!(first.txn_id, None);
    assert_eq!(ids(&first), vec!["$1", "$2"]);
    store
        .begin_transaction("a.test", "txn-1", Some(first.entries[1].seq), &[])
        .await
        .expect("begin");
    store
        .enqueue_pdus(
            partition,
            fence,
            StreamPosition(start.0 + 11),
            vec![queued("a.test", "$4")],
        )
        .await
        .expect("enqueue");
    // Asked again (a retry, or a restart): the same transaction, whatever the limit.
    let again = store.outbox_batch("a.test", 50, 100).await.expect("batch");
    assert_eq!(again.txn_id.as_deref(), Some("txn-1"));
    assert_eq!(ids(&again), vec!["$1", "$2"]);

    store
        .set_destination_retry("a.test", 3, Some(12345))
        .await
        .expect("retry");
    let retry = store
        .destination_retry("a.test")
        .await
        .expect("read")
        .expect("a row");
    assert_eq!((retry.failures, retry.retry_at), (3, Some(12345)));

    // An answer to a transaction no longer in flight changes nothing.
    store.end_transaction("a.test", "txn-0").await.expect("end");
    assert_eq!(
        ids(&store.outbox_batch("a.test", 50, 100).await.expect("batch")),
        vec!["$1", "$2"]
    );
    store.end_transaction("a.test", "txn-1").await.expect("end");
    let next = store.outbox_batch("a.test", 50, 100).await.expect("batch");
    assert_eq!(next.txn_id, None);
    assert_eq!(ids(&next), vec!["$3", "$4"]);
    let retry = store
        .destination_retry("a.test")
        .await
        .expect("read")
        .expect("a row");
    assert_eq!((retry.failures, retry.retry_at), (0, None));
    assert!(
        store
            .destination_retry("c.test")
            .await
            .expect("read")
            .is_none()
    );

    // The EDU streams' cursors only move up, each on its own, under the
    // partition's fence.
    let told = store
        .edu_cursor(partition, DEVICE_LISTS)
        .await
        .expect("cursor");
    let receipts_told = store.edu_cursor(partition, RECEIPTS).await.expect("cursor");
    store
        .advance_edu_cursor(partition, fence, DEVICE_LISTS, StreamPosition(told.0 + 5))
        .await
        .expect("advance");
    store
        .advance_edu_cursor(partition, fence, DEVICE_LISTS, StreamPosition(told.0 + 2))
        .await
        .expect("advance less");
    store
        .advance_edu_cursor(
            partition,
            fence,
            RECEIPTS,
            StreamPosition(receipts_told.0 + 7),
        )
        .await
        .expect("advance receipts");
    assert_eq!(
        store
            .edu_cursor(partition, DEVICE_LISTS)
            .await
            .expect("cursor"),
        StreamPosition(told.0 + 5)
    );
    assert_eq!(
        store.edu_cursor(partition, RECEIPTS).await.expect("cursor"),
        StreamPosition(receipts_told.0 + 7)
    );

    // The lease moves on: the old holder's queueing is refused, whole.
    holder.release(key).await.expect("release");
    let other = store.lease_session().await.expect("session");
    other
        .try_acquire(key)
        .await
        .expect("acquire")
        .expect("a released lease");
    match store
        .enqueue_pdus(
            partition,
            fence,
            StreamPosition(start.0 + 20),
            vec![queued("a.test", "$5")],
        )
        .await
    {
        Err(StoreError::Fenced) => {}
        other => panic!("queueing under a superseded fence gave {other:?}"),
    }
    match store
        .advance_edu_cursor(partition, fence, DEVICE_LISTS, StreamPosition(told.0 + 9))
        .await
    {
        Err(StoreError::Fenced) => {}
        other => panic!("a device-list cursor under a superseded fence gave {other:?}"),
    }
    assert_eq!(
        store
            .edu_cursor(partition, DEVICE_LISTS)
            .await
            .expect("cursor"),
        StreamPosition(told.0 + 5)
    );
    assert_eq!(
        store.outbox_cursor(partition).await.expect("cursor"),
        StreamPosition(start.0 + 11)
    );
    let after = store.outbox_batch("a.test", 50, 100).await.expect("batch");
    assert_eq!(ids(&after), vec!["$3", "$4"]);
}

/// EDUs queue beside events: the transaction in flight keeps the ones it
/// carries, later ones wait for the next, and the destination counts as
/// queued while any is left.
pub(super) async fn edus_go_out_with_the_next_transaction(store: &dyn Store) {
    let edu = |n: u32| crate::QueuedEdu {
        destination: "edus.test".to_owned(),
        partition: 62,
        edu_json: format!(r#"{{"edu_type":"m.typing","n":{n}}}"#),
    };
    let jsons = |batch: &crate::OutboxBatch| -> Vec<String> {
        batch.edus.iter().map(|edu| edu.edu_json.clone()).collect()
    };
    store
        .enqueue_edus(vec![edu(1), edu(2)])
        .await
        .expect("enqueue");
    assert!(
        store
            .queued_destinations(&[62])
            .await
            .expect("destinations")
            .contains(&"edus.test".to_owned())
    );
    let first = store.outbox_batch("edus.test", 50, 1).await.expect("batch");
    assert!(first.entries.is_empty());
    assert_eq!(jsons(&first), vec![edu(1).edu_json]);
    store
        .begin_transaction("edus.test", "edu-txn", None, &[first.edus[0].seq])
        .await
        .expect("begin");
    store.enqueue_edus(vec![edu(3)]).await.expect("enqueue");
    let again = store
        .outbox_batch("edus.test", 50, 100)
        .await
        .expect("batch");
    assert_eq!(again.txn_id.as_deref(), Some("edu-txn"));
    assert_eq!(jsons(&again), vec![edu(1).edu_json]);
    store
        .end_transaction("edus.test", "edu-txn")
        .await
        .expect("end");
    let next = store
        .outbox_batch("edus.test", 50, 100)
        .await
        .expect("batch");
    assert_eq!(jsons(&next), vec![edu(2).edu_json, edu(3).edu_json]);
    store
        .begin_transaction(
            "edus.test",
            "edu-txn-2",
            None,
            &[next.edus[0].seq, next.edus[1].seq],
        )
        .await
        .expect("begin");
    store
        .end_transaction("edus.test", "edu-txn-2")
        .await
        .expect("end");
    assert!(
        !store
            .queued_destinations(&[62])
            .await
            .expect("destinations")
            .contains(&"edus.test".to_owned())
    );
    // A transaction ends with the very rows it carried: an EDU queued
    // before them but not taken stays.
    store
        .enqueue_edus(vec![edu(4), edu(5)])
        .await
        .expect("enqueue");
    let last = store
        .outbox_batch("edus.test", 50, 100)
        .await
        .expect("batch");
    assert_eq!(jsons(&last), vec![edu(4).edu_json, edu(5).edu_json]);
    store
        .begin_transaction("edus.test", "edu-txn-3", None, &[last.edus[1].seq])
        .await
        .expect("begin");
    store
        .end_transaction("edus.test", "edu-txn-3")
        .await
        .expect("end");
    let left = store
        .outbox_batch("edus.test", 50, 100)
        .await
        .expect("batch");
    assert_eq!(jsons(&left), vec![edu(4).edu_json]);
}

/// One holder at a time has an origin's inbound turn; it lapses at its
/// expiry, and only its holder gives it back. Giving it back keeps the
/// answer to the transaction processed, for a day.
pub(super) async fn inbound_turns_are_one_at_a_time(store: &dyn Store) {
    let origin = "turns.example";
    let claim = |holder: &'static str, txn_id: &'static str, now: i64| async move {
        store
            .claim_inbound_turn(origin, holder, txn_id, now, now + 100)
            .await
            .expect("claim")
    };
    let release = |holder: &'static str, answered: Option<AnsweredTransaction>| async move {
        store
            .release_inbound_turn(origin, holder, answered.as_ref())
            .await
            .expect("release");
    };
    let answered = |txn_id: &str, answer: &str, answered_at: i64| AnsweredTransaction {
        txn_id: txn_id.to_owned(),
        answer: answer.to_owned(),
        answered_at,
    };
    let kept = |answer: &str| InboundTurn::Taken(Some(answer.to_owned()));
    assert_eq!(claim("a", "t1", 1000).await, InboundTurn::Taken(None));
    assert_eq!(claim("b", "t1", 1050).await, InboundTurn::Busy, "held by a");
    assert_eq!(
        claim("a", "t1", 1080).await,
        InboundTurn::Taken(None),
        "renewed by its holder"
    );
    assert_eq!(
        claim("b", "t1", 1150).await,
        InboundTurn::Busy,
        "held until 1180"
    );
    release("b", None).await;
    assert_eq!(
        claim("b", "t1", 1160).await,
        InboundTurn::Busy,
        "b could not give back a's turn"
    );
    assert_eq!(
        claim("b", "t1", 1180).await,
        InboundTurn::Taken(None),
        "lapsed"
    );
    release("b", Some(answered("t1", r#"{"$a":null}"#, 1185))).await;
    assert_eq!(
        claim("a", "t1", 1190).await,
        kept(r#"{"$a":null}"#),
        "given back, with its answer"
    );
    // Given back unanswered (its sender hung up): nothing is kept.
    release("a", None).await;
    assert_eq!(claim("b", "t2", 1200).await, InboundTurn::Taken(None));
    release("b", Some(answered("t2", "{}", 1200))).await;
    assert_eq!(claim("a", "t1", 1210).await, kept(r#"{"$a":null}"#));
    release("a", None).await;
    // A day on, the answers before are forgotten as another is kept.
    let day_on = 1200 + crate::ANSWERS_KEPT_MS;
    assert_eq!(claim("a", "t3", day_on).await, InboundTurn::Taken(None));
    release("a", Some(answered("t3", "{}", day_on))).await;
    assert_eq!(claim("b", "t1", day_on).await, InboundTurn::Taken(None));
    release("b", None).await;
    assert_eq!(claim("b", "t2", day_on).await, kept("{}"), "a day old");
    release("b", None).await;
    // Older than a day, an answer is not given even before it is forgotten.
    assert_eq!(claim("b", "t2", day_on + 1).await, InboundTurn::Taken(None));
    release("b", None).await;
    assert_eq!(
        store
            .claim_inbound_turn("other.example", "b", "t2", day_on, day_on + 100)
            .await
            .expect("claim"),
        InboundTurn::Taken(None),
        "origins are apart"
    );
}
