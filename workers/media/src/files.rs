//! The media store on disk: every blob under `<root>/content/ab/cd/<sha256>`,
//! named by its SHA-256, so identical uploads share one file and any replica
//! mounting the same directory serves any media ID.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// A blob as written: its name and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredBlob {
    pub(crate) sha256: String,
    pub(crate) size: u64,
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

    /// Writes the bytes unless a blob with the same hash exists. The file is
    /// written beside the store under a temporary name and renamed into
    /// place, so readers on any replica see the whole file or none.
    pub(crate) async fn store(&self, bytes: Bytes) -> std::io::Result<StoredBlob> {
        let files = self.clone();
        tokio::task::spawn_blocking(move || files.store_blocking(&bytes))
            .await
            .map_err(std::io::Error::other)?
    }

    fn store_blocking(&self, bytes: &[u8]) -> std::io::Result<StoredBlob> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let blob = StoredBlob {
            sha256: sha256.clone(),
            size: bytes.len() as u64,
        };
        let path = self
            .blob_path(&sha256)
            .ok_or_else(|| std::io::Error::other("hex digest is not a blob name"))?;
        if path.exists() {
            return Ok(blob);
        }
        let temporary = self.write_temporary(bytes)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Another replica may have renamed the same content into place
        // meanwhile; replacing it with identical bytes is harmless.
        std::fs::rename(&temporary, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })?;
        Ok(blob)
    }

    /// A fully written, synced file in `<root>/tmp`, on the same
    /// filesystem as the blobs so the rename is atomic.
    fn write_temporary(&self, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let directory = self.root.join("tmp");
        std::fs::create_dir_all(&directory)?;
        let path = directory.join(format!(
            "upload-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = std::fs::File::create_new(&path).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        match written {
            Ok(()) => Ok(path),
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                Err(error)
            }
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
        let files = self.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(files.root.join("content"))?;
            let probe = files.write_temporary(b"ready")?;
            std::fs::remove_file(probe)
        })
        .await
        .map_err(std::io::Error::other)?
    }
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

    #[tokio::test]
    async fn names_that_are_not_hashes_never_become_paths() {
        let files = MediaFiles::new(temp_root("names"));
        assert!(files.blob_path("../../etc/passwd").is_none());
        assert!(files.blob_path(&"g".repeat(64)).is_none());
        assert_eq!(files.read("../x").await.expect("read"), None);
        assert_eq!(files.read(&"a".repeat(64)).await.expect("read"), None);
    }
}
