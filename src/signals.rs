//! The signals that stop the gate: SIGTERM (the kubelet's stop) and
//! SIGINT, each with its exit code.

use tokio::signal::unix::{signal, SignalKind};

use crate::exit::ExitCode;

/// A signal that stops the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Terminate,
    Interrupt,
}

impl Stop {
    #[must_use]
    pub const fn exit_code(self) -> ExitCode {
        match self {
            Self::Terminate => ExitCode::Terminated,
            Self::Interrupt => ExitCode::Interrupted,
        }
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        }
    }
}

/// SIGTERM and SIGINT handlers, installed before any waiting starts so no
/// signal is lost.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT.
    pub async fn recv(mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Terminate,
            _ = self.int.recv() => Stop::Interrupt,
        }
    }
}
