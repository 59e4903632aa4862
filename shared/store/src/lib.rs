//! The storage traits of Myelin, grouped by domain.
//!
//! Invariant: no SQL and no engine here. Each trait method states the
//! atomicity it promises; `myelin-store-sqlite` and `myelin-store-postgres`
//! implement every trait and run the same conformance suite
//! (`feature = "conformance"`).

mod account_data;
mod accounts;
mod aliases;
mod devices;
mod directory;
mod error;
mod events;
mod filters;
mod key_backup;
mod keys;
mod leases;
mod media;
mod notifications;
mod outbox;
mod presence;
mod pushers;
mod receipts;
mod relations;
mod reports;
mod server_keys;
mod snapshots;
mod to_device;
mod typing;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use account_data::{AccountDataEntry, AccountDataStore};
pub use accounts::{AccountStore, NewUser, NonceUse, ProfileUpdate, UserRecord};
pub use aliases::{AliasRecord, AliasStore};
pub use devices::{Device, DeviceStore, TokenOwner};
pub use directory::{DirectoryScope, DirectoryStore, DirectoryUser};
pub use error::{StoreError, StoreResult};
pub use events::{
    Direction, EventStore, EventTimeStore, Membership, PersistEvent, PersistOutcome, Redaction,
    RoomRecord, StoredEvent, TxnKey,
};
pub use filters::FilterStore;
pub use key_backup::{BackupKey, BackupScope, BackupVersion, KeyBackupStore};
pub use keys::{
    ClaimedKey, CrossSigningStore, DeviceKeysRecord, DeviceListEntry, DeviceListStore,
    DeviceListSubject, KeyClaim, KeySignature, KeyStore, RemoteDeviceList, UploadedKey,
};
pub use leases::{Fence, LeaseSession, LeaseStore};
pub use media::{FillOutcome, MediaContent, MediaRecord, MediaStore, NewMedia, ThumbnailRecord};
pub use notifications::{
    MAIN_THREAD, NotificationRecord, NotificationStore, PushAction, RoomUnread, UnreadCounts,
};
pub use outbox::{
    ANSWERS_KEPT_MS, AnsweredTransaction, DestinationRetry, EduStream, InboundTurn, OutboxBatch,
    OutboxEdu, OutboxEntry, OutboxStore, QueuedEdu, QueuedPdu,
};
pub use presence::{
    LapseCutoffs, LapsedPresence, MAX_LAPSED_AT_ONCE, PresenceRecord, PresenceStore, PresenceUpdate,
};
pub use pushers::{PushDue, Pusher, PusherProgress, PusherStore};
pub use receipts::{NewReceipt, Receipt, ReceiptStore};
pub use relations::{
    EventIndex, IndexedEvent, MAX_RELATION_DEPTH, MAX_RELATION_KEY_BYTES, MAX_SEARCH_WORDS,
    RelationQuery, RelationRef, RelationStore, SearchHit, SearchOrder, SearchPage, SearchQuery,
    SearchRoom, SearchText, THREAD, ThreadRoot, ThreadSummary, index_of, search_words,
};
pub use reports::{NewReport, ReportRecord, ReportStore};
pub use server_keys::{ServerKeyDocument, ServerKeyStore, ServerVerifyKey};
pub use snapshots::{
    AppliedRedaction, CurrentStateChange, EventSnapshots, EventStateIds, FetchedInto,
    MAX_SNAPSHOT_CHAIN, NewSnapshot, OutlierEvent, PromotedEvent, Snapshot, SnapshotStore,
    StateEntry, fold_chain, snapshot_events, state_at_point,
};
pub use to_device::{NewToDevice, ToDeviceAck, ToDeviceMessage, ToDeviceSend, ToDeviceStore};
pub use typing::{TypingNotice, TypingStore};

/// Every domain at once: what an engine implements and a process opens.
#[async_trait::async_trait]
pub trait Store:
    AccountStore
    + DeviceStore
    + EventStore
    + EventTimeStore
    + AliasStore
    + DirectoryStore
    + FilterStore
    + LeaseStore
    + MediaStore
    + AccountDataStore
    + ReceiptStore
    + TypingStore
    + NotificationStore
    + PresenceStore
    + PusherStore
    + RelationStore
    + ReportStore
    + KeyStore
    + DeviceListStore
    + CrossSigningStore
    + KeyBackupStore
    + ToDeviceStore
    + ServerKeyStore
    + SnapshotStore
    + OutboxStore
    + Send
    + Sync
{
    /// Cheap round trip for `/ready`.
    async fn ping(&self) -> StoreResult<()>;
}
