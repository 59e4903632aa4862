//! The `matrix-sdk` crate, the engine of Element X, as the judge: password
//! login, sync (it asks for `state_after`), the room list, invite and join,
//! messages both ways, typing, read receipts and the server's unread
//! counts, on the single process and through the split topology; and
//! encrypted rooms, on one server and across federation with Synapse.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType as SendReceiptType;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::receipt::{ReceiptThread, ReceiptType};
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::typing::SyncTypingEvent;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, RoomId};
use matrix_sdk::{Client as SdkClient, Room};

use crate::client::Client;
use crate::harness::{Server, TempDir};
use crate::split::{Split, settings};

const PASSWORD: &str = "pw-rust-sdk";
/// Syncs tried before a step counts as failed.
const ATTEMPTS: usize = 20;

/// A logged-in SDK client and what its handlers saw.
struct Judge {
    client: SdkClient,
    user_id: OwnedUserId,
    bodies: Arc<Mutex<Vec<String>>>,
    typers: Arc<Mutex<Vec<OwnedUserId>>>,
    /// The SDK's SQLite state and crypto stores; dropped after `client`.
    _store: TempDir,
}

impl Judge {
    async fn log_in(base_url: &str, localpart: &str) -> Judge {
        Judge::log_in_with(base_url, localpart, PASSWORD).await
    }

    async fn log_in_with(base_url: &str, localpart: &str, password: &str) -> Judge {
        let store = TempDir::new("rust-sdk-store");
        let client = SdkClient::builder()
            .homeserver_url(base_url)
            .sqlite_store(store.path(), None)
            .build()
            .await
            .expect("an SDK client");
        client
            .matrix_auth()
            .login_username(localpart, password)
            .initial_device_display_name("matrix-sdk judge")
            .send()
            .await
            .expect("the SDK logs in with a password");
        let user_id = client.user_id().expect("a logged-in user").to_owned();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let typers = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        client.add_event_handler(move |event: OriginalSyncRoomMessageEvent| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(event.content.body().to_owned());
            }
        });
        let typing = Arc::clone(&typers);
        client.add_event_handler(move |event: SyncTypingEvent| {
            let typing = Arc::clone(&typing);
            async move {
                *typing.lock().unwrap() = event.content.user_ids;
            }
        });
        Judge {
            client,
            user_id,
            bodies,
            typers,
            _store: store,
        }
    }

    async fn sync(&self) {
        self.client
            .sync_once(SyncSettings::default().timeout(Duration::from_millis(1_000)))
            .await
            .expect("an SDK sync");
    }

    /// Syncs until `done` holds; panics after [`ATTEMPTS`] syncs.
    async fn sync_until(&self, what: &str, done: impl AsyncCheck) {
        for _ in 0..ATTEMPTS {
            self.sync().await;
            if done.check(self).await {
                return;
            }
        }
        panic!("{} never saw {what}", self.user_id);
    }

    fn room(&self, room_id: &RoomId) -> Option<Room> {
        self.client.get_room(room_id)
    }
}

/// A condition on what a judge's client knows, checked after each sync.
trait AsyncCheck {
    async fn check(&self, judge: &Judge) -> bool;
}

impl<F: Fn(&Judge) -> bool> AsyncCheck for F {
    async fn check(&self, judge: &Judge) -> bool {
        self(judge)
    }
}

/// Alice creates the room `request` describes, inviting bob; bob sees the
/// invite through sync and joins; alice sees the join.
async fn alice_creates_bob_joins(
    alice: &Judge,
    bob: &Judge,
    request: create_room::v3::Request,
) -> OwnedRoomId {
    let created = alice
        .client
        .create_room(request)
        .await
        .expect("the SDK creates a room");
    let room_id: OwnedRoomId = created.room_id().to_owned();
    let invited = room_id.clone();
    bob.sync_until("the invite", move |judge: &Judge| {
        judge
            .client
            .invited_rooms()
            .iter()
            .any(|room| room.room_id() == invited)
    })
    .await;
    bob.client
        .join_room_by_id(&room_id)
        .await
        .expect("the SDK joins");
    let joined = room_id.clone();
    alice
        .sync_until("bob's join", move |judge: &Judge| {
            judge
                .room(&joined)
                .is_some_and(|room| room.joined_members_count() == 2)
        })
        .await;
    room_id
}

