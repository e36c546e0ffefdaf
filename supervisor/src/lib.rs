//! The per-grain supervisor: one process per running grain. It builds the sandbox
//! (namespaces, mounts, seccomp, cgroups), runs the app inside it, speaks Cap'n Proto to the app
//! on fd 3 and to the server on a unix socket, and wraps every capability that crosses the
//! grain's boundary.
//!
//! May touch: the grain's own directory, the unpacked package image (read-only), cgroups for its
//! grain, and the kernel interfaces needed to build a sandbox.
//! Must never: open another grain's storage, reach the network, or hand the app a file
//! descriptor or capability the platform did not grant it.
//!
//! Status: the sandbox is built ([`sandbox::spawn`]; see SPEC.md, "The grain sandbox"); the Cap'n Proto side is
//! not yet.

pub mod cgroups;
pub mod limits;
pub mod mounts;
pub mod sandbox;
pub mod seccomp;
pub mod setup;
pub mod syscalls;

pub use limits::{disk_usage, Limits};
pub use sandbox::{spawn, HostIds, Sandbox, SandboxConfig, SandboxError};
