//! `data_dir`: how the data dir is opened. Commands that write create it private (folders
//! 0700, files 0600, whatever the umask); read-only commands never create anything and say
//! plainly when there is nothing there yet. The master key is created only when nothing
//! sealed with an earlier key exists (database rows, spool entries), and a key that does not
//! match the fingerprint recorded in the database is refused: both stop with an error that
//! names the file to restore (ARCHITECTURE.md §4).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::config::Config;
use crate::keys::Keys;
use crate::store::{self, Store};

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("{path}: {error}")]
    Io {
        path: String,
        // Not a `source`: the message already holds it, and a chain would print it twice.
        error: std::io::Error,
    },
    #[error(
        "the master key {key} is missing, but {holder} holds data sealed with it: restore \
         {key} from your backup, or on a further node sharing a PostgreSQL store copy keys/ and \
         dkim/ from a running node (a new key cannot open that data, so none is created)"
    )]
    KeyMissing { key: String, holder: String },
    #[error(
        "the master key {key} is not the key the database {db} was sealed with: restore the \
         original {key} from your backup, or on a further node sharing a PostgreSQL store copy \
         keys/ and dkim/ from a running node"
    )]
    KeyMismatch { key: String, db: String },
    #[error("{0}")]
    NotSetUp(String),
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Store(String),
}

/// Whether a command may create the data dir, database and master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `serve` and commands that change data: create what is missing.
    Create,
    /// Read-only commands: open what exists, create nothing.
    Existing,
}

/// The spool folder.
pub fn spool_dir(config: &Config) -> PathBuf {
    config.data_dir.join("spool")
}

/// Creates `path` (and its parents) and makes it 0700.
pub fn create_private_dir(path: &Path) -> Result<(), DataDirError> {
    let io = |error| DataDirError::Io {
        path: path.display().to_string(),
        error,
    };
    std::fs::create_dir_all(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// True when the spool holds any record (a segment file that is not empty).
pub fn spool_has_entries(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with("seg-")
            && name.ends_with(".log")
            && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
    })
}

/// Opens the master key and the store, checked against each other.
pub async fn open(
    config: &Config,
    access: Access,
) -> Result<(Arc<Keys>, Arc<dyn Store>), DataDirError> {
    let url = config.store_url();
    let db = store::sqlite_path(&url);
    let db_name = db
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| {
            if url.starts_with("postgres") {
                store::postgres_target(&url)
            } else {
                "the store".into()
            }
        });
    match access {
        Access::Create => create_private_dir(&config.data_dir)?,
        Access::Existing => not_set_up(config, db.as_deref())?,
    }
    let keys = Keys::load(&config.data_dir).map_err(|e| DataDirError::Key(e.to_string()))?;
    let store = match access {
        Access::Create => store::open(&url).await,
        Access::Existing => store::open_existing(&url).await,
    }
    .map_err(|e| DataDirError::Store(format!("{db_name}: {e}")))?;
    match checked_keys(config, access, keys, store.as_ref(), &db_name).await {
        Ok(keys) => Ok((Arc::new(keys), store)),
        Err(e) => {
            store.close().await; // leaves no -wal/-shm behind
            Err(e)
        }
    }
}

/// The master key, checked against the store's fingerprint (recorded on first use), or
/// created when none exists and nothing sealed does.
async fn checked_keys(
    config: &Config,
    access: Access,
    keys: Option<Keys>,
    store: &dyn Store,
    db_name: &str,
) -> Result<Keys, DataDirError> {
    let key_file = Keys::path(&config.data_dir).display().to_string();
    let recorded = store
        .key_fingerprint()
        .await
        .map_err(|e| DataDirError::Store(e.to_string()))?;
    let keys = match keys {
        Some(keys) => keys,
        None => {
            let holder = if recorded.is_some()
                || store
                    .holds_sealed_data()
                    .await
                    .map_err(|e| DataDirError::Store(e.to_string()))?
            {
                Some(format!("the database {db_name}"))
            } else if spool_has_entries(&spool_dir(config)) {
                Some(format!("the spool {}", spool_dir(config).display()))
            } else {
                None
            };
            if let Some(holder) = holder {
                return Err(DataDirError::KeyMissing {
                    key: key_file,
                    holder,
                });
            }
            if access == Access::Existing {
                return Err(DataDirError::NotSetUp(format!(
                    "there is no master key at {key_file} yet: the service has not run with \
                     this data dir (`remailer serve` creates it)"
                )));
            }
            Keys::create(&config.data_dir).map_err(|e| DataDirError::Key(e.to_string()))?
        }
    };
    let fingerprint = keys.fingerprint();
    match recorded {
        Some(stored) if stored.as_slice() != fingerprint.as_slice() => {
            return Err(DataDirError::KeyMismatch {
                key: key_file,
                db: db_name.to_string(),
            })
        }
        Some(_) => {}
        None if access == Access::Create => store
            .set_key_fingerprint(&fingerprint, store::now_unix())
            .await
            .map_err(|e| DataDirError::Store(e.to_string()))?,
        None => {}
    }
    Ok(keys)
}

/// For read-only commands: an error saying what is missing when the data dir or the
/// database does not exist yet.
fn not_set_up(config: &Config, db: Option<&Path>) -> Result<(), DataDirError> {
    let hint = match &config.file {
        Some(file) => format!("is data_dir in {} right?", file.display()),
        None => "no config file was given (--config or REMAILER_CONFIG)".to_string(),
    };
    if !config.data_dir.is_dir() {
        return Err(DataDirError::NotSetUp(format!(
            "the data dir {} does not exist: nothing has been set up there yet \
             (`remailer serve` creates it; {hint})",
            config.data_dir.display()
        )));
    }
    if let Some(db) = db.filter(|db| !db.exists()) {
        return Err(DataDirError::NotSetUp(format!(
            "there is no database at {} yet: the service has not run with this data dir \
             (`remailer serve` creates it; {hint})",
            db.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let mut c = Config::local_defaults();
        c.data_dir = dir.join("data");
        c
    }

    #[tokio::test]
    async fn spool_entries_alone_stop_a_new_key() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        std::fs::create_dir_all(spool_dir(&c)).unwrap();
        std::fs::write(spool_dir(&c).join("seg-00000001.log"), b"sealed").unwrap();
        let err = open(&c, Access::Create).await.err().expect("refused");
        assert!(
            matches!(&err, DataDirError::KeyMissing { holder, .. } if holder.contains("spool")),
            "{err}"
        );
        assert!(!Keys::path(&c.data_dir).exists());
    }

    #[tokio::test]
    async fn the_first_open_records_the_fingerprint_and_a_fresh_dir_gets_a_key() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path());
        assert!(matches!(
            open(&c, Access::Existing).await,
            Err(DataDirError::NotSetUp(_))
        ));
        assert!(!c.data_dir.exists());
        let (keys, store) = open(&c, Access::Create).await.unwrap();
        assert_eq!(
            store.key_fingerprint().await.unwrap().unwrap(),
            keys.fingerprint().to_vec()
        );
        store.close().await;
        assert!(open(&c, Access::Existing).await.is_ok());
    }
}
