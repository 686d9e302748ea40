//! The core's errors. Each message names the object it is about; [`Error::code`] is the
//! stable code the binding gives JavaScript.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// The manager is shutting down or shut down: no new resource may start.
    ShutDown { what: &'static str },
    /// An option is out of its range or of the wrong kind.
    InvalidOption {
        option: &'static str,
        problem: String,
    },
    /// `listen()` could not bind or start.
    Listen { address: String, source: io::Error },
    /// `attach()` could not take over an upgraded socket.
    Handoff { source: io::Error },
}

impl Error {
    /// The stable code of this error, as JavaScript sees it in `error.code`. A socket
    /// error keeps the system's own name (`EADDRINUSE`, `EACCES`, …), as Node's `net` does.
    pub fn code(&self) -> &'static str {
        match self {
            Error::ShutDown { .. } => "ERR_CLUSO_SHUT_DOWN",
            Error::InvalidOption { .. } => "ERR_CLUSO_INVALID_OPTION",
            Error::Listen { source, .. } => match source.kind() {
                io::ErrorKind::AddrInUse => "EADDRINUSE",
                io::ErrorKind::AddrNotAvailable => "EADDRNOTAVAIL",
                io::ErrorKind::PermissionDenied => "EACCES",
                _ => "ERR_CLUSO_LISTEN",
            },
            Error::Handoff { .. } => "ERR_CLUSO_HANDOFF",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ShutDown { what } => write!(f, "{what}: the WebSocketManager is shut down"),
            Error::InvalidOption { option, problem } => write!(f, "option {option}: {problem}"),
            Error::Listen { address, source } => write!(f, "listen on {address} failed: {source}"),
            Error::Handoff { source } => write!(f, "socket handoff failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Listen { source, .. } | Error::Handoff { source } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_says_so_in_its_code_and_message() {
        let error = Error::Listen {
            address: "127.0.0.1:80".into(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(error.code(), "EADDRINUSE");
        assert!(error
            .to_string()
            .starts_with("listen on 127.0.0.1:80 failed"));
        assert!(std::error::Error::source(&error).is_some());
    }
}
