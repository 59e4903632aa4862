//! The media store on disk: every blob under `<root>/content/ab/cd/<sha256>`,
//! named by its SHA-256, so identical uploads share one file and any replica
//! mounting the same directory serves any media ID.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use myelin_http::{BodyStream, MatrixError};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Writes to a new file are gathered into pieces this large.
const WRITE_BUFFER: usize = 256 * 1024;

/// A blob as written: its name and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredBlob {
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

/// Why an upload did not become a blob.
#[derive(Debug)]
pub(crate) enum UploadError {
    /// Past the size limit; nothing is kept.
    TooLarge,
    /// The client's body broke off or was refused on the way.
    Body(MatrixError),
    Io(std::io::Error),
}

impl From<std::io::Error> for UploadError {
    fn from(error: std::io::Error) -> Self {
        UploadError::Io(error)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MediaFiles {
    root: PathBuf,
}

impl MediaFiles {
    pub(crate) fn new(root: PathBuf) -> MediaFiles {
        MediaFiles { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this hash lives; `None` for anything but 64 hex
    /// digits, so a damaged row can never name a path outside the store.
    pub(crate) fn blob_path(&self, sha256: &str) -> Option<PathBuf> {
        let is_hash = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        is_hash.then(|| {
            self.root
                .join("content")
                .join(&sha256[0..2])
                .join(&sha256[2..4])
                .join(sha256)
        })
    }

    /// Writes the bytes unless a blob with the same hash exists.
    pub(crate) async fn store(&self, bytes: Bytes) -> std::io::Result<StoredBlob> {
        let one_piece = futures::stream::once(async move { Ok(bytes) }).boxed();
        match self.store_stream(one_piece, u64::MAX).await {
            Ok(blob) => Ok(blob),
            Err(UploadError::Io(error)) => Err(error),
            Err(other) => Err(std::io::Error::other(format!("{other:?}"))),
        }
    }

    /// Writes a body as it arrives, hashing it on the way, unless a blob
    /// with the same hash exists. The file is written beside the store
    /// under a temporary name and renamed into place, so readers on any
    /// replica see the whole file or none; a body past `max_bytes`, or one
    /// that breaks off, leaves nothing behind.
    pub(crate) async fn store_stream(
        &self,
        body: BodyStream,
        max_bytes: u64,
    ) -> Result<StoredBlob, UploadError> {
        let temporary = self.temporary_path().await?;
        // Removes the file on every way out but success, also when the
        // request is dropped halfway (the client went away).
        let mut unplaced = Unplaced(Some(temporary.clone()));
        let blob = write_hashed(&temporary, body, max_bytes).await?;
        self.place(&temporary, &blob).await?;
        unplaced.0 = None;
        Ok(blob)
    }

    /// Renames a written temporary file to its blob's name, or drops it
    /// when that blob exists already.
    async fn place(&self, temporary: &Path, blob: &StoredBlob) -> Result<(), UploadError> {
        let path = self
            .blob_path(&blob.sha256)
            .ok_or_else(|| std::io::Error::other("hex digest is not a blob name"))?;
        if tokio::fs::try_exists(&path).await? {
            // Reused: marked fresh, so a sweep of unnamed files leaves it
            // alone until this upload's row names it.
            match touch(&path).await {
                // The touch may have reached the file just as a sweep moved
                // it aside: only a file still in place counts as reused.
                Ok(()) if tokio::fs::try_exists(&path).await? => {
                    tokio::fs::remove_file(temporary).await?;
                    return Ok(());
                }
                // Swept away meanwhile: this upload's copy takes its place.
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // Another replica may have renamed the same content into place
        // meanwhile; replacing it with identical bytes is harmless.
        tokio::fs::rename(temporary, &path).await?;
        Ok(())
    }

    /// A new name in `<root>/tmp`, on the same filesystem as the blobs so
    /// the rename into place is atomic.
    async fn temporary_path(&self) -> std::io::Result<PathBuf> {
        let directory = self.root.join("tmp");
        tokio::fs::create_dir_all(&directory).await?;
        Ok(directory.join(format!(
            "upload-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        )))
    }

    /// The blob's file, open for reading, and its length; `None` when
    /// there is no such blob.
    pub(crate) async fn open(
        &self,
        sha256: &str,
    ) -> std::io::Result<Option<(tokio::fs::File, u64)>> {
        let Some(path) = self.blob_path(sha256) else {
            return Ok(None);
        };
        match tokio::fs::File::open(path).await {
            Ok(file) => {
                let length = file.metadata().await?.len();
                Ok(Some((file, length)))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The blob's bytes; `None` when there is no such blob.
    pub(crate) async fn read(&self, sha256: &str) -> std::io::Result<Option<Bytes>> {
        let Some(path) = self.blob_path(sha256) else {
            return Ok(None);
        };
        match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Creates the store's directories and proves a file can be written
    /// there (for `/ready`).
    pub(crate) async fn check_writable(&self) -> std::io::Result<()> {
        tokio::fs::create_dir_all(self.root.join("content")).await?;
        let probe = self.temporary_path().await?;
        tokio::fs::write(&probe, b"ready").await?;
        tokio::fs::remove_file(probe).await
    }
}

impl MediaFiles {
    /// Removes blobs that no row names (`in_use` asks the store) and that
    /// are older than `grace`, and temporary files as old; returns how many
    /// blobs went. Such blobs come from uploads whose row was never written
    /// (the store failed, a reserved ID was filled by another upload, a
    /// crash). Each one is first moved aside and looked at again: a blob an
    /// upload reused meanwhile was touched (see `place`) and goes back, so
    /// nothing a row names is ever lost.
    pub(crate) async fn sweep_unnamed<F, Fut, E>(
        &self,
        grace: Duration,
        in_use: F,
    ) -> std::io::Result<u64>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<bool, E>>,
        E: std::fmt::Display,
    {
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let (candidates, leftovers) = {
            let files = self.clone();
            tokio::task::spawn_blocking(move || files.list_old(cutoff))
                .await
                .map_err(std::io::Error::other)??
        };
        for leftover in leftovers {
            self.settle_leftover(&leftover).await?;
        }
        let ask = |sha256: &str| {
            let asked = in_use(sha256.to_owned());
            let sha256 = sha256.to_owned();
            async move {
                asked.await.map_err(|error| {
                    std::io::Error::other(format!("cannot ask the store about {sha256}: {error}"))
                })
            }
        };
        let mut removed = 0;
        for (sha256, path) in candidates {
            // Most old files are named: those are only looked up.
            if ask(&sha256).await? {
                continue;
            }
            let aside = self.root.join("tmp").join(format!(
                "{UNNAMED_PREFIX}{sha256}-{}-{:08x}",
                unix_seconds(SystemTime::now()),
                rand::random::<u32>()
            ));
            match tokio::fs::rename(&path, &aside).await {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            }
            // Looked at again once out of reach of new uploads: one that
            // reused the file meanwhile touched it or has its row by now.
            let touched = match tokio::fs::metadata(&aside).await {
                Ok(meta) => meta.modified()? > cutoff,
                // Another replica's sweep put it back already.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            let keep = touched
                || match ask(&sha256).await {
                    Ok(named) => named,
                    Err(error) => {
                        restore(&aside, &path).await?;
                        return Err(error);
                    }
                };
            if keep {
                restore(&aside, &path).await?;
            } else {
                tokio::fs::remove_file(&aside).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Blobs last written before `cutoff`, and files in `tmp` as old.
    fn list_old(&self, cutoff: SystemTime) -> std::io::Result<OldFiles> {
        let old = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified <= cutoff)
        };
        let mut blobs = Vec::new();
        for first in read_dir_or_empty(&self.root.join("content"))? {
            for second in read_dir_or_empty(&first)? {
                for path in read_dir_or_empty(&second)? {
                    let name = path.file_name().and_then(|name| name.to_str());
                    if let Some(sha256) =
                        name.filter(|name| self.blob_path(name).as_ref() == Some(&path))
                        && old(&path)
                    {
                        blobs.push((sha256.to_owned(), path.clone()));
                    }
                }
            }
        }
        // A file a sweep set aside keeps its old mtime; its name says when.
        let leftovers = read_dir_or_empty(&self.root.join("tmp"))?
            .into_iter()
            .filter(|path| match set_aside_as(path) {
                Some((_, at)) => at <= unix_seconds(cutoff),
                None => old(path),
            })
            .collect();
        Ok((blobs, leftovers))
    }

    /// An old file in `tmp`: a blob a sweep moved aside and did not get to
    /// decide on goes back (the next sweep looks at it again); anything
    /// else is an upload that never finished.
    async fn settle_leftover(&self, leftover: &Path) -> std::io::Result<()> {
        let set_aside = set_aside_as(leftover).and_then(|(sha256, _)| self.blob_path(&sha256));
        match set_aside {
            Some(path) => match restore(leftover, &path).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
            None => match tokio::fs::remove_file(leftover).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
        }
    }
}

/// Blobs (hash and path), and files in `tmp`, older than a sweep's cutoff.
type OldFiles = (Vec<(String, PathBuf)>, Vec<PathBuf>);

/// How a blob set aside by a sweep is named in `tmp`:
/// `unnamed-<sha256>-<unix seconds>-<random>`.
const UNNAMED_PREFIX: &str = "unnamed-";

/// The hash and time in the name of a file a sweep set aside.
fn set_aside_as(path: &Path) -> Option<(String, u64)> {
    let rest = path.file_name()?.to_str()?.strip_prefix(UNNAMED_PREFIX)?;
    let (sha256, rest) = rest.split_once('-')?;
    let (seconds, _) = rest.split_once('-')?;
    Some((sha256.to_owned(), seconds.parse().ok()?))
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A temporary upload file, removed when dropped unless disarmed.
struct Unplaced(Option<PathBuf>);

impl Drop for Unplaced {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Puts a blob set aside back, unless an upload has put the same content
/// there meanwhile.
async fn restore(aside: &Path, path: &Path) -> std::io::Result<()> {
    if tokio::fs::try_exists(path).await? {
        tokio::fs::remove_file(aside).await
    } else {
        tokio::fs::rename(aside, path).await
    }
}

/// Marks a file as just written.
async fn touch(path: &Path) -> std::io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.set_modified(SystemTime::now()))
        .await
        .map_err(std::io::Error::other)?
}

/// The entries of a directory; none when it does not exist.
fn read_dir_or_empty(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|entry| entry.path()))
            .collect(),
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(Vec::new())
        }
        Err(error) => Err(error),
    }
}

/// Writes `body` to a new file at `path`, synced, and names it by hash.
async fn write_hashed(
    path: &Path,
    mut body: BodyStream,
    max_bytes: u64,
) -> Result<StoredBlob, UploadError> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(UploadError::Body)?;
        size = size.saturating_add(chunk.len() as u64);
        if size > max_bytes {
            return Err(UploadError::TooLarge);
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.get_ref().sync_all().await?;
    Ok(StoredBlob {
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(label: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "myelin-media-files-{label}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    #[tokio::test]
    async fn identical_content_is_stored_once_under_its_hash() {
        let root = temp_root("dedupe");
        let files = MediaFiles::new(root.clone());
        let first = files
            .store(Bytes::from_static(b"hello"))
            .await
            .expect("store");
        let second = files
            .store(Bytes::from_static(b"hello"))
            .await
            .expect("store");
        assert_eq!(first, second);
        assert_eq!(
            first.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let path = files.blob_path(&first.sha256).expect("a blob path");
        assert!(path.starts_with(root.join("content").join("2c").join("f2")));
        assert_eq!(
            files.read(&first.sha256).await.expect("read").as_deref(),
            Some(&b"hello"[..])
        );
        let temporaries = std::fs::read_dir(root.join("tmp")).expect("tmp").count();
        assert_eq!(temporaries, 0, "temporary files are renamed, none is left");
        let _ = std::fs::remove_dir_all(root);
    }

    fn pieces(items: Vec<Result<&'static [u8], MatrixError>>) -> BodyStream {
        let items: Vec<Result<Bytes, MatrixError>> = items
            .into_iter()
            .map(|item| item.map(Bytes::from_static))
            .collect();
        futures::stream::iter(items).boxed()
    }

    fn entries(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, Iterator::count)
    }

    #[tokio::test]
    async fn streamed_uploads_are_hashed_on_the_way_and_failures_leave_nothing() {
        let root = temp_root("stream");
        let files = MediaFiles::new(root.clone());
        let blob = files
            .store_stream(pieces(vec![Ok(b"hel"), Ok(b"lo")]), 5)
            .await
            .expect("stored");
        assert_eq!(
            blob,
            StoredBlob {
                sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
                    .to_owned(),
                size: 5
            }
        );
        let (_, length) = files
            .open(&blob.sha256)
            .await
            .expect("open")
            .expect("a blob");
        assert_eq!(length, 5);

        let too_large = files
            .store_stream(pieces(vec![Ok(b"hel"), Ok(b"lo!")]), 5)
            .await;
        assert!(
            matches!(too_large, Err(UploadError::TooLarge)),
            "{too_large:?}"
        );
        let broken = files
            .store_stream(
                pieces(vec![
                    Ok(b"par"),
                    Err(MatrixError::bad_json("cannot read body")),
                ]),
                100,
            )
            .await;
        assert!(matches!(broken, Err(UploadError::Body(_))), "{broken:?}");
        assert_eq!(entries(&root.join("tmp")), 0, "no partial file is left");
        // A client that goes away mid-upload: the request is dropped.
        let stalled = futures::stream::once(async { Ok(Bytes::from_static(b"half")) })
            .chain(futures::stream::pending())
            .boxed();
        let gave_up =
            tokio::time::timeout(Duration::from_millis(200), files.store_stream(stalled, 100))
                .await;
        assert!(gave_up.is_err(), "the upload was still waiting");
        assert_eq!(
            entries(&root.join("tmp")),
            0,
            "a dropped upload leaves nothing"
        );
        assert!(files.open(&"a".repeat(64)).await.expect("open").is_none());
        let _ = std::fs::remove_dir_all(root);
    }

    fn age(path: &Path, by: Duration) {
        let file = std::fs::File::open(path).expect("open");
        file.set_modified(SystemTime::now() - by)
            .expect("set mtime");
    }

    #[tokio::test]
    async fn sweeps_remove_old_unnamed_blobs_and_keep_named_or_reused_ones() {
        let root = temp_root("sweep");
        let files = MediaFiles::new(root.clone());
        let hour = Duration::from_secs(3600);
        let store = |bytes: &'static [u8]| files.store(Bytes::from_static(bytes));
        let named = store(b"named").await.expect("store");
        let unnamed = store(b"unnamed").await.expect("store");
        let fresh = store(b"fresh").await.expect("store");
        let reused = store(b"reused").await.expect("store");
        let path = |blob: &StoredBlob| files.blob_path(&blob.sha256).expect("a path");
        for blob in [&named, &unnamed, &reused] {
            age(&path(blob), 2 * hour);
        }
        // An upload of the same bytes touches the file it reuses.
        assert_eq!(store(b"reused").await.expect("store"), reused);
        // What a crashed upload and a crashed sweep left in tmp.
        let tmp = root.join("tmp");
        let stalled = tmp.join("upload-1-00");
        std::fs::write(&stalled, b"half").expect("write");
        age(&stalled, 2 * hour);
        let two_hours_ago = unix_seconds(SystemTime::now() - 2 * hour);
        let set_aside = tmp.join(format!(
            "{UNNAMED_PREFIX}{}-{two_hours_ago}-7",
            named.sha256
        ));
        std::fs::rename(path(&named), &set_aside).expect("set aside");
        age(&set_aside, 2 * hour);
        // Set aside just now by another replica's sweep: that one decides.
        let deciding = tmp.join(format!(
            "{UNNAMED_PREFIX}{}-{}-8",
            "ab".repeat(32),
            unix_seconds(SystemTime::now())
        ));
        std::fs::write(&deciding, b"other").expect("write");
        age(&deciding, 2 * hour);

        let named_sha = named.sha256.clone();
        let removed = files
            .sweep_unnamed(hour, |sha256| {
                let named = sha256 == named_sha;
                async move { Ok::<bool, String>(named) }
            })
            .await
            .expect("sweep");
        assert_eq!(removed, 1);
        assert!(path(&named).exists(), "named, and put back from tmp");
        assert!(!path(&unnamed).exists(), "old and unnamed");
        assert!(path(&fresh).exists(), "too young to judge");
        assert!(path(&reused).exists(), "touched by the second upload");
        assert_eq!(
            entries(&tmp),
            1,
            "tmp is cleared but for the file being decided"
        );
        assert!(deciding.exists());

        // With the store unreachable nothing is removed.
        let failed = files
            .sweep_unnamed(hour, |_| async { Err::<bool, String>("down".to_owned()) })
            .await;
        assert!(failed.is_err());
        assert!(path(&named).exists(), "a blob being judged goes back");
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn names_that_are_not_hashes_never_become_paths() {
        let files = MediaFiles::new(temp_root("names"));
        assert!(files.blob_path("../../etc/passwd").is_none());
        assert!(files.blob_path(&"g".repeat(64)).is_none());
        assert_eq!(files.read("../x").await.expect("read"), None);
        assert_eq!(files.read(&"a".repeat(64)).await.expect("read"), None);
    }
}