async fn run_flow(base_url: &str, anonymous: &Client) {
    anonymous.register("sdkalice", PASSWORD).await;
    anonymous.register("sdkbob", PASSWORD).await;
    let alice = Judge::log_in(base_url, "sdkalice").await;
    let bob = Judge::log_in(base_url, "sdkbob").await;
    alice.sync().await;
    bob.sync().await;

    let mut request = create_room::v3::Request::new();
    request.name = Some("rust sdk room".to_owned());
    request.invite = vec![bob.user_id.clone()];
    let room_id = alice_creates_bob_joins(&alice, &bob, request).await;
    let bob_id = bob.user_id.clone();
    let listed = alice.client.joined_rooms();
    let room = listed
        .iter()
        .find(|room| room.room_id() == room_id)
        .expect("the room in alice's room list");
    assert_eq!(room.name().as_deref(), Some("rust sdk room"));

    // Messages both ways, and the server's counts for the receiver.
    let alice_room = alice.room(&room_id).expect("alice's room");
    alice_room
        .send(RoomMessageEventContent::text_plain("hello from alice"))
        .await
        .expect("alice sends");
    let bob_room = bob.room(&room_id).expect("bob's room");
    let sent = bob_room
        .send(RoomMessageEventContent::text_plain("hello from bob"))
        .await
        .expect("bob sends");
    bob.sync_until("alice's message", |judge: &Judge| {
        judge
            .bodies
            .lock()
            .unwrap()
            .iter()
            .any(|body| body == "hello from alice")
    })
    .await;
    let counted = room_id.clone();
    alice
        .sync_until("bob's message, counted unread", move |judge: &Judge| {
            judge
                .bodies
                .lock()
                .unwrap()
                .iter()
                .any(|body| body == "hello from bob")
                && judge
                    .room(&counted)
                    .is_some_and(|room| room.unread_notification_counts().notification_count >= 1)
        })
        .await;

    // Typing.
    bob_room.typing_notice(true).await.expect("bob types");
    let typist = bob_id.clone();
    alice
        .sync_until("bob typing", move |judge: &Judge| {
            judge.typers.lock().unwrap().contains(&typist)
        })
        .await;
    bob_room.typing_notice(false).await.expect("bob stops");
    alice
        .sync_until("bob no longer typing", |judge: &Judge| {
            judge.typers.lock().unwrap().is_empty()
        })
        .await;

    // A read receipt: bob sees it, alice's count goes back to zero.
    alice_room
        .send_single_receipt(
            SendReceiptType::Read,
            ReceiptThread::Unthreaded,
            sent.response.event_id.clone(),
        )
        .await
        .expect("alice sends a receipt");
    let alice_id = alice.user_id.clone();
    let read_event = sent.response.event_id.clone();
    for attempt in 0.. {
        bob.sync().await;
        let receipt = bob_room
            .load_user_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, &alice_id)
            .await
            .expect("a receipt read from the SDK's store");
        if receipt.is_some_and(|(event_id, _)| event_id == read_event) {
            break;
        }
        assert!(attempt < ATTEMPTS, "bob never saw alice's receipt");
    }
    let reset = room_id.clone();
    alice
        .sync_until("her unread count back to zero", move |judge: &Judge| {
            judge
                .room(&reset)
                .is_some_and(|room| room.unread_notification_counts().notification_count == 0)
        })
        .await;
}

/// Two users of one server in an encrypted room (see
/// [`run_encrypted_conversation`]).
async fn run_encrypted_flow(base_url: &str, anonymous: &Client, names: &str) {
    let (alice_name, bob_name) = (format!("{names}e2ealice"), format!("{names}e2ebob"));
    anonymous.register(&alice_name, PASSWORD).await;
    anonymous.register(&bob_name, PASSWORD).await;
    run_encrypted_conversation((base_url, &alice_name), (base_url, &bob_name), PASSWORD).await;
}

