//! Typed errors that carry the path and the action, and the one exit-code table.

use std::io;
use std::path::PathBuf;

/// Exit statuses shared by every command (documented in the man page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Some items failed; the rest was done.
    Partial = 1,
    Usage = 2,
    NotFound = 3,
    /// A lock was busy: retry later.
    LockBusy = 4,
    /// `check` found problems.
    Problems = 5,
    Interrupted = 130,
}

/// Everything that can go wrong, with enough context to tell the user what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}: {source}{}", path.display(), io_hint(source))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Metadata {
        path: PathBuf,
        #[source]
        source: crate::metadata::MetaError,
    },
    #[error("{}: {source}", path.display())]
    Audio {
        path: PathBuf,
        #[source]
        source: crate::audio::AudioError,
    },
    #[error(transparent)]
    Conf(#[from] crate::conf::ConfError),
    #[error(transparent)]
    Name(#[from] crate::spool::NameError),
    /// Unknown context, box, folder or message.
    #[error("{0}")]
    NotFound(String),
    /// A target that matches several things.
    #[error("{0}")]
    Ambiguous(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A lock (Asterisk's or another vmtool's) stayed busy: retry later.
    #[error("{0}")]
    LockBusy(String),
    /// An item failed for a reason given in the text.
    #[error("{0}")]
    Failed(String),
}

fn io_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (run vmtool as the Asterisk user, e.g. sudo -u asterisk vmtool …)"
        }
        _ => "",
    }
}

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            Error::NotFound(_) => Exit::NotFound,
            Error::LockBusy(_) => Exit::LockBusy,
            Error::Usage(_) | Error::Ambiguous(_) | Error::Name(_) => Exit::Usage,
            Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => Exit::NotFound,
            _ => Exit::Partial,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
