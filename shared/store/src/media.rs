//! Metadata of uploaded media and of the thumbnails made from it. The bytes
//! live in files named by their SHA-256; rows only point at them.

use async_trait::async_trait;

use crate::StoreResult;

/// What is known about uploaded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaContent {
    pub content_type: Option<String>,
    /// The file name the uploader gave (`filename` query parameter).
    pub upload_name: Option<String>,
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes: the name of the content file.
    pub sha256: String,
}

/// A media ID of this server as it is first recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewMedia<'a> {
    pub media_id: &'a str,
    pub uploader: &'a str,
    pub created_ts: i64,
    /// Served only where clients show an access token (it was uploaded
    /// while `enable_authenticated_media` was on).
    pub authenticated: bool,
}

/// One media ID of this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    pub media_id: String,
    pub uploader: String,
    pub created_ts: i64,
    /// See [`NewMedia::authenticated`]; `false` for media from before the
    /// setting existed.
    pub authenticated: bool,
    /// `None` while an ID reserved with `/create` waits for its upload.
    pub content: Option<MediaContent>,
    /// When a still-empty reserved ID stops being usable; `None` once filled.
    pub pending_expires_ts: Option<i64>,
}

/// What became of an upload into a reserved media ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    Filled,
    /// The ID was never reserved, or its reservation ran out.
    NotFound,
    /// Another user reserved the ID.
    NotOwner,
    /// Content was already uploaded to the ID; it never changes.
    AlreadyUploaded,
}

/// A thumbnail of one media ID at one size and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailRecord {
    pub media_id: String,
    pub width: u32,
    pub height: u32,
    /// `scale` or `crop`.
    pub method: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records a complete upload; `Conflict` when the ID exists.
    async fn create_media(&self, media: &NewMedia<'_>, content: &MediaContent) -> StoreResult<()>;

    /// Reserves an ID for a later upload by its uploader, unless they
    /// already hold `max_pending` reservations still valid at its
    /// `created_ts` (then `false`). Counting and inserting are one step, so
    /// parallel calls cannot pass the limit. `Conflict` when the ID exists.
    async fn create_pending_media(
        &self,
        media: &NewMedia<'_>,
        expires_ts: i64,
        max_pending: u64,
    ) -> StoreResult<bool>;

    /// Fills a reserved ID once, if `uploader` reserved it and the
    /// reservation is still valid at `now_ts`; one statement decides, so of
    /// two racing uploads exactly one fills it.
    async fn fill_pending_media(
        &self,
        media_id: &str,
        uploader: &str,
        now_ts: i64,
        content: &MediaContent,
    ) -> StoreResult<FillOutcome>;

    /// The record, pending or not (expired reservations included until
    /// they are purged: callers compare `pending_expires_ts` themselves).
    async fn media(&self, media_id: &str) -> StoreResult<Option<MediaRecord>>;

    /// How many reservations of `uploader` are still empty and valid at `now_ts`.
    async fn pending_media_count(&self, uploader: &str, now_ts: i64) -> StoreResult<u64>;

    /// Forgets reservations that ran out before `now_ts` without an upload;
    /// returns how many.
    async fn purge_expired_pending_media(&self, now_ts: i64) -> StoreResult<u64>;

    async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> StoreResult<Option<ThumbnailRecord>>;

    /// Records a thumbnail; a row already there for the same key wins (two
    /// replicas making the same thumbnail at once both succeed).
    async fn put_thumbnail(&self, thumbnail: &ThumbnailRecord) -> StoreResult<()>;

    /// Every thumbnail of a media ID, by width, height and method.
    async fn thumbnails(&self, media_id: &str) -> StoreResult<Vec<ThumbnailRecord>>;

    /// Whether any media, remote media or thumbnail row names the file
    /// with this hash.
    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool>;

    /// Another server's media as fetched and kept here.
    async fn remote_media(&self, origin: &str, media_id: &str)
    -> StoreResult<Option<MediaContent>>;

    /// Forgets other servers' media (and their thumbnails) fetched before
    /// `fetched_before` (ms); their files go with the next sweep. Returns
    /// how many were forgotten.
    async fn forget_remote_media(&self, fetched_before: i64) -> StoreResult<u64>;

    /// Records another server's media once fetched; a row already there
    /// wins (two replicas fetching the same media at once both succeed).
    async fn put_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        content: &MediaContent,
        fetched_ts: i64,
    ) -> StoreResult<()>;
}
