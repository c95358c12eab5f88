//! Exit-path variants, for figure 1b of the benchmarks only: built with
//! the cargo feature `exit-variants`, which no shipped build enables
//! (`make static`, the image and `cargo build` leave it off).
//!
//! What the gate does between deciding "ready" and its process ending is
//! mostly the kernel tearing down the inotify instance (an SRCU grace
//! period in `fsnotify_destroy_group`). The shipped path drops the watcher
//! as soon as the scan says ready, so notify's thread removes the watches
//! and closes the descriptor while the main thread logs and leaves the
//! runtime. The variants here keep the watcher instead, so the kernel
//! closes it at exit as it does for `inotifywait`, and can also skip the
//! runtime's shutdown. `SECRET_GATE_EXIT_VARIANT` picks one; the bench
//! measures each against `inotifywait` in the same run.

/// One way to leave after ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The shipped path: drop the watcher at once, leave the runtime, exit.
    EarlyDrop,
    /// Drop the watcher at once, then exit without shutting the runtime
    /// down.
    EarlyDropImmediate,
    /// Keep the watcher: no watch removal, no close; the kernel closes the
    /// descriptor when the process exits, as for `inotifywait`.
    KernelClose,
    /// Keep the watcher and exit without shutting the runtime down.
    KernelCloseImmediate,
}

impl Variant {
    /// Every variant, with the name `SECRET_GATE_EXIT_VARIANT` takes.
    pub const ALL: [(&'static str, Self); 4] = [
        ("early-drop", Self::EarlyDrop),
        ("early-drop-immediate", Self::EarlyDropImmediate),
        ("kernel-close", Self::KernelClose),
        ("kernel-close-immediate", Self::KernelCloseImmediate),
    ];

    /// The variant `SECRET_GATE_EXIT_VARIANT` names; the shipped path when
    /// it is unset or names none.
    #[must_use]
    pub fn current() -> Self {
        let name = std::env::var("SECRET_GATE_EXIT_VARIANT").unwrap_or_default();
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Self::EarlyDrop, |(_, v)| *v)
    }

    /// Whether the watcher is kept (leaked) on ready instead of dropped.
    #[must_use]
    pub fn keeps_watcher(self) -> bool {
        matches!(self, Self::KernelClose | Self::KernelCloseImmediate)
    }

    /// Whether the process exits right after the run, skipping the
    /// runtime's shutdown.
    #[must_use]
    pub fn exits_at_once(self) -> bool {
        matches!(self, Self::EarlyDropImmediate | Self::KernelCloseImmediate)
    }
}