/// Alice and Bob, each a `(homeserver URL, localpart)` registered with
/// `password`, in an encrypted room Alice creates: each decrypts what the
/// other sent, which takes device keys, one-time key claims, to-device room
/// keys and their delivery by sync (over federation when their servers
/// differ); then Bob sees Alice's device signed by her new cross-signing
/// keys.
pub(crate) async fn run_encrypted_conversation(
    (alice_url, alice_name): (&str, &str),
    (bob_url, bob_name): (&str, &str),
    password: &str,
) {
    let alice = Judge::log_in_with(alice_url, alice_name, password).await;
    let bob = Judge::log_in_with(bob_url, bob_name, password).await;
    alice.sync().await;
    bob.sync().await;

    let mut request = create_room::v3::Request::new();
    request.invite = vec![bob.user_id.clone()];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room_id = alice_creates_bob_joins(&alice, &bob, request).await;
    let alice_room = alice.room(&room_id).expect("alice's room");
    assert!(
        alice_room
            .latest_encryption_state()
            .await
            .expect("the room's encryption state")
            .is_encrypted(),
        "the room is encrypted"
    );
    alice_room
        .send(RoomMessageEventContent::text_plain("secret from alice"))
        .await
        .expect("alice sends encrypted");
    bob.sync_until("alice's message, decrypted", |judge: &Judge| {
        judge
            .bodies
            .lock()
            .unwrap()
            .iter()
            .any(|body| body == "secret from alice")
    })
    .await;
    let bob_room = bob.room(&room_id).expect("bob's room");
    bob_room
        .send(RoomMessageEventContent::text_plain("secret from bob"))
        .await
        .expect("bob sends encrypted");
    alice
        .sync_until("bob's message, decrypted", |judge: &Judge| {
            judge
                .bodies
                .lock()
                .unwrap()
                .iter()
                .any(|body| body == "secret from bob")
        })
        .await;

    // Alice sets up cross-signing (her first upload needs no password):
    // bob's client learns of it from its device list and sees her device
    // signed by its owner.
    alice
        .client
        .encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect("alice bootstraps cross-signing");
    let alice_device = alice.client.device_id().expect("alice's device").to_owned();
    let alice_id = alice.user_id.clone();
    for attempt in 0.. {
        bob.sync().await;
        let device = bob
            .client
            .encryption()
            .get_device(&alice_id, &alice_device)
            .await
            .expect("bob's store answers");
        if device.is_some_and(|device| device.is_cross_signed_by_owner()) {
            break;
        }
        assert!(
            attempt < ATTEMPTS,
            "bob never saw alice's device signed by her cross-signing keys"
        );
    }
    let identity = bob
        .client
        .encryption()
        .get_user_identity(&alice_id)
        .await
        .expect("bob's store answers")
        .expect("alice's identity, from her master key");
    assert!(
        !identity.is_verified(),
        "bob has not verified alice himself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_rust_sdk_users_talk_in_an_encrypted_room() {
    let server = Server::builder().open_registration().start().await;
    run_encrypted_flow(&server.url(), &server.client(), "").await;
}

/// A Myelin user and a Synapse user, each with the SDK, in an encrypted
/// room of Myelin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(myelin_skip_interop, not(myelin_python3)),
    ignore = "needs python3 (and not MYELIN_SKIP_INTEROP=1)"
)]
async fn matrix_rust_sdk_encrypts_between_myelin_and_synapse() {
    let peers = crate::federation::synapse::Peers::start().await;
    run_encrypted_conversation(
        (&peers.myelin.url(), "alice"),
        (&peers.synapse.client_url, "sam"),
        crate::federation::PASSWORD,
    )
    .await;
}

/// The same between users of two Myelins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_rust_sdk_encrypts_between_two_myelins() {
    let two = crate::federation::TwoMyelins::start().await;
    run_encrypted_conversation(
        (&two.first.url(), "alice"),
        (&two.second.url(), "bob"),
        crate::federation::PASSWORD,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_rust_sdk_logs_in_syncs_and_talks() {
    let server = Server::builder().open_registration().start().await;
    run_flow(&server.url(), &server.client()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(all(myelin_test_postgres, myelin_test_nats)),
    ignore = "set MYELIN_TEST_POSTGRES_URL and MYELIN_TEST_NATS_URL to run"
)]
async fn split_matrix_rust_sdk_logs_in_syncs_and_talks() {
    let Some(settings) = settings() else { return };
    let split = Split::up_with(
        &settings,
        &[
            ("CLIENT_APIS", "2"),
            ("SYNCHROTRONS", "2"),
            ("PERSISTERS", "1"),
            ("GATEWAYS", "1"),
        ],
    )
    .await;
    let anonymous = split.client();
    run_flow(&anonymous.url(""), &anonymous).await;
    run_encrypted_flow(&anonymous.url(""), &anonymous, "sp").await;
}
